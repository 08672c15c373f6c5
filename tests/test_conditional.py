"""Class-conditional GANs: projection / AC critics, conditional G, labels, sampling, metrics."""
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from wgan_jax import config_lib, families, rng, sample, train
from wgan_jax import models as models_lib
from wgan_jax import step as step_lib
from wgan_jax.errors import ConfigError, UserError
from wgan_jax.eval import toy as toy_eval
from tests import configs_loader

K = 3
K_TOY = 8  # classes of gaussians8


def _model_config(name, **kw):
  base = dict(name=name, z_dim=4, g_batch_norm=True, d_norm='none', g_spectral_norm=False,
              g_ch=4, d_ch=4, activation='relu', mlp_hidden=6, mlp_layers=2)
  base.update(kw)
  return ml_collections.ConfigDict(base)


def _gan(pair, n):
  """The gan family of `pair` (for its init)."""
  cfg = step_lib.StepConfig(n_critic=1, batch_size=n, g_batch_size=n, z_dim=pair.z_dim, seed=0,
                            ema_decay=0.0)
  return families.build_gan(models=pair, loss=None, cfg=cfg)


def _init(pair, data_shape, n=4):
  assert pair.data_shape == tuple(data_shape)
  init = lambda key: step_lib.init_state(family=_gan(pair, n), g_tx=_NoOpt(), d_tx=_NoOpt(),
                                         key=key, batch_size=n, ema=False)
  return jax.jit(init)(jax.random.PRNGKey(0))


class _NoOpt:
  def init(self, params):
    return ()


def test_projection_term_closed_form():
  pair = models_lib.build_models(_model_config('mlp'), data_shape=(2,), num_classes=K,
                                 critic_head='projection')
  state = _init(pair, (2,))
  params = jax.tree.map(np.asarray, state.d.params)
  embed = np.arange(K * 6, dtype=np.float32).reshape(K, 6) / 10.0 - 0.5
  params['class_embed']['embeddings'] = embed
  x = np.array([[0.3, -0.2], [1.0, 0.5], [-0.7, 0.1], [0.2, 0.9]], np.float32)
  y = np.array([0, 1, 2, 1], np.int32)
  scores, _ = pair.d.apply(params, state.d.state, None, x, labels=y, update_stats=False)
  phi = x
  for i in range(2):
    phi = np.maximum(phi @ params[f'dense_{i}']['w'] + params[f'dense_{i}']['b'], 0.0)
  linear = phi @ params['dense_out']['w'][:, 0] + params['dense_out']['b'][0]
  np.testing.assert_allclose(scores, linear + np.sum(embed[y] * phi, axis=1), rtol=1e-5,
                             atol=1e-5)
  label_free, _ = pair.d.apply(params, state.d.state, None, x, update_stats=False)
  np.testing.assert_allclose(label_free, linear, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name,shape,head', [('mlp', (2,), 'acgan'),
                                             ('resnet', (8, 8, 3), 'projection')])
