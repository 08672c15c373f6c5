"""Haiku layers shared by the generators and critics.

Shape glossary:
  B            batch size
  H, W, C      image height, width, channels (NHWC layout everywhere)
  c_in, c_out  input / output channels of a layer
  w            a weight: dense [c_in, c_out]; conv kernel [kh, kw, c_in, c_out]
  u            a weight's power-iteration vector, [c_out]

Spectral normalisation (Miyato et al. 2018) is a flag on `Dense`, `Conv2D` and `UpConv`
rather than a wrapper module: the layer keeps state `u` [c_out] and `sigma` [] and calls
`wgan_jax.lipschitz.spectral_normalize`. One power iteration runs (and the state is written)
only when the layer is called with `update_stats=True`; every other pass uses the stored `u`
and leaves the state bit-identical. Both state entries are created at init whatever the flag,
so the state tree has one structure from init on.

Convolutions (`Conv2D`, `UpConv`) run the pure-jnp algorithms of `wgan_jax.ops.conv`, with
the algorithm `conv_impl` ('xla', 'im2col' or 'winograd', model.conv_impl resolved once by
`conv.resolve_impl` when the models are built). `UpConv` is PyTorch's ConvTranspose2d(kernel 4,
stride 2, padding 1), never an XLA transposed convolution: with 'xla' (accelerators) one 3x3
convolution followed by depth-to-space (the sub-pixel formulation), with 'im2col' and
'winograd' (the CPU) four 2x2 convolutions, one per output phase (the phase up-conv, the
transposed convolution's own FLOPs). `Conv2D(upsample=True)` (nearest 2x upsampling, then a
3x3 conv) is the same kind of layer with a tied kernel and runs the same way.

Compute dtype (model.compute_dtype): `Dense`, `Conv2D` and `UpConv` take `compute_dtype`
(float32 by default, bfloat16 for mixed precision). Parameters are always stored in float32
and spectral normalisation (power iteration, sigma) runs on the float32 weight; the layer
then casts its input, normalised weight and bias to the compute dtype, so the matmul or
convolution and the activations between layers run in it. Batch norm and layer norm
normalise in float32, and the critic's scores and the generator's
samples leave the models in float32, so losses, gradient penalties and the optimiser only
ever see float32. With float32 every cast is the identity and nothing changes.
"""
from typing import Any, Callable, Optional, Sequence, Tuple

import haiku as hk
import jax
import jax.numpy as jnp

from wgan_jax import lipschitz
from wgan_jax.errors import ConfigError
from wgan_jax.ops import conv

Initializer = Callable[[Sequence[int], jnp.dtype], jax.Array]
DType = Any  # a jnp dtype, e.g. jnp.float32 or jnp.bfloat16

# Glorot (Xavier) uniform, std sqrt(2 / (fan_in + fan_out)): the default of every layer
# here, and in the official ResNets the dense layers, the 1x1 shortcuts and the output conv
# (sngan_projection: chainer GlorotUniform(); gan_cifar_resnet.py: tflib he_init=False).
GLOROT_UNIFORM = hk.initializers.VarianceScaling(1.0, 'fan_avg', 'uniform')
# Glorot uniform with gain sqrt(2), std sqrt(2) * sqrt(2 / (fan_in + fan_out)): the residual
# blocks' 3x3 convolutions of both official CIFAR ResNets (sngan_projection's resblocks:
# GlorotUniform(math.sqrt(2)); tflib's Conv2D he_init=True: sqrt(4 / (fan_in + fan_out))).
GLOROT_UNIFORM_RELU = hk.initializers.VarianceScaling(2.0, 'fan_avg', 'uniform')
# 'he' uniform, std sqrt(2 / fan_in): gan_toy.py's hidden layers.
HE_UNIFORM = hk.initializers.VarianceScaling(2.0, 'fan_in', 'uniform')

ACTIVATIONS = {'relu': jax.nn.relu, 'tanh': jnp.tanh}
D_NORMS = ('none', 'spectral', 'layer', 'batch')  # 'batch': model dcgan only
# model.compute_dtype values.
COMPUTE_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
# Negative slope of the SNGAN standard-CNN critic's leaky ReLU (Miyato et al., Table 3).
LEAKY_SLOPE = 0.1


# ----------------------------------------------------------------------------- spectral norm
def _unit_normal(shape, dtype):
  """A random unit-norm vector (the initial power-iteration vector u)."""
  v = jax.random.normal(hk.next_rng_key(), shape, dtype)
  return v / jnp.linalg.norm(v)


