"""The auto-encoder families' networks (wgan_jax.families.autoencoders): encoders Q: x -> z,
the latent critic of WAE-GAN, and the WAE paper's convolutional decoders as ModelPairs.

Tolstikhin et al. 2018 (Wasserstein Auto-Encoders), Appendix C, and the official code
(github tolstikhin/wae, models.py: dcgan_encoder, dcgan_decoder with g_arch 'dcgan_mod',
z_adversary; configs.py config_mnist / config_celebA):

  encoder (images)  x -> 4 x [Conv k x k / 2 ('SAME'), BN, ReLU] with widths
                    ch, 2 ch, 4 ch, 8 ch (ch = model.g_ch; the paper's 128 .. 1024) -> Dense Z
                    (k = 4 MNIST, 5 CelebA). VAE: two Dense Z heads, mean and log-variance
                    (wae.py 'gaussian' encoder: log_sigmas_lin).
  decoder (images)  z -> Dense(s0 * s0 * 8 ch) -> ReLU -> reshape -> n x [UpConv (4 x 4 / 2),
                    BN, ReLU] with widths 4 ch, 2 ch (, ch) -> Conv k x k / 1 ('SAME') to C
                    -> tanh; MNIST ('wae_mnist') n = 2 (s0 = S / 4), CelebA ('wae_celeba')
                    n = 3 (s0 = S / 8). The official decoder's strided transposed convs are
                    5 x 5 on CelebA; here every strided one is the 4 x 4 / 2 UpConv of
                    wgan_jax.models.layers (the same output size). Its last stride-1
                    transposed conv is a plain 'SAME' conv (the same function class). The
                    official MNIST decoder ends in a sigmoid on [0, 1] pixels; images here
                    are in [-1, 1], hence tanh.
  encoder (toy)     x -> mlp_layers x [Dense mlp_hidden, ReLU] -> Dense Z (or mean, log-var).
  latent critic     z -> n_layers x [Dense hidden, ReLU] -> Dense 1 (wae.py z_adversary: 4 x
                    512), wgan_jax.models.mlp.critic_fn (d_norm: spectral / layer / none).

Every encoder's haiku modules live under the name scope 'encoder/' and the latent critic's
under 'latent_critic/', so that they merge with the decoder's (un-scoped) modules into one
player's dicts (wgan_jax.families.merge).

  encoder.init(rng, x, is_training=True) -> (params, state)
  encoder.apply(params, state, None, x, is_training=bool) -> (z [B, Z] | (mean, log_var), state)
"""
from typing import Callable, Optional, Sequence

import haiku as hk
import jax
import jax.numpy as jnp

from wgan_jax.models import dcgan, layers, mlp

ENCODER_SCOPE = 'encoder'
LATENT_CRITIC_SCOPE = 'latent_critic'

# model.name -> (kernel of the encoder's convs and the decoder's last conv, number of 2x
# up-sampling layers of the decoder): the WAE paper's MNIST and CelebA architectures.
CONV_ARCHS = {'wae_mnist': (4, 2), 'wae_celeba': (5, 3)}
ENCODER_WIDTHS = (1, 2, 4, 8)  # multipliers of ch, the official dcgan_encoder num_units / 2^k


def _heads(h: jax.Array, z_dim: int, gaussian: bool):
  """Dense Z (deterministic), or (mean, log_var) of two Dense Z heads (gaussian)."""
  if not gaussian:
    return layers.Dense(z_dim, name='dense_z')(h)
  return layers.Dense(z_dim, name='dense_mean')(h), layers.Dense(z_dim, name='dense_log_var')(h)


def mlp_encoder_fn(*, z_dim: int, hidden: int, n_layers: int, gaussian: bool) -> Callable:
  """The toy encoder q(x [B, ...], is_training) -> z [B, Z] or (mean, log_var) [B, Z] each."""

  def q(x: jax.Array, *, is_training: bool):
    del is_training  # no batch norm
    with hk.name_scope(ENCODER_SCOPE):
      h = x.reshape(x.shape[0], -1)
      for i in range(n_layers):
        h = jax.nn.relu(layers.Dense(hidden, w_init=layers.HE_UNIFORM, name=f'dense_{i}')(h))
      return _heads(h, z_dim, gaussian)

  return q


