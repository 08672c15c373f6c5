"""The SNGAN ResNets by resolution (Miyato et al. 2018; Miyato & Koyama 2018), also WGAN-GP's.

The architecture follows the image side S (data_shape (S, S, C)) through `SCHEDULES`: each
resolution's bottom width, the generator's channel multipliers (of model.g_ch) and the
critic's (of model.d_ch), from the official code (sngan_projection gen_models/resnet*.py,
dis_models/snresnet*.py) and SNGAN's STL-10 table. Sides that are multiples of 8 up to 32
(the tests' small images, and non-square ones) take the 32x32 schedule with bottom width
S // 8; other resolutions are a ConfigError naming the valid ones.

Generator: z -> Dense(bw * bw * g_mults[0] * g_ch) -> reshape -> BlockUp(g_mults[1] * g_ch)
  -> ... -> BlockUp(g_mults[-1] * g_ch) -> BN ReLU -> conv3x3 C -> tanh.
  BlockUp(c_out): main BN ReLU upsample2x conv3x3(c_out) BN ReLU conv3x3(c_out); shortcut
  upsample2x conv1x1(c_out) (gen_models/resblocks.py: hidden_channels = out_channels).
Critic: OptimizedBlock(d_mults[0] * d_ch) -> Block(d_mults[1] * d_ch) -> ... -> ReLU
  -> global pool over (H, W) -> Dense 1; the first d_down blocks halve H and W.
  CIFAR (32): OptimizedBlock -> BlockDown -> Block -> Block, all of width d_ch (128 in both
  papers; G 256 in SNGAN, 128 in WGAN-GP). The pool (d_pool) sums in SNGAN
  (snresnet_32.py: F.sum(h, axis=(2, 3))) and averages in WGAN-GP (gan_cifar_resnet.py:
  tf.reduce_mean(output, axis=[2,3])); the dense layer has a bias unless d_out_bias is false
  (snresnet_32.py: nobias=True; snresnet.py, snresnet_64.py, snresnet_256.py: a bias).
  OptimizedBlock: main conv3x3 ReLU conv3x3 avgpool2; shortcut avgpool2 conv1x1.
  BlockDown:      main ReLU conv3x3(c_in) ReLU conv3x3(c_out) avgpool2; shortcut conv1x1
                  avgpool2 (dis_models/resblocks.py: hidden_channels = in_channels).
  Block:          main ReLU conv3x3(c_in) ReLU conv3x3(c_out); shortcut identity, or conv1x1
                  when c_in != c_out.
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
Class conditioning (num_classes > 0): the BNs of G's blocks are conditional batch norms
(per-class gain and bias; CategoricalConditionalBatchNormalization); the last BN, before
the output conv, is conditional at 32x32 (this codebase's CIFAR model, unchanged) and plain
at the larger resolutions, as in every sngan_projection generator (b5 / b6 / b7 / b8 =
L.BatchNormalization(ch)). The critic's head on the pooled features is layers.critic_head
('projection': + <embed(y), phi(x)>, 'acgan': an auxiliary classifier).
"""
from typing import Callable, NamedTuple, Optional, Sequence, Tuple

import haiku as hk
import jax
import jax.numpy as jnp

from wgan_jax.errors import ConfigError
from wgan_jax.models import layers
from wgan_jax.ops import conv


class Schedule(NamedTuple):
  """One resolution's ResNet pair.

  Attributes:
    bottom_width: the side of G's first feature map (the dense layer's output).
    g_mults: G's widths in units of model.g_ch: the dense layer's, then each BlockUp's
      output (len(g_mults) - 1 up-blocks, so S = bottom_width * 2 ** (len(g_mults) - 1)).
    d_mults: the critic blocks' output widths in units of model.d_ch, the OptimizedBlock's
      first.
    d_down: how many critic blocks halve H and W (the first d_down; the rest keep them).
    g_out_cbn: G's last BN (before the output conv) is conditional in conditional models.
  """
  bottom_width: int
  g_mults: Tuple[int, ...]
  d_mults: Tuple[int, ...]
  d_down: int
  g_out_cbn: bool = False


