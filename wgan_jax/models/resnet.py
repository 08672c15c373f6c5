"""The SNGAN / WGAN-GP CIFAR ResNet (Miyato et al. 2018, Table 4; Gulrajani et al. 2017).

For images [S, S, C] with S a multiple of 8 (bottom width S // 8; 4 for CIFAR-10):

Generator (width g_ch: 256 in SNGAN, 128 in WGAN-GP): z -> Dense(bw * bw * g_ch) -> reshape
  -> 3 x BlockUp(g_ch) -> BN ReLU -> conv3x3 C -> tanh.
  BlockUp: main BN ReLU upsample2x conv3x3 BN ReLU conv3x3; shortcut upsample2x conv1x1.
Critic (width d_ch, 128 in both papers): OptimizedBlock -> BlockDown -> Block -> Block -> ReLU
  -> global pool over (H, W) -> Dense 1. The pool (d_pool) sums in SNGAN (snresnet_32.py:
  F.sum(h, axis=(2, 3))) and averages in WGAN-GP (gan_cifar_resnet.py: tf.reduce_mean(output,
  axis=[2,3])); the dense layer has a bias unless d_out_bias is false (SNGAN: nobias=True).
  OptimizedBlock: main conv3x3 ReLU conv3x3 avgpool2; shortcut avgpool2 conv1x1.
  BlockDown:      main ReLU conv3x3 ReLU conv3x3 avgpool2; shortcut conv1x1 avgpool2.
  Block:          main ReLU conv3x3 ReLU conv3x3; identity shortcut.
  d_norm 'spectral': every conv and the dense layer; 'layer': LayerNorm before each ReLU
  inside the critic's pre-activation blocks (gan_cifar_resnet.py's NORMALIZATION_D: N1 and
  N2 of ResidualBlock), none in the OptimizedBlock nor before the final ReLU.
Initialisation (both official ResNets): the blocks' 3x3 convolutions Glorot uniform with
  gain sqrt(2) (layers.GLOROT_UNIFORM_RELU), everything else (dense layers, 1x1 shortcuts,
  the output conv) plain Glorot uniform; biases zero.

1x1 shortcut convolutions commute with nearest upsampling and with average pooling, so
they run at the lower resolution (4x fewer FLOPs, the same function). Off accelerators the
upsample-then-conv3x3 of BlockUp runs as the equivalent transposed convolution
(conv.upsample_conv2x: 2.25x fewer FLOPs).
BN only with g_batch_norm.
Class conditioning (num_classes > 0): every BN of G is a conditional batch norm (per-class
gain and bias); the critic's head on the pooled features is layers.critic_head
('projection': + <embed(y), phi(x)>, 'acgan': an auxiliary classifier).
"""
from typing import Callable, Optional, Sequence, Tuple

import haiku as hk
import jax
import jax.numpy as jnp

from wgan_jax.models import layers
from wgan_jax.ops import conv

N_G_BLOCKS = 3
N_D_PLAIN_BLOCKS = 2
# model.d_pool: the critic's global pooling over (H, W).
POOLS = {'sum': jnp.sum, 'mean': jnp.mean}


def block_init(kernel: int) -> layers.Initializer:
  """The residual blocks' init: Glorot with gain sqrt(2) for the 3x3 convolutions, plain
  Glorot for the 1x1 shortcuts (sngan_projection resblocks.py: initializer /
  initializer_sc; gan_cifar_resnet.py: he_init=True / False)."""
  return layers.GLOROT_UNIFORM_RELU if kernel == 3 else layers.GLOROT_UNIFORM


