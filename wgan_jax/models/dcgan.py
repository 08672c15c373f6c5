"""The SNGAN "standard CNN" (Miyato et al. 2018, Table 3), generic in the image size S.

For images [S, S, C] with S a multiple of 8 (bottom width S // 8; 4 for CIFAR-10) and base
widths g_ch (default 64) and d_ch (default 64):

Generator: z [B, z_dim] -> Dense(bw * bw * 8 g_ch) -> BN ReLU -> reshape [B, bw, bw, 8 g_ch]
  -> UpConv 4 g_ch -> BN ReLU -> UpConv 2 g_ch -> BN ReLU -> UpConv g_ch -> BN ReLU
  -> Conv3x3 C -> tanh. (BN only with g_batch_norm; UpConv = ConvTranspose 4x4 / 2, pad 1.)
  The dense layer's batch norm is per feature (bw * bw * 8 g_ch of them), before the reshape,
  as in the official code: chainer-gan-lib common/net.py DCGANGenerator
  (L.BatchNormalization(bottom_width * bottom_width * ch)), compare_gan sndcgan.py and
  gan_cifar.py (Batchnorm over axis [0] of the dense output).
Critic (leaky ReLU 0.1 after every conv): conv3x3 d_ch, conv4x4/2 2 d_ch, conv3x3 2 d_ch,
  conv4x4/2 4 d_ch, conv3x3 4 d_ch, conv4x4/2 8 d_ch, conv3x3 8 d_ch -> flatten -> Dense 1
  (with a bias unless d_out_bias is false). Strided 4x4 convs pad by 1 on each side
  (S -> S / 2 exactly), 3x3 convs are 'SAME'. The widths are those of the official code
  (chainer-gan-lib common/net.py SNDCGANDiscriminator: ch // 8, ch // 4, ch // 4, ch // 2,
  ch // 2, ch, ch with ch = 512; compare_gan sndcgan.py the same): each strided conv doubles
  the width (the SNGAN paper's Table 3 lists 64, 64, 128, 128, 256, 256, 512 instead).
  d_norm 'spectral': every conv and the dense layer; 'layer': LayerNorm after every conv,
  before its activation; 'batch': batch norm after every conv but the first, before its
  activation (the official WGAN critic, WassersteinGAN models/dcgan.py DCGAN_D: BatchNorm2d
  after every conv but the initial one), each of `batch_groups` parts of the batch with its
  own statistics (layers.CriticBatchNorm; the train step passes batch_groups=2 for its
  [real; fake] pass).
Class conditioning (num_classes > 0): conditional batch norm in G (per-class gain and bias),
  layers.critic_head on the flattened critic features ('projection' or 'acgan').
activation 'relu' is the paper's (ReLU in G, leaky ReLU in D); 'tanh' puts tanh in place of
  both (the WGAN-GP paper's "tanh nonlinearities everywhere" architecture, Figure 2).
"""
from typing import Callable, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp

from wgan_jax.models import layers

# (kernel, stride, width multiplier of d_ch) per critic conv (chainer-gan-lib common/net.py,
# SNDCGANDiscriminator c0_0 ... c3_0).
CRITIC_CONVS = ((3, 1, 1), (4, 2, 2), (3, 1, 2), (4, 2, 4), (3, 1, 4), (4, 2, 8), (3, 1, 8))
# Width multipliers of g_ch: the dense layer's output, then the three up-convs.
G_WIDTHS = (8, 4, 2, 1)
STRIDED_PADDING = ((1, 1), (1, 1))


