"""Convolutions for XLA:CPU as matrix products and Winograd transforms (pure jnp, no haiku).

Interface (NHWC inputs, HWIO kernels, float32 or bfloat16; every function takes the
algorithm `impl`, one of 'xla', 'im2col', 'winograd', already resolved by `resolve_impl`):
  conv2d(x, w, stride=, padding=, impl=)    cross-correlation, like lax.conv_general_dilated
  upconv2x(x, w, impl=)                     PyTorch's ConvTranspose2d(kernel 4, stride 2, pad 1)
  upsample_conv2x(x, w, impl=)              conv2d(upsample_nearest2x(x), w, 'SAME'), 3x3 w

The algorithms compute the same function up to float rounding (relative 1e-7 for im2col,
about 2e-6 for Winograd), with custom VJPs whose input gradients are themselves convolutions
(first and second derivatives are tested against XLA's):
  'xla'       lax.conv_general_dilated: what accelerators use (cuDNN, the TPU's convolution
              units); the up-conv is one sub-pixel 3x3 convolution and depth-to-space.
  'im2col'    every convolution a matrix product: patches @ w (im2col), or x @ w and shifted
              adds for stride-1 layers with fewer output than input channels (kn2row).
  'winograd'  im2col, except that 3x3 and 2x2 stride-1 convolutions use Winograd's
              F(2x2, 3x3) / F(2x2, 2x2) (Lavin & Gray 2016; 2.25x / 1.78x fewer
              multiplications) and 4x4 / stride-2 ones a space-to-depth F(2x2, 2x2).
  With 'im2col' and 'winograd' the up-conv runs as four 2x2 convolutions, one per output
  phase (`_phase_upconv2x`, the transposed convolution's own multiplications), and the
  upsample-conv as the equivalent ConvTranspose(4, 2, 1) (2.25x fewer multiplications). No
  algorithm emits an XLA transposed convolution.
Which is fastest where, and by how much: benchmarks/README.md.
"""
import functools
import os
from typing import Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from wgan_jax.errors import ConfigError

Padding = Union[str, int, Sequence[Tuple[int, int]]]
_CONV_DIMENSIONS = ('NHWC', 'HWIO', 'NHWC')


def _explicit_padding(padding: Padding):
  """'SAME' / 'VALID' unchanged; an int p -> ((p, p), (p, p)); pairs unchanged."""
  if isinstance(padding, str):
    return padding
  if isinstance(padding, int):
    return ((padding, padding), (padding, padding))
  return tuple(tuple(p) for p in padding)


# model.conv_impl values; WGAN_JAX_CONV_IMPL, when set, overrides the config.
CONV_IMPLS = ('auto', 'xla', 'im2col', 'winograd')
CONV_IMPL_ENV = 'WGAN_JAX_CONV_IMPL'
# Winograd needs enough channels for its batched products to pay for the transforms.
WINOGRAD_MIN_C_IN = 16


def resolve_impl(configured: str = 'auto') -> str:
  """The algorithm a model's convolutions use: 'xla', 'im2col' or 'winograd'.

  $WGAN_JAX_CONV_IMPL wins when set and non-empty (the tests set it to im2col, whose
  programs compile faster); otherwise `configured` (model.conv_impl). 'auto' is 'winograd'
  on CPU and 'xla' on accelerators. Called once, when the models are built.
  Raises:
    ConfigError: a value outside CONV_IMPLS (one line).
  """
  env = os.environ.get(CONV_IMPL_ENV, '')
  impl, source = (env, CONV_IMPL_ENV) if env else (configured, 'model.conv_impl')
  if impl not in CONV_IMPLS:
    raise ConfigError(f'{source}={impl!r} is not a convolution implementation; '
                      f'valid: {", ".join(CONV_IMPLS)}')
  if impl == 'auto':
    return 'winograd' if jax.default_backend() == 'cpu' else 'xla'
  return impl


def _check_impl(impl: str) -> None:
  if impl not in CONV_IMPLS[1:]:
    raise ValueError(f'impl must be one of {", ".join(CONV_IMPLS[1:])} (see resolve_impl), '
                     f'got {impl!r}')


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


