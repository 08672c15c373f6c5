"""The auto-encoder families: `wae_gan`, `wae_mmd` (Tolstikhin et al. 2018, Wasserstein
Auto-Encoders) and `vae` (Kingma & Welling 2014, Auto-Encoding Variational Bayes).

Each trains an encoder Q: x -> z and a decoder G = the config's generator (models.g: z -> x)
as the generator side (their haiku dicts merged; the encoder's modules are under 'encoder/'),
with the prior P_Z = N(0, I_Z), Z = model.z_dim (the official code's pz 'normal',
pz_scale 1.0; the paper's Appendix C gives sigma_z^2 = 2 for CelebA, its code 1.0).

  wae_gan  min_{Q,G} c(x, G(Q(x))) + lambda * loss.g(D_Z(Q(x))); D_Z is a critic on latents
           trained by the step's critic updates on real = prior samples z ~ P_Z, fake =
           Q(x) (stop_gradient), with any loss x Lipschitz method (the paper: the GAN
           cross-entropy, loss non_saturating, lipschitz none; wae.py gan_penalty also
           scales the adversary's loss by lambda, which Adam's scale invariance makes
           immaterial; here the critic's loss is unscaled).
  wae_mmd  min_{Q,G} c(x, G(Q(x))) + lambda * MMD_k(Q(x), z), k the inverse multiquadratic
           kernel summed over scales (`imq_mmd`); no critic.
  vae      min_{Q,G} -ELBO = E_q [-log p(x | z)] + KL(q(z | x) || N(0, I)), q(z | x) =
           N(mean(x), diag exp(log_var(x))) sampled by reparameterisation (z = mean +
           exp(log_var / 2) * eps); p(x | z) = N(G(z), obs_std^2 I), so -log p(x | z) =
           ||x - G(z)||^2 / (2 obs_std^2) + const (the constant dropped); no critic.

The WAE encoders are deterministic, as in the paper's experiments (the official code's
'add_noise' perturbs the encoder's input by N(0, 0.01^2) noise in training; not done here).
The reconstruction cost (wae.py reconstruction_loss, 'l2sq') is c(x, y) = recon_scale *
||x - y||^2 per example, averaged over the batch: recon_scale 0.05 in the official code on
CelebA's [-1, 1] pixels and on MNIST's [0, 1] pixels (0.0125 on this repo's [-1, 1] MNIST);
1.0 on the 2-D toys.

Settings: config.wae (lambda_, recon_scale, critic_hidden, critic_layers) and config.vae
(obs_std); metrics: recon (E ||x - G(Q(x))||^2 of the batch, unscaled), and
wae_gan: adversarial (loss.g of D_Z(Q(x))); wae_mmd: mmd; vae: kl, nll (the reconstruction
term). The critic-free families need n_critic 1 (one real batch per step, which the
generator side reads). Under pmap the MMD is taken over the global batch (the codes are
all-gathered), so every strategy computes the same numbers.
"""
import math
from typing import Optional

import jax
import jax.numpy as jnp

from wgan_jax.errors import ConfigError
from wgan_jax.families.base import CriticView, Draws, Family, Networks, merge, sample_z
from wgan_jax.models import autoencoder as ae_models
from wgan_jax.ops import conv
from wgan_jax.rng import LABEL_STREAM

# The IMQ kernel's scales of C = 2 Z sigma_z^2 (wae.py mmd_penalty).
IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
REPARAM_STREAM = LABEL_STREAM  # the VAE's eps (the auto-encoders draw no labels)


# ----------------------------------------------------------------------------- math
def squared_distances(a: jax.Array, b: jax.Array) -> jax.Array:
  """||a_i - b_j||^2 [n, m] of a [n, Z] and b [m, Z]."""
  return (jnp.sum(a * a, -1)[:, None] + jnp.sum(b * b, -1)[None, :] - 2.0 * a @ b.T)