def test_conditional_shapes_and_per_class_outputs(name, shape, head):
  d_norm = 'spectral' if head == 'projection' else 'none'
  pair = models_lib.build_models(_model_config(name, d_norm=d_norm), data_shape=shape,
                                 num_classes=K, critic_head=head)
  assert (pair.num_classes, pair.critic_head) == (K, head)
  state = _init(pair, shape)
  z = jax.random.normal(jax.random.PRNGKey(1), (4, 4))
  y0 = jnp.arange(4, dtype=jnp.int32) % K  # mixed classes: G's batch norm would remove a
  y1 = (y0 + 1) % K                        # class shift that is constant over the batch
  # Training-mode BN (batch statistics): untrained running statistics saturate the tanh.
  g = jax.jit(lambda p, y: pair.g.apply(p, state.g.state, None, z, labels=y,
                                        is_training=True)[0])
  x0 = g(state.g.params, y0)
  assert x0.shape == (4,) + shape
  g_params = state.g.params
  if name != 'mlp':  # conditional BN starts at gain 1, bias 0: class-independent
    np.testing.assert_allclose(x0, g(g_params, y1), atol=1e-6)
    g_params = jax.tree_util.tree_map_with_path(
        lambda path, v: v.at[1].add(0.5) if 'beta' in jax.tree_util.keystr(path) else v,
        g_params)
    assert any('gamma' in leaves for leaves in g_params.values())
  assert not np.allclose(g(g_params, y0), g(g_params, y1))
  d = jax.jit(lambda x, **kw: pair.d.apply(state.d.params, state.d.state, None, x,
                                           update_stats=False, **kw)[0],
              static_argnames='with_logits')
  if head == 'acgan':
    scores, logits = d(x0, with_logits=True)
    assert scores.shape == (4,) and logits.shape == (4, K)
    np.testing.assert_allclose(d(x0), scores)
  else:
    s0, s1 = d(x0, labels=y0), d(x0, labels=y1)
    assert s0.shape == (4,) and not np.allclose(s0, s1)
    assert 'class_embed' in state.d.state  # spectral norm on the embedding


def _abstract_init(pair, data_shape):
  assert pair.data_shape == tuple(data_shape)
  return jax.eval_shape(lambda key: step_lib.init_state(
      family=_gan(pair, 2), g_tx=_NoOpt(), d_tx=_NoOpt(), key=key, batch_size=2, ema=False),
      jax.random.PRNGKey(0))


@pytest.mark.parametrize('name,shape', [('mlp', (2,)), ('dcgan', (8, 8, 3)),
                                        ('resnet', (8, 8, 3))])
def test_unconditional_trees_have_no_conditional_parts(name, shape):
  config = _model_config(name, d_norm='spectral')
  plain = _abstract_init(models_lib.build_models(config, data_shape=shape), shape)
  zero = _abstract_init(models_lib.build_models(config, data_shape=shape, num_classes=0,
                                                critic_head='projection'), shape)
  assert jax.tree.structure(plain) == jax.tree.structure(zero)
  assert jax.tree.leaves(plain) == jax.tree.leaves(zero)  # ShapeDtypeStructs
  keys = ' '.join(jax.tree_util.keystr(p) for p, _ in
                  jax.tree_util.tree_flatten_with_path(plain)[0])
  for part in ('class_embed', 'gamma', 'beta', 'acgan_out'):
    assert part not in keys
  # The conditional pair of the same config has them.
  cond = _abstract_init(models_lib.build_models(config, data_shape=shape, num_classes=K,
                                                critic_head='acgan'), shape)
  keys = ' '.join(jax.tree_util.keystr(p) for p, _ in
                  jax.tree_util.tree_flatten_with_path(cond)[0])
  assert 'acgan_out' in keys and ('gamma' in keys or 'class_embed' in keys)
  with pytest.raises(ValueError, match='unconditional'):
    models_lib.build_models(config, data_shape=shape).g.init(
        jax.random.PRNGKey(0), jnp.zeros((2, 4)), labels=jnp.zeros(2, jnp.int32),
        is_training=True)


def _three_steps(file, arg, **overrides):
  run = train.Run(configs_loader.load(file, arg, **overrides))
  state, step = run.init_state(), jax.jit(run.step_fn())
  out = []
  for t in range(3):
    batch = run.batch(t)
    state, m = step(state, batch)
    out.append((float(m['d_loss']), float(m['g_loss'])))
  return run, batch, out, m


def test_unconditional_losses_unchanged():
  # (d_loss, g_loss) of the first 3 steps, recorded with the code of commit d345064 (before
  # conditional GANs existed) by running Run.step_fn jitted on Run.batch(0..2) on CPU.
  expected = [(0.5885933041572571, -0.9093831181526184),
              (0.2928575873374939, -0.6976516842842102),
              (0.32581180334091187, -0.8390310406684875)]
  # The toy recipe's rate was constant then (it decays linearly now).
  run, batch, losses, metrics = _three_steps('wgan_gp', 'gaussians8,smoke',
                                             **{'optim.g.schedule': 'constant',
                                                'optim.d.schedule': 'constant'})
  assert set(batch) == {'x'} and run.num_classes == 0
  assert not any(k.startswith('acgan/') for k in metrics)
  np.testing.assert_allclose(losses, expected, rtol=1e-5)


