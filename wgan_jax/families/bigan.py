"""The `bigan` family: BiGAN (Donahue et al. 2017, "Adversarial Feature Learning") and ALI
(Dumoulin et al. 2017, "Adversarially Learned Inference").

A generator G: z -> x (the run's model, config.model) and an encoder E: x -> z are trained
together (one optimizer: the g player) against a joint critic D(x, z) on pairs:

  critic's real  (x, E(x))      x a real batch
  critic's fake  (G(z), z)      z ~ N(0, I) [B, model.z_dim]
  (both stop_gradient: the critic update does not train G or E)

The critic minimises loss.d(d_real=D(x, E(x)), d_fake=D(G(z), z)) with the run's loss and
Lipschitz method (gp / r1 interpolate the pairs leaf by leaf, spectral norm via model.d_norm
'spectral' in the joint critic, clip on its weights). The generator side plays the same game
with the labels swapped:

  g_objective = loss.d(d_real=D(G(z), z), d_fake=D(x, E(x)))

as the BiGAN and ALI code train G and E (both invert the critic's targets: BiGAN's
train_gan.py adds the joint critic's 'opp_loss_real' / 'opp_loss_gen' to the encoder /
generator; ALI's compute_losses uses softplus(-D(G(z), z)) + softplus(D(x, E(x))) for the
generator side). With loss 'non_saturating' / 'minimax' this is the cross-entropy with swapped
labels, -log D(G(z), z) - log(1 - D(x, E(x))); with 'wasserstein' it is exactly the negated
critic objective, E[D(x, E(x))] - E[D(G(z), z)]; with 'hinge' the hinge with swapped labels.

Encoder (config.bigan.encoder): 'deterministic' (z = E(x), BiGAN) or 'gaussian' (ALI: E
outputs a mean and a log standard deviation, z = mean + exp(log_std) * eps with eps ~ N(0, I)
drawn from fold_in(key, ENCODER_STREAM): the reparameterisation trick). Network sets
(config.bigan.nets): wgan_jax.models.bigan. Class-conditional runs are refused (one line).
Evaluation: wgan_jax.eval.bigan (reconstruction error, latent W1).
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp

from wgan_jax import registry
from wgan_jax.errors import ConfigError
from wgan_jax.families.base import CriticView, Draws, Family, Networks, merge
from wgan_jax.models import bigan as bigan_models
from wgan_jax.ops import conv
from wgan_jax.rng import ENCODER_STREAM

ENCODERS = ('deterministic', 'gaussian')
DEFAULTS = {'encoder': 'deterministic', 'nets': 'mlp'}  # config.bigan


class Settings(NamedTuple):
  """config.bigan, checked."""
  encoder: str = 'deterministic'
  nets: str = 'mlp'


def read_settings(config) -> Settings:
  """config.bigan (missing keys: DEFAULTS), checked; ConfigError (one line) otherwise."""
  block = config.get('bigan') or {}
  get = lambda k: block.get(k, DEFAULTS[k])
  encoder = registry.lookup({e: e for e in ENCODERS}, get('encoder'), 'bigan.encoder')
  nets = registry.lookup({n: n for n in bigan_models.NETS}, get('nets'), 'bigan.nets')
  conditional = config.get('conditional')  # configs saved before it existed have none
  method = 'none' if conditional is None else conditional.get('method', 'none')
  if method != 'none':
    raise ConfigError(f"family 'bigan' is unconditional; got conditional.method={method!r} "
                      f"(set conditional.method=none, or drop the conditional / acgan flag)")
  return Settings(encoder, nets)


def encode(h: jax.Array, *, gaussian: bool, eps=None) -> jax.Array:
  """z from the encoder's output h: h itself (deterministic), or mean + exp(log_std) * eps
  with h = [mean, log_std] (gaussian; eps None: the mean)."""
  if not gaussian:
    return h
  mean, log_std = jnp.split(h, 2, axis=-1)
  return mean if eps is None else mean + jnp.exp(log_std) * eps


def build_networks(models, *, config, settings: Settings, bn_axis_name=None):
  """(encoder, joint critic) haiku transforms of the run's settings (wgan_jax.models.bigan)."""
  m = config.model
  d_norm = 'spectral' if config.lipschitz.method == 'spectral' else m.get('d_norm', 'none')
  if d_norm == 'batch' or (d_norm == 'layer' and settings.nets != 'mlp'):
    raise ConfigError(f"family 'bigan' with bigan.nets {settings.nets!r} takes model.d_norm "
                      f"none or spectral{' or layer' if settings.nets == 'mlp' else ''}, got "
                      f"{d_norm!r}")
  if settings.nets == 'ali_cifar10' and tuple(models.data_shape[:2]) != (32, 32):
    raise ConfigError(f"bigan.nets 'ali_cifar10' takes 32x32 images, got data shape "
                      f"{models.data_shape}; set data.image_size=32 or bigan.nets=bigan_mnist")
  e_fn, d_fn = bigan_models.make_fns(
      nets=settings.nets, z_dim=models.z_dim, gaussian=settings.encoder == 'gaussian',
      hidden=m.mlp_hidden, n_layers=m.mlp_layers, activation=m.get('activation', 'relu'),
      g_batch_norm=m.g_batch_norm, d_norm=d_norm, d_out_bias=m.get('d_out_bias', True),
      ch=m.d_ch, conv_impl=conv.resolve_impl(m.get('conv_impl', 'auto')),
      bn_axis_name=bn_axis_name)
  return bigan_models.transform(e_fn, d_fn)