def imq_mmd(qz: jax.Array, pz: jax.Array, *, scale: float = 1.0,
            scales=IMQ_SCALES) -> jax.Array:
  """Unbiased MMD^2 U-statistic with the inverse multiquadratic kernel, summed over scales.

  k_C(x, y) = C / (C + ||x - y||^2), C = s * 2 Z scale^2 for s in `scales` (Tolstikhin et al.
  2018, Section 4; wae.py mmd_penalty, kernel 'IMQ', pz 'normal'):
    MMD = sum_C [ sum_{i != j} (k_C(q_i, q_j) + k_C(p_i, p_j)) / (n (n - 1))
                  - 2 sum_{i, j} k_C(q_i, p_j) / n^2 ].

  Args:
    qz: [n, Z] encoded points Q(x).
    pz: [n, Z] prior samples.
    scale: the prior's standard deviation sigma_z.
    scales: the multipliers s of the base C.
  Returns:
    float32 [] (may be slightly negative: unbiased).
  """
  n, z_dim = qz.shape
  off_diagonal = 1.0 - jnp.eye(n, dtype=qz.dtype)
  d_qq, d_pp, d_qp = (squared_distances(qz, qz), squared_distances(pz, pz),
                      squared_distances(qz, pz))
  base = 2.0 * z_dim * scale ** 2
  stat = 0.0
  for s in scales:
    c = base * s
    same = (c / (c + d_qq) + c / (c + d_pp)) * off_diagonal
    stat = stat + jnp.sum(same) / (n * n - n) - 2.0 * jnp.sum(c / (c + d_qp)) / (n * n)
  return stat


def gaussian_kl(mean: jax.Array, log_var: jax.Array) -> jax.Array:
  """KL(N(mean, diag exp(log_var)) || N(0, I)) per example, [B]:
  0.5 * sum_k (mean_k^2 + exp(log_var_k) - 1 - log_var_k) (Kingma & Welling 2014, App. B)."""
  return 0.5 * jnp.sum(mean ** 2 + jnp.exp(log_var) - 1.0 - log_var, axis=-1)


def squared_error(x: jax.Array, y: jax.Array) -> jax.Array:
  """||x - y||^2 per example, [B] (summed over every non-batch axis)."""
  return jnp.sum(jnp.square(x - y).reshape(x.shape[0], -1), axis=-1)


def reparameterise(mean: jax.Array, log_var: jax.Array, eps: jax.Array) -> jax.Array:
  """z = mean + exp(log_var / 2) * eps (Kingma & Welling 2014, Section 2.4)."""
  return mean + jnp.exp(0.5 * log_var) * eps


# ----------------------------------------------------------------------------- builders
def _check(config, family: str, *, has_critic: bool) -> None:
  """One ConfigError line for what an auto-encoder family cannot run."""
  method = config.get('conditional', {}).get('method', 'none')
  if method != 'none':
    raise ConfigError(f'family {family} is unconditional; conditional.method={method!r} is not '
                      f'supported (set conditional.method=none)')
  if not has_critic and config.n_critic != 1:
    raise ConfigError(f'family {family} has no critic and reads one real batch per step; set '
                      f'n_critic=1 (got {config.n_critic})')
  if not has_critic and config.get('n_critic_warmup', 0):
    raise ConfigError(f'family {family} has no critic; set n_critic_warmup=0 (got '
                      f'{config.n_critic_warmup})')
  if config.g_batch_size not in (0, config.batch_size):
    raise ConfigError(f'family {family} encodes and decodes the real batch; set g_batch_size=0 '
                      f'(got {config.g_batch_size})')
  name = config.model.name
  if name not in ae_models.AUTOENCODER_MODELS:
    raise ConfigError(f'family {family} needs an encoder for model.name {name!r}; valid: '
                      f'{", ".join(ae_models.AUTOENCODER_MODELS)}')
  if config.model.get('g_name', '') not in ('', name):
    raise ConfigError(f'family {family} takes no model.g_name (got {config.model.g_name!r}); '
                      f'set it to \'\'')