def spectral_weight(w: jax.Array, *, update_stats: bool) -> jax.Array:
  """w / sigma(w) with the calling module's persistent state `u` [c_out] and `sigma` [].

  Must be called inside a module's __call__. `sigma` is kept for monitoring only: the
  normalised weight always uses sigma = ||W u|| recomputed from the (possibly updated) u.

  Args:
    w: weight [..., c_out]; reshaped to [prod(...), c_out] (kh * kw * c_in rows for kernels).
    update_stats: run one power iteration and store the new u and sigma; otherwise use the
      stored u and write nothing.
  Returns:
    The spectrally normalised weight, same shape and dtype as w.
  """
  u = hk.get_state('u', [w.shape[-1]], jnp.float32, init=_unit_normal)
  hk.get_state('sigma', [], jnp.float32, init=jnp.ones)
  out = lipschitz.spectral_normalize(w, u, n_iters=1 if update_stats else 0)
  if update_stats:
    hk.set_state('u', out.u)
    hk.set_state('sigma', out.sigma)
  return out.w_sn


def _maybe_spectral_cast(w, *, spectral_norm: bool, update_stats: bool, dtype: DType):
  """The layer's weight: spectrally normalised in float32 if asked, then cast to dtype."""
  w = spectral_weight(w, update_stats=update_stats) if spectral_norm else w
  return w.astype(dtype)


def _add_bias(y: jax.Array, size: int, with_bias: bool) -> jax.Array:
  """y + b with the layer's float32 bias b [size] cast to y's dtype (when with_bias)."""
  if not with_bias:
    return y
  return y + hk.get_parameter('b', [size], jnp.float32, init=jnp.zeros).astype(y.dtype)


# ----------------------------------------------------------------------------- layers
class _WeightLayer(hk.Module):
  """What Dense, Conv2D and UpConv share: a float32 weight `w` (init w_init, default Glorot
  uniform), spectrally normalised when spectral_norm, cast to compute_dtype, and a float32
  bias `b` [c_out] (zeros) when with_bias."""

  def __init__(self, *, spectral_norm: bool = False, with_bias: bool = True,
               w_init: Optional[Initializer] = None, compute_dtype: DType = jnp.float32,
               name: Optional[str] = None):
    super().__init__(name=name)
    self.spectral_norm, self.with_bias = spectral_norm, with_bias
    self.w_init, self.compute_dtype = w_init or GLOROT_UNIFORM, compute_dtype

  def _weight(self, shape: Sequence[int], update_stats: bool) -> jax.Array:
    w = hk.get_parameter('w', list(shape), jnp.float32, init=self.w_init)
    return _maybe_spectral_cast(w, spectral_norm=self.spectral_norm, update_stats=update_stats,
                                dtype=self.compute_dtype)

  def _bias(self, y: jax.Array) -> jax.Array:
    return _add_bias(y, y.shape[-1], self.with_bias)


class Dense(_WeightLayer):
  """y = x @ w + b with w [c_in, c_out]; options: those of `_WeightLayer`."""

  def __init__(self, output_size: int, **options):
    super().__init__(**options)
    self.output_size = output_size

  def __call__(self, x: jax.Array, *, update_stats: bool = False) -> jax.Array:
    """x [..., c_in] -> [..., c_out] in compute_dtype; update_stats: advance the power
    iteration."""
    w = self._weight([x.shape[-1], self.output_size], update_stats)
    return self._bias(jnp.dot(x.astype(self.compute_dtype), w))


class Conv2D(_WeightLayer):
  """2-D convolution with kernel w [k, k, c_in, c_out] by `conv.conv2d` with the algorithm
  conv_impl (resolved, `conv.resolve_impl`); options: those of `_WeightLayer`."""

  def __init__(self, output_channels: int, kernel_shape: int, *, conv_impl: str,
               stride: int = 1, padding: conv.Padding = 'SAME', upsample: bool = False,
               **options):
    """upsample: nearest 2x upsampling of the input first (`conv.upsample_conv2x`; kernel 3,
    stride 1, 'SAME' only)."""
    super().__init__(**options)
    if upsample and (kernel_shape, stride, padding) != (3, 1, 'SAME'):
      raise ValueError('Conv2D(upsample=True) takes kernel 3, stride 1, SAME padding; got '
                       f'kernel {kernel_shape}, stride {stride}, padding {padding!r}')
    self.output_channels, self.kernel_shape = output_channels, kernel_shape
    self.stride, self.padding, self.upsample = stride, padding, upsample
    self.conv_impl = conv_impl

  def __call__(self, x: jax.Array, *, update_stats: bool = False) -> jax.Array:
    """x [B, H, W, c_in] -> [B, H', W', c_out] in compute_dtype; update_stats: advance the
    power iteration."""
    k = self.kernel_shape
    w = self._weight([k, k, x.shape[-1], self.output_channels], update_stats)
    x = x.astype(self.compute_dtype)
    if self.upsample:
      return self._bias(conv.upsample_conv2x(x, w, impl=self.conv_impl))
    return self._bias(conv.conv2d(x, w, stride=self.stride, padding=self.padding,
                                  impl=self.conv_impl))