def test_acgan_step_metrics_and_labels():
  run, batch, losses, metrics = _three_steps('wgan_gp', 'gaussians8,acgan,smoke')
  assert run.num_classes == 8 and run.models.critic_head == 'acgan'
  assert batch['label'].dtype == np.int32 and batch['label'].shape == batch['x'].shape[:2]
  for key in ('acgan/d_ce', 'acgan/g_ce', 'acgan/real_acc', 'penalty'):
    assert np.isfinite(float(metrics[key])), key
  assert run.step_config.acgan_g_weight == 0.1 and run.step_config.acgan_d_weight == 1.0


def test_conditional_step_same_under_pmap():
  single = configs_loader.load('sngan', 'gaussians8,conditional,smoke')
  runs = [train.Run(single),
          train.Run(configs_loader.load('sngan', 'gaussians8,conditional,smoke',
                                        **{'parallel.strategy': 'pmap'}))]
  losses = []
  for run in runs:
    state = run.strategy.to_device(run.init_state())
    state, metrics = run.train_step()(state, run.batch(0))
    losses.append(float(run.strategy.metrics(metrics)['d_loss']))
  np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)


def test_config_flags_and_validation():
  c = configs_loader.load('sngan', 'cifar10,conditional')
  assert c.conditional.method == 'projection' and c.model.name == 'resnet'
  assert (c.optim.d.lr, c.optim.d.b1, c.optim.d.b2, c.n_critic) == (2e-4, 0.0, 0.9, 5)
  c = configs_loader.load('wgan_gp', 'cifar10,acgan')
  assert (c.conditional.method, c.conditional.acgan_d_weight,
          c.conditional.acgan_g_weight) == ('acgan', 1.0, 0.1)
  assert configs_loader.load('wgan_gp', 'cifar10').conditional.method == 'none'
  with pytest.raises(ConfigError, match="'swissroll' has 1 class"):
    train.Run(configs_loader.load('sngan', 'swissroll,conditional,smoke'))
  with pytest.raises(ConfigError, match='conditional.method'):
    config_lib.validate(configs_loader.load('sngan', 'smoke',
                                            **{'conditional.method': 'concat'}))


def test_mode_accuracy():
  centers = np.array([[0.0, 0.0], [1.0, 0.0]])
  x = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.5, 0.5]])
  labels = np.array([0, 0, 1, 1])
  out = toy_eval.mode_accuracy(x, labels, centers=centers, std=0.01)
  assert out == {'eval/mode_accuracy': 0.5, 'eval/mode_accuracy_min': 0.5}


def test_parse_labels():
  assert sample.parse_labels(None, num_classes=0, num_samples=3) is None
  np.testing.assert_array_equal(sample.parse_labels('all', num_classes=3, num_samples=2),
                                [0, 0, 1, 1, 2, 2])
  np.testing.assert_array_equal(sample.parse_labels('2,0', num_classes=3, num_samples=5),
                                [2, 0, 2, 0, 2])
  np.testing.assert_array_equal(sample.parse_labels('', num_classes=3, num_samples=4),
                                [0, 1, 2, 0])
  for bad, n in (('3', 3), ('a', 3), ('1', 0)):
    with pytest.raises(UserError):
      sample.parse_labels(bad, num_classes=n, num_samples=2)