def _setting(config, block: str, key: str, *, integer: bool = False, positive: bool = True):
  """config.<block>.<key>, checked: a positive integer, or a finite number > 0 (>= 0 unless
  positive)."""
  value = config[block][key]
  number = isinstance(value, (int, float)) and not isinstance(value, bool)
  ok = number and (isinstance(value, int) if integer else math.isfinite(value))
  if not (ok and (value > 0 if positive else value >= 0)):
    kind = 'a positive integer' if integer else ('> 0' if positive else '>= 0') + ' and finite'
    raise ConfigError(f'{block}.{key} must be {kind}, got {value!r}')
  return value


class _AutoEncoder:
  """What the three families share: encoder, decoder, draws and the reconstruction."""

  def __init__(self, *, models, cfg, config, gaussian: bool,
               bn_axis_name: Optional[str]):
    self.models, self.cfg = models, cfg
    self.draws = Draws(models.z_dim, cfg.axis_name, cfg.num_shards)
    conv_impl = conv.resolve_impl(config.model.get('conv_impl', 'auto'))
    self.encoder = ae_models.build_encoder(config.model, data_shape=models.data_shape,
                                           z_dim=models.z_dim, gaussian=gaussian,
                                           conv_impl=conv_impl, bn_axis_name=bn_axis_name)

  def init_g(self, key, batch_size: int):
    e_key, g_key = jax.random.split(key)
    x = jnp.zeros((batch_size,) + tuple(self.models.data_shape), jnp.float32)
    z = jnp.zeros((batch_size, self.models.z_dim), jnp.float32)
    g_params, g_state = self.models.g.init(g_key, z, is_training=True)
    e_params, e_state = self.encoder.init(e_key, x, is_training=True)
    return merge(g_params, e_params), merge(g_state, e_state)

  def critic_free_networks(self, key, *, batch_size: int) -> Networks:
    """The initial networks of a family without a critic (wae_mmd, vae)."""
    return Networks(*self.init_g(key, batch_size), None, None)

  def encode(self, g_params, g_state, x):
    """Q(x) in training mode -> (code, new g_state)."""
    return self.encoder.apply(g_params, g_state, None, x, is_training=True)

  def decode(self, g_params, g_state, z):
    """G(z) in training mode -> (x, new g_state)."""
    return self.models.g.apply(g_params, g_state, None, z, is_training=True)

  def global_rows(self, x):
    """The global batch's rows of a per-device array (all-gathered under pmap), else x."""
    if self.cfg.axis_name is None:
      return x
    return jax.lax.all_gather(x, self.cfg.axis_name, tiled=True)

  def family_models(self, d=None):
    return self.models._replace(e=self.encoder, d=d)


def _wae_objective_parts(ae: _AutoEncoder, recon_scale: float, g_params, g_state, x):
  """(code Q(x), scaled reconstruction cost, unscaled recon metric, new g_state)."""
  code, g_state = ae.encode(g_params, g_state, x)
  recon_x, g_state = ae.decode(g_params, g_state, code)
  err = jnp.mean(squared_error(x, recon_x))
  return code, recon_scale * err, err, g_state


