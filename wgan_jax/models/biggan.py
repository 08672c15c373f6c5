"""BigGAN (Brock et al. 2019), after BigGAN-PyTorch's BigGAN.py and layers.py.

For square images [S, S, C] with S in RESOLUTIONS (32, 64, 128, 256); widths are multiples
of g_ch / d_ch (the official G_ch / D_ch, 96 in the paper), per resolution as G_arch /
D_arch of BigGAN.py:

Generator: z [B, Z] is split into n_blocks + 1 equal chunks (hierarchical latents; Z must
  be a multiple of n_blocks + 1). The class goes through the shared embedding `shared`
  [num_classes, shared_dim] (not spectrally normalised, as the reference's nn.Embedding);
  block i's conditioning vector is [shared(y), z_{i+1}] [B, shared_dim + Z / (n + 1)].
  z_0 -> SN Dense(16 g_ch * 4 * 4) -> reshape [B, 4, 4, 16 g_ch] -> n x GBlock (doubling
  H, W; self-attention after the block whose output has side g_attn) -> BN (learnable
  gain / bias) -> ReLU -> SN conv3x3 C -> tanh.
  GBlock(c_in, c_out): cBN ReLU upsample conv3x3 cBN ReLU conv3x3; shortcut upsample
  conv1x1. cBN: gain = 1 + SN Dense(cond) and bias = SN Dense(cond) (no biases), one pair
  per batch norm.
Critic: n x DBlock (wide: hidden width = c_out; the first not pre-activated; average-pool
  2x in all but the last (32: the last two); self-attention after the first block whose
  output has side d_attn) -> ReLU -> global SUM pool -> SN Dense 1 (with bias) + the
  projection <embed(y), phi> (layers.critic_head, 'projection'; SN embedding).
  DBlock: [ReLU] conv3x3 ReLU conv3x3 [avgpool2]; shortcut (when c_in != c_out or
  downsampling) conv1x1 then avgpool2 (pre-activated) / avgpool2 then conv1x1 (first).
Self-attention (SA-GAN as in BigGAN-PyTorch's layers.Attention): theta, phi [C / 8],
  g [C / 2] and o [C] 1x1 SN convolutions without bias, phi and g max-pooled 2x2,
  softmax(theta^T phi) over the pooled positions, out = x + gamma * o(g beta^T), gamma a
  learnable scalar starting at 0.

Every convolution and dense layer of both players is spectrally normalised (BigGAN-PyTorch
G_param = D_param = 'SN'); the shared embedding is not. Weights start orthogonal (G_init =
D_init = 'ortho': haiku's Orthogonal on the [k * k * c_in, c_out] matrix, PyTorch's
init.orthogonal_ on [c_out, c_in * k * k]; the same distribution); biases start at zero
(PyTorch keeps its default uniform(+-1 / sqrt(fan_in)) bias init). The projection
embedding is Glorot uniform (layers.critic_head's) and spectrally normalised, so its
scale does not matter.

Batch norm (`BatchNorm`): BigGAN-PyTorch's myBN: training passes normalise with the
batch's mean and biased variance (mean of squares minus squared mean) in float32, eps
BN_EPS = 1e-5 (BN_eps, the official launch scripts' value), and update stored statistics
stored <- (1 - m) stored + m batch with momentum m = BN_MOMENTUM = 0.1; inference passes
normalise with the stored ones. With bn_axis_name the batch statistics are averaged over
that mapped axis (cross-replica BN: the global batch; under the `jit` strategy the batch
is already global). The generator also takes `bn_momentum` (a traced scalar): standing
statistics (`wgan_jax.eval.standing`) run training passes with m = 1 / (i + 1), so the
stored statistics become the plain mean of those passes' batch statistics (BigGAN's
accumulate_standing_stats).

Parameter counts equal the reference's `sum(p.numel() for p in G.parameters())` exactly
(tests/test_biggan.py): SN vectors u and sv are buffers there and model state here.

Compute dtype: the layers' (see layers.py); batch norm, the attention softmax and the
outputs are float32.
"""
from typing import Callable, Optional, Sequence, Tuple

