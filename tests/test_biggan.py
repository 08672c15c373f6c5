"""BigGAN: parameter counts against the reference, shapes, orthogonal regularisation, EMA
start, standing statistics, truncation, and the configs' smoke runs."""
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from wgan_jax import losses, models, sample, train
from wgan_jax import step as step_lib
from wgan_jax.errors import ConfigError
from wgan_jax.eval import standing
from wgan_jax.models import biggan

from tests import configs_loader

# sum(p.numel() for p in G.parameters()) of BigGAN-PyTorch's BigGAN.py Generator /
# Discriminator (layers.py modules; SN u / sv are buffers, not parameters) at G_ch = D_ch = 96,
# shared_dim 128, hier, 1000 classes; derived by hand from those two files' module
# definitions (and equal to the paper's 70.4M / 88.0M at 128). Their init_weights prints
# less (70,433,795 / 87,982,369): it counts only Conv2d / Linear / Embedding modules, not
# the output BN's gain and bias (2 x 96) nor the attention gammas.
REFERENCE_COUNTS = {
    # BigGAN.py G_arch[128] / D_arch[128], dim_z 120, attention 64
    # (scripts/launch_BigGAN_bs256x8.sh)
    128: dict(z_dim=120, attn=64, classes=1000, g=70_433_988, d=87_982_370),
    # BigGAN.py G_arch[256] / D_arch[256], dim_z 140, attention 128 (TFHub/converter.py)
    256: dict(z_dim=140, attn=128, classes=1000, g=82_097_604, d=99_191_330),
    # BigGAN.py G_arch[32] / D_arch[32], dim_z 120 (4 chunks of 30), no attention, 10 classes
    32: dict(z_dim=120, attn=0, classes=10, g=9_339_395, d=9_456_769),
}


def _pair(res, *, ch=96, z_dim=120, attn=0, classes=10, shared_dim=128, bn_axis_name=None,
          **extra):
  mc = ml_collections.ConfigDict(dict(name='biggan', g_ch=ch, d_ch=ch, z_dim=z_dim,
                                      shared_dim=shared_dim, g_attn=attn, d_attn=attn,
                                      **extra))
  return models.build_models(mc, data_shape=(res, res, 3), num_classes=classes,
                             critic_head='projection', bn_axis_name=bn_axis_name)


def _abstract(pair, res, batch=2):
  """eval_shape of both players' init and forward: (g_params, d_params, x, scores)."""
  def f(key):
    z, y = jnp.zeros((batch, pair.z_dim)), jnp.zeros((batch,), jnp.int32)
    gp, gs = pair.g.init(key, z, labels=y, is_training=True)
    x, _ = pair.g.apply(gp, gs, None, z, labels=y, is_training=False)
    dp, ds = pair.d.init(key, x, labels=y, update_stats=True)
    scores, _ = pair.d.apply(dp, ds, None, x, labels=y, update_stats=False)
    return gp, dp, x, scores
  return jax.eval_shape(f, jax.random.PRNGKey(0))