def generator_fn(*, data_shape: Sequence[int], g_ch: int, g_batch_norm: bool,
                 g_spectral_norm: bool, bn_axis_name: Optional[str] = None,
                 activation: str = 'relu', num_classes: int = 0,
                 compute_dtype: layers.DType = jnp.float32, conv_impl: str) -> Callable:
  """The generator's haiku function g(z [B, z_dim], labels [B] | None, is_training)
  -> x [B, H, W, C] float32 in [-1, 1]."""
  h_img, w_img, c_img = layers.check_image_shape(data_shape, 'dcgan')
  bh, bw = h_img // 8, w_img // 8
  act = layers.ACTIVATIONS[activation]

  def bn_relu(h, labels, name, is_training):
    if g_batch_norm:
      h = layers.g_batch_norm(h, labels, num_classes=num_classes, bn_axis_name=bn_axis_name,
                              name=name, is_training=is_training)
    return act(h)

  def g(z: jax.Array, labels: Optional[jax.Array] = None, *, is_training: bool) -> jax.Array:
    layers.check_labels(labels, num_classes, 'generator')
    width = G_WIDTHS[0] * g_ch
    h = layers.Dense(bh * bw * width, spectral_norm=g_spectral_norm,
                     compute_dtype=compute_dtype, name='dense_in')(z, update_stats=is_training)
    h = bn_relu(h, labels, 'bn_0', is_training).reshape(-1, bh, bw, width)
    for i, mult in enumerate(G_WIDTHS[1:], start=1):
      h = layers.UpConv(mult * g_ch, spectral_norm=g_spectral_norm, conv_impl=conv_impl,
                        compute_dtype=compute_dtype, name=f'upconv_{i}')(h, update_stats=is_training)
      h = bn_relu(h, labels, f'bn_{i}', is_training)
    x = layers.Conv2D(c_img, 3, spectral_norm=g_spectral_norm, conv_impl=conv_impl,
                      compute_dtype=compute_dtype, name='conv_out')(h, update_stats=is_training)
    return jnp.tanh(x.astype(jnp.float32))

  return g


def critic_fn(*, data_shape: Sequence[int], d_ch: int, d_norm: str,
              activation: str = 'relu', d_out_bias: bool = True, num_classes: int = 0,
              head: str = 'none', bn_axis_name: Optional[str] = None,
              compute_dtype: layers.DType = jnp.float32, conv_impl: str) -> Callable:
  """The critic's haiku function d(x [B, H, W, C], labels, update_stats, with_logits,
  batch_groups) -> scores [B] (with_logits, acgan head: (scores, logits [B, num_classes])).
  batch_groups (d_norm 'batch' only): the number of consecutive parts of x normalised
  separately."""
  layers.check_image_shape(data_shape, 'dcgan')
  sn = d_norm == 'spectral'
  act = layers.leaky_relu if activation == 'relu' else layers.ACTIVATIONS[activation]

  def d(x: jax.Array, labels: Optional[jax.Array] = None, *, update_stats: bool,
        with_logits: bool = False, batch_groups: int = 1):
    if batch_groups != 1 and d_norm != 'batch':
      raise ValueError(f'batch_groups needs a critic with batch norm, this one has d_norm '
                       f'{d_norm!r}')
    h = x
    for i, (k, stride, mult) in enumerate(CRITIC_CONVS):
      padding = 'SAME' if stride == 1 else STRIDED_PADDING
      h = layers.Conv2D(mult * d_ch, k, stride=stride, padding=padding, spectral_norm=sn,
                        conv_impl=conv_impl, compute_dtype=compute_dtype,
                        name=f'conv_{i}')(h, update_stats=update_stats)
      if d_norm == 'layer':
        h = layers.LayerNorm(name=f'ln_{i}')(h)
      if d_norm == 'batch' and i > 0:
        h = layers.CriticBatchNorm(bn_axis_name=bn_axis_name, name=f'bn_{i}')(
            h, update_stats=update_stats, groups=batch_groups)
      h = act(h)
    h = h.reshape(h.shape[0], -1)
    return layers.critic_head(h, labels, head=head, num_classes=num_classes, spectral_norm=sn,
                              update_stats=update_stats, with_logits=with_logits,
                              compute_dtype=compute_dtype, out_bias=d_out_bias)

  return d


def make_fns(*, data_shape: Sequence[int], g_ch: int, d_ch: int, g_batch_norm: bool,
             g_spectral_norm: bool, d_norm: str, bn_axis_name: Optional[str] = None,
             activation: str = 'relu', d_out_bias: bool = True, num_classes: int = 0,
             head: str = 'none', compute_dtype: layers.DType = jnp.float32,
             conv_impl: str) -> Tuple[Callable, Callable]:
  """(generator_fn, critic_fn) of the standard CNN pair, ready for hk.transform_with_state.
  conv_impl: the convolution algorithm (resolved, `wgan_jax.ops.conv.resolve_impl`)."""
  numerics = dict(compute_dtype=compute_dtype, conv_impl=conv_impl)
  g = generator_fn(data_shape=data_shape, g_ch=g_ch, g_batch_norm=g_batch_norm,
                   g_spectral_norm=g_spectral_norm, bn_axis_name=bn_axis_name,
                   activation=activation, num_classes=num_classes, **numerics)
  d = critic_fn(data_shape=data_shape, d_ch=d_ch, d_norm=d_norm, activation=activation,
                d_out_bias=d_out_bias, num_classes=num_classes, head=head,
                bn_axis_name=bn_axis_name, **numerics)
  return g, d
