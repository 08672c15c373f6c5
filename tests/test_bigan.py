"""The bigan family (BiGAN / ALI): the critic's view, the generator side's objective against
hand computations on tiny nets, the encoder modes, the networks, end-to-end runs, errors."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from wgan_jax import families, losses, train
from wgan_jax import models as models_lib
from wgan_jax import step as step_lib
from wgan_jax.errors import ConfigError
from wgan_jax.eval import bigan as bigan_eval
from wgan_jax.families import bigan
from wgan_jax.models import bigan as bigan_models
from wgan_jax.rng import ENCODER_STREAM
from tests import configs_loader

B = 4
TINY = {'model.mlp_hidden': 8, 'model.mlp_layers': 1}


def _family(loss_name='wasserstein', encoder='deterministic', **overrides):
  config = configs_loader.load('bigan', 'gaussians8,smoke', loss=loss_name,
                               **{'bigan.encoder': encoder, **TINY, **overrides})
  pair = models_lib.build_models(config.model, data_shape=(2,))
  cfg = step_lib.StepConfig(n_critic=1, batch_size=B, g_batch_size=B, z_dim=2, seed=0,
                            ema_decay=0.0)
  loss = losses.get_loss(loss_name)
  return config, families.build(config, models=pair, loss=loss, cfg=cfg), loss


@pytest.fixture(scope='module')
def tiny():
  """(family, loss, networks, real batch, keys) of the Wasserstein tiny-net family."""
  _, family, loss = _family()
  nets = family.init(jax.random.PRNGKey(0), batch_size=B)
  x = jax.random.normal(jax.random.PRNGKey(1), (B, 2))
  return family, loss, nets, {'x': x}, jax.random.PRNGKey(2)


def _critic(family, nets):
  return lambda pair: family.d_apply(nets.d_params, nets.d_state, None, pair,
                                     update_stats=False)[0]


def test_critic_view_pairs_reals_with_their_codes_and_fakes_with_their_noise(tiny):
  family, _, nets, real, key = tiny
  z_key = jax.random.PRNGKey(3)
  view, extra = family.critic_view(nets.g_params, nets.g_state, real, key=key, z_key=z_key,
                                   extra=None)
  e_x, _ = family.models.e.apply(nets.g_params, nets.g_state, None, real['x'], is_training=True)
  z = jax.random.normal(z_key, (B, 2))  # families.sample_z: N(0, I) of the global batch
  g_z, _ = family.models.g.apply(nets.g_params, nets.g_state, None, z, is_training=True)
  np.testing.assert_array_equal(view.real[0], real['x'])
  np.testing.assert_allclose(view.real[1], e_x, rtol=1e-6)
  np.testing.assert_array_equal(view.fake[1], z)
  np.testing.assert_allclose(view.fake[0], g_z, rtol=1e-6)
  assert extra is None and view.kwargs is None and view.read is None


def test_wasserstein_g_objective_is_minus_the_critic_objective(tiny):
  family, loss, nets, real, key = tiny
  critic = _critic(family, nets)
  value, _, metrics = family.g_objective(nets.g_params, nets.g_state, real, key=key,
                                         critic=critic)
  z = jax.random.normal(key, (B, 2))
  g_z, _ = family.models.g.apply(nets.g_params, nets.g_state, None, z, is_training=True)
  e_x, _ = family.models.e.apply(nets.g_params, nets.g_state, None, real['x'], is_training=True)
  d_enc, d_gen = critic((real['x'], e_x)), critic((g_z, z))
  critic_objective = loss.d(d_real=d_enc, d_fake=d_gen)  # -(E D(x, E x) - E D(G z, z))
  np.testing.assert_allclose(value, -critic_objective, rtol=1e-5)
  np.testing.assert_allclose(value, np.mean(d_enc) - np.mean(d_gen), rtol=1e-5)
  np.testing.assert_allclose(metrics['bigan/d_enc'], np.mean(d_enc), rtol=1e-6)
  # G and E (one player) both get gradients; the critic's weights are not its arguments.
  grads = jax.grad(lambda p: family.g_objective(p, nets.g_state, real, key=key,
                                                critic=critic)[0])(nets.g_params)
  for module in ('encoder/dense_out', 'dense_out'):  # E's output layer, G's output layer
    assert float(jnp.abs(grads[module]['w']).sum()) > 0, module


def test_cross_entropy_g_objective_swaps_the_labels():
  _, family, _ = _family('non_saturating')
  nets = family.init(jax.random.PRNGKey(0), batch_size=B)
  x = jax.random.normal(jax.random.PRNGKey(1), (B, 2))
  key = jax.random.PRNGKey(2)
  critic = _critic(family, nets)
  value, _, _ = family.g_objective(nets.g_params, nets.g_state, {'x': x}, key=key,
                                   critic=critic)
  z = jax.random.normal(key, (B, 2))
  g_z, _ = family.models.g.apply(nets.g_params, nets.g_state, None, z, is_training=True)
  e_x, _ = family.models.e.apply(nets.g_params, nets.g_state, None, x, is_training=True)
  d_gen = np.asarray(critic((g_z, z)), np.float64)
  d_enc = np.asarray(critic((x, e_x)), np.float64)
  sigmoid = lambda t: 1 / (1 + np.exp(-t))
  # -log D(G z, z) - log(1 - D(x, E x)) with D = sigmoid(scores): BiGAN / ALI's G and E.
  expected = -np.mean(np.log(sigmoid(d_gen))) - np.mean(np.log(1 - sigmoid(d_enc)))
  np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_gaussian_encoder_reparameterises_with_its_own_stream():
  _, family, _ = _family(encoder='gaussian')
  nets = family.init(jax.random.PRNGKey(0), batch_size=B)
  x = jax.random.normal(jax.random.PRNGKey(1), (B, 2))
  key = jax.random.PRNGKey(2)
  h, _ = family.models.e.apply(nets.g_params, nets.g_state, None, x, is_training=True)
  assert h.shape == (B, 4)  # [mean, log_std]
  view, _ = family.critic_view(nets.g_params, nets.g_state, {'x': x}, key=key,
                               z_key=jax.random.PRNGKey(3), extra=None)
  eps = jax.random.normal(jax.random.fold_in(key, ENCODER_STREAM), (B, 2))
  np.testing.assert_allclose(view.real[1], h[:, :2] + np.exp(h[:, 2:]) * eps, rtol=1e-5)
  np.testing.assert_array_equal(bigan.encode(h, gaussian=True), h[:, :2])
  np.testing.assert_array_equal(bigan.encode(h, gaussian=False), h)


@pytest.mark.parametrize('nets,shape,d_norm', [('bigan_mnist', (32, 32, 1), 'none'),
                                                ('ali_cifar10', (32, 32, 3), 'spectral')])
def test_image_networks_shapes_scopes_and_spectral_state(nets, shape, d_norm):
  e_fn, d_fn = bigan_models.make_fns(
      nets=nets, z_dim=3, gaussian=True, hidden=8, n_layers=1, activation='relu',
      g_batch_norm=True, d_norm=d_norm, d_out_bias=True, ch=2, conv_impl='xla')
  encoder, critic = bigan_models.transform(e_fn, d_fn)
  x, z = jnp.ones((2,) + shape), jnp.ones((2, 3))

  def init_and_apply(key):
    e_key, d_key = jax.random.split(key)
    e_params, e_state = encoder.init(e_key, x, is_training=True)
    h, _ = encoder.apply(e_params, e_state, None, x, is_training=True)
    d_params, d_state = critic.init(d_key, (x, z), update_stats=True)
    scores, _ = critic.apply(d_params, d_state, None, (x, z), update_stats=False)
    return e_params, h, d_params, d_state, scores

  # Shapes only (traced, not compiled): the values are exercised by the end-to-end runs.
  e_params, h, d_params, d_state, scores = jax.eval_shape(init_and_apply,
                                                          jax.random.PRNGKey(0))
  assert h.shape == (2, 6) and all(k.startswith('encoder/') for k in e_params)
  assert scores.shape == (2,) and all(k.startswith('joint_critic/') for k in d_params)
  assert any('sigma' in leaves for leaves in d_state.values()) == (d_norm == 'spectral')
  if nets == 'ali_cifar10':  # maxout halves each layer's units: D(x) ends in 8 ch = 16 units
    assert d_params['joint_critic/z_dense_1']['w'].shape == (16, 32)


def test_recon_mse_is_the_mean_squared_norm():
  x = np.array([[0.0, 0.0], [1.0, 2.0]])
  assert bigan_eval.recon_mse(x, np.array([[3.0, 4.0], [1.0, 2.0]])) == pytest.approx(12.5)


def test_mnist_smoke_run_on_mock_images_with_a_gradient_penalty_on_pairs(tmp_path):
  # WGAN-GP BiGAN: the penalty interpolates (image [B, 32, 32, 1], code [B, 50]) pairs.
  config = configs_loader.load('bigan', 'mnist,smoke', total_steps=2, n_critic=2,
                               batch_size=4, loss='wasserstein',
                               **{'eval.num_samples': 8, 'lipschitz.method': 'gp'})
  assert config.bigan.nets == 'bigan_mnist' and config.model.z_dim == 50
  with tfds.testing.mock_data(num_examples=16):
    last = train.train_and_evaluate(config, str(tmp_path))
  assert last['step'] == 2 and np.isfinite(last['g_loss']) and np.isfinite(last['d_loss'])
  assert last['penalty'] > 0 and np.isfinite(last['penalty_grad_norm'])
  assert np.isfinite(last['eval/recon_mse']) and np.isfinite(last['eval/latent_w1'])
  assert os.listdir(tmp_path / 'samples') == ['step_0000002.png']


@pytest.mark.parametrize('arg,overrides,words', [
    ('gaussians8,smoke,conditional', {}, ('conditional.method', "'projection'")),
    ('gaussians8,smoke', {'bigan.encoder': 'vae'}, ('bigan.encoder', "'vae'")),
    ('gaussians8,smoke', {'model.d_norm': 'batch'}, ('model.d_norm', "'batch'"))])
def test_bad_settings_are_one_config_error_line(arg, overrides, words):
  config = configs_loader.load('bigan', arg, **overrides)
  with pytest.raises(ConfigError) as error:
    train.Run(config, open_data=False)
  message = str(error.value)
  assert '\n' not in message and all(w in message for w in words), message

