"""The `jit` strategy on 2-D (data, fsdp) meshes of 8 simulated CPU devices; prints JSON.

  python -m tests.mesh_check [--quick]

For the toy WGAN-GP MLP, the SNGAN standard CNN and the SNGAN ResNet (tiny widths, mock
CIFAR-10 images), each on the meshes (data, fsdp) = (8, 1), (4, 2), (2, 4), (1, 8) with the
state sharded by the built-in rule `fsdp` (parallel.fsdp_min_bytes lowered so that the tiny
models' kernels are sharded): the losses of 3 steps against parallel.strategy=single, the
largest per-device state bytes, and that each step compiled once (chex.assert_max_traces
raises otherwise). Then the ResNet state trained on (2, 4) is saved and restored on (8, 1),
on one device (single) and back on (2, 4), each followed by one more step.

For the full run the checkpoint case is the ResNet. --quick (what tests/test_parallel.py
runs in a subprocess, the suite itself running on 4 devices): gan_toy.py's 3 x 512 MLP
(toy_wide) on every mesh and for the checkpoint, no CNN: every CNN program compiles for
15-30 s on two CPU cores. Programs that recur (the init and
step of single and (2, 4) for the restores) come from the persistent compilation cache
($WGAN_JAX_COMPILATION_CACHE, wgan_jax.parallel.enable_compilation_cache).
"""
import os
import sys

from tests import simulated_devices

DEVICES = 8
os.environ['XLA_FLAGS'] = simulated_devices.xla_flags(DEVICES)
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('WGAN_JAX_CONV_IMPL', 'im2col')  # as tests/conftest.py

# pylint: disable=wrong-import-position
import json
import tempfile
import time

import chex
import jax
import numpy as np
import tensorflow_datasets as tfds

from wgan_jax import checkpoint, parallel, train
from tests import configs_loader

STEPS = 3
MESHES = ((8, 1), (4, 2), (2, 4), (1, 8))
# Kernels of the tiny models are a few KiB: shard everything from 256 bytes up.
COMMON = {'total_steps': STEPS, 'batch_size': 16, 'parallel.fsdp_min_bytes': 256}
CASES = {
    'toy_gp': ('wgan_gp', 'gaussians8', {'model.mlp_hidden': 32, 'n_critic': 2}),
    # gan_toy.py's width (3 x 512): kernels of 1 MiB, so the state is nearly all shardable.
    'toy_wide': ('wgan_gp', 'gaussians8', {'n_critic': 2}),
    'sn_cnn': ('sngan', 'cnn,cifar10,smoke', {'model.g_ch': 8, 'model.d_ch': 8}),
    'resnet': ('sngan', 'cifar10,smoke', {'model.g_ch': 8, 'model.d_ch': 8}),
}


def _config(case: str, strategy: str, mesh=None):
  file, arg, overrides = CASES[case]
  extra = {'parallel.strategy': strategy}
  if mesh is not None:
    extra['parallel.mesh'] = f'data={mesh[0]},fsdp={mesh[1]}'
  return configs_loader.load(file, arg, **COMMON, **overrides, **extra)


def _max_device_bytes(state) -> int:
  return max(parallel.per_device_bytes(jax.tree.leaves(state)).values())


def _train(run, steps: int = STEPS, state=None):
  """(losses [steps, 2], final state, largest per-device state bytes) of `steps` steps."""
  begin = time.time()
  state = run.strategy.to_device(run.init_state() if state is None else state)
  nbytes = _max_device_bytes(state)
  chex.clear_trace_counter()  # counted by the step's code object, shared by every Run
  step_fn = run.strategy.compile(chex.assert_max_traces(run.step_fn(), n=1))
  start = int(jax.device_get(state.step))
  out = []
  for t in range(start, start + steps):
    state, metrics = step_fn(state, run.batch(t))
    m = jax.device_get(run.strategy.metrics(metrics))
    out.append((float(m['d_loss']), float(m['g_loss'])))
  print(f'{run.config.model.name} {run.config.parallel.strategy} {run.config.parallel.mesh}: '
        f'{time.time() - begin:.1f} s', file=sys.stderr)
  return np.array(out), run.strategy.to_canonical(state), nbytes


def _rel(a, b) -> float:
  return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))


QUICK = {'toy_wide': MESHES}


def check_losses_and_bytes(cases: dict, saved_case: str) -> tuple:
  """({case: figures}, `saved_case`'s canonical state after its steps on (2, 4))."""
  out, saved = {}, None
  for case, meshes in cases.items():
    single, _, single_bytes = _train(train.Run(_config(case, 'single')))
    figures = {}
    for mesh in meshes:
      losses, state, nbytes = _train(train.Run(_config(case, 'jit', mesh)))
      figures['x'.join(map(str, mesh))] = dict(
          max_rel_loss_diff=_rel(losses, single), first_step_rel_loss_diff=_rel(
              losses[:1], single[:1]), max_device_bytes=nbytes)
      if case == saved_case and mesh == (2, 4):
        saved = state
    out[case] = dict(single_bytes=single_bytes, single_losses=single.tolist(), meshes=figures)
  return out, saved


def _equal(a, b) -> bool:
  a, b = jax.device_get(parallel.local_copy(a)), jax.device_get(parallel.local_copy(b))
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _specs(state) -> list:
  return sorted({str(getattr(x.sharding, 'spec', 'one device')) for x in jax.tree.leaves(state)})


def check_checkpoint(workdir: str, case: str, saved) -> dict:
  """`saved` (`case` after 3 steps on (2, 4)) restored on (2, 4), (8, 1) and single; one
  more step from each restore against the same step from the restore on (2, 4)."""
  run24 = train.Run(_config(case, 'jit', (2, 4)))
  ckpt = checkpoint.Checkpointer(workdir, keep=2)
  ckpt.save(STEPS, saved, {'step': STEPS})
  ckpt.wait()
  out = {'saved_specs': _specs(saved)}
  continued = None  # the next step's losses after the restore on (2, 4)
  for name, run in (('2x4', run24), ('8x1', train.Run(_config(case, 'jit', (8, 1)))),
                    ('single', train.Run(_config(case, 'single')))):
    target = checkpoint.abstract_like(run.init_state())
    restored, _ = ckpt.restore(STEPS, target)
    placed = all(x.sharding == t.sharding for x, t in
                 zip(jax.tree.leaves(restored), jax.tree.leaves(target)))
    equal, specs = _equal(restored, saved), _specs(restored)
    losses, _, _ = _train(run, 1, restored)  # donates `restored`, not `saved`
    continued = losses if continued is None else continued
    out[name] = dict(equal_values=equal, placed_as_target=placed, specs=specs,
                     next_step_rel_loss_diff=_rel(losses, continued))
  ckpt.close()
  return out


def main() -> None:
  assert jax.device_count() == DEVICES, jax.device_count()
  parallel.enable_compilation_cache()
  quick = '--quick' in sys.argv[1:]
  cases = QUICK if quick else {case: MESHES for case in CASES}
  saved_case = 'toy_wide' if quick else 'resnet'
  begin = time.time()
  with tfds.testing.mock_data(num_examples=16), tempfile.TemporaryDirectory() as workdir:
    runs, saved = check_losses_and_bytes(cases, saved_case)
    result = dict(devices=jax.device_count(), quick=quick, runs=runs, saved_case=saved_case)
    result['checkpoint'] = check_checkpoint(os.path.join(workdir, 'ckpt'), saved_case, saved)
  result['seconds'] = round(time.time() - begin, 1)
  json.dump(result, sys.stdout, indent=1)
  print()


if __name__ == '__main__':
  main()