class BlockUp(hk.Module):
  """Generator residual block that doubles H and W."""

  def __init__(self, channels: int, *, batch_norm: bool, spectral_norm: bool,
               conv_impl: str, bn_axis_name: Optional[str] = None, num_classes: int = 0,
               compute_dtype: layers.DType = jnp.float32, name: Optional[str] = None):
    super().__init__(name=name)
    self.channels, self.batch_norm, self.num_classes = channels, batch_norm, num_classes
    self.bn_axis_name = bn_axis_name
    self.conv_options = dict(spectral_norm=spectral_norm, compute_dtype=compute_dtype,
                             conv_impl=conv_impl)

  def _conv(self, h, kernel, name, is_training, upsample=False):
    return layers.Conv2D(self.channels, kernel, w_init=block_init(kernel), upsample=upsample,
                         name=name, **self.conv_options)(h, update_stats=is_training)

  def _bn_relu(self, h, labels, name, is_training):
    if self.batch_norm:
      h = layers.g_batch_norm(h, labels, num_classes=self.num_classes,
                              bn_axis_name=self.bn_axis_name, name=name,
                              is_training=is_training)
    return jax.nn.relu(h)

  def __call__(self, x: jax.Array, labels: Optional[jax.Array] = None, *,
               is_training: bool) -> jax.Array:
    """x [B, H, W, c_in], labels [B] (conditional BN) -> [B, 2H, 2W, channels]."""
    h = self._conv(self._bn_relu(x, labels, 'bn_1', is_training), 3, 'conv_1', is_training,
                   upsample=True)
    h = self._conv(self._bn_relu(h, labels, 'bn_2', is_training), 3, 'conv_2', is_training)
    return h + conv.upsample_nearest2x(self._conv(x, 1, 'shortcut', is_training))


class _CriticBlock(hk.Module):
  """Shared pieces of the critic blocks: conv layers and the optional LayerNorm + ReLU."""

  def __init__(self, channels: int, *, d_norm: str, conv_impl: str,
               compute_dtype: layers.DType = jnp.float32, name: Optional[str] = None):
    super().__init__(name=name)
    self.channels, self.d_norm = channels, d_norm
    self.conv_options = dict(spectral_norm=d_norm == 'spectral', compute_dtype=compute_dtype,
                             conv_impl=conv_impl)

  def _conv(self, h, kernel, name, update_stats):
    return layers.Conv2D(self.channels, kernel, w_init=block_init(kernel), name=name,
                         **self.conv_options)(h, update_stats=update_stats)

  def _norm_relu(self, h, name):
    if self.d_norm == 'layer':
      h = layers.LayerNorm(name=name)(h)
    return jax.nn.relu(h)


class OptimizedBlock(_CriticBlock):
  """The critic's first block: conv ReLU conv avgpool; shortcut avgpool conv1x1. No layer
  norm whatever d_norm (gan_cifar_resnet.py's OptimizedResBlockDisc1 has none)."""

  def __call__(self, x: jax.Array, *, update_stats: bool) -> jax.Array:
    """x [B, H, W, C] -> [B, H/2, W/2, channels]."""
    h = self._conv(x, 3, 'conv_1', update_stats)
    h = self._conv(jax.nn.relu(h), 3, 'conv_2', update_stats)
    s = self._conv(layers.avg_pool2x(x), 1, 'shortcut', update_stats)
    return layers.avg_pool2x(h) + s


class Block(_CriticBlock):
  """Pre-activation critic block; `down`: avgpool2 and a learnt 1x1 shortcut."""

  def __init__(self, channels: int, *, down: bool, **options):
    """options: those of `_CriticBlock`."""
    super().__init__(channels, **options)
    self.down = down

  def __call__(self, x: jax.Array, *, update_stats: bool) -> jax.Array:
    """x [B, H, W, c_in] -> [B, H', W', channels] (H' = H / 2 when down)."""
    h = self._conv(self._norm_relu(x, 'ln_1'), 3, 'conv_1', update_stats)
    h = self._conv(self._norm_relu(h, 'ln_2'), 3, 'conv_2', update_stats)
    learn_shortcut = self.down or x.shape[-1] != self.channels
    if self.down:
      h, x = layers.avg_pool2x(h), layers.avg_pool2x(x)
    s = self._conv(x, 1, 'shortcut', update_stats) if learn_shortcut else x
    return h + s