import haiku as hk
import jax
import jax.numpy as jnp

from wgan_jax.errors import ConfigError
from wgan_jax.models import layers
from wgan_jax.ops import conv

RESOLUTIONS = (32, 64, 128, 256)
# BigGAN.py G_arch: (in, out) width multiples of each GBlock; bottom width 4.
G_ARCH = {
    32: ((4, 4), (4, 4), (4, 4)),
    64: ((16, 16), (16, 8), (8, 4), (4, 2)),
    128: ((16, 16), (16, 8), (8, 4), (4, 2), (2, 1)),
    256: ((16, 16), (16, 8), (8, 8), (8, 4), (4, 2), (2, 1)),
}
# BigGAN.py D_arch: (out width multiple, downsample) of each DBlock (the first takes the
# image's channels).
D_ARCH = {
    32: ((4, True), (4, True), (4, False), (4, False)),
    64: ((1, True), (2, True), (4, True), (8, True), (16, False)),
    128: ((1, True), (2, True), (4, True), (8, True), (16, True), (16, False)),
    256: ((1, True), (2, True), (4, True), (8, True), (8, True), (16, True), (16, False)),
}
BOTTOM_WIDTH = 4
BN_EPS = 1e-5        # BigGAN-PyTorch BN_eps (launch_BigGAN_bs256x8.sh: --BN_eps 1e-5)
BN_MOMENTUM = 0.1    # BigGAN-PyTorch layers.myBN / ccbn momentum
ORTHO_INIT = hk.initializers.Orthogonal()


def check_resolution(data_shape: Sequence[int]) -> int:
  """The side S of square [S, S, C] data with S in RESOLUTIONS; ConfigError otherwise."""
  shape = tuple(data_shape)
  if len(shape) != 3 or shape[0] != shape[1] or shape[0] not in RESOLUTIONS:
    raise ConfigError(f'model biggan needs square images of side '
                      f'{", ".join(map(str, RESOLUTIONS))} (data.image_size), got {shape}')
  return shape[0]


def z_chunks(resolution: int) -> int:
  """How many equal chunks z is split into: one per GBlock plus the first dense layer."""
  return len(G_ARCH[resolution]) + 1


def max_pool2x(x: jax.Array) -> jax.Array:
  """2x2 max pooling with stride 2, [B, H, W, C] -> [B, H/2, W/2, C]."""
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class BatchNorm(hk.Module):
  """BigGAN-PyTorch's myBN without affine part: x -> (x - mean) / sqrt(var + eps), float32.

  State `mean`, `var` [C] (start 0 and 1), updated in training passes with momentum m
  (module docstring); inference passes use them.
  """

  def __init__(self, *, bn_axis_name: Optional[str] = None, name: Optional[str] = None):
    super().__init__(name=name)
    self.bn_axis_name = bn_axis_name

  def __call__(self, x: jax.Array, *, is_training: bool,
               momentum: Optional[jax.Array] = None) -> jax.Array:
    """x [B, ..., C] -> float32 [B, ..., C]; momentum: None is BN_MOMENTUM."""
    x = x.astype(jnp.float32)
    c = x.shape[-1]
    mean_s = hk.get_state('mean', [c], jnp.float32, init=jnp.zeros)
    var_s = hk.get_state('var', [c], jnp.float32, init=jnp.ones)
    if is_training:
      axes = tuple(range(x.ndim - 1))
      mean, mean_sq = jnp.mean(x, axis=axes), jnp.mean(jnp.square(x), axis=axes)
      if self.bn_axis_name is not None:
        mean, mean_sq = jax.lax.pmean((mean, mean_sq), self.bn_axis_name)
      var = jnp.maximum(mean_sq - jnp.square(mean), 0.0)
      m = BN_MOMENTUM if momentum is None else momentum
      hk.set_state('mean', (1 - m) * mean_s + m * mean)
      hk.set_state('var', (1 - m) * var_s + m * var)
    else:
      mean, var = mean_s, var_s
    return (x - mean) * jax.lax.rsqrt(var + BN_EPS)