def build_wae_gan(*, models, loss, cfg, config, bn_axis_name=None) -> Family:
  """WAE-GAN (see the module docstring): the critic D_Z on latents, config.wae settings."""
  _check(config, 'wae_gan', has_critic=True)
  lam = _setting(config, 'wae', 'lambda_', positive=False)
  recon_scale = _setting(config, 'wae', 'recon_scale')
  d_norm = 'spectral' if config.lipschitz.method == 'spectral' else (
      'layer' if config.model.d_norm == 'layer' else 'none')
  if config.model.d_norm == 'batch':
    raise ConfigError('family wae_gan\'s latent critic has no batch norm; set model.d_norm to '
                      'none, layer or spectral')
  critic = ae_models.build_latent_critic(
      hidden=_setting(config, 'wae', 'critic_hidden', integer=True),
      n_layers=_setting(config, 'wae', 'critic_layers', integer=True), d_norm=d_norm)
  ae = _AutoEncoder(models=models, cfg=cfg, config=config, gaussian=False,
                    bn_axis_name=bn_axis_name)

  def init(key, *, batch_size: int) -> Networks:
    g_key, d_key = jax.random.split(key)
    g_params, g_state = ae.init_g(g_key, batch_size)
    z = jnp.zeros((batch_size, models.z_dim), jnp.float32)
    d_params, d_state = critic.init(d_key, z, update_stats=True)
    return Networks(g_params, g_state, d_params, d_state)

  def critic_view(g_params, g_state, real, *, key, z_key, extra):
    del key
    code, _ = ae.encode(g_params, g_state, real['x'])
    prior = ae.draws.z(z_key, cfg.batch_size)
    return CriticView(real=prior, fake=jax.lax.stop_gradient(code)), extra

  def g_objective(g_params, g_state, real, *, key, critic):
    del key
    code, cost, err, g_state = _wae_objective_parts(ae, recon_scale, g_params, g_state,
                                                    real['x'])
    adversarial = loss.g(d_fake=critic(code))
    return cost + lam * adversarial, g_state, {'recon': err, 'adversarial': adversarial}

  return Family(name='wae_gan', init=init, critic_view=critic_view, g_objective=g_objective,
                models=ae.family_models(critic))


def build_wae_mmd(*, models, loss, cfg, config, bn_axis_name=None) -> Family:
  """WAE-MMD (see the module docstring): the IMQ MMD penalty, config.wae settings."""
  del loss  # no critic
  _check(config, 'wae_mmd', has_critic=False)
  lam = _setting(config, 'wae', 'lambda_', positive=False)
  recon_scale = _setting(config, 'wae', 'recon_scale')
  ae = _AutoEncoder(models=models, cfg=cfg, config=config, gaussian=False,
                    bn_axis_name=bn_axis_name)

  def g_objective(g_params, g_state, real, *, key, critic):
    del critic
    code, cost, err, g_state = _wae_objective_parts(ae, recon_scale, g_params, g_state,
                                                    real['x'])
    # The global batch's codes against as many prior samples (the same on every device).
    mmd = imq_mmd(ae.global_rows(code), sample_z(key, cfg.batch_size, models.z_dim))
    return cost + lam * mmd, g_state, {'recon': err, 'mmd': mmd}

  return Family(name='wae_mmd', init=ae.critic_free_networks, critic_view=None,
                g_objective=g_objective,
                models=ae.family_models())


def build_vae(*, models, loss, cfg, config, bn_axis_name=None) -> Family:
  """The VAE (see the module docstring): Gaussian encoder and likelihood, config.vae."""
  del loss  # no critic
  _check(config, 'vae', has_critic=False)
  obs_std = _setting(config, 'vae', 'obs_std')
  ae = _AutoEncoder(models=models, cfg=cfg, config=config, gaussian=True,
                    bn_axis_name=bn_axis_name)

  def g_objective(g_params, g_state, real, *, key, critic):
    del critic
    x = real['x']
    (mean, log_var), g_state = ae.encode(g_params, g_state, x)
    eps = ae.draws.z(jax.random.fold_in(key, REPARAM_STREAM), cfg.batch_size)
    recon_x, g_state = ae.decode(g_params, g_state, reparameterise(mean, log_var, eps))
    err = jnp.mean(squared_error(x, recon_x))
    nll = err / (2.0 * obs_std ** 2)
    kl = jnp.mean(gaussian_kl(mean, log_var))
    return nll + kl, g_state, {'recon': err, 'nll': nll, 'kl': kl}

  return Family(name='vae', init=ae.critic_free_networks, critic_view=None,
                g_objective=g_objective,
                models=ae.family_models())