def test_conditional_toy_end_to_end_and_sampling(tmp_path):
  config = configs_loader.load('sngan', 'gaussians8,conditional,smoke')
  last = train.train_and_evaluate(config, str(tmp_path))
  assert 0 <= last['eval/mode_accuracy_min'] <= last['eval/mode_accuracy'] <= 1
  with open(tmp_path / 'metrics.jsonl') as f:
    assert any('eval/mode_accuracy' in json.loads(line) for line in f)
  run, state, _ = train.load_for_inference(str(tmp_path))
  labels = sample.parse_labels('all', num_classes=run.num_classes, num_samples=4)
  paths = []
  for i in range(2):
    samples = sample.generate(run, state, num_samples=4, seed=3, labels=labels)
    assert samples.shape == (32, 2)
    paths.append(str(tmp_path / f's{i}.png'))
    sample.write_samples(paths[-1], samples, is_toy=True, labels=labels)
  with open(paths[0], 'rb') as a, open(paths[1], 'rb') as b:
    assert a.read() == b.read()


# The conditional ResNet end to end (conditional BN, projection critic, labels from the
# data): tests/test_resnet_scales.py's imagenet128,conditional smoke run.


def test_acgan_cifar10_builds():
  # wgan_gp cifar10,acgan (AC-WGAN-GP): the ResNet critic's AC head over the 10 classes
  # (the full step runs in test_acgan_step_metrics_and_labels on toy data, on CPU time).
  run = train.Run(configs_loader.load('wgan_gp', 'cifar10,acgan,smoke'), open_data=False)
  shapes = jax.eval_shape(lambda: step_lib.init_state(
      family=run.family, g_tx=run.g_tx, d_tx=run.d_tx, key=jax.random.PRNGKey(0),
      batch_size=2, ema=False))
  assert shapes.d.params['acgan_out']['w'].shape == (16, 10)
  assert shapes.g.params['block_up_0/~_bn_relu/bn_1']['gamma'].shape == (10, 16)


def _critic_d_fake(run, state, batch, fake_labels_of):
  """mean over the critic updates of step 0 of mean D(G(z, y), y), y = fake_labels_of(k, key)."""
  keys = jax.random.split(step_lib.step_key(run.config.seed, 0), run.config.n_critic + 1)
  means = []
  for k in range(run.config.n_critic):
    z = step_lib.sample_z(jax.random.split(keys[k])[0], run.config.batch_size, run.models.z_dim)
    y = fake_labels_of(k, keys[k])
    fake, _ = run.models.g.apply(state.g.params, state.g.state, None, z, labels=y,
                                 is_training=True)
    scores, _ = run.models.d.apply(state.d.params, state.d.state, None, fake, labels=y,
                                   update_stats=False)
    means.append(np.mean(scores))
  return np.mean(means)


@pytest.mark.parametrize('method', ['gp', 'none'])
def test_critic_fakes_take_the_real_labels_only_when_a_projection_critic_is_penalised(method):
  # Learning rates 0 and a stateless critic: the critic's d_fake metric is mean D(G(z, y), y)
  # under the initial state, with y the real labels of each critic update (penalised: gp) or
  # the labels drawn from fold_in(key, LABEL_STREAM) (no penalty).
  run = train.Run(configs_loader.load('wgan_gp', 'gaussians8,conditional,smoke', **{
      'optim.d.lr': 0.0, 'optim.g.lr': 0.0, 'lipschitz.method': method}))
  assert run.models.critic_head == 'projection'
  state = jax.device_get(run.init_state())
  batch = run.batch(0)
  _, metrics = jax.jit(run.step_fn())(jax.device_put(state), batch)
  real = _critic_d_fake(run, state, batch, lambda k, key: batch['label'][k])
  drawn = _critic_d_fake(run, state, batch, lambda k, key: step_lib.sample_labels(
      jax.random.fold_in(key, rng.LABEL_STREAM), run.config.batch_size, K_TOY))
  assert abs(real - drawn) > 1e-3  # the labels are visible in the scores
  expected = real if method == 'gp' else drawn
  np.testing.assert_allclose(float(metrics['d_fake']), expected, rtol=1e-5, atol=1e-6)
