"""Times the real jitted train step; prints one JSON line.

  python -m benchmarks.train_step --config=configs/sngan.py:cnn --steps=10 --synthetic_data \
      [--config.key=value ...]

steps_per_sec counts generator updates (each with its n_critic critic updates) and
real_images_per_sec the real examples the critic consumes. Compilation and a warm-up step
are excluded; the timed steps run in --repeats groups and the median group rate is
reported. FLOPs per step come from XLA's cost analysis of the step with the critic loop
unrolled (a while loop's body would be counted once).
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


def step_flops(run, state, batch) -> float:
  """XLA's FLOP count of one step with the critic updates unrolled."""
  import jax
  from wgan_jax import step as step_lib
  cfg = run.step_config._replace(critic_unroll=run.config.n_critic)
  fn = step_lib.make_train_step(models=run.step_models, loss=run.loss, plan=run.plan,
                                g_tx=run.g_tx, d_tx=run.d_tx, cfg=cfg)
  analysis = jax.jit(fn).lower(state, batch).compile().cost_analysis()
  analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
  return float(analysis.get('flops', 0.0))


def benchmark(config, *, steps: int, repeats: int, synthetic: bool) -> dict:
  import jax
  import numpy as np
  from wgan_jax import train
  from wgan_jax.ops import conv

  with config.unlocked():
    config.n_critic_warmup = 0  # the steady-state step: n_critic critic updates
  run = train.Run(config, open_data=not synthetic)
  shape = (config.n_critic, config.batch_size)
  if synthetic:
    x = np.random.default_rng(0).uniform(-1, 1, shape + run.data_shape).astype(np.float32)
    batch_at = lambda t: run.strategy.put_batch({'x': x})
  else:
    batch_at = run.batch
  state = run.strategy.to_device(run.init_state())
  flops = step_flops(run, jax.device_get(state), batch_at(0)) if run.strategy.name != 'pmap' \
      else float('nan')
  train_step = run.train_step()

  t0 = time.perf_counter()
  compiled = train_step.lower(state, batch_at(0)).compile()
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  state, metrics = train_step(state, batch_at(0))
  jax.block_until_ready(metrics)
  first_step_s = time.perf_counter() - t0
  del compiled
  rates = []
  step = 1
  for _ in range(repeats):
    batches = [batch_at(step + i) for i in range(steps)]
    t0 = time.perf_counter()
    for b in batches:
      state, metrics = train_step(state, b)
    jax.block_until_ready((state, metrics))
    rates.append(steps / (time.perf_counter() - t0))
    step += steps
  rate = statistics.median(rates)
  device = jax.devices()[0]
  return {
      'config': config.data.name + '/' + config.model.name, 'loss': config.loss,
      'lipschitz': config.lipschitz.method, 'n_critic': config.n_critic,
      'batch_size': config.batch_size, 'strategy': run.strategy.name,
      'steps_per_sec': rate, 'real_images_per_sec': rate * config.n_critic * config.batch_size,
      'steps_per_sec_repeats': rates, 'compile_s': compile_s, 'first_step_s': first_step_s,
      'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      'device_kind': device.device_kind, 'platform': device.platform,
      'device_count': jax.device_count(), 'flops_per_step': flops,
      'achieved_flops_per_sec': flops * rate, 'synthetic_data': synthetic,
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
                                                  synthetic=_SYNTHETIC.value))
  print(json.dumps(result))


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