def _im2col_conv2d(x: jax.Array, w: jax.Array, *, stride: int,
                   pads: Tuple[Tuple[int, int], Tuple[int, int]], impl: str) -> jax.Array:
  """conv2d as one matrix product: patches [B H' W', kh kw c_in] @ w [kh kw c_in, c_out].

  The patches are the kh * kw strided slices of the padded input, stacked tap-major
  (the row order of w.reshape). Stride-1 layers with fewer output than input channels (image
  outputs) go through `_kn2row_conv2d` instead, whose intermediate is the smaller one.
  impl ('im2col' / 'winograd'): how the convolutions of the gradient are computed.
  """
  if stride == 1 and w.shape[3] < w.shape[2]:
    return _kn2row_conv2d(x, w, pads=pads)
  return _im2col(x, w, stride, pads, impl)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _im2col(x, w, stride, pads, impl):
  """Custom gradients: the kernel gradient patches^T @ dy from the saved patches; the input
  gradient a convolution of dy (stride 1: with the flipped kernel; the 4x4 / 2 / 1 critic
  layers: `_phase_upconv2x` of dy) instead of scatter-adding overlapping patch gradients
  (slower on XLA:CPU); other strides scatter-add."""
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
    dx = _phase_upconv2x(dy, w.transpose(0, 1, 3, 2), impl)  # the transpose: ConvTranspose(4, 2, 1)
  else:
    _, patches_vjp = jax.vjp(lambda x_: _patches(_pad_hw(x_, pads), kh, kw, stride,
                                                 dy.shape[1:3]), x)
    dx, = patches_vjp(jnp.dot(dy, w.reshape(-1, c_out).T))
  return dx, dw


_im2col.defvjp(_im2col_fwd, _im2col_bwd)


def _transposed_pads(w_shape, pads):
  """Padding of the stride-1 convolution of dy with the flipped kernel that gives dx."""
  return tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(w_shape[:2], pads))


def _kn2row_conv2d(x: jax.Array, w: jax.Array, *,
                   pads: Tuple[Tuple[int, int], Tuple[int, int]]) -> jax.Array:
  """Stride-1 conv2d as x [B H W, c_in] @ w [c_in, kh kw c_out], then the kh * kw shifted
  per-tap outputs summed: y[o] = sum_t x_pad[o + t] w[t] = sum_t (x w[t])_pad[o + t].

  The product is [B H W, kh kw c_out] instead of im2col's [B H' W', kh kw c_in], the
  smaller one for e.g. a 3x3 conv 64 -> 3 channels (the generators' output layer).
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


def _winograd_applies(x: jax.Array, w: jax.Array, stride: int, pads) -> bool:
  """Whether `_winograd_conv2d` computes this conv: a 2x2 or 3x3 kernel, stride 1, even
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
def _winograd_conv2d(x: jax.Array, w: jax.Array,
                     pads: Tuple[Tuple[int, int], Tuple[int, int]]) -> jax.Array:
  """Stride-1 conv2d with an r x r kernel (r = 2, 3) by Winograd's F(2x2, r x r): (r + 1)^2
  products [T, c_in] @ [c_in, c_out] over the T = B H' W' / 4 output tiles, (2r / (r + 1))^2
  fewer multiplications than im2col (2.25x for 3x3, 1.78x for 2x2).

  Input tiles are (r + 1)^2 windows of the padded input at stride 2, transformed by B^T . B;
  the kernel by G . G^T; the transformed positions multiply independently; A^T . A
  turns each product into a 2x2 output tile. Custom gradients, as fast as the forward:
  the input gradient is the conv of dy with the flipped kernel (Winograd again), the kernel
  gradient G^T [V^T (A dy A^T)] G from the saved transformed input V; differentiating the
  forward instead would scatter-add overlapping tiles (slower on XLA:CPU).
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


_winograd_conv2d.defvjp(_winograd_fwd, _winograd_bwd)


def _is_down4x4(x: jax.Array, w: jax.Array, stride: int, pads) -> bool:
  """A 4x4 / stride 2 / padding 1 conv (the standard-CNN critic's) with an even output and
  at least WINOGRAD_MIN_C_IN channels: `_down4x4_conv2d` applies."""
  return (w.shape[:2] == (4, 4) and stride == 2 and pads == ((1, 1), (1, 1))
          and x.shape[1] % 4 == 0 and x.shape[2] % 4 == 0
          and min(w.shape[2:]) >= WINOGRAD_MIN_C_IN)


def _s2d_kernel(w: jax.Array) -> jax.Array:
  """[4, 4, c_in, c_out] -> [2, 2, (2, 2, c_in), c_out], k[a, b, (p, q, c)] = w[2a + p, 2b + q, c];
  the same axis swap maps back."""
  return w.reshape(2, 2, 2, 2, -1, w.shape[-1]).transpose(0, 2, 1, 3, 4, 5).reshape(
      w.shape[0] // 2, w.shape[1] // 2, -1, w.shape[-1])


@jax.custom_vjp
def _down4x4_conv2d(x: jax.Array, w: jax.Array) -> jax.Array:
  """conv2d(x, w [4, 4, c_in, c_out], stride 2, padding 1) as a 2x2 stride-1 convolution of
  the padded input's space-to-depth [B, H/2 + 1, W/2 + 1, (2, 2, c_in)] (y[o] = sum_k
  x_pad[2o + k] w[k] with k = 2a + p reads s2d[o + a, p]), by Winograd F(2x2, 2x2).

  Custom gradients: the input gradient is the transposed convolution `_phase_upconv2x` of dy
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
  return _phase_upconv2x(dy, w.transpose(0, 1, 3, 2), 'winograd'), dw


