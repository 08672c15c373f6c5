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

`UpConv` is PyTorch's ConvTranspose2d(kernel 4, stride 2, padding 1), never an XLA transposed
convolution (XLA:CPU differentiates those about 15x more slowly): on accelerators one 3x3
convolution followed by depth-to-space (the sub-pixel formulation), on CPU four 2x2
convolutions, one per output phase (`phase_upconv2x`, the transposed convolution's own
FLOPs). `Conv2D(upsample=True)` (nearest 2x upsampling, then a 3x3 conv) is the same kind of
layer with a tied kernel and runs the same way.

Convolutions on CPU (`conv_impl`): matrix products (im2col, kn2row) and Winograd F(2x2, 3x3)
for 3x3 stride-1 layers; XLA's convolutions elsewhere. The function is the same up to float
rounding; benchmarks/README.md has the measured speeds.

Compute dtype (model.compute_dtype): `Dense`, `Conv2D` and `UpConv` take `compute_dtype`
(float32 by default, bfloat16 for mixed precision). Parameters are always stored in float32
and spectral normalisation (power iteration, sigma) runs on the float32 weight; the layer
then casts its input, normalised weight and bias to the compute dtype, so the matmul or
convolution and the activations between layers run in it. Batch norm and layer norm
normalise in float32 (`norm_in_float32`), and the critic's scores and the generator's
samples leave the models in float32, so losses, gradient penalties and the optimiser only
ever see float32. With float32 every cast is the identity and nothing changes.
"""
import functools
import os
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from wgan_jax import lipschitz
from wgan_jax.errors import ConfigError

Initializer = Callable[[Sequence[int], jnp.dtype], jax.Array]
DType = Any  # a jnp dtype, e.g. jnp.float32 or jnp.bfloat16
Padding = Union[str, int, Sequence[Tuple[int, int]]]

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
CONV_DIMENSIONS = ('NHWC', 'HWIO', 'NHWC')
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
class Dense(hk.Module):
  """y = x @ w + b with w [c_in, c_out], optionally spectrally normalised."""

  def __init__(self, output_size: int, *, spectral_norm: bool = False,
               with_bias: bool = True, w_init: Optional[Initializer] = None,
               compute_dtype: DType = jnp.float32, name: Optional[str] = None):
    super().__init__(name=name)
    self.output_size = output_size
    self.spectral_norm = spectral_norm
    self.with_bias = with_bias
    self.w_init = w_init or GLOROT_UNIFORM
    self.compute_dtype = compute_dtype

  def __call__(self, x: jax.Array, *, update_stats: bool = False) -> jax.Array:
    """x [..., c_in] -> [..., c_out] in compute_dtype; update_stats: advance the power
    iteration."""
    w = hk.get_parameter('w', [x.shape[-1], self.output_size], jnp.float32, init=self.w_init)
    w = _maybe_spectral_cast(w, spectral_norm=self.spectral_norm, update_stats=update_stats,
                             dtype=self.compute_dtype)
    y = jnp.dot(x.astype(self.compute_dtype), w)
    return _add_bias(y, self.output_size, self.with_bias)


def _explicit_padding(padding: Padding):
  """'SAME' / 'VALID' unchanged; an int p -> ((p, p), (p, p)); pairs unchanged."""
  if isinstance(padding, str):
    return padding
  if isinstance(padding, int):
    return ((padding, padding), (padding, padding))
  return tuple(tuple(p) for p in padding)


# How convolutions are computed: environment variable WGAN_JAX_CONV_IMPL, read when a model
# is traced (a performance choice; the function is the same up to float rounding).
CONV_IMPL_ENV = 'WGAN_JAX_CONV_IMPL'
CONV_IMPLS = ('auto', 'xla', 'im2col', 'winograd')
# Winograd needs enough channels for its batched products to pay for the transforms
# (measured on XLA:CPU: slower than im2col at c_in = 3, faster from 64 on).
WINOGRAD_MIN_C_IN = 16


def conv_impl() -> str:
  """'xla', 'im2col' or 'winograd': $WGAN_JAX_CONV_IMPL, where 'auto' (the default) is
  'winograd' on CPU and 'xla' elsewhere.

  'im2col': every convolution is a matrix product (`im2col_conv2d`). On XLA:CPU these run at
  1.3-3.5x the FLOP rate of the convolution thunks once gradients are included, and whole
  train steps leave some filter-gradient convolutions in a layout that runs 10-50x more
  slowly still (measured: 57 s against 2.4 s for one SNGAN standard-CNN step, batch 64;
  benchmarks/README.md). 'winograd': the same, except that 3x3 and 2x2 stride-1 convolutions
  (the up-convs' phases among them) use Winograd's F(2x2, 3x3) / F(2x2, 2x2)
  (`winograd_conv2d`, 2.25x / 1.78x fewer multiplications, relative error about 2e-6 instead
  of 1e-7) and 4x4 / stride-2 ones a space-to-depth F(2x2, 2x2) (`down4x4_conv2d`).
  'xla': lax.conv_general_dilated, what accelerators use (cuDNN / the TPU's convolution
  units). Transposed convolutions and upsample-convs follow the same choice (`upconv2x`).
  """
  impl = os.environ.get(CONV_IMPL_ENV, 'auto') or 'auto'
  if impl not in CONV_IMPLS:
    raise ConfigError(f'{CONV_IMPL_ENV}={impl!r} is not a convolution implementation; '
                      f'valid: {", ".join(CONV_IMPLS)}')
  if impl == 'auto':
    return 'winograd' if jax.default_backend() == 'cpu' else 'xla'
  return impl


def _resolve_padding(padding: Padding, in_hw: Sequence[int], kernel_hw: Sequence[int],
                     stride: int) -> Tuple[Tuple[int, int], Tuple[int, int]]:
  """Explicit ((top, bottom), (left, right)) padding of 'SAME' / 'VALID' / int / pairs."""
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(tuple(in_hw), tuple(kernel_hw), (stride, stride), padding)
  else:
    padding = _explicit_padding(padding)
  return tuple(tuple(int(p) for p in pair) for pair in padding)


def _output_hw(x: jax.Array, w: jax.Array, stride: int, pads) -> Tuple[int, int]:
  return tuple((x.shape[1 + a] + sum(pads[a]) - w.shape[a]) // stride + 1 for a in (0, 1))


def _pad_hw(x: jax.Array, pads) -> jax.Array:
  return jnp.pad(x, ((0, 0), pads[0], pads[1]) + ((0, 0),) * (x.ndim - 3))


def _patches(x_pad: jax.Array, kh: int, kw: int, stride: int,
             out_hw: Tuple[int, int]) -> jax.Array:
  """The kh * kw strided slices of x_pad, stacked tap-major: [B, H', W', kh kw C]."""
  (b, c), (h_out, w_out) = (x_pad.shape[0], x_pad.shape[-1]), out_hw
  taps = [jax.lax.slice(x_pad, (0, i, j, 0),
                        (b, i + (h_out - 1) * stride + 1, j + (w_out - 1) * stride + 1, c),
                        (1, stride, stride, 1))
          for i in range(kh) for j in range(kw)]
  return jnp.stack(taps, axis=3).reshape(b, h_out, w_out, kh * kw * c)


def im2col_conv2d(x: jax.Array, w: jax.Array, *, stride: int,
                  pads: Tuple[Tuple[int, int], Tuple[int, int]], impl: str = 'im2col') -> jax.Array:
  """conv2d as one matrix product: patches [B H' W', kh kw c_in] @ w [kh kw c_in, c_out].

  The patches are the kh * kw strided slices of the padded input, stacked tap-major
  (the row order of w.reshape). Stride-1 layers with fewer output than input channels (image
  outputs) go through `kn2row_conv2d` instead, whose intermediate is the smaller one.
  impl ('im2col' / 'winograd'): how the convolutions of the gradient are computed.
  """
  if stride == 1 and w.shape[3] < w.shape[2]:
    return kn2row_conv2d(x, w, pads=pads)
  return _im2col(x, w, stride, pads, impl)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _im2col(x, w, stride, pads, impl):
  """Custom gradients: the kernel gradient patches^T @ dy from the saved patches; the input
  gradient a convolution of dy (stride 1: with the flipped kernel; the 4x4 / 2 / 1 critic
  layers: `phase_upconv2x` of dy) instead of scatter-adding overlapping patch gradients
  (measured 2-3x slower on XLA:CPU); other strides scatter-add."""
  return _im2col_fwd(x, w, stride, pads, impl)[0]


def _im2col_fwd(x, w, stride, pads, impl):
  del impl
  kh, kw, c_in, c_out = w.shape
  patches = _patches(_pad_hw(x, pads), kh, kw, stride, _output_hw(x, w, stride, pads))
  return jnp.dot(patches, w.reshape(kh * kw * c_in, c_out)), (x, w, patches)


def _im2col_bwd(stride, pads, impl, residuals, dy):
  x, w, patches = residuals
  kh, kw, c_in, c_out = w.shape
  dw = jnp.dot(patches.reshape(-1, kh * kw * c_in).T, dy.reshape(-1, c_out)).reshape(w.shape)
  if stride == 1 and all(p <= k - 1 for k, pair in zip((kh, kw), pads) for p in pair):
    # y[o] = sum_k x[o + k - p_lo] w[k]
    #   =>  dx[q] = sum_k' dy[q + k' - (k - 1 - p_lo)] w[k - 1 - k'].
    dx = conv2d(dy, jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2),
                padding=_transposed_pads(w.shape, pads), impl=impl)
  elif (kh, kw, stride, pads) == (4, 4, 2, ((1, 1), (1, 1))) and not (x.shape[1] % 2
                                                                        or x.shape[2] % 2):
    dx = phase_upconv2x(dy, w.transpose(0, 1, 3, 2), impl)  # the transpose: ConvTranspose(4, 2, 1)
  else:
    _, patches_vjp = jax.vjp(lambda x_: _patches(_pad_hw(x_, pads), kh, kw, stride,
                                                 dy.shape[1:3]), x)
    dx, = patches_vjp(jnp.dot(dy, w.reshape(-1, c_out).T))
  return dx, dw


_im2col.defvjp(_im2col_fwd, _im2col_bwd)


def _transposed_pads(w_shape, pads):
  """Padding of the stride-1 convolution of dy with the flipped kernel that gives dx."""
  return tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(w_shape[:2], pads))


def kn2row_conv2d(x: jax.Array, w: jax.Array, *,
                  pads: Tuple[Tuple[int, int], Tuple[int, int]]) -> jax.Array:
  """Stride-1 conv2d as x [B H W, c_in] @ w [c_in, kh kw c_out], then the kh * kw shifted
  per-tap outputs summed: y[o] = sum_t x_pad[o + t] w[t] = sum_t (x w[t])_pad[o + t].

  The product is [B H W, kh kw c_out] instead of im2col's [B H' W', kh kw c_in]: for a
  3x3 conv 64 -> 3 channels (the generators' output layer) 10-25x faster with gradients.
  """
  kh, kw, c_in, c_out = w.shape
  b, h, w_in, _ = x.shape
  h_out, w_out = _output_hw(x, w, 1, pads)
  cols = jnp.dot(x.reshape(b * h * w_in, c_in),
                 w.transpose(2, 0, 1, 3).reshape(c_in, kh * kw * c_out))
  cols = _pad_hw(cols.reshape(b, h, w_in, kh * kw, c_out), pads)
  return sum(cols[:, i:i + h_out, j:j + w_out, i * kw + j] for i in range(kh) for j in range(kw))


# Winograd F(2, r) (Lavin & Gray 2016), per axis: y = A^T [(G g) * (B^T d)] for an input tile
# d of r + 1 samples, a kernel g of r taps and an output y of 2 samples (y_i = sum_k d_{i+k} g_k).
# WINOGRAD[r] = (B^T, G, A^T); B^T and A^T hold only 0 and +-1 (adds, no multiplications).
WINOGRAD = {
    2: (np.array([[1, -1, 0], [0, 1, 0], [0, -1, 1]], np.float32),
        np.array([[1, 0], [1, 1], [0, 1]], np.float32),
        np.array([[1, 1, 0], [0, 1, 1]], np.float32)),
    3: (np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32),
        np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float32),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)),
}


def _combine(mat: np.ndarray, items):
  """[sum_i mat[a, i] items[i] for each row a] for a matrix of 0 / +-1: adds and subtracts."""
  out = []
  for row in mat:
    acc = None
    for coef, item in zip(row, items):
      if coef:
        acc = (item if coef > 0 else -item) if acc is None else (
            acc + item if coef > 0 else acc - item)
    out.append(acc)
  return out


def winograd_applies(x: jax.Array, w: jax.Array, stride: int, pads) -> bool:
  """Whether `winograd_conv2d` computes this conv: a 2x2 or 3x3 kernel, stride 1, even
  output H and W, padding below the kernel size, and at least WINOGRAD_MIN_C_IN input and
  output channels (image outputs go through kn2row)."""
  h_out, w_out = _output_hw(x, w, stride, pads)
  kh, kw, c_in, c_out = w.shape
  return (kh == kw and kh in WINOGRAD and stride == 1 and h_out % 2 == 0 and w_out % 2 == 0
          and min(c_in, c_out) >= WINOGRAD_MIN_C_IN
          and all(0 <= p < kh for pair in pads for p in pair))


def _winograd_input(x_pad: jax.Array, r: int, th: int, tw: int) -> jax.Array:
  """B^T d B of the overlapping (r + 1)^2 input tiles at stride 2: [(r + 1)^2, B th tw, C]."""
  bt, n = WINOGRAD[r][0], r + 1
  d = [[x_pad[:, i:i + 2 * th:2, j:j + 2 * tw:2] for j in range(n)] for i in range(n)]
  rows = [_combine(bt, [d[i][j] for i in range(n)]) for j in range(n)]     # rows[j][a]
  v = [_combine(bt, [rows[j][a] for j in range(n)]) for a in range(n)]     # v[a][c]
  return jnp.stack([v[a][c] for a in range(n) for c in range(n)]).reshape(
      n * n, -1, x_pad.shape[-1])


def _winograd_output(m: jax.Array, r: int, b: int, th: int, tw: int) -> jax.Array:
  """A^T m A of the products m [(r + 1)^2, B th tw, C]: the 2x2 output tiles, [B, 2th, 2tw, C]."""
  at, n = WINOGRAD[r][2], r + 1
  m = m.reshape(n, n, b, th, tw, -1)
  cols = [_combine(at, [m[a, c] for a in range(n)]) for c in range(n)]     # cols[c][y]
  y = [_combine(at, [cols[c][i] for c in range(n)]) for i in range(2)]     # y[i][j]
  y = jnp.stack([jnp.stack(y[i], axis=3) for i in range(2)], axis=2)       # [B, th, 2, tw, 2, C]
  return y.reshape(b, 2 * th, 2 * tw, -1)


def _winograd_output_transpose(dy: jax.Array, r: int) -> jax.Array:
  """The transpose of `_winograd_output`: A dy A^T per 2x2 tile, [(r + 1)^2, B th tw, C]."""
  a, n = WINOGRAD[r][2].T, r + 1
  b, h, w, c = dy.shape
  dy = dy.reshape(b, h // 2, 2, w // 2, 2, c)
  rows = _combine(a, [dy[:, :, 0], dy[:, :, 1]])                           # [B, th, tw, 2, C]
  dm = [_combine(a, [row[:, :, :, 0], row[:, :, :, 1]]) for row in rows]   # dm[a][c]
  return jnp.stack([dm[i][j] for i in range(n) for j in range(n)]).reshape(n * n, -1, c)


def _winograd_kernel(w: jax.Array) -> jax.Array:
  """G w G^T: [(r + 1)^2, c_in, c_out]."""
  g = jnp.asarray(WINOGRAD[w.shape[0]][1], w.dtype)
  return jnp.einsum('ai,cj,ijxo->acxo', g, g, w).reshape(-1, w.shape[2], w.shape[3])


def _batched_dot(a: jax.Array, b: jax.Array, contract: int) -> jax.Array:
  """Per leading index t, a[t] and b[t] contracted over a's axis `contract` and b's axis 1:
  2 -> a[t] @ b[t], 1 -> a[t]^T @ b[t]."""
  return jax.lax.dot_general(a, b, (((contract,), (1,)), ((0,), (0,))))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def winograd_conv2d(x: jax.Array, w: jax.Array,
                    pads: Tuple[Tuple[int, int], Tuple[int, int]]) -> jax.Array:
  """Stride-1 conv2d with an r x r kernel (r = 2, 3) by Winograd's F(2x2, r x r): (r + 1)^2
  products [T, c_in] @ [c_in, c_out] over the T = B H' W' / 4 output tiles, (2r / (r + 1))^2
  fewer multiplications than im2col (2.25x for 3x3, 1.78x for 2x2).

  Input tiles are (r + 1)^2 windows of the padded input at stride 2, transformed by B^T . B;
  the kernel by G . G^T; the transformed positions multiply independently; A^T . A
  turns each product into a 2x2 output tile. Custom gradients, as fast as the forward:
  the input gradient is the conv of dy with the flipped kernel (Winograd again), the kernel
  gradient G^T [V^T (A dy A^T)] G from the saved transformed input V; differentiating the
  forward instead would scatter-add overlapping tiles (measured 2-4x slower).
  """
  return _winograd_fwd(x, w, pads)[0]


def _winograd_fwd(x, w, pads):
  r, b = w.shape[0], x.shape[0]
  h_out, w_out = _output_hw(x, w, 1, pads)
  th, tw = h_out // 2, w_out // 2
  v = _winograd_input(_pad_hw(x, pads), r, th, tw)
  return _winograd_output(_batched_dot(v, _winograd_kernel(w), 2), r, b, th, tw), (v, w)


def _winograd_kernel_grad(v: jax.Array, dy: jax.Array, w_shape) -> jax.Array:
  """dL/dw = G^T [V^T (A dy A^T)] G from the transformed input V the forward saved."""
  r, n = w_shape[0], w_shape[0] + 1
  du = _batched_dot(v, _winograd_output_transpose(dy, r), 1).reshape(n, n, *w_shape[2:])
  g = jnp.asarray(WINOGRAD[r][1], v.dtype)
  return jnp.einsum('ai,cj,acxo->ijxo', g, g, du)


def _winograd_bwd(pads, residuals, dy):
  v, w = residuals
  dw = _winograd_kernel_grad(v, dy, w.shape)
  dx = conv2d(dy, jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2),
              padding=_transposed_pads(w.shape, pads), impl='winograd')
  return dx, dw


winograd_conv2d.defvjp(_winograd_fwd, _winograd_bwd)


def _is_down4x4(x: jax.Array, w: jax.Array, stride: int, pads) -> bool:
  """A 4x4 / stride 2 / padding 1 conv (the standard-CNN critic's) with an even output and
  at least WINOGRAD_MIN_C_IN channels: `down4x4_conv2d` applies."""
  return (w.shape[:2] == (4, 4) and stride == 2 and pads == ((1, 1), (1, 1))
          and x.shape[1] % 4 == 0 and x.shape[2] % 4 == 0
          and min(w.shape[2:]) >= WINOGRAD_MIN_C_IN)


def _s2d_kernel(w: jax.Array) -> jax.Array:
  """[4, 4, c_in, c_out] -> [2, 2, (2, 2, c_in), c_out], k[a, b, (p, q, c)] = w[2a + p, 2b + q, c];
  the same axis swap maps back."""
  return w.reshape(2, 2, 2, 2, -1, w.shape[-1]).transpose(0, 2, 1, 3, 4, 5).reshape(
      w.shape[0] // 2, w.shape[1] // 2, -1, w.shape[-1])


@jax.custom_vjp
def down4x4_conv2d(x: jax.Array, w: jax.Array) -> jax.Array:
  """conv2d(x, w [4, 4, c_in, c_out], stride 2, padding 1) as a 2x2 stride-1 convolution of
  the padded input's space-to-depth [B, H/2 + 1, W/2 + 1, (2, 2, c_in)] (y[o] = sum_k
  x_pad[2o + k] w[k] with k = 2a + p reads s2d[o + a, p]), by Winograd F(2x2, 2x2).

  Custom gradients: the input gradient is the transposed convolution `phase_upconv2x` of dy
  (whose phases are Winograd too), the kernel gradient the Winograd one of the 2x2 conv.
  """
  return _down4x4_fwd(x, w)[0]


def _down4x4_fwd(x, w):
  b, h, w_in, c_in = x.shape
  x_pad = _pad_hw(x, ((1, 1), (1, 1)))
  s2d = x_pad.reshape(b, h // 2 + 1, 2, w_in // 2 + 1, 2, c_in).transpose(0, 1, 3, 2, 4, 5)
  s2d = s2d.reshape(b, h // 2 + 1, w_in // 2 + 1, 4 * c_in)
  y, (v, _) = _winograd_fwd(s2d, _s2d_kernel(w), ((0, 0), (0, 0)))
  return y, (v, w)


def _down4x4_bwd(residuals, dy):
  v, w = residuals
  c_in, c_out = w.shape[2:]
  dk = _winograd_kernel_grad(v, dy, (2, 2, 4 * c_in, c_out))
  dw = dk.reshape(2, 2, 2, 2, c_in, c_out).transpose(0, 2, 1, 3, 4, 5).reshape(w.shape)
  return phase_upconv2x(dy, w.transpose(0, 1, 3, 2), 'winograd'), dw


down4x4_conv2d.defvjp(_down4x4_fwd, _down4x4_bwd)


def conv2d(x: jax.Array, w: jax.Array, *, stride: int = 1, padding: Padding = 'SAME',
           impl: Optional[str] = None):
  """Cross-correlation of x [B, H, W, c_in] with w [kh, kw, c_in, c_out] (NHWC / HWIO).

  impl: 'xla' (lax.conv_general_dilated), 'im2col' (`im2col_conv2d`) or 'winograd'
  (`winograd_conv2d` where it applies, else im2col); None: `conv_impl()`.
  """
  pads = _resolve_padding(padding, x.shape[1:3], w.shape[:2], stride)
  impl = impl or conv_impl()
  if impl == 'winograd' and winograd_applies(x, w, stride, pads):
    return winograd_conv2d(x, w, pads)
  if impl == 'winograd' and _is_down4x4(x, w, stride, pads):
    return down4x4_conv2d(x, w)
  if impl in ('im2col', 'winograd'):
    return im2col_conv2d(x, w, stride=stride, pads=pads, impl=impl)
  return jax.lax.conv_general_dilated(x, w, window_strides=(stride, stride), padding=pads,
                                      dimension_numbers=CONV_DIMENSIONS)


class Conv2D(hk.Module):
  """2-D convolution with kernel w [k, k, c_in, c_out], optionally spectrally normalised."""

  def __init__(self, output_channels: int, kernel_shape: int, *, stride: int = 1,
               padding: Padding = 'SAME', spectral_norm: bool = False,
               with_bias: bool = True, w_init: Optional[Initializer] = None,
               compute_dtype: DType = jnp.float32, upsample: bool = False,
               name: Optional[str] = None):
    """upsample: nearest 2x upsampling of the input first (`upsample_conv2x`; kernel 3,
    stride 1, 'SAME' only)."""
    super().__init__(name=name)
    if upsample and (kernel_shape, stride, padding) != (3, 1, 'SAME'):
      raise ValueError('Conv2D(upsample=True) takes kernel 3, stride 1, SAME padding; got '
                       f'kernel {kernel_shape}, stride {stride}, padding {padding!r}')
    self.upsample = upsample
    self.output_channels = output_channels
    self.kernel_shape = kernel_shape
    self.stride = stride
    self.padding = padding
    self.spectral_norm = spectral_norm
    self.with_bias = with_bias
    self.w_init = w_init or GLOROT_UNIFORM
    self.compute_dtype = compute_dtype

  def __call__(self, x: jax.Array, *, update_stats: bool = False) -> jax.Array:
    """x [B, H, W, c_in] -> [B, H', W', c_out] in compute_dtype; update_stats: advance the
    power iteration."""
    k = self.kernel_shape
    w = hk.get_parameter('w', [k, k, x.shape[-1], self.output_channels], jnp.float32,
                         init=self.w_init)
    w = _maybe_spectral_cast(w, spectral_norm=self.spectral_norm, update_stats=update_stats,
                             dtype=self.compute_dtype)
    x = x.astype(self.compute_dtype)
    if self.upsample:
      y = upsample_conv2x(x, w)
    else:
      y = conv2d(x, w, stride=self.stride, padding=self.padding)
    return _add_bias(y, self.output_channels, self.with_bias)


# ----------------------------------------------------------------------------- sub-pixel up-conv
def _phase_taps() -> np.ndarray:
  """S [2, 3, 4]: S[r, d, k] = 1 where output phase r reads tap k at input offset d - 1.

  ConvTranspose(kernel 4, stride 2, padding 1), per axis: y[o] = sum over o = 2 i - 1 + k of
  x[i] w[k]. For o = 2 m:     k odd,  y[2m]     = x[m - 1] w3 + x[m] w1   -> taps [w3, w1, 0];
  for o = 2 m + 1: k even, y[2m + 1] = x[m] w2 + x[m + 1] w0   -> taps [0, w2, w0]
  at input offsets (-1, 0, +1).
  """
  s = np.zeros((2, 3, 4), np.float32)
  s[0, 0, 3] = s[0, 1, 1] = 1.0
  s[1, 1, 2] = s[1, 2, 0] = 1.0
  return s


def subpixel_kernel(w: jax.Array) -> jax.Array:
  """The 3x3 kernel [3, 3, c_in, 4 * c_out] equivalent to the up-conv kernel w [4, 4, c_in, c_out].

  Output channel index (ry * 2 + rx) * c_out + c, the layout `depth_to_space2x` expects.
  """
  s = jnp.asarray(_phase_taps(), w.dtype)
  k = jnp.einsum('aym,bxn,mnio->yxiabo', s, s, w)
  return k.reshape(3, 3, w.shape[2], 4 * w.shape[3])


def depth_to_space2x(x: jax.Array) -> jax.Array:
  """[B, H, W, (2, 2, C)] -> [B, 2H, 2W, C]: channel block (ry, rx) fills pixel (2h+ry, 2w+rx)."""
  b, h, w, c4 = x.shape
  c = c4 // 4
  x = x.reshape(b, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, 2 * h, 2 * w, c)


# Per axis, output pixel 2m + r of ConvTranspose(4, 2, 1) (phase r) reads input pixels
# m - 1 + r and m + r, i.e. the 1-padded input at offsets r and r + 1, through these taps.
UPCONV_PHASE_TAPS = (np.array([3, 1]), np.array([2, 0]))
# Nearest 2x upsampling followed by a 3x3 'SAME' conv with w is ConvTranspose(4, 2, 1) with
# the kernel T w T^T, per axis w4[0] = w[2], w4[1] = w[1] + w[2], w4[2] = w[0] + w[1],
# w4[3] = w[0] (output 2m reads x[m - 1] w[0] + x[m] (w[1] + w[2]), 2m + 1 reads
# x[m] (w[0] + w[1]) + x[m + 1] w[2]).
UPSAMPLE_CONV_TAPS = np.array([[0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0]], np.float32)


def upsample_conv_kernel(w: jax.Array) -> jax.Array:
  """The ConvTranspose(4, 2, 1) kernel [4, 4, c_in, c_out] of upsample2x-then-conv3x3 w."""
  t = jnp.asarray(UPSAMPLE_CONV_TAPS, w.dtype)
  return jnp.einsum('ka,lb,abio->klio', t, t, w)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def phase_upconv2x(x: jax.Array, w: jax.Array, impl: str = 'im2col') -> jax.Array:
  """ConvTranspose(4, 2, 1) as four 2x2 convolutions, one per output phase (ry, rx), whose
  outputs interleave: the transposed convolution's own multiplications and no more (the
  sub-pixel 3x3 kernel multiplies 2.25x as many, 5 of its 9 taps per phase being zero).

  Custom gradients: both come from one set of patches of dy (4x4, stride 2, padding 1),
  the input gradient being that strided convolution of dy with w (one matrix product) and
  the kernel gradient x^T @ patches. impl ('im2col' / 'winograd'): how the 2x2 convolutions
  are computed (Winograd F(2x2, 2x2): 1.78x fewer multiplications).
  """
  b, h, w_in, _ = x.shape
  x_pad = _pad_hw(x, ((1, 1), (1, 1)))
  phases = [[conv2d(x_pad[:, ry:ry + h + 1, rx:rx + w_in + 1],
                    w[UPCONV_PHASE_TAPS[ry]][:, UPCONV_PHASE_TAPS[rx]], padding='VALID', impl=impl)
             for rx in (0, 1)] for ry in (0, 1)]
  y = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=2)  # [B, H, 2, W, 2, C]
  return y.reshape(b, 2 * h, 2 * w_in, w.shape[-1])


def _phase_upconv_fwd(x, w, impl):
  return phase_upconv2x(x, w, impl), (x, w)


def _phase_upconv_bwd(impl, residuals, dy):
  del impl
  x, w = residuals
  c_in, c_out = w.shape[2:]
  # y[2i - 1 + k] += x[i] w[k]  =>  dx[i] = sum_k dy_pad[2i + k] w[k]^T,
  #                                  dw[k] = sum_i x[i]^T dy_pad[2i + k].
  patches = _patches(_pad_hw(dy, ((1, 1), (1, 1))), 4, 4, 2, x.shape[1:3])
  patches = patches.reshape(-1, 16 * c_out)
  dx = jnp.dot(patches, w.transpose(0, 1, 3, 2).reshape(16 * c_out, c_in))
  dw = jnp.dot(x.reshape(-1, c_in).T, patches).reshape(c_in, 4, 4, c_out)
  return dx.reshape(x.shape), dw.transpose(1, 2, 0, 3)


phase_upconv2x.defvjp(_phase_upconv_fwd, _phase_upconv_bwd)


def upconv2x(x: jax.Array, w: jax.Array, impl: Optional[str] = None) -> jax.Array:
  """ConvTranspose2d(kernel 4, stride 2, padding 1) of x [B, H, W, c_in] -> [B, 2H, 2W, c_out].

  w [4, 4, c_in, c_out] is indexed like PyTorch's weight[c_in, c_out, kh, kw] (not flipped).
  impl 'xla': one sub-pixel 3x3 convolution and depth-to-space; otherwise `phase_upconv2x`.
  """
  impl = impl or conv_impl()
  if impl == 'xla':
    return depth_to_space2x(conv2d(x, subpixel_kernel(w), padding='SAME', impl='xla'))
  return phase_upconv2x(x, w, impl)


def upsample_conv2x(x: jax.Array, w: jax.Array, impl: Optional[str] = None) -> jax.Array:
  """conv2d(upsample_nearest2x(x), w [3, 3, c_in, c_out], 'SAME') -> [B, 2H, 2W, c_out].

  impl 'xla': literally that; otherwise the equivalent ConvTranspose(4, 2, 1)
  (`upsample_conv_kernel`, `phase_upconv2x`): 2.25x fewer multiplications.
  """
  impl = impl or conv_impl()
  if impl == 'xla':
    return conv2d(upsample_nearest2x(x), w, padding='SAME', impl='xla')
  return phase_upconv2x(x, upsample_conv_kernel(w), impl)


class UpConv(hk.Module):
  """PyTorch ConvTranspose2d(c_in, c_out, 4, stride 2, padding 1), via a sub-pixel 3x3 conv."""

  def __init__(self, output_channels: int, *, spectral_norm: bool = False,
               with_bias: bool = True, w_init: Optional[Initializer] = None,
               compute_dtype: DType = jnp.float32, name: Optional[str] = None):
    super().__init__(name=name)
    self.output_channels = output_channels
    self.spectral_norm = spectral_norm
    self.with_bias = with_bias
    self.w_init = w_init or GLOROT_UNIFORM
    self.compute_dtype = compute_dtype

  def __call__(self, x: jax.Array, *, update_stats: bool = False) -> jax.Array:
    """x [B, H, W, c_in] -> [B, 2H, 2W, c_out] in compute_dtype; update_stats: advance the
    power iteration."""
    w = hk.get_parameter('w', [4, 4, x.shape[-1], self.output_channels], jnp.float32,
                         init=self.w_init)
    w = _maybe_spectral_cast(w, spectral_norm=self.spectral_norm, update_stats=update_stats,
                             dtype=self.compute_dtype)
    y = upconv2x(x.astype(self.compute_dtype), w)
    return _add_bias(y, self.output_channels, self.with_bias)


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
def upsample_nearest2x(x: jax.Array) -> jax.Array:
  """Nearest-neighbour upsampling [B, H, W, C] -> [B, 2H, 2W, C]."""
  b, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c))
  return x.reshape(b, 2 * h, 2 * w, c)


def avg_pool2x(x: jax.Array) -> jax.Array:
  """2x2 average pooling with stride 2, [B, H, W, C] -> [B, H/2, W/2, C]."""
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def leaky_relu(x: jax.Array) -> jax.Array:
  return jax.nn.leaky_relu(x, LEAKY_SLOPE)


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
