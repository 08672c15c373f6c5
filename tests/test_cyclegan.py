"""The cyclegan family: the image pool, the generator objective's terms, the toy and image
smoke runs, translation with wgan_jax.sample, and the one-line errors."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from wgan_jax import config_lib, sample, train
from wgan_jax.errors import ConfigError, UserError
from wgan_jax.eval import cyclegan as cyclegan_eval
from wgan_jax.families import cyclegan as cg

from tests import configs_loader


# ----------------------------------------------------------------------------- image pool
def _official_query(stored: list, count: int, size: int, images, swap, rows):
  """util/image_pool.py ImagePool.query, step by step, with the given draws."""
  out = []
  for image, s, r in zip(images, swap, rows):
    if count < size:
      stored[count] = image
      count += 1
      out.append(image)
    elif s:
      out.append(stored[r])
      stored[r] = image
    else:
      out.append(image)
  return out, stored, count


def test_pool_fills_then_swaps_half_as_the_official_image_pool():
  size, key = 3, jax.random.PRNGKey(7)
  pool = cg.pool_init(size, (1,))
  query_fn = jax.jit(cg.pool_query)  # one compilation for the four queries
  stored, count = [0.0] * size, 0
  for query in range(4):  # 5 examples per query: fills in the first, swaps afterwards
    images = jnp.arange(5, dtype=jnp.float32)[:, None] + 10.0 * (query + 1)
    k = jax.random.fold_in(key, query)
    u_key, r_key = jax.random.split(k)
    swap = np.asarray(jax.random.uniform(u_key, (5,)) > 0.5)
    rows = np.asarray(jax.random.randint(r_key, (5,), 0, size))
    want, stored, count = _official_query(stored, count, size, np.asarray(images)[:, 0],
                                          swap, rows)
    got, pool = query_fn(pool, images, key=k)
    np.testing.assert_array_equal(np.asarray(got)[:, 0], want)
    np.testing.assert_array_equal(np.asarray(pool['images'])[:, 0], stored)
    assert int(pool['count']) == count
  # the first query returned its own images (filling), a later one some stored ones
  assert count == size
  empty = cg.pool_init(0, (1,))
  x = jnp.ones((2, 1))
  got, same = cg.pool_query(empty, x, key=key)
  assert got is x and same is empty


# ----------------------------------------------------------------------------- objective
def test_generator_terms_are_the_cycle_and_identity_l1():
  a = np.array([[1.0, -2.0], [0.5, 0.0]], np.float32)
  b = np.array([[3.0, 1.0], [-1.0, 2.0]], np.float32)
  g = lambda x: 2.0 * x          # G: A -> B
  f = lambda x: x / 2.0 + 1.0    # F: B -> A
  terms = cg.generator_terms(g=g, f=f, a=a, b=b)
  # F(G(a)) = a + 1 (|.| = 1 everywhere); G(F(b)) = b + 2 (2); G(b) - b = b; F(a) - a = 1 - a/2
  assert float(terms['cycle']) == pytest.approx(1.0 + 2.0)
  want_identity = np.mean(np.abs(b)) + np.mean(np.abs(1.0 - a / 2.0))
  assert float(terms['identity']) == pytest.approx(want_identity)
  np.testing.assert_allclose(terms['fake_b'], 2.0 * a)
  assert float(cg.generator_terms(g=g, f=f, a=a, b=b, identity=False)['identity']) == 0.0


@pytest.fixture(scope='module')
def toy_run(tmp_path_factory):
  """The toy config's smoke run (shrunk further), trained end to end once."""
  workdir = str(tmp_path_factory.mktemp('cyclegan_toy'))
  config = configs_loader.load('cyclegan', 'gaussians8,smoke', total_steps=2,
                               eval_every_steps=2, checkpoint_every_steps=2,
                               **{'model.mlp_hidden': 8, 'model.mlp_layers': 2})
  record = train.train_and_evaluate(config, workdir)
  return workdir, record


def test_generator_objective_on_tiny_nets_adds_the_weighted_terms(toy_run):
  run, state, _ = train.load_for_inference(toy_run[0])
  fam = run.family
  rng = np.random.default_rng(0)
  real = {'x': jnp.asarray(rng.normal(size=(4, 2)), jnp.float32),
          'x_b': jnp.asarray(rng.normal(size=(4, 2)), jnp.float32)}
  scores = jnp.asarray(rng.normal(size=(4, 2)), jnp.float32)  # a stand-in critic
  total, _, metrics = fam.g_objective(state.g.params, state.g.state, real,
                                      key=jax.random.PRNGKey(0), critic=lambda pair: scores)
  g = lambda x: np.asarray(run.models.g.apply(state.g.params, state.g.state, None, x,
                                              is_training=True)[0])
  f = lambda x: np.asarray(run.models.e.apply(state.g.params, state.g.state, None, x,
                                              is_training=True)[0])
  a, b = np.asarray(real['x']), np.asarray(real['x_b'])
  cycle = np.mean(np.abs(f(g(a)) - a)) + np.mean(np.abs(g(f(b)) - b))
  identity = np.mean(np.abs(g(b) - b)) + np.mean(np.abs(f(a) - a))
  s = np.asarray(scores)
  adv = 2.0 * (0.5 * np.mean((s[:, 0] - 1) ** 2) + 0.5 * np.mean((s[:, 1] - 1) ** 2))
  assert float(metrics['cyclegan/cycle_l1']) == pytest.approx(cycle, rel=1e-5)
  assert float(metrics['cyclegan/identity_l1']) == pytest.approx(identity, rel=1e-5)
  assert float(metrics['cyclegan/g_adv']) == pytest.approx(adv, rel=1e-5)
  assert float(total) == pytest.approx(adv + 10.0 * cycle + 5.0 * identity, rel=1e-5)


