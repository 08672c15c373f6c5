"""The auto-encoder families (wae_gan, wae_mmd, vae): their math against NumPy, their
objectives on tiny networks, end-to-end runs and their one-line config errors."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from wgan_jax import train
from wgan_jax.errors import ConfigError
from wgan_jax.eval import autoencoders as ae_eval
from wgan_jax.families import autoencoders as ae
from wgan_jax.families.base import sample_z

from tests import configs_loader

TINY = {'model.mlp_hidden': 8, 'model.mlp_layers': 2, 'wae.critic_hidden': 8,
        'wae.critic_layers': 2, 'batch_size': 8, 'eval.num_samples': 32}


def _imq_mmd_loops(q, p, scales=ae.IMQ_SCALES):
  """The IMQ MMD^2 U-statistic written out example by example."""
  n, z_dim = q.shape
  total = 0.0
  for s in scales:
    c = 2.0 * z_dim * s
    k = lambda a, b: c / (c + np.sum((a - b) ** 2))
    same = sum(k(q[i], q[j]) + k(p[i], p[j]) for i in range(n) for j in range(n) if i != j)
    cross = sum(k(q[i], p[j]) for i in range(n) for j in range(n))
    total += same / (n * (n - 1)) - 2.0 * cross / n ** 2
  return total


def test_imq_mmd_matches_a_numpy_loop():
  rs = np.random.RandomState(0)
  q, p = rs.normal(size=(7, 3)) * 2.0 + 1.0, rs.normal(size=(7, 3))
  want = _imq_mmd_loops(q, p)
  np.testing.assert_allclose(float(ae.imq_mmd(jnp.asarray(q, jnp.float32),
                                              jnp.asarray(p, jnp.float32))), want, rtol=1e-4)
  np.testing.assert_allclose(ae_eval.imq_mmd_numpy(q, p), want, rtol=1e-10)
  # Unbiased: about 0 between two samples of one distribution, far above it otherwise.
  same = ae_eval.imq_mmd_numpy(rs.normal(size=(400, 2)), rs.normal(size=(400, 2)))
  assert abs(same) < 0.02 < ae_eval.imq_mmd_numpy(rs.normal(size=(400, 2)) + 2.0,
                                                  rs.normal(size=(400, 2)))


def test_gaussian_kl_matches_monte_carlo():
  rs = np.random.RandomState(1)
  mean, log_var = rs.normal(size=(2, 3)), rs.normal(size=(2, 3)) * 0.5
  z = mean[:, None] + np.exp(0.5 * log_var)[:, None] * rs.normal(size=(2, 200_000, 3))
  log_q = -0.5 * (((z - mean[:, None]) ** 2) / np.exp(log_var)[:, None]
                  + log_var[:, None]).sum(-1)
  log_p = -0.5 * (z ** 2).sum(-1)  # the 2 pi terms cancel
  mc = (log_q - log_p).mean(1)
  got = np.asarray(ae.gaussian_kl(jnp.asarray(mean), jnp.asarray(log_var)))
  np.testing.assert_allclose(got, mc, atol=0.02)
  assert float(ae.gaussian_kl(jnp.zeros((1, 4)), jnp.zeros((1, 4)))[0]) == 0.0


@pytest.fixture(scope='module')
def toy_runs():
  """family -> (train.Run, initial state) of the tiny toy configs."""
  out = {}
  for family, (file, arg) in {'wae_gan': ('wae', 'gan,gaussians8,smoke'),
                              'wae_mmd': ('wae', 'mmd,gaussians8,smoke'),
                              'vae': ('vae', 'gaussians8,smoke')}.items():
    run = train.Run(configs_loader.load(file, arg, **TINY))
    out[family] = run, run.init_state()
  return out


def _real(n=8):
  return {'x': jax.random.normal(jax.random.PRNGKey(3), (n, 2))}


def test_encoder_and_decoder_merge_into_the_generator_side(toy_runs):
  for family, (run, state) in toy_runs.items():
    encoder = {k for k in state.g.params if k.startswith('encoder/')}
    assert encoder and len(encoder) < len(state.g.params), family
    assert (state.d is None) == (family != 'wae_gan'), family
  run, state = toy_runs['wae_gan']
  assert all(k.startswith('latent_critic/') for k in state.d.params)


def test_wae_objectives_are_reconstruction_plus_lambda_penalty(toy_runs):
  x, key = _real()['x'], jax.random.PRNGKey(7)
  for family in ('wae_gan', 'wae_mmd'):
    run, state = toy_runs[family]
    p, s = state.g.params, state.g.state
    code, _ = run.models.e.apply(p, s, None, x, is_training=True)
    recon, _ = run.models.g.apply(p, s, None, code, is_training=True)
    err = float(jnp.mean(jnp.sum((x - recon) ** 2, -1)))
    critic = None
    if family == 'wae_gan':
      critic = lambda z: run.models.d.apply(state.d.params, state.d.state, None, z,
                                            update_stats=False)[0]
      penalty = float(run.loss.g(d_fake=critic(code)))
    else:
      penalty = float(ae.imq_mmd(code, sample_z(key, 8, 2)))
    loss, _, metrics = run.family.g_objective(p, s, _real(), key=key, critic=critic)
    lam = run.config.wae.lambda_
    np.testing.assert_allclose(float(loss), err + lam * penalty, rtol=1e-5)
    np.testing.assert_allclose(float(metrics['recon']), err, rtol=1e-5)
  # WAE-GAN's critic sees prior samples as real and the constant codes as fake.
  run, state = toy_runs['wae_gan']
  view, _ = run.family.critic_view(state.g.params, state.g.state, _real(), key=key,
                                   z_key=key, extra=None)
  code, _ = run.models.e.apply(state.g.params, state.g.state, None, x, is_training=True)
  np.testing.assert_allclose(view.real, sample_z(key, 8, 2))
  np.testing.assert_allclose(view.fake, code)


def test_vae_objective_is_the_negative_elbo(toy_runs):
  run, state = toy_runs['vae']
  p, s, x, key = state.g.params, state.g.state, _real()['x'], jax.random.PRNGKey(5)
  (mean, log_var), _ = run.models.e.apply(p, s, None, x, is_training=True)
  eps = sample_z(jax.random.fold_in(key, ae.REPARAM_STREAM), 8, 2)
  recon, _ = run.models.g.apply(p, s, None, mean + jnp.exp(0.5 * log_var) * eps,
                                is_training=True)
  err = jnp.sum((x - recon) ** 2, -1)
  kl = 0.5 * jnp.sum(mean ** 2 + jnp.exp(log_var) - 1 - log_var, -1)
  want = jnp.mean(err / (2 * run.config.vae.obs_std ** 2) + kl)
  loss, _, metrics = run.family.g_objective(p, s, _real(), key=key, critic=None)
  np.testing.assert_allclose(float(loss), float(want), rtol=1e-5)
  np.testing.assert_allclose(float(metrics['kl']), float(jnp.mean(kl)), rtol=1e-5)


def test_latent_evaluator_scores_reconstruction_and_latent_mmd(toy_runs):
  run, state = toy_runs['wae_mmd']
  evaluator = ae_eval.LatentEvaluator(run)
  real = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (32, 2)))
  scores = evaluator.scores(state, real)
  code = run.models.e.apply(state.g.params, state.g.state, None, real, is_training=False)[0]
  recon = run.models.g.apply(state.g.params, state.g.state, None, code, is_training=False)[0]
  np.testing.assert_allclose(scores['eval/recon_mse'],
                             np.mean(np.sum((real - np.asarray(recon)) ** 2, -1)), rtol=1e-5)
  np.testing.assert_allclose(scores['eval/latent_mmd'],
                             ae_eval.imq_mmd_numpy(np.asarray(code), evaluator.prior),
                             rtol=1e-6)


def _last_record(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f][-1]


def test_mnist_config_trains_on_mock_images(tmp_path, fast_compile):
  del fast_compile
  config = configs_loader.load('wae', 'gan,mnist,smoke', total_steps=2, batch_size=4,
                               **{'model.g_ch': 4, 'model.conv_impl': 'xla',
                                  'wae.critic_hidden': 8, 'eval.num_samples': 8})
  assert config.model.name == 'wae_mnist' and config.model.z_dim == 8
  with tfds.testing.mock_data(num_examples=16):
    train.train_and_evaluate(config, str(tmp_path))
  last = _last_record(tmp_path)
  for key in ('recon', 'adversarial', 'eval/recon_mse', 'eval/latent_mmd'):
    assert np.isfinite(last[key]), (key, last)
  assert os.listdir(tmp_path / 'samples') == ['step_0000002.png']


@pytest.mark.parametrize('file,arg,overrides,message', [
    ('wae', 'mmd,gaussians8', {'n_critic': 5}, 'family wae_mmd has no critic .* n_critic=1'),
    ('vae', 'gaussians8', {'conditional.method': 'projection'},
     'family vae is unconditional; .*conditional.method=none'),
    ('wae', 'gan,mnist', {'model.name': 'dcgan'}, "model.name 'dcgan'; valid: mlp, wae_"),
    ('wae', 'mmd,gaussians8', {'wae.lambda_': -1.0}, r'wae.lambda_ must be >= 0'),
    ('vae', 'gaussians8', {'vae.obs_std': 0.0}, r'vae.obs_std must be > 0'),
    ('wae', 'gan,gaussians8', {'wae.critic_layers': 0}, 'wae.critic_layers must be a positive'),
])
def test_bad_settings_are_one_config_error_line(file, arg, overrides, message):
  config = configs_loader.load(file, arg, **overrides)
  with pytest.raises(ConfigError, match=message) as e:
    train.Run(config, open_data=False)
  assert '\n' not in str(e.value)


@pytest.mark.parametrize('file,arg,message', [
    ('wae', 'gan,mmd', 'gan and mmd exclude each other'),
    ('wae', 'cifar10', "recipes for mnist, celeb_a, gaussians8, swissroll; got 'cifar10'"),
    ('vae', 'gaussians25', "recipes for mnist, celeb_a, gaussians8, swissroll; got"),
])
def test_bad_config_arguments_are_one_config_error_line(file, arg, message):
  with pytest.raises(ConfigError, match=message):
    configs_loader.load(file, arg)


@pytest.mark.parametrize('name,data_shape,z_dim,kernel,bottom', [
    ('wae_mnist', (32, 32, 1), 8, 4, 8), ('wae_celeba', (64, 64, 3), 64, 5, 8)])
def test_paper_conv_architectures_shapes(name, data_shape, z_dim, kernel, bottom):
  # Shapes only (jax.eval_shape: nothing compiles): the encoder's four strided k x k convs
  # ch .. 8 ch then Dense Z, the decoder's Dense to bottom^2 x 8 ch, up to the image.
  from wgan_jax.models import autoencoder, build_models  # pylint: disable=import-outside-toplevel
  import ml_collections  # pylint: disable=import-outside-toplevel
  cfg = ml_collections.ConfigDict(dict(name=name, z_dim=z_dim, g_ch=4, d_ch=4, mlp_hidden=8,
                                       mlp_layers=2, conv_impl='xla'))
  pair = build_models(cfg, data_shape=data_shape)
  enc = autoencoder.build_encoder(cfg, data_shape=data_shape, z_dim=z_dim, gaussian=False,
                                  conv_impl='xla')
  key, x = jax.random.PRNGKey(0), jnp.zeros((2,) + data_shape)
  e_params, e_state = jax.eval_shape(lambda k: enc.init(k, x, is_training=True), key)
  g_params, g_state = jax.eval_shape(
      lambda k: pair.g.init(k, jnp.zeros((2, z_dim)), is_training=True), key)
  assert [e_params[f'encoder/conv_{i}']['w'].shape for i in range(4)] == [
      (kernel, kernel, c_in, c_out) for c_in, c_out in zip((data_shape[-1], 4, 8, 16),
                                                            (4, 8, 16, 32))]
  assert g_params['dense_in']['w'].shape == (z_dim, bottom * bottom * 32)
  n_up = len([k for k in g_params if k.startswith('upconv_')])
  assert n_up == {'wae_mnist': 2, 'wae_celeba': 3}[name]
  assert g_params['conv_out']['w'].shape == (kernel, kernel, 32 // 2 ** n_up, data_shape[-1])
  code = jax.eval_shape(lambda p, s: enc.apply(p, s, None, x, is_training=True)[0],
                        e_params, e_state)
  out = jax.eval_shape(lambda p, s, z: pair.g.apply(p, s, None, z, is_training=True)[0],
                       g_params, g_state, code)
  assert code.shape == (2, z_dim) and out.shape == (2,) + data_shape
  assert not set(e_params) & set(g_params)
