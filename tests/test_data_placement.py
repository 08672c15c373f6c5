"""data.placement: device, host and stream give the step the same images, bit for bit."""
import functools

import chex
import jax
import numpy as np
import pytest

from wgan_jax import step as step_lib, train
from wgan_jax.data import source as source_lib, store as store_lib
from wgan_jax.errors import ConfigError
from tests import configs_loader

N, SHAPE = 13, (4, 4, 3)


def _store() -> store_lib.ArrayStore:
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (N, *SHAPE), dtype=np.uint8)
  return store_lib.ArrayStore('npz:made', x, rng.integers(0, 5, N), 5)


def _source(placement, **kwargs):
  return source_lib.ImageSource(dict(name='npz:made', placement=placement), seed=3,
                                store=_store(), **kwargs)


def test_device_scaling_is_the_host_scaling():
  every_level = np.arange(256, dtype=np.uint8).reshape(1, 4, 8, 8, 1)
  real = jax.jit(step_lib.real_images)
  chex.assert_trees_all_equal(np.asarray(real({'x': every_level})),
                              source_lib.to_float(every_level))
  table = _store().x
  index = np.array([[3, 1, 4], [1, 5, 9]], np.int32)
  out = np.asarray(real({'index': index, 'table': table}))
  chex.assert_shape(out, (2, 3, *SHAPE))
  chex.assert_trees_all_equal(out, source_lib.to_float(table[index]))
  points = np.ones((1, 2, 2), np.float32)
  chex.assert_trees_all_equal(np.asarray(real({'x': points})), points)  # 2-D data: as is


def test_host_and_device_batches_are_the_same_examples():
  host, device = _source('host'), _source('device')
  table = device.take_table()
  for step in range(5):  # 5 x 6 = 30 examples: across epoch boundaries of N = 13
    (h, hl), (d, dl) = host.batches(step, shape=(2, 3)), device.batches(step, shape=(2, 3))
    assert h['x'].dtype == np.uint8 and d['index'].dtype == np.int32
    np.testing.assert_array_equal(h['x'], table[d['index']])
    np.testing.assert_array_equal(hl, dl)
  with pytest.raises(ValueError, match='taken'):
    device.take_table()
  # After the table went to the devices, evaluation images still come from the store.
  np.testing.assert_array_equal(device.eval_real(4, index=1), host.eval_real(4, index=1))
  # Each process reads only its slice of the global batch.
  halves = [_source('device', process_index=p, process_count=2).batches(2, shape=(2, 4))[0]
            for p in range(2)]
  np.testing.assert_array_equal(np.concatenate([h['index'] for h in halves], axis=1),
                                device.batches(2, shape=(2, 4))[0]['index'])


def test_auto_placement_follows_the_budgets():
  mb = source_lib.MB
  resolve = functools.partial(source_lib.resolve_placement, device_budget_mb=2,
                              host_budget_mb=4)
  assert resolve('auto', 2 * mb) == 'device'
  assert resolve('auto', 2 * mb + 1) == 'host'
  assert resolve('auto', 5 * mb) == 'stream'
  assert resolve('stream', 1) == 'stream'
  with pytest.raises(ConfigError) as info:
    resolve('device', 3 * mb)
  message = str(info.value)
  assert 'data.device_budget_mb=2' in message and '3.0 MB' in message and '\n' not in message
  with pytest.raises(ConfigError, match='data.host_budget_mb=4'):
    resolve('host', 5 * mb)
  with pytest.raises(ConfigError, match="unknown data.placement 'gpu'"):
    resolve('gpu', 1)


@pytest.fixture(scope='module')
def made_npz(tmp_path_factory):
  """npz:PATH of 16 random 8x8x3 images in 3 classes (stream workers read it too)."""
  rng = np.random.default_rng(1)
  path = tmp_path_factory.mktemp('placement') / 'made.npz'
  np.savez(path, x=rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8), y=np.arange(16) % 3)
  return f'npz:{path}'


def _run_steps(name, placement, strategy, steps=2):
  """Metrics and final state of `steps` train steps of a conditional MLP."""
  config = configs_loader.load(
      'wgan_gp', 'cifar10,smoke', n_critic=2, batch_size=4,
      **{'data.name': name, 'model.name': 'mlp', 'model.mlp_hidden': 16,
         'conditional.method': 'projection', 'data.random_flip': True,
         'data.placement': placement, 'data.stream_workers': 1, 'parallel.strategy': strategy})
  run = train.Run(config)
  try:
    assert run.source.placement == placement
    state, step_fn, metrics = run.strategy.to_device(run.init_state()), run.train_step(), []
    for t in range(steps):
      state, m = step_fn(state, run.batch(t))
      metrics.append(jax.device_get(run.strategy.metrics(m)))
    return metrics, jax.device_get(run.strategy.to_canonical(state))
  finally:
    run.close()


@pytest.mark.parametrize('strategy', ['single', 'pmap', 'jit'])
def test_runs_are_identical_across_placements(made_npz, strategy):
  # The stream's workers give the host's uint8 batches (tests/test_stream.py): one strategy.
  others = ('host', 'stream') if strategy == 'single' else ('host',)
  device = _run_steps(made_npz, 'device', strategy)
  for placement in others:
    chex.assert_trees_all_equal(device, _run_steps(made_npz, placement, strategy))