def test_toy_smoke_run_logs_cycle_error_w1_and_a_figure(toy_run):
  workdir, record = toy_run
  assert record['step'] == 2
  for key in ('eval/cycle_error', 'eval/w1', 'eval/w1_inverse', 'd_loss', 'g_loss'):
    assert np.isfinite(record[key]), key
  assert record['d_loss'] == pytest.approx(2.0 * record['d_objective'], rel=1e-5)
  assert os.path.exists(os.path.join(workdir, 'samples', 'step_0000002.png'))


def test_sample_translates_an_npy(toy_run, tmp_path):
  run, state, _ = train.load_for_inference(toy_run[0])
  x = np.random.default_rng(1).normal(size=(5, 2)).astype(np.float32)
  path = str(tmp_path / 'a.npy')
  np.save(path, x)
  inputs, names = sample.read_inputs(path, run)
  assert names[0] == '000000'
  for direction, net in (('a2b', run.models.g), ('b2a', run.models.e)):
    y = sample.translate(run, state, inputs, direction=direction)
    want = net.apply(state.g.params, state.g.state, None, x, is_training=False)[0]
    np.testing.assert_allclose(y, want, rtol=1e-6)
    out = str(tmp_path / f'{direction}.npy')
    sample.write_translations(out, inputs, y, names, is_toy=True)
    np.testing.assert_array_equal(np.load(out), y)
  np.save(path, np.zeros((3, 3), np.float32))
  with pytest.raises(UserError, match=r'shape \(3, 3\).*\[n, \*\(2,\)\]'):
    sample.read_inputs(path, run)


# ----------------------------------------------------------------------------- images
def _write_pngs(folder, n: int, seed: int):
  folder.mkdir()
  rng = np.random.default_rng(seed)
  for i in range(n):
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
        folder / f'im{i}.png')


def test_image_smoke_step_on_two_folders(tmp_path, fast_compile):
  del fast_compile
  _write_pngs(tmp_path / 'a', 4, 0)
  _write_pngs(tmp_path / 'b', 5, 1)
  config = configs_loader.load(
      'cyclegan', f'folder,a={tmp_path / "a"},b={tmp_path / "b"},epoch_steps=5,smoke',
      batch_size=2, **{'eval.num_images': 2, 'data.image_size': 16,
                       'cyclegan.d_layers': 1, 'cyclegan.lambda_identity': 0.0})
  run = train.Run(config)
  try:
    state, metrics = run.train_step()(run.init_state(), run.batch(0))
    scores = cyclegan_eval.CycleEvaluator(run, str(tmp_path / 'run'))(state, 1)
    inputs, names = sample.read_inputs(str(tmp_path / 'b'), run)  # a folder to translate
  finally:
    run.close()
  assert np.isfinite(float(metrics['g_loss'])) and np.isfinite(scores['eval/cycle_error'])
  grid = np.asarray(Image.open(tmp_path / 'run' / 'samples' / 'step_0000001.png'))
  assert grid.shape[0] > grid.shape[1]  # 4 rows (a | G(a) | F(G(a)), b | ...) of 3 images
  assert inputs.shape == (5, 16, 16, 3) and names[0] == 'im0'
  assert inputs.dtype == np.float32 and np.all(np.abs(inputs) <= 1.0)
  assert {k for k in state.d.params} >= {'D_A/conv_0', 'D_B/conv_0'}
  assert state.extra['a']['images'].shape == (6, 16, 16, 3)
  assert int(state.extra['a']['count']) == 2  # one update of batch 2


# ----------------------------------------------------------------------------- errors
def _toy_config(**overrides):
  return configs_loader.load('cyclegan', 'gaussians8,smoke', **overrides)


@pytest.mark.parametrize('overrides, message', [
    ({'data.domain_b': ''}, r'family cyclegan needs two datasets, data.domain_a and '
                            r'data.domain_b \(got .gaussians8., ..\)'),
    ({'conditional.method': 'projection'}, 'family cyclegan is unconditional'),
    ({'eval.metrics_every_steps': 10}, r'eval.metrics_every_steps=10: image metrics of G\(z\) '
                                       r'do not apply to family cyclegan'),
    ({'family': 'gan'}, 'data.domain_a / data.domain_b are read by family cyclegan only'),
])
def test_bad_configs_are_one_config_error_line(overrides, message):
  with pytest.raises(ConfigError, match=message) as info:
    config_lib.validate(_toy_config(**overrides))
  assert '\n' not in str(info.value)


def test_model_and_shape_mismatches_are_one_config_error_line():
  with pytest.raises(ConfigError, match='family cyclegan needs model.name=cyclegan'):
    train.Run(_toy_config(**{'model.name': 'mlp'}), open_data=False)
  with pytest.raises(ConfigError, match="data.domain_b 'cifar10' of shape"):
    train.Run(_toy_config(**{'data.domain_b': 'cifar10'}), open_data=False)
  with pytest.raises(ConfigError, match='pass epoch_steps=N'):
    configs_loader.load('cyclegan', 'pair=apple2orange')