# Image side S -> schedule. The official base widths (model.g_ch, model.d_ch) are in the
# comments; the configs set them.
SCHEDULES = {
    # sngan_projection gen_models/resnet_32.py (ch 256), dis_models/snresnet_32.py (ch 128);
    # gan_cifar_resnet.py (DIM_G = DIM_D = 128). Miyato et al. 2018, Table 4.
    32: Schedule(4, (1, 1, 1, 1), (1, 1, 1, 1), 2, g_out_cbn=True),
    # SNGAN's STL-10 ResNet, Miyato et al. 2018, appendix Table 6 (no official code):
    # G dense 6x6x512, ResBlock up 256, 128, 64; D ResBlock down 64, 128, 256, 512,
    # ResBlock 1024 (g_ch = d_ch = 64).
    48: Schedule(6, (8, 4, 2, 1), (1, 2, 4, 8, 16), 4),
    # sngan_projection gen_models/resnet_64.py, dis_models/snresnet_64.py (ch 64).
    64: Schedule(4, (16, 8, 4, 2, 1), (1, 2, 4, 8, 16), 5),
    # sngan_projection gen_models/resnet.py (ResNetGenerator), dis_models/snresnet.py
    # (SNResNetProjectionDiscriminator), ch 64: Miyato & Koyama 2018's ImageNet model.
    128: Schedule(4, (16, 16, 8, 4, 2, 1), (1, 2, 4, 8, 16, 16), 5),
    # sngan_projection gen_models/resnet_256.py, dis_models/snresnet_256.py (ch 32 in
    # configs/sn_projection_dog_and_cat_256.yml).
    256: Schedule(4, (16, 16, 8, 8, 4, 2, 1), (1, 2, 4, 8, 8, 16, 16), 6),
}
# Sides up to this (multiples of 8, square or not) take SCHEDULES[32] with bottom S // 8.
SMALL_MAX = 32
# model.d_pool: the critic's global pooling over (H, W).
POOLS = {'sum': jnp.sum, 'mean': jnp.mean}


def schedule_for(data_shape: Sequence[int]) -> Tuple[Schedule, int, int]:
  """(schedule, bottom height, bottom width) of images data_shape (H, W, C); ConfigError
  (one line, naming the valid sizes) for a size without one."""
  h, w, _ = layers.check_image_shape(data_shape, 'resnet')
  if h == w and h in SCHEDULES:
    s = SCHEDULES[h]
    return s, s.bottom_width, s.bottom_width
  if max(h, w) <= SMALL_MAX:
    return SCHEDULES[32], h // 8, w // 8
  valid = ', '.join(f'{k}x{k}' for k in SCHEDULES)
  raise ConfigError(f"model 'resnet' has no schedule for {h}x{w} images; valid: {valid}, or "
                    f"multiples of 8 up to {SMALL_MAX} (set data.image_size)")


def critic_block_name(index: int, down: bool, n_down: int) -> str:
  """The haiku name of critic block `index` >= 1: block_down, block_down_1, ... for the
  downsampling ones, block_0, block_1, ... for the others."""
  if down:
    return 'block_down' if index == 1 else f'block_down_{index - 1}'
  return f'block_{index - n_down}'


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

  def _conv(self, h, kernel, name, update_stats, channels=None):
    return layers.Conv2D(channels or self.channels, kernel, w_init=block_init(kernel),
                         name=name, **self.conv_options)(h, update_stats=update_stats)

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
    """x [B, H, W, c_in] -> [B, H', W', channels] (H' = H / 2 when down); the first conv
    keeps c_in channels (dis_models/resblocks.py: hidden_channels = in_channels)."""
    h = self._conv(self._norm_relu(x, 'ln_1'), 3, 'conv_1', update_stats, x.shape[-1])
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
  c_img = layers.check_image_shape(data_shape, 'resnet')[2]
  schedule, bh, bw = schedule_for(data_shape)
  widths = [m * g_ch for m in schedule.g_mults]
  out_classes = num_classes if schedule.g_out_cbn else 0

  def g(z: jax.Array, labels: Optional[jax.Array] = None, *, is_training: bool) -> jax.Array:
    layers.check_labels(labels, num_classes, 'generator')
    h = layers.Dense(bh * bw * widths[0], spectral_norm=g_spectral_norm,
                     compute_dtype=compute_dtype, name='dense_in')(z, update_stats=is_training)
    h = h.reshape(-1, bh, bw, widths[0])
    for i, width in enumerate(widths[1:]):
      block = BlockUp(width, batch_norm=g_batch_norm, spectral_norm=g_spectral_norm,
                      conv_impl=conv_impl, bn_axis_name=bn_axis_name, num_classes=num_classes,
                      compute_dtype=compute_dtype, name=f'block_up_{i}')
      h = block(h, labels, is_training=is_training)
    if g_batch_norm:
      h = layers.g_batch_norm(h, labels if out_classes else None, num_classes=out_classes,
                              bn_axis_name=bn_axis_name, name='bn_out',
                              is_training=is_training)
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
  schedule = schedule_for(data_shape)[0]
  widths = [m * d_ch for m in schedule.d_mults]
  pool = POOLS[d_pool]

  def d(x: jax.Array, labels: Optional[jax.Array] = None, *, update_stats: bool,
        with_logits: bool = False):
    dt = dict(d_norm=d_norm, compute_dtype=compute_dtype, conv_impl=conv_impl)
    h = OptimizedBlock(widths[0], **dt, name='block_opt')(x, update_stats=update_stats)
    for i, width in enumerate(widths[1:], start=1):
      down = i < schedule.d_down
      name = critic_block_name(i, down, schedule.d_down)
      h = Block(width, **dt, down=down, name=name)(h, update_stats=update_stats)
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