def build(*, models, loss, cfg, config, bn_axis_name=None) -> Family:
  """The bigan Family: models.g is G; E and the joint critic come from config.bigan."""
  settings = read_settings(config)
  encoder, critic = build_networks(models, config=config, settings=settings,
                                   bn_axis_name=bn_axis_name)
  gaussian = settings.encoder == 'gaussian'
  g_apply, e_apply = models.g.apply, encoder.apply
  draws = Draws(models.z_dim, cfg.axis_name, cfg.num_shards)

  def init(key, *, batch_size: int) -> Networks:
    g_key, e_key, d_key = jax.random.split(key, 3)
    z = jnp.zeros((batch_size, models.z_dim), jnp.float32)
    x = jnp.zeros((batch_size,) + tuple(models.data_shape), jnp.float32)
    g_params, g_state = models.g.init(g_key, z, is_training=True)
    e_params, e_state = encoder.init(e_key, x, is_training=True)
    d_params, d_state = critic.init(d_key, (x, z), update_stats=True)
    return Networks(merge(g_params, e_params), merge(g_state, e_state), d_params, d_state)

  def encode_real(g_params, g_state, x, key):
    """(z = E(x) [b, Z] in training mode, the new state, the encoder's output)."""
    h, state = e_apply(g_params, g_state, None, x, is_training=True)
    eps = None
    if gaussian:
      eps = draws.z(jax.random.fold_in(key, ENCODER_STREAM), x.shape[0] * cfg.num_shards)
    return encode(h, gaussian=gaussian, eps=eps), state, h

  def critic_view(g_params, g_state, real, *, key, z_key, extra):
    x = real['x']
    z_real, _, _ = encode_real(g_params, g_state, x, key)
    z = draws.z(z_key, cfg.batch_size)
    fake, _ = g_apply(g_params, g_state, None, z, is_training=True)
    view = CriticView(real=(x, jax.lax.stop_gradient(z_real)),
                      fake=(jax.lax.stop_gradient(fake), z))
    return view, extra

  def g_objective(g_params, g_state, real, *, key, critic):
    x = real['x']
    z = draws.z(key, cfg.g_batch_size)
    fake, g_state = g_apply(g_params, g_state, None, z, is_training=True)
    z_real, g_state, h = encode_real(g_params, g_state, x, key)
    d_gen, d_enc = critic((fake, z)), critic((x, z_real))
    objective = loss.d(d_real=d_gen, d_fake=d_enc)  # the critic's game, labels swapped
    metrics = {'bigan/d_gen': jnp.mean(d_gen), 'bigan/d_enc': jnp.mean(d_enc),
               'bigan/z_enc_mean_sq': jnp.mean(z_real ** 2)}  # 1 for the prior
    if gaussian:
      metrics['bigan/enc_sigma'] = jnp.mean(jnp.exp(jnp.split(h, 2, axis=-1)[1]))
    return objective, g_state, metrics

  return Family(name='bigan', init=init, critic_view=critic_view, g_objective=g_objective,
                models=models._replace(e=encoder, d=critic, d_batch_norm=False))
