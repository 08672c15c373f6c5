"""Data parallelism on 4 simulated CPU devices: single, pmap and jit compute the same step."""
import json
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wgan_jax import config_lib, parallel, train
from wgan_jax.errors import ConfigError
from tests import configs_loader

STRATEGIES = tuple(parallel.STRATEGIES)
# Same global step up to float reordering: relative 1e-3, with an absolute floor for losses
# that pass near zero (the hinge generator loss -mean D(fake) starts at ~1e-2).
RTOL, ATOL = 1e-3, 2e-4
# Over more steps any two reduction orders (also 1 vs 2 vs 8 devices of the same strategy)
# drift apart: Adam's first updates are +-lr for gradients that cancel to rounding noise, and
# the toy recipes amplify such differences (measured and explained in the README).
STEPS = 6


def _losses(file, arg, strategy, steps, **overrides):
  config = configs_loader.load(file, arg, **{'parallel.strategy': strategy, **overrides})
  run = train.Run(config)
  state = run.strategy.to_device(run.init_state())
  step_fn = run.train_step()
  out = []
  for t in range(steps):
    state, metrics = step_fn(state, run.batch(t))
    m = jax.device_get(run.strategy.metrics(metrics))
    out.append((float(m['d_loss']), float(m['g_loss'])))
    if t % 4 == 3:
      jax.block_until_ready(state)  # simulated devices: avoid queueing many collectives
  return np.array(out), run.strategy.to_canonical(state)


def test_config_lib_validates_the_registered_strategies():
  assert set(config_lib.STRATEGIES) == set(parallel.STRATEGIES)
  with pytest.raises(ConfigError, match='unknown parallel.strategy'):
    parallel.make_strategy('bogus')


def test_four_devices_are_simulated():
  assert jax.device_count() == 4


@pytest.mark.parametrize('file', ['wgan_gp', 'sngan'])
def test_strategies_agree_on_toy_configs(file):
  # The toy recipes at global batch 64 on 4 devices.
  results = {s: _losses(file, 'gaussians8', s, STEPS, batch_size=64) for s in STRATEGIES}
  single, single_state = results['single']
  for name in ('pmap', 'jit'):
    losses, state = results[name]
    np.testing.assert_allclose(losses, single, rtol=RTOL, atol=ATOL, err_msg=name)
    # Spectral-norm state (sngan): the same sigma per layer, u the same direction.
    for layer, leaves in jax.device_get(single_state.d_state).items():
      other = jax.device_get(state.d_state)[layer]
      np.testing.assert_allclose(other['sigma'], leaves['sigma'], rtol=RTOL)
      assert abs(float(np.dot(other['u'], leaves['u']))) > 0.999


@pytest.mark.parametrize('method', ['none', 'clip', 'r1'])
def test_strategies_agree_for_every_lipschitz_method(method):
  overrides = {'batch_size': 32, 'lipschitz.method': method, 'model.mlp_hidden': 32,
               'lipschitz.clip_value': 0.05}
  single, _ = _losses('wgan_gp', 'gaussians8', 'single', 3, **overrides)
  for name in ('pmap', 'jit'):
    losses, _ = _losses('wgan_gp', 'gaussians8', name, 3, **overrides)
    np.testing.assert_allclose(losses, single, rtol=RTOL, atol=ATOL, err_msg=name)


def test_generator_batch_norm_uses_global_batch_statistics():
  overrides = {'batch_size': 32, 'model.g_batch_norm': True, 'model.mlp_hidden': 32}
  single, single_state = _losses('wgan_gp', 'gaussians8', 'single', 3, **overrides)
  for name in ('pmap', 'jit'):
    losses, state = _losses('wgan_gp', 'gaussians8', name, 3, **overrides)
    np.testing.assert_allclose(losses, single, rtol=RTOL, atol=ATOL, err_msg=name)
    # The moving statistics come from the global batch too (per-device ones are ~0.1 off).
    chex.assert_trees_all_close(jax.device_get(state.g_state),
                                jax.device_get(single_state.g_state), rtol=1e-2, atol=1e-3)


def test_cross_device_batch_norm_equals_global_batch_norm():
  config = configs_loader.load('wgan_gp', 'gaussians8,smoke', **{'model.g_batch_norm': True,
                                                                'parallel.strategy': 'pmap'})
  run = train.Run(config)
  state = jax.device_get(run.init_state())
  z = jax.random.normal(jax.random.PRNGKey(1), (16, 2)) * 3.0 + 1.0
  apply = lambda models: np.asarray(jax.pmap(
      lambda z_: models.g.apply(state.g_params, state.g_state, None, z_, is_training=True)[0],
      axis_name=parallel.AXIS)(z.reshape(4, 4, 2))).reshape(16, 2)
  expected, _ = run.models.g.apply(state.g_params, state.g_state, None, z, is_training=True)
  np.testing.assert_allclose(apply(run.step_models), expected, rtol=1e-5, atol=1e-6)
  assert np.max(np.abs(apply(run.models) - expected)) > 1e-2  # per-device statistics differ


def test_each_device_draws_its_own_slice_of_the_global_noise():
  z = jax.pmap(lambda _: parallel.local_slice(
      jax.random.normal(jax.random.PRNGKey(0), (8, 2)), axis_name=parallel.AXIS, size=2),
      axis_name=parallel.AXIS)(jnp.arange(4))
  chex.assert_shape(z, (4, 2, 2))
  np.testing.assert_array_equal(np.concatenate(np.asarray(z)),
                                jax.random.normal(jax.random.PRNGKey(0), (8, 2)))
  assert len({np.asarray(zi).tobytes() for zi in z}) == 4


def test_batch_not_divisible_by_device_count_is_one_clear_error():
  config = configs_loader.load('wgan_gp', 'gaussians8,smoke', batch_size=30,
                               **{'parallel.strategy': 'pmap'})
  with pytest.raises(ConfigError, match='batch_size=30 does not split over 4 devices'):
    train.Run(config)


def _records(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def test_two_processes_match_one_process_with_four_devices(tmp_path):
  args = ['--config=configs/wgan_gp.py:gaussians8', '--config.total_steps=6',
          '--config.batch_size=64', '--config.log_every_steps=1', '--config.eval_every_steps=6',
          '--config.checkpoint_every_steps=6',
          '--config.parallel.strategy=jit']
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  one = subprocess.run(
      [sys.executable, '-m', 'wgan_jax.main', f'--workdir={tmp_path / "one"}', *args],
      cwd=configs_loader.ROOT, capture_output=True, text=True, timeout=600,
      env=dict(env, XLA_FLAGS='--xla_force_host_platform_device_count=4'))
  assert one.returncode == 0, one.stderr
  two = subprocess.run(
      ['launch/local_multihost.sh', '2', f'--workdir={tmp_path / "two"}', *args],
      cwd=configs_loader.ROOT, capture_output=True, text=True, timeout=600,
      env=dict(env, PYTHON=sys.executable, DEVICES_PER_PROCESS='2'))
  assert two.returncode == 0, two.stderr
  a, b = _records(tmp_path / 'one'), _records(tmp_path / 'two')
  assert [r['step'] for r in a] == [r['step'] for r in b] == list(range(1, 7))
  for ra, rb in zip(a, b):
    np.testing.assert_allclose([rb['d_loss'], rb['g_loss']], [ra['d_loss'], ra['g_loss']],
                               rtol=RTOL, atol=ATOL)