class UpConv(_WeightLayer):
  """PyTorch ConvTranspose2d(c_in, c_out, 4, stride 2, padding 1) by `conv.upconv2x` with the
  algorithm conv_impl; options: those of `_WeightLayer`."""

  def __init__(self, output_channels: int, *, conv_impl: str, **options):
    super().__init__(**options)
    self.output_channels, self.conv_impl = output_channels, conv_impl

  def __call__(self, x: jax.Array, *, update_stats: bool = False) -> jax.Array:
    """x [B, H, W, c_in] -> [B, 2H, 2W, c_out] in compute_dtype; update_stats: advance the
    power iteration."""
    w = self._weight([4, 4, x.shape[-1], self.output_channels], update_stats)
    return self._bias(conv.upconv2x(x.astype(self.compute_dtype), w, impl=self.conv_impl))


# ----------------------------------------------------------------------------- normalisation
class LayerNorm(hk.Module):
  """Per-example normalisation over all non-batch axes, learnable per-channel scale / offset.

  Images [B, H, W, C] are normalised over (H, W, C), dense features [B, F] over F, as in the
  WGAN-GP critics (Gulrajani et al. 2017, tflib layernorm); scale and offset are [C] / [F].
  No statistic couples the examples of a batch.
  """

  def __init__(self, eps: float = 1e-5, name: Optional[str] = None):
    super().__init__(name=name)
    self.eps = eps

  def __call__(self, x: jax.Array) -> jax.Array:
    """x [B, ...] (any float dtype) -> float32, normalised in float32."""
    x = x.astype(jnp.float32)
    axes = tuple(range(1, x.ndim))
    mean = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
    scale = hk.get_parameter('scale', [x.shape[-1]], jnp.float32, init=jnp.ones)
    offset = hk.get_parameter('offset', [x.shape[-1]], jnp.float32, init=jnp.zeros)
    return (x - mean) * jax.lax.rsqrt(var + self.eps) * scale + offset