def generator_fn(*, data_shape: Sequence[int], g_ch: int, g_batch_norm: bool,
                 g_spectral_norm: bool, bn_axis_name: Optional[str] = None,
                 num_classes: int = 0, compute_dtype: layers.DType = jnp.float32,
                 conv_impl: str) -> Callable:
  """The generator's haiku function g(z [B, z_dim], labels [B] | None, is_training)
  -> x [B, H, W, C] float32 in [-1, 1]."""
  h_img, w_img, c_img = layers.check_image_shape(data_shape, 'resnet')
  bh, bw = h_img // 8, w_img // 8

  def g(z: jax.Array, labels: Optional[jax.Array] = None, *, is_training: bool) -> jax.Array:
    layers.check_labels(labels, num_classes, 'generator')
    h = layers.Dense(bh * bw * g_ch, spectral_norm=g_spectral_norm,
                     compute_dtype=compute_dtype, name='dense_in')(z, update_stats=is_training)
    h = h.reshape(-1, bh, bw, g_ch)
    for i in range(N_G_BLOCKS):
      h = BlockUp(g_ch, batch_norm=g_batch_norm, spectral_norm=g_spectral_norm,
                  conv_impl=conv_impl, bn_axis_name=bn_axis_name, num_classes=num_classes,
                  compute_dtype=compute_dtype, name=f'block_up_{i}')(h, labels, is_training=is_training)
    if g_batch_norm:
      h = layers.g_batch_norm(h, labels, num_classes=num_classes, bn_axis_name=bn_axis_name,
                              name='bn_out', is_training=is_training)
    x = layers.Conv2D(c_img, 3, spectral_norm=g_spectral_norm, compute_dtype=compute_dtype,
                      conv_impl=conv_impl, name='conv_out')(jax.nn.relu(h),
                                                            update_stats=is_training)
    return jnp.tanh(x.astype(jnp.float32))

  return g


def critic_fn(*, data_shape: Sequence[int], d_ch: int, d_norm: str, d_pool: str = 'sum',
              d_out_bias: bool = True, num_classes: int = 0, head: str = 'none',
              compute_dtype: layers.DType = jnp.float32, conv_impl: str) -> Callable:
  """The critic's haiku function d(x [B, H, W, C], labels, update_stats, with_logits)
  -> scores [B] (with_logits, acgan head: (scores, logits [B, num_classes]))."""
  layers.check_image_shape(data_shape, 'resnet')
  pool = POOLS[d_pool]

  def d(x: jax.Array, labels: Optional[jax.Array] = None, *, update_stats: bool,
        with_logits: bool = False):
    dt = dict(d_norm=d_norm, compute_dtype=compute_dtype, conv_impl=conv_impl)
    h = OptimizedBlock(d_ch, **dt, name='block_opt')(x, update_stats=update_stats)
    h = Block(d_ch, **dt, down=True, name='block_down')(h, update_stats=update_stats)
    for i in range(N_D_PLAIN_BLOCKS):
      h = Block(d_ch, **dt, down=False, name=f'block_{i}')(h, update_stats=update_stats)
    h = pool(jax.nn.relu(h), axis=(1, 2))
    return layers.critic_head(h, labels, head=head, num_classes=num_classes,
                              spectral_norm=d_norm == 'spectral', update_stats=update_stats,
                              with_logits=with_logits, compute_dtype=compute_dtype,
                              out_bias=d_out_bias)

  return d


def make_fns(*, data_shape: Sequence[int], g_ch: int, d_ch: int, g_batch_norm: bool,
             g_spectral_norm: bool, d_norm: str, d_pool: str = 'sum', d_out_bias: bool = True,
             bn_axis_name: Optional[str] = None, num_classes: int = 0, head: str = 'none',
             compute_dtype: layers.DType = jnp.float32,
             conv_impl: str) -> Tuple[Callable, Callable]:
  """(generator_fn, critic_fn) of the ResNet pair, ready for hk.transform_with_state.
  conv_impl: the convolution algorithm (resolved, `wgan_jax.ops.conv.resolve_impl`)."""
  numerics = dict(compute_dtype=compute_dtype, conv_impl=conv_impl)
  g = generator_fn(data_shape=data_shape, g_ch=g_ch, g_batch_norm=g_batch_norm,
                   g_spectral_norm=g_spectral_norm, bn_axis_name=bn_axis_name,
                   num_classes=num_classes, **numerics)
  d = critic_fn(data_shape=data_shape, d_ch=d_ch, d_norm=d_norm, d_pool=d_pool,
                d_out_bias=d_out_bias, num_classes=num_classes, head=head, **numerics)
  return g, d