def conv_encoder_fn(*, z_dim: int, ch: int, kernel: int, gaussian: bool, conv_impl: str,
                    bn_axis_name: Optional[str] = None) -> Callable:
  """The WAE paper's image encoder q(x [B, S, S, C], is_training) -> z or (mean, log_var)."""

  def q(x: jax.Array, *, is_training: bool):
    with hk.name_scope(ENCODER_SCOPE):
      h = x
      for i, mult in enumerate(ENCODER_WIDTHS):
        h = layers.Conv2D(mult * ch, kernel, stride=2, padding='SAME', conv_impl=conv_impl,
                          name=f'conv_{i}')(h)
        h = jax.nn.relu(layers.batch_norm(bn_axis_name, name=f'bn_{i}')(
            h, is_training=is_training))
      return _heads(h.reshape(h.shape[0], -1), z_dim, gaussian)

  return q


def conv_decoder_fn(*, data_shape: Sequence[int], ch: int, kernel: int, n_up: int,
                    conv_impl: str, bn_axis_name: Optional[str] = None) -> Callable:
  """The WAE paper's image decoder g(z [B, Z], is_training) -> x [B, S, S, C] in [-1, 1]."""
  h_img, w_img, c_img = data_shape
  scale = 2 ** n_up
  if h_img % scale or w_img % scale:
    raise ValueError(f'the decoder up-samples {n_up} times; image sides must be multiples of '
                     f'{scale}, got {h_img}x{w_img}')
  s_h, s_w = h_img // scale, w_img // scale

  def g(z: jax.Array, labels=None, *, is_training: bool) -> jax.Array:
    layers.check_labels(labels, 0, 'decoder')
    h = jax.nn.relu(layers.Dense(s_h * s_w * 8 * ch, name='dense_in')(z))
    h = h.reshape(-1, s_h, s_w, 8 * ch)
    for i in range(n_up):
      h = layers.UpConv(8 * ch // 2 ** (i + 1), conv_impl=conv_impl, name=f'upconv_{i}')(h)
      h = jax.nn.relu(layers.batch_norm(bn_axis_name, name=f'bn_{i}')(h, is_training=is_training))
    x = layers.Conv2D(c_img, kernel, conv_impl=conv_impl, name='conv_out')(h)
    return jnp.tanh(x.astype(jnp.float32))

  return g


def make_conv_fns(name: str, *, data_shape: Sequence[int], g_ch: int, d_ch: int,
                  d_norm: str, conv_impl: str, bn_axis_name: Optional[str] = None,
                  d_out_bias: bool = True):
  """(decoder_fn, critic_fn) of the MODELS entry `name` (CONV_ARCHS): the WAE decoder and,
  as the pair's image critic (the gan family's; the auto-encoder families bring their own
  critic side), the SNGAN standard CNN critic (wgan_jax.models.dcgan)."""
  kernel, n_up = CONV_ARCHS[name]
  g = conv_decoder_fn(data_shape=data_shape, ch=g_ch, kernel=kernel, n_up=n_up,
                      conv_impl=conv_impl, bn_axis_name=bn_axis_name)
  d = dcgan.critic_fn(data_shape=data_shape, d_ch=d_ch, d_norm=d_norm, d_out_bias=d_out_bias,
                      bn_axis_name=bn_axis_name, conv_impl=conv_impl)
  return g, d


def build_encoder(model_config, *, data_shape: Sequence[int], z_dim: int, gaussian: bool,
                  conv_impl: str, bn_axis_name: Optional[str] = None
                  ) -> hk.TransformedWithState:
  """The encoder of model_config.name: the toy MLP ('mlp') or the paper's conv encoder
  ('wae_mnist', 'wae_celeba'); gaussian: a (mean, log_var) head (VAE)."""
  name = model_config.name
  if name == 'mlp':
    fn = mlp_encoder_fn(z_dim=z_dim, hidden=model_config.mlp_hidden,
                        n_layers=model_config.mlp_layers, gaussian=gaussian)
  else:
    fn = conv_encoder_fn(z_dim=z_dim, ch=model_config.g_ch, kernel=CONV_ARCHS[name][0],
                         gaussian=gaussian, conv_impl=conv_impl, bn_axis_name=bn_axis_name)
  return hk.transform_with_state(fn)


def build_latent_critic(*, hidden: int, n_layers: int, d_norm: str) -> hk.TransformedWithState:
  """WAE-GAN's critic D_Z on latents (wae.py z_adversary), d(z [B, Z], update_stats) -> [B]."""
  critic = mlp.critic_fn(hidden=hidden, n_layers=n_layers, activation='relu', d_norm=d_norm)

  def d(z: jax.Array, *, update_stats: bool):
    with hk.name_scope(LATENT_CRITIC_SCOPE):
      return critic(z, update_stats=update_stats)

  return hk.transform_with_state(d)


AUTOENCODER_MODELS = ('mlp',) + tuple(CONV_ARCHS)