class SelfAttention(hk.Module):
  """BigGAN-PyTorch's layers.Attention (SA-GAN) with SN 1x1 convolutions; see the module
  docstring."""

  def __init__(self, *, conv_impl: str, compute_dtype: layers.DType = jnp.float32,
               name: Optional[str] = None):
    super().__init__(name=name)
    self.options = dict(spectral_norm=True, with_bias=False, w_init=ORTHO_INIT,
                        compute_dtype=compute_dtype, conv_impl=conv_impl)

  def __call__(self, x: jax.Array, *, update_stats: bool) -> jax.Array:
    """x [B, H, W, C] (H, W even, C a multiple of 8) -> [B, H, W, C]."""
    b, h, w, c = x.shape
    conv1x1 = lambda v, channels, name: layers.Conv2D(channels, 1, name=name, **self.options)(
        v, update_stats=update_stats)
    theta = conv1x1(x, c // 8, 'theta').reshape(b, h * w, c // 8)
    phi = max_pool2x(conv1x1(x, c // 8, 'phi')).reshape(b, h * w // 4, -1)
    g = max_pool2x(conv1x1(x, c // 2, 'g')).reshape(b, h * w // 4, -1)
    logits = jnp.einsum('bqk,bpk->bqp', theta, phi).astype(jnp.float32)
    beta = jax.nn.softmax(logits, axis=-1).astype(g.dtype)
    o = jnp.einsum('bqp,bpk->bqk', beta, g).reshape(b, h, w, c // 2)
    o = conv1x1(o, c, 'o')
    gamma = hk.get_parameter('gamma', [], jnp.float32, init=jnp.zeros)
    return x + gamma.astype(o.dtype) * o


class ConditionalBN(hk.Module):
  """BigGAN-PyTorch's ccbn with shared embeddings: BN(x) * (1 + gain(cond)) + bias(cond),
  gain and bias SN Dense layers without bias."""

  def __init__(self, *, bn_axis_name: Optional[str], compute_dtype: layers.DType,
               name: Optional[str] = None):
    super().__init__(name=name)
    self.bn_axis_name, self.compute_dtype = bn_axis_name, compute_dtype

  def __call__(self, x: jax.Array, cond: jax.Array, *, is_training: bool,
               momentum: Optional[jax.Array] = None) -> jax.Array:
    """x [B, H, W, C], cond [B, F] -> float32 [B, H, W, C]."""
    c = x.shape[-1]
    dense = lambda name: layers.Dense(c, spectral_norm=True, with_bias=False,
                                      w_init=ORTHO_INIT, compute_dtype=self.compute_dtype,
                                      name=name)(cond, update_stats=is_training)
    gain = 1.0 + dense('gain').astype(jnp.float32)
    bias = dense('bias').astype(jnp.float32)
    h = BatchNorm(bn_axis_name=self.bn_axis_name, name='bn')(
        x, is_training=is_training, momentum=momentum)
    return h * gain[:, None, None, :] + bias[:, None, None, :]


class GBlock(hk.Module):
  """BigGAN-PyTorch's GBlock with upsampling; see the module docstring."""

  def __init__(self, channels: int, *, bn_axis_name: Optional[str], conv_impl: str,
               compute_dtype: layers.DType = jnp.float32, name: Optional[str] = None):
    super().__init__(name=name)
    self.channels, self.bn_axis_name = channels, bn_axis_name
    self.compute_dtype = compute_dtype
    self.conv_options = dict(spectral_norm=True, w_init=ORTHO_INIT,
                             compute_dtype=compute_dtype, conv_impl=conv_impl)

  def __call__(self, x: jax.Array, cond: jax.Array, *, is_training: bool,
               momentum: Optional[jax.Array] = None) -> jax.Array:
    """x [B, H, W, c_in], cond [B, F] -> [B, 2H, 2W, channels]."""
    conv3 = lambda name, **kw: layers.Conv2D(self.channels, 3, name=name, **kw,
                                             **self.conv_options)
    cbn_relu = lambda v, name: jax.nn.relu(ConditionalBN(
        bn_axis_name=self.bn_axis_name, compute_dtype=self.compute_dtype, name=name)(
            v, cond, is_training=is_training, momentum=momentum))
    h = conv3('conv_1', upsample=True)(cbn_relu(x, 'bn_1'), update_stats=is_training)
    h = conv3('conv_2')(cbn_relu(h, 'bn_2'), update_stats=is_training)
    # The 1x1 shortcut commutes with nearest upsampling: run at the lower resolution.
    s = layers.Conv2D(self.channels, 1, name='shortcut', **self.conv_options)(
        x, update_stats=is_training)
    return h + conv.upsample_nearest2x(s)


class DBlock(hk.Module):
  """BigGAN-PyTorch's DBlock (wide); see the module docstring."""

  def __init__(self, channels: int, *, down: bool, preactivation: bool, conv_impl: str,
               compute_dtype: layers.DType = jnp.float32, name: Optional[str] = None):
    super().__init__(name=name)
    self.channels, self.down, self.preactivation = channels, down, preactivation
    self.conv_options = dict(spectral_norm=True, w_init=ORTHO_INIT,
                             compute_dtype=compute_dtype, conv_impl=conv_impl)

  def __call__(self, x: jax.Array, *, update_stats: bool) -> jax.Array:
    """x [B, H, W, c_in] -> [B, H', W', channels] (H' = H / 2 when down)."""
    conv = lambda v, kernel, name: layers.Conv2D(self.channels, kernel, name=name,
                                                 **self.conv_options)(v, update_stats=update_stats)
    h = jax.nn.relu(x) if self.preactivation else x
    h = conv(jax.nn.relu(conv(h, 3, 'conv_1')), 3, 'conv_2')
    if self.down:
      h = layers.avg_pool2x(h)
    if not (self.down or x.shape[-1] != self.channels):
      return h + x
    # conv1x1 and average pooling commute: pool first (4x fewer FLOPs, the same function).
    s = layers.avg_pool2x(x) if self.down else x
    return h + conv(s, 1, 'shortcut')


def generator_fn(*, data_shape: Sequence[int], g_ch: int, z_dim: int, shared_dim: int,
                 g_attn: int, num_classes: int, bn_axis_name: Optional[str] = None,
                 compute_dtype: layers.DType = jnp.float32, conv_impl: str) -> Callable:
  """The generator's haiku function g(z [B, z_dim], labels int [B], is_training,
  bn_momentum=None) -> images [B, S, S, C] float32 in [-1, 1]."""
  res = check_resolution(data_shape)
  channels = data_shape[-1]
  arch = G_ARCH[res]
  chunk = z_dim // z_chunks(res)

  def g(z: jax.Array, labels: Optional[jax.Array] = None, *, is_training: bool,
        bn_momentum: Optional[jax.Array] = None) -> jax.Array:
    layers.check_labels(labels, num_classes, 'generator')
    zs = [z[:, i * chunk:(i + 1) * chunk] for i in range(len(arch) + 1)]
    y = layers.ClassEmbed(num_classes, shared_dim, w_init=ORTHO_INIT, name='shared')(labels)
    sn = dict(spectral_norm=True, w_init=ORTHO_INIT, compute_dtype=compute_dtype)
    c0 = arch[0][0] * g_ch
    h = layers.Dense(BOTTOM_WIDTH * BOTTOM_WIDTH * c0, name='linear', **sn)(
        zs[0], update_stats=is_training)
    h = h.reshape(z.shape[0], BOTTOM_WIDTH, BOTTOM_WIDTH, c0)
    side = BOTTOM_WIDTH
    for i, (_, out_mult) in enumerate(arch):
      cond = jnp.concatenate([y, zs[i + 1]], axis=-1)
      h = GBlock(out_mult * g_ch, bn_axis_name=bn_axis_name, conv_impl=conv_impl,
                 compute_dtype=compute_dtype, name=f'block_{i}')(
                     h, cond, is_training=is_training, momentum=bn_momentum)
      side *= 2
      if side == g_attn:
        h = SelfAttention(conv_impl=conv_impl, compute_dtype=compute_dtype,
                          name=f'attention_{i}')(h, update_stats=is_training)
    h = BatchNorm(bn_axis_name=bn_axis_name, name='bn_out')(
        h, is_training=is_training, momentum=bn_momentum)
    c = h.shape[-1]
    h = h * hk.get_parameter('gain', [c], jnp.float32, init=jnp.ones) + hk.get_parameter(
        'bias', [c], jnp.float32, init=jnp.zeros)
    h = layers.Conv2D(channels, 3, name='conv_out', conv_impl=conv_impl, **sn)(
        jax.nn.relu(h), update_stats=is_training)
    return jnp.tanh(h.astype(jnp.float32))

  return g


def critic_fn(*, data_shape: Sequence[int], d_ch: int, d_attn: int, num_classes: int,
              head: str, compute_dtype: layers.DType = jnp.float32,
              conv_impl: str) -> Callable:
  """The critic's haiku function d(x [B, S, S, C], labels, update_stats, with_logits)
  -> scores [B] float32 (acgan head with_logits: (scores, logits))."""
  res = check_resolution(data_shape)

  def d(x: jax.Array, labels: Optional[jax.Array] = None, *, update_stats: bool,
        with_logits: bool = False):
    h, side, attended = x, res, False
    for i, (out_mult, down) in enumerate(D_ARCH[res]):
      h = DBlock(out_mult * d_ch, down=down, preactivation=i > 0, conv_impl=conv_impl,
                 compute_dtype=compute_dtype, name=f'block_{i}')(h, update_stats=update_stats)
      side //= 2 if down else 1
      if side == d_attn and not attended:
        attended = True
        h = SelfAttention(conv_impl=conv_impl, compute_dtype=compute_dtype,
                          name=f'attention_{i}')(h, update_stats=update_stats)
    h = jnp.sum(jax.nn.relu(h.astype(jnp.float32)), axis=(1, 2))
    return layers.critic_head(h, labels, head=head, num_classes=num_classes,
                              spectral_norm=True, update_stats=update_stats,
                              with_logits=with_logits, w_init=ORTHO_INIT,
                              compute_dtype=compute_dtype, out_bias=True)

  return d


def make_fns(*, data_shape: Sequence[int], g_ch: int, d_ch: int, z_dim: int,
             shared_dim: int, g_attn: int, d_attn: int, num_classes: int, head: str,
             bn_axis_name: Optional[str] = None, compute_dtype: layers.DType = jnp.float32,
             conv_impl: str) -> Tuple[Callable, Callable]:
  """(generator_fn, critic_fn) of the BigGAN pair, ready for hk.transform_with_state.

  g_attn / d_attn: the side at which each player has its self-attention block (0: none).
  ConfigError when the data is not square of a RESOLUTIONS side, z_dim is not a multiple
  of the latent chunks, or the pair is unconditional.
  """
  res = check_resolution(data_shape)
  if not num_classes:
    raise ConfigError('model biggan is class-conditional: set conditional.method=projection '
                      'on a labelled dataset')
  n = z_chunks(res)
  if z_dim % n:
    raise ConfigError(f'model.z_dim={z_dim} must be a multiple of {n} for model biggan at '
                      f'{res}x{res} (z is split over {n - 1} blocks and the first layer); '
                      f'e.g. {n * max(1, z_dim // n)}')
  numerics = dict(compute_dtype=compute_dtype, conv_impl=conv_impl)
  g = generator_fn(data_shape=data_shape, g_ch=g_ch, z_dim=z_dim, shared_dim=shared_dim,
                   g_attn=g_attn, num_classes=num_classes, bn_axis_name=bn_axis_name,
                   **numerics)
  d = critic_fn(data_shape=data_shape, d_ch=d_ch, d_attn=d_attn, num_classes=num_classes,
                head=head, **numerics)
  return g, d