def _count(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize('res', sorted(REFERENCE_COUNTS))
def test_parameter_counts_equal_the_reference(res):
  ref = REFERENCE_COUNTS[res]
  gp, dp, _, _ = _abstract(_pair(res, z_dim=ref['z_dim'], attn=ref['attn'],
                                 classes=ref['classes']), res)
  assert (_count(gp), _count(dp)) == (ref['g'], ref['d'])


@pytest.mark.parametrize('res,g_attn_block,d_attn_block', [
    (32, None, None), (64, 'attention_2', 'attention_0'), (128, 'attention_3', 'attention_0'),
    (256, 'attention_4', 'attention_0')])
def test_output_shapes_and_attention_per_resolution(res, g_attn_block, d_attn_block):
  pair = _pair(res, ch=8, z_dim=biggan.z_chunks(res) * 2, attn=res // 2 if res > 32 else 0,
               shared_dim=4)
  gp, dp, x, scores = _abstract(pair, res, batch=3)
  assert x.shape == (3, res, res, 3) and x.dtype == jnp.float32
  assert scores.shape == (3,) and scores.dtype == jnp.float32
  g_attn = sorted({k.split('/')[0] for k in gp if k.startswith('attention')})
  d_attn = sorted({k.split('/')[0] for k in dp if k.startswith('attention')})
  assert g_attn == ([g_attn_block] if g_attn_block else [])
  assert d_attn == ([d_attn_block] if d_attn_block else [])
  if g_attn_block:
    assert gp[g_attn_block]['gamma'].shape == ()
  # Hierarchical latents: block i's conditional BN sees [shared(y), z chunk].
  assert gp['block_0/bn_1/gain']['w'].shape == (4 + 2, 16 * 8 if res > 32 else 4 * 8)


def test_bfloat16_forward_keeps_float32_outputs():
  _, _, x, scores = _abstract(_pair(32, ch=4, z_dim=8, attn=16, shared_dim=4,
                                    compute_dtype='bfloat16'), 32)
  assert x.dtype == jnp.float32 and scores.dtype == jnp.float32


def test_config_errors():
  with pytest.raises(ConfigError, match='multiple of 6'):
    _pair(128, ch=4, z_dim=100)
  with pytest.raises(ConfigError, match='square images of side'):
    _abstract(_pair(48, ch=4, z_dim=8), 48)
  with pytest.raises(ConfigError, match='class-conditional'):
    models.build_models(ml_collections.ConfigDict(dict(name='biggan', z_dim=8)),
                        data_shape=(32, 32, 3))
  config = configs_loader.load('sngan', 'cifar10,smoke', **{'eval.standing_stats': 4})
  with pytest.raises(ConfigError, match='eval.standing_stats needs model biggan'):
    train.Run(config, open_data=False)


def test_ortho_penalty_closed_form():
  w = np.array([[1.0, 2.0, 0.0], [0.5, -1.0, 3.0]], np.float32)        # dense [2, 3]
  k = np.arange(2 * 2 * 1 * 2, dtype=np.float32).reshape(2, 2, 1, 2) / 7  # conv [2, 2, 1, 2]
  params = {'dense': {'w': w, 'b': np.ones(3, np.float32)},
            'conv': {'w': k}, 'shared': {'embeddings': np.ones((4, 3), np.float32)},
            'attention': {'gamma': np.float32(0.3)}}

  def closed_form(m):
    gram = m.T @ m
    return np.sum((gram - np.diag(np.diag(gram))) ** 2)
  # Dense: Gram [[1.25, 1.5, 1.5], [1.5, 5, -3], [1.5, -3, 9]]: 2 * (1.5^2 + 1.5^2 + 3^2).
  assert closed_form(w) == pytest.approx(2 * (2.25 + 2.25 + 9.0))
  expected = closed_form(w) + closed_form(k.reshape(4, 2))
  np.testing.assert_allclose(losses.ortho_penalty(params), expected, rtol=1e-6)
  # d/dW = 4 W (W^T W (.) (1 - I)): twice BigGAN-PyTorch's utils.ortho gradient per beta.
  grad = jax.grad(losses.ortho_penalty)(params)['dense']['w']
  gram = w.T @ w
  np.testing.assert_allclose(grad, 4 * w @ (gram * (1 - np.eye(3))), rtol=1e-5)
  assert not np.any(jax.grad(losses.ortho_penalty)(params)['shared']['embeddings'])


def test_ema_decay_starts_at_ema_start():
  decays = [float(step_lib.ema_decay_at(jnp.int32(t), decay=0.9, start=3)) for t in range(4)]
  assert decays == [0.0, 0.0, pytest.approx(0.9), pytest.approx(0.9)]
  assert float(step_lib.ema_decay_at(jnp.int32(0), decay=0.9, start=0)) == pytest.approx(0.9)


def _random_like(tree, seed: int):
  """Random float32 arrays of an abstract tree's shapes (no init to compile)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), jnp.float32), tree)


def test_standing_stats_are_the_mean_of_the_passes_batch_statistics():
  pair = _pair(32, ch=2, z_dim=8, shared_dim=4, classes=3)
  z, y = jnp.zeros((4, 8)), jnp.zeros((4,), jnp.int32)
  params, state = _random_like(jax.eval_shape(
      lambda k: pair.g.init(k, z, labels=y, is_training=True), jax.random.PRNGKey(1)), 1)
  key, n = jax.random.PRNGKey(2), 3

  def batch_stats(i):  # momentum 1: the stored statistics are this pass's batch statistics
    k = jax.random.fold_in(key, i)
    labels = step_lib.sample_labels(jax.random.fold_in(k, 1), 4, 3)
    return pair.g.apply(params, state, None, step_lib.sample_z(k, 4, 8), labels=labels,
                        is_training=True, bn_momentum=1.0)[1]

  got, passes = jax.jit(lambda: (standing.accumulate_standing_stats(
      pair.g.apply, params, state, key=key, num_accumulations=n, batch_size=4, z_dim=8,
      num_classes=3), [batch_stats(i) for i in range(n)]))()
  for module, entries in state.items():
    for name, value in entries.items():
      if name in standing.STAT_NAMES:
        mean = np.mean([p[module][name] for p in passes], axis=0)
        np.testing.assert_allclose(got[module][name], mean, rtol=1e-4, atol=1e-5)
      else:  # spectral-norm vectors untouched
        np.testing.assert_array_equal(got[module][name], value)


def test_cross_replica_batch_norm_uses_the_global_batch():
  # G with bn_axis_name: two shards of 2 examples (vmap over the axis) give the outputs and
  # statistics of one batch of 4 without it.
  pair = _pair(32, ch=2, z_dim=8, shared_dim=4, classes=3)
  sharded = _pair(32, ch=2, z_dim=8, shared_dim=4, classes=3, bn_axis_name='i')
  z = jax.random.normal(jax.random.PRNGKey(0), (4, 8))
  y = jnp.array([0, 1, 2, 1], jnp.int32)
  params, state = _random_like(jax.eval_shape(
      lambda k: pair.g.init(k, z, labels=y, is_training=True), jax.random.PRNGKey(1)), 3)
  state = jax.tree.map(jnp.abs, state)
  whole = lambda: pair.g.apply(params, state, None, z, labels=y, is_training=True)
  shards = lambda: jax.vmap(
      lambda zz, yy: sharded.g.apply(params, state, None, zz, labels=yy, is_training=True),
      axis_name='i')(z.reshape(2, 2, 8), y.reshape(2, 2))
  (x, s), (xs, ss) = jax.jit(lambda: (whole(), shards()))()
  np.testing.assert_allclose(xs.reshape(x.shape), x, rtol=1e-4, atol=1e-5)
  for module in s:
    if 'mean' in s[module]:
      np.testing.assert_allclose(ss[module]['mean'][0], s[module]['mean'], rtol=1e-4,
                                 atol=1e-6)


def test_truncated_z_is_within_the_threshold():
  z = np.asarray(sample.truncated_z(jax.random.PRNGKey(0), 500, 4, 0.5))
  assert z.shape == (500, 4) and np.abs(z).max() <= 0.5 and z.std() > 0.2


# ----------------------------------------------------------------------------- smoke runs
# The smoke runs build their models with XLA's convolutions (half the compile time of
# im2col's here; the algorithms are tested against each other in tests/test_conv.py).
@pytest.fixture(scope='module')
def cifar10_workdir(tmp_path_factory):
  """configs/biggan.py:cifar10,smoke trained end to end for 2 steps on mock CIFAR-10."""
  workdir = str(tmp_path_factory.mktemp('biggan_cifar10'))
  config = configs_loader.load('biggan', 'cifar10,smoke', total_steps=2, n_critic=1,
                               batch_size=4, checkpoint_every_steps=2, eval_every_steps=0,
                               **{'eval.standing_stats': 2, 'eval.batch_size': 4})
  with pytest.MonkeyPatch.context() as mp, tfds.testing.mock_data(num_examples=16):
    mp.setenv('WGAN_JAX_CONV_IMPL', 'xla')
    last = train.train_and_evaluate(config, workdir)
  assert last['step'] == 2 and np.isfinite(last['d_loss']) and np.isfinite(last['g_loss'])
  return workdir


def test_cifar10_config_trains_and_samples_truncated(cifar10_workdir, tmp_path, monkeypatch):
  monkeypatch.setenv('WGAN_JAX_CONV_IMPL', 'xla')
  # The command line checks --truncation before loading anything (one line, exit 2) ...
  bad = subprocess.run([sys.executable, '-m', 'wgan_jax.sample', f'--workdir={cifar10_workdir}',
                        '--truncation=-1', f'--out={tmp_path / "x.npy"}'],
                       cwd=configs_loader.ROOT, capture_output=True, text=True, timeout=300)
  assert bad.returncode == 2 and bad.stderr.strip().count('\n') == 0
  assert '--truncation must be >= 0' in bad.stderr
  # ... and passes it to generate_chunks (truncated_z for every chunk's noise).
  run, state, step = train.load_for_inference(cifar10_workdir)
  assert step == 2 and run.config.model.name == 'biggan' and run.num_classes == 10
  samples = sample.generate(run, state, num_samples=4, seed=0, truncation=0.5,
                            labels=np.full(4, 3, np.int32))
  assert samples.shape == (4, 32, 32, 3) and np.all(np.isfinite(samples))
  # eval.standing_stats: sampling replaces G's stored statistics (nothing else, see
  # test_standing_stats_are_the_mean_of_the_passes_batch_statistics).
  standing_state = run.sampling_state(state).g.state
  assert any(not np.array_equal(standing_state[m]['mean'], state.g.state[m]['mean'])
             for m in state.g.state if 'mean' in state.g.state[m])


def test_imagenet128_config_one_step_bfloat16_with_ortho_and_ema_start(monkeypatch):
  monkeypatch.setenv('WGAN_JAX_CONV_IMPL', 'xla')
  config = configs_loader.load('biggan', 'imagenet128,smoke', n_critic=1, batch_size=4,
                               **{'data.name': 'cifar10', 'data.image_size': 0,
                                  'model.compute_dtype': 'bfloat16'})
  assert (config.ortho_reg, config.ema_start, config.ema_decay) == (1e-4, 2, 0.9999)
  with tfds.testing.mock_data(num_examples=16):
    run = train.Run(config)
    state = run.init_state()
    new, metrics = jax.jit(run.step_fn())(state, run.batch(0))
  assert float(metrics['all_finite']) == 1.0 and float(metrics['ortho_penalty']) > 0
  # Update 1 < ema_start 2: the EMA copies the weights.
  jax.tree.map(np.testing.assert_array_equal, new.g_ema_params, new.g.params)


def test_config_values_cite_their_recipes():
  c = configs_loader.load('biggan', 'imagenet128')
  assert (c.data.name, c.data.image_size, c.batch_size, c.n_critic, c.loss) == (
      'tfds:imagenet2012', 128, 2048, 2, 'hinge')
  assert (c.optim.g.lr, c.optim.d.lr, c.optim.g.b1, c.optim.g.b2) == (1e-4, 4e-4, 0.0, 0.999)
  assert (c.model.g_ch, c.model.z_dim, c.model.shared_dim, c.model.g_attn) == (96, 120, 128, 64)
  assert (c.ema_decay, c.ema_start, c.ortho_reg) == (0.9999, 20_000, 1e-4)
  c = configs_loader.load('biggan', 'imagenet256')
  assert (c.data.image_size, c.model.z_dim, c.model.g_attn) == (256, 140, 128)
  c = configs_loader.load('biggan', 'cifar10')
  assert (c.batch_size, c.n_critic, c.optim.d.lr, c.optim.d.b1, c.model.z_dim) == (
      64, 5, 2e-4, 0.5, 80)
  assert (c.ema_start, c.model.g_attn, c.model.d_attn, c.model.d_ch) == (1000, 16, 16, 48)