_down4x4_conv2d.defvjp(_down4x4_fwd, _down4x4_bwd)


def conv2d(x: jax.Array, w: jax.Array, *, stride: int = 1, padding: Padding = 'SAME',
           impl: str) -> jax.Array:
  """Cross-correlation of x [B, H, W, c_in] with w [kh, kw, c_in, c_out] (NHWC / HWIO).

  impl: 'xla' (lax.conv_general_dilated), 'im2col' (`_im2col_conv2d`) or 'winograd'
  (`_winograd_conv2d` or `_down4x4_conv2d` where they apply, else im2col).
  """
  _check_impl(impl)
  pads = _resolve_padding(padding, x.shape[1:3], w.shape[:2], stride)
  if impl == 'winograd' and _winograd_applies(x, w, stride, pads):
    return _winograd_conv2d(x, w, pads)
  if impl == 'winograd' and _is_down4x4(x, w, stride, pads):
    return _down4x4_conv2d(x, w)
  if impl in ('im2col', 'winograd'):
    return _im2col_conv2d(x, w, stride=stride, pads=pads, impl=impl)
  return jax.lax.conv_general_dilated(x, w, window_strides=(stride, stride), padding=pads,
                                      dimension_numbers=_CONV_DIMENSIONS)


# ----------------------------------------------------------------------------- up-convolutions
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


def _subpixel_kernel(w: jax.Array) -> jax.Array:
  """The 3x3 kernel [3, 3, c_in, 4 * c_out] equivalent to the up-conv kernel w [4, 4, c_in, c_out].

  Output channel index (ry * 2 + rx) * c_out + c, the layout `_depth_to_space2x` expects.
  """
  s = jnp.asarray(_phase_taps(), w.dtype)
  k = jnp.einsum('aym,bxn,mnio->yxiabo', s, s, w)
  return k.reshape(3, 3, w.shape[2], 4 * w.shape[3])


def _depth_to_space2x(x: jax.Array) -> jax.Array:
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


def _upsample_conv_kernel(w: jax.Array) -> jax.Array:
  """The ConvTranspose(4, 2, 1) kernel [4, 4, c_in, c_out] of upsample2x-then-conv3x3 w."""
  t = jnp.asarray(UPSAMPLE_CONV_TAPS, w.dtype)
  return jnp.einsum('ka,lb,abio->klio', t, t, w)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _phase_upconv2x(x: jax.Array, w: jax.Array, impl: str) -> jax.Array:
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
  return _phase_upconv2x(x, w, impl), (x, w)


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


_phase_upconv2x.defvjp(_phase_upconv_fwd, _phase_upconv_bwd)


def upconv2x(x: jax.Array, w: jax.Array, *, impl: str) -> jax.Array:
  """ConvTranspose2d(kernel 4, stride 2, padding 1) of x [B, H, W, c_in] -> [B, 2H, 2W, c_out].

  w [4, 4, c_in, c_out] is indexed like PyTorch's weight[c_in, c_out, kh, kw] (not flipped).
  impl 'xla': one sub-pixel 3x3 convolution and depth-to-space; otherwise `_phase_upconv2x`.
  """
  _check_impl(impl)
  if impl == 'xla':
    return _depth_to_space2x(conv2d(x, _subpixel_kernel(w), padding='SAME', impl='xla'))
  return _phase_upconv2x(x, w, impl)


def upsample_conv2x(x: jax.Array, w: jax.Array, *, impl: str) -> jax.Array:
  """conv2d(upsample_nearest2x(x), w [3, 3, c_in, c_out], 'SAME') -> [B, 2H, 2W, c_out].

  impl 'xla': literally that; otherwise the equivalent ConvTranspose(4, 2, 1)
  (`_upsample_conv_kernel`, `_phase_upconv2x`): 2.25x fewer multiplications.
  """
  _check_impl(impl)
  if impl == 'xla':
    return conv2d(upsample_nearest2x(x), w, padding='SAME', impl='xla')
  return _phase_upconv2x(x, _upsample_conv_kernel(w), impl)


# ----------------------------------------------------------------------------- resampling
def upsample_nearest2x(x: jax.Array) -> jax.Array:
  """Nearest-neighbour upsampling [B, H, W, C] -> [B, 2H, 2W, C]."""
  b, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c))
  return x.reshape(b, 2 * h, 2 * w, c)
