"""Times the real jitted train step; prints one JSON line.

  python -m benchmarks.train_step --config=configs/sngan.py:cnn --steps=10 --synthetic_data \
      [--batches_in_loop] [--config.key=value ...]

steps_per_sec counts generator updates (each with its n_critic critic updates) and
real_images_per_sec the real examples the critic consumes. Compilation and a warm-up step
are excluded; the timed steps run in --repeats groups and the median group rate is
reported. The batches of a group are built before it is timed, or with --batches_in_loop
inside the timed loop (Run.batch: the input pipeline's cost counts; a synthetic batch is
put on the devices once). FLOPs per step come from XLA's cost analysis of the step with the
critic loop unrolled (a while loop's body would be counted once).
"""
import json
import os
import resource
import statistics
import time

from absl import app, flags, logging
from ml_collections import config_flags

from wgan_jax import cli

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file[:arg].', lock_config=True)
_STEPS = flags.DEFINE_integer('steps', 10, 'Timed steps per repeat.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed repeats; the median is reported.')
_SYNTHETIC = flags.DEFINE_bool('synthetic_data', False,
                               'Fixed random real batches of the dataset\'s shape (no dataset).')
_BATCHES_IN_LOOP = flags.DEFINE_bool(
    'batches_in_loop', False, 'Build each step\'s batch (read, gather, put) inside the timed '
    'loop, so the input pipeline\'s cost counts; default: all batches built before it.')


def step_flops(run, state, batch) -> float:
  """XLA's FLOP count of one step with the critic updates unrolled."""
  import jax
  from wgan_jax import step as step_lib
  cfg = run.step_config._replace(critic_unroll=run.config.n_critic)
  fn = step_lib.make_train_step(family=run.step_family, loss=run.loss, plan=run.plan,
                                g_tx=run.g_tx, d_tx=run.d_tx, cfg=cfg)
  analysis = jax.jit(fn).lower(state, batch).compile().cost_analysis()
  analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
  return float(analysis.get('flops', 0.0))


class Bench:
  """A config's Run, jitted step, device state and `batch_at(t)` ready to time (compiled, one
  warm-up step done): the parts `benchmark` and benchmarks.input_pipeline share.

  synthetic: a fixed random real batch of the dataset's shape (uint8 images, as image
  sources give them, or float32 2-D points; with labels for conditional runs), put on the
  devices once (no dataset, no input cost: the reference of the input pipeline's overhead).
  """

  def __init__(self, config, *, synthetic: bool, flops: bool = True):
    import jax
    import numpy as np
    from wgan_jax import train

    with config.unlocked():
      config.n_critic_warmup = 0  # the steady-state step: n_critic critic updates
    self.config, self.synthetic = config, synthetic
    self.run = run = train.Run(config, open_data=not synthetic)
    shape = (config.n_critic, config.batch_size)
    if synthetic:  # uint8 images as the image sources give (scaled in the step), float 2-D
      rng = np.random.default_rng(0)
      x = rng.uniform(-1, 1, shape + run.data_shape).astype(np.float32) if run.is_toy else \
          rng.integers(0, 256, shape + run.data_shape, dtype=np.uint8)
      batch = {'x': x}
      if run.num_classes:  # class-conditional runs: labels 0, 1, ... (mod the classes)
        batch['label'] = (np.arange(np.prod(shape)) % run.num_classes).reshape(shape)
        batch['label'] = batch['label'].astype(np.int32)
      fixed = run.strategy.put_batch(batch)
      self.batch_at = lambda t: fixed
    else:
      self.batch_at = run.batch
    self.state = run.strategy.to_device(run.init_state())
    self.flops = step_flops(run, jax.device_get(self.state), self.batch_at(0)) \
        if flops and run.strategy.name != 'pmap' else float('nan')
    self.train_step = run.train_step()
    t0 = time.perf_counter()
    compiled = self.train_step.lower(self.state, self.batch_at(0)).compile()
    self.compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    self.state, metrics = self.train_step(self.state, self.batch_at(0))
    jax.block_until_ready(metrics)
    self.first_step_s = time.perf_counter() - t0
    del compiled
    self.step = 1

  def time_steps(self, steps: int, *, batches_in_loop: bool) -> float:
    """Steps per second of the next `steps` steps; batches_in_loop: each step's batch is
    built (Run.batch: read, gather, put on the devices) inside the timed loop, else all of
    them before it."""
    import jax
    first, self.step = self.step, self.step + steps
    if batches_in_loop:
      t0 = time.perf_counter()
      for t in range(first, first + steps):
        self.state, metrics = self.train_step(self.state, self.batch_at(t))
    else:
      batches = [self.batch_at(t) for t in range(first, first + steps)]
      t0 = time.perf_counter()
      for b in batches:
        self.state, metrics = self.train_step(self.state, b)
    jax.block_until_ready((self.state, metrics))
    return steps / (time.perf_counter() - t0)

  def close(self) -> None:
    """Stops the data source's workers (data.placement stream)."""
    if getattr(self.run.source, 'close', None):
      self.run.source.close()


def benchmark(config, *, steps: int, repeats: int, synthetic: bool,
              batches_in_loop: bool = False) -> dict:
  import jax
  from wgan_jax.ops import conv

  bench = Bench(config, synthetic=synthetic)
  try:
    rates = [bench.time_steps(steps, batches_in_loop=batches_in_loop) for _ in range(repeats)]
  finally:
    bench.close()
  run, flops, rate = bench.run, bench.flops, statistics.median(rates)
  device = jax.devices()[0]
  return {
      'config': config.data.name + '/' + config.model.name, 'loss': config.loss,
      'lipschitz': config.lipschitz.method, 'n_critic': config.n_critic,
      'batch_size': config.batch_size, 'strategy': run.strategy.name,
      'steps_per_sec': rate, 'real_images_per_sec': rate * config.n_critic * config.batch_size,
      'steps_per_sec_repeats': rates, 'compile_s': bench.compile_s,
      'first_step_s': bench.first_step_s,
      'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      'device_kind': device.device_kind, 'platform': device.platform,
      'device_count': jax.device_count(), 'flops_per_step': flops,
      'achieved_flops_per_sec': flops * rate, 'synthetic_data': synthetic,
      'batches_in_loop': batches_in_loop,
      'data_placement': None if synthetic else getattr(run.source, 'placement', None),
      'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'conv_impl': conv.resolve_impl(config.model.get('conv_impl', 'auto')),
      'compute_dtype': config.model.get('compute_dtype', 'float32'),
  }


def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.ERROR)
  config = cli.config_from_flag(_CONFIG)
  result = cli.run_user_errors(lambda: benchmark(config, steps=_STEPS.value,
                                                  repeats=_REPEATS.value,
                                                  synthetic=_SYNTHETIC.value,
                                                  batches_in_loop=_BATCHES_IN_LOOP.value))
  print(json.dumps(result))


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