class CriticBatchNorm(hk.Module):
  """The critic's batch norm: every pass normalises with the statistics of its own batch.

  y = (x - mean_g) / sqrt(var_g + eps) * scale + offset per channel, where mean_g, var_g
  (biased) are taken over each of `groups` equal, consecutive parts of the batch (and over
  H, W): the train step sends real and fake through the critic in one pass [real; fake]
  with groups=2, so each half is normalised by its own statistics, exactly as the official
  WGAN critic that sees the real and the fake batch in two calls (WassersteinGAN main.py,
  netD(real) then netD(fake), in train mode; models/dcgan.py, DCGAN_D). No pass ever uses
  moving averages: that critic is never switched to eval mode, and the generator's loss
  and the gradient penalty also see batch statistics (of the fakes, of the interpolates).

  State: the moving averages `mean` and `var` [C] (decay 0.9, PyTorch's momentum 0.1; mean
  over the groups) are kept like the spectral-norm state, for inspection only: they are
  advanced only by passes with update_stats=True (the critic updates), never by the
  generator's or the penalty's passes, and nothing reads them. scale / offset are
  parameters, so weight clipping clips them as the official code clamps every parameter of
  netD. Normalises in float32. With bn_axis_name (pmap) the statistics are averaged over the
  devices, so a data-parallel run normalises with those of the global batch.
  """

  def __init__(self, *, decay: float = 0.9, eps: float = 1e-5,
               bn_axis_name: Optional[str] = None, name: Optional[str] = None):
    super().__init__(name=name)
    self.decay, self.eps, self.bn_axis_name = decay, eps, bn_axis_name

  def __call__(self, x: jax.Array, *, update_stats: bool, groups: int = 1) -> jax.Array:
    """x [B, ..., C] (B divisible by groups) -> float32 [B, ..., C]."""
    c = x.shape[-1]
    if x.shape[0] % groups:
      raise ValueError(f'batch {x.shape[0]} is not divisible into {groups} groups')
    h = x.astype(jnp.float32).reshape((groups, x.shape[0] // groups) + x.shape[1:])
    axes = tuple(range(1, h.ndim - 1))
    mean = jnp.mean(h, axis=axes, keepdims=True)
    mean_sq = jnp.mean(jnp.square(h), axis=axes, keepdims=True)
    if self.bn_axis_name is not None:
      mean, mean_sq = jax.lax.pmean((mean, mean_sq), self.bn_axis_name)
    var = jnp.maximum(mean_sq - jnp.square(mean), 0.0)
    scale = hk.get_parameter('scale', [c], jnp.float32, init=jnp.ones)
    offset = hk.get_parameter('offset', [c], jnp.float32, init=jnp.zeros)
    mean_ema = hk.get_state('mean', [c], jnp.float32, init=jnp.zeros)
    var_ema = hk.get_state('var', [c], jnp.float32, init=jnp.ones)
    if update_stats:
      group_mean = lambda v: jnp.mean(v.reshape(groups, c), axis=0)
      hk.set_state('mean', self.decay * mean_ema + (1 - self.decay) * group_mean(mean))
      hk.set_state('var', self.decay * var_ema + (1 - self.decay) * group_mean(var))
    y = (h - mean) * jax.lax.rsqrt(var + self.eps) * scale + offset
    return y.reshape(x.shape)


def batch_norm(bn_axis_name: Optional[str], name: Optional[str] = None) -> hk.BatchNorm:
  """The generator's batch norm (decay 0.9, learnable scale / offset, optional cross-replica)."""
  return hk.BatchNorm(create_scale=True, create_offset=True, decay_rate=0.9,
                      cross_replica_axis=bn_axis_name, name=name)


class ConditionalBatchNorm(hk.Module):
  """Batch norm with a per-class gain and bias (de Vries et al. 2017; Miyato & Koyama 2018).

  y = gamma[label] * BN(x) + beta[label]; the embeddings gamma, beta [num_classes, C] start
  at 1 and 0, so at initialisation this is the plain batch norm without scale / offset.
  """

  def __init__(self, num_classes: int, bn_axis_name: Optional[str] = None,
               name: Optional[str] = None):
    super().__init__(name=name)
    self.num_classes = num_classes
    self.bn_axis_name = bn_axis_name

  def __call__(self, x: jax.Array, labels: jax.Array, *, is_training: bool) -> jax.Array:
    """x [B, ..., C], labels int [B] -> [B, ..., C]."""
    h = hk.BatchNorm(create_scale=False, create_offset=False, decay_rate=0.9,
                     cross_replica_axis=self.bn_axis_name, name='bn')(x, is_training=is_training)
    c = x.shape[-1]
    gamma = hk.get_parameter('gamma', [self.num_classes, c], jnp.float32, init=jnp.ones)
    beta = hk.get_parameter('beta', [self.num_classes, c], jnp.float32, init=jnp.zeros)
    shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (c,)
    return h * gamma[labels].reshape(shape) + beta[labels].reshape(shape)


def g_batch_norm(h: jax.Array, labels: Optional[jax.Array], *, num_classes: int,
                 bn_axis_name: Optional[str], name: str, is_training: bool) -> jax.Array:
  """The generator's batch norm in float32 (statistics, scale and offset whatever h's dtype):
  conditional when num_classes > 0, else `batch_norm`."""
  h = h.astype(jnp.float32)
  if num_classes:
    return ConditionalBatchNorm(num_classes, bn_axis_name, name=name)(
        h, labels, is_training=is_training)
  return batch_norm(bn_axis_name, name=name)(h, is_training=is_training)


def check_labels(labels: Optional[jax.Array], num_classes: int, player: str) -> None:
  """Labels are required by a conditional model and refused by an unconditional one."""
  if num_classes and labels is None:
    raise ValueError(f'this conditional {player} ({num_classes} classes) needs labels=')
  if not num_classes and labels is not None:
    raise ValueError(f'this {player} is unconditional; call it without labels=')


# ----------------------------------------------------------------------------- critic heads
# How the critic uses the class (config.conditional.method).
CRITIC_HEADS = ('none', 'projection', 'acgan')


class ClassEmbed(hk.Module):
  """A class embedding matrix [num_classes, dim], spectrally normalised on request.

  With spectral_norm the whole matrix is divided by its largest singular value (the
  SNEmbedID of Miyato & Koyama 2018), with the power-iteration state of this module.
  """

  def __init__(self, num_classes: int, dim: int, *, spectral_norm: bool = False,
               w_init: Optional[Initializer] = None, name: Optional[str] = None):
    super().__init__(name=name)
    self.num_classes, self.dim = num_classes, dim
    self.spectral_norm = spectral_norm
    self.w_init = w_init or GLOROT_UNIFORM

  def __call__(self, labels: jax.Array, *, update_stats: bool = False) -> jax.Array:
    """labels int [B] -> [B, dim]."""
    w = hk.get_parameter('embeddings', [self.num_classes, self.dim], jnp.float32,
                         init=self.w_init)
    w = _maybe_spectral_cast(w, spectral_norm=self.spectral_norm, update_stats=update_stats,
                             dtype=jnp.float32)
    return w[labels]


def critic_head(phi: jax.Array, labels: Optional[jax.Array], *, head: str, num_classes: int,
                spectral_norm: bool, update_stats: bool, with_logits: bool,
                w_init: Optional[Initializer] = None, compute_dtype: DType = jnp.float32,
                out_bias: bool = True):
  """The critic's output on its features phi [B, F]: scores [B], or (scores, logits).

  out_bias: whether dense_out has a bias (model.d_out_bias; sngan_projection's ResNet
  critic has none, snresnet_32.py: SNLinear(ch, 1, nobias=True); the Wasserstein loss
  cancels a bias, the hinge loss does not).

  head 'none':       scores = dense_out(phi).
  head 'projection': scores = dense_out(phi) + <class_embed(y), phi> (Miyato & Koyama
                     2018, eq. 3); labels None gives the label-free part dense_out(phi)
                     (e.g. a critic contour plot).
  head 'acgan':      scores = dense_out(phi); with_logits also returns the auxiliary
                     classifier's logits acgan_out(phi) [B, num_classes] (Odena et al. 2017).
  The adversarial scores never depend on the AC head, so gradient penalties see only them.
  Scores and logits are float32 whatever compute_dtype (that of the dense layers).
  """
  scores = Dense(1, spectral_norm=spectral_norm, with_bias=out_bias, w_init=w_init,
                 compute_dtype=compute_dtype, name='dense_out')(phi, update_stats=update_stats)
  scores = jnp.squeeze(scores, axis=-1)
  if head == 'projection' and labels is not None:
    embed = ClassEmbed(num_classes, phi.shape[-1], spectral_norm=spectral_norm,
                       name='class_embed')(labels, update_stats=update_stats)
    scores = scores + jnp.sum(embed * phi.astype(jnp.float32), axis=-1)
  scores = scores.astype(jnp.float32)
  if not with_logits:
    return scores
  if head != 'acgan':
    raise ValueError(f'with_logits needs an acgan critic, this one has head {head!r}')
  logits = Dense(num_classes, spectral_norm=spectral_norm, w_init=w_init,
                 compute_dtype=compute_dtype, name='acgan_out')(phi, update_stats=update_stats)
  return scores, logits.astype(jnp.float32)


# ----------------------------------------------------------------------------- resampling
def avg_pool2x(x: jax.Array) -> jax.Array:
  """2x2 average pooling with stride 2, [B, H, W, C] -> [B, H/2, W/2, C]."""
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def leaky_relu(x: jax.Array) -> jax.Array:
  return jax.nn.leaky_relu(x, LEAKY_SLOPE)


def instance_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
  """Instance normalisation without affine parameters (Ulyanov et al. 2016; PyTorch's
  nn.InstanceNorm2d(affine=False, track_running_stats=False), CycleGAN's default norm):
  each example's each channel of x [B, H, W, C] normalised over (H, W) with the biased
  variance, in float32; no statistic couples the examples of a batch, none is stored."""
  h = x.astype(jnp.float32)
  mean = jnp.mean(h, axis=(1, 2), keepdims=True)
  var = jnp.var(h, axis=(1, 2), keepdims=True)
  return ((h - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


# ----------------------------------------------------------------------------- shape checks
def check_image_shape(data_shape: Sequence[int], model: str) -> Tuple[int, int, int]:
  """(H, W, C) of an image shape whose sides are multiples of 8; ConfigError otherwise."""
  shape = tuple(data_shape)
  if len(shape) != 3 or min(shape) < 1:
    raise ConfigError(f'model {model!r} needs image data_shape (H, W, C), got {shape}')
  h, w, c = shape
  if h % 8 or w % 8:
    raise ConfigError(f'model {model!r} needs an image size that is a multiple of 8, '
                      f'got {h}x{w}')
  return h, w, c

