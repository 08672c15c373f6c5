"""The FID Inception-v3 network (TTUR / pytorch-fid weights of 2015-12-05) in haiku, NHWC.

This is pytorch-fid's `FIDInceptionV3`: torchvision's Inception-v3 layout with the
TensorFlow graph's peculiarities patched in (Heusel et al. 2017, TTUR; Seitzer, pytorch-fid):
  * Mixed_5b..5d (FIDInceptionA), Mixed_6b..6e (FIDInceptionC), Mixed_7b (FIDInceptionE_1):
    the 3x3 average pool of the pool branch ignores the zero padding
    (count_include_pad=False);
  * Mixed_7c (FIDInceptionE_2): the pool branch uses a 3x3 *max* pool;
  * 1008 output classes, no auxiliary classifier; batch norm eps 1e-3, convolutions
    without bias.
Outputs: the 2048-d global average pool after Mixed_7c ("pool3", the FID / KID features)
and the 1008 logits of the final linear layer (softmax -> Inception Score).

Preprocessing as pytorch-fid: bilinear resize to 299 x 299 exactly as torch's
`F.interpolate(mode='bilinear', align_corners=False)` (no antialiasing, also when shrinking),
on images in [-1, 1] (pytorch-fid maps [0, 1] to [-1, 1]; the resize is linear, so resizing
before or after that map is the same). Grayscale images are repeated to 3 channels.

Weights are never downloaded: convert pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`
once with `python -m wgan_jax.eval.convert_inception` (needs torch, only for that step) and
pass the .npz to `load_params`, which checks that the file was converted from a .pth whose
SHA-256 starts with 6726825d (torch.hub's file-name convention) and that every array has the
network's shape.

Shapes:
  N        number of images
  H, W, C  input image size (C = 1 or 3), resized to S x S (S >= 75)
  S        network input size (299 for FID; tests use 75 to stay fast)
  params   haiku params {'<module path>': {'w', 'scale', 'offset', 'mean', 'var'}} for
           every conv + batch norm (module path = the torch module path with '.' -> '/',
           e.g. 'Mixed_5b/branch1x1'), and {'fc': {'w' [2048, 1008], 'b' [1008]}}
"""
import functools
import hashlib
import os
from typing import Callable, NamedTuple, Sequence

import haiku as hk
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from wgan_jax.errors import DataError
from wgan_jax.ops import conv

INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_LOGITS = 1008
BN_EPS = 1e-3
RESIZE_METHOD = 'bilinear299_torch_align_corners_false'  # recorded with every score
WEIGHTS_FILE = 'pt_inception-2015-12-05-6726825d.pth'
WEIGHTS_URL = ('https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/'
               + WEIGHTS_FILE)
# torch.hub names a weights file `<name>-<first 8 hex digits of its SHA-256>.pth`.
TRUSTED_SOURCE_SHA256_PREFIXES = ('6726825d',)
CONVERTED_FORMAT = 'wgan_jax.fid_inception.v1'
META_KEYS = ('__format__', '__source_sha256__', '__source_file__')
_PRECISION = lax.Precision.HIGHEST  # no TF32 / bf16 passes on accelerators: FID is sensitive


# ----------------------------------------------------------------------------- resizing


def linear_resize_taps(in_size: int, out_size: int) -> tuple[np.ndarray, ...]:
  """Source indices and weights of torch's 1-D linear interpolation, align_corners=False.

  For output index i: src = max((i + 0.5) * in_size / out_size - 0.5, 0) (float32),
  i0 = min(floor(src), in_size - 1), i1 = min(i0 + 1, in_size - 1), l1 = src - i0,
  l0 = 1 - l1 (torch's upsample_bilinear2d on CPU, opmath float32).

  Returns:
    (i0 int32 [out], i1 int32 [out], l0 float32 [out], l1 float32 [out]).
  """
  scale = np.float32(in_size) / np.float32(out_size)
  src = np.maximum((np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale
                   - np.float32(0.5), np.float32(0.0)).astype(np.float32)
  i0 = np.minimum(np.floor(src).astype(np.int32), in_size - 1)
  i1 = np.minimum(i0 + 1, in_size - 1).astype(np.int32)
  l1 = np.clip(src - i0.astype(np.float32), 0.0, 1.0).astype(np.float32)
  l0 = (np.float32(1.0) - l1).astype(np.float32)
  return i0, i1, l0, l1


def _lerp_axis(x: jax.Array, axis: int, out_size: int) -> jax.Array:
  if x.shape[axis] == out_size:
    return x  # torch's scale is exactly 1 then: src = i, the identity
  i0, i1, l0, l1 = linear_resize_taps(x.shape[axis], out_size)
  shape = [1] * x.ndim
  shape[axis] = out_size
  return (jnp.take(x, i0, axis=axis) * l0.reshape(shape)
          + jnp.take(x, i1, axis=axis) * l1.reshape(shape))


def resize_bilinear(images: jax.Array, size: tuple[int, int]) -> jax.Array:
  """torch F.interpolate(mode='bilinear', align_corners=False) on NHWC images.

  Separable gather + lerp, width first, then height (torch's order of operations), with no
  antialiasing (jax.image.resize antialiases when shrinking; torch does not).

  Args:
    images: float [N, H, W, C].
    size: (out_h, out_w).

  Returns:
    float [N, out_h, out_w, C].
  """
  return _lerp_axis(_lerp_axis(images, 2, size[1]), 1, size[0])


# ----------------------------------------------------------------------------- the network


def _pair(v) -> tuple[int, int]:
  return (v, v) if isinstance(v, int) else tuple(v)


class BasicConv2d(hk.Module):
  """Conv (no bias) -> batch norm (inference, eps 1e-3) -> ReLU, as torchvision's BasicConv2d.

  Parameters: w [kh, kw, C_in, C_out] (HWIO), scale / offset / mean / var [C_out] (the batch
  norm's gamma, beta, running mean, running variance). Computed as one convolution with the
  batch norm folded into it: relu(conv(x, w * s) + (offset - mean * s)), s = scale /
  sqrt(var + eps) (the same function; float rounding aside).
  """

  def __init__(self, channels: int, kernel, stride=1, padding=0, name=None):
    super().__init__(name=name)
    self.channels = channels
    self.kernel, self.stride, self.padding = _pair(kernel), _pair(stride), _pair(padding)

  def folded(self, c_in: int) -> tuple[jax.Array, jax.Array]:
    """(w * s [kh, kw, c_in, C_out], bias [C_out]): the layer's weights, batch norm folded."""
    fan_in = self.kernel[0] * self.kernel[1] * c_in
    w = hk.get_parameter('w', (*self.kernel, c_in, self.channels), jnp.float32,
                         init=hk.initializers.TruncatedNormal(np.sqrt(2.0 / fan_in)))
    scale = hk.get_parameter('scale', (self.channels,), jnp.float32, init=jnp.ones)
    offset = hk.get_parameter('offset', (self.channels,), jnp.float32, init=jnp.zeros)
    mean = hk.get_parameter('mean', (self.channels,), jnp.float32, init=jnp.zeros)
    var = hk.get_parameter('var', (self.channels,), jnp.float32, init=jnp.ones)
    inv = scale * lax.rsqrt(var + BN_EPS)
    return w * inv, offset - mean * inv

  def __call__(self, x: jax.Array) -> jax.Array:
    w, bias = self.folded(x.shape[-1])
    return _conv_relu(x, w, bias, self.stride, self.padding)


def _conv_relu(x, w, bias, stride, padding) -> jax.Array:
  """relu(conv(x, w) + bias): lax's convolution at HIGHEST precision on accelerators, the
  faster CPU algorithms of wgan_jax.ops.conv on CPU (conv.resolve_impl)."""
  impl = conv.resolve_impl()
  pads = ((padding[0],) * 2, (padding[1],) * 2)
  if impl == 'xla' or stride[0] != stride[1]:
    y = lax.conv_general_dilated(x, w, window_strides=stride, padding=pads,
                                 dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                 precision=_PRECISION)
  else:
    y = conv.conv2d(x, w, stride=stride[0], padding=pads, impl=impl)
  return jax.nn.relu(y + bias)


def _conv(x, name, channels, kernel, stride=1, padding=0):
  return BasicConv2d(channels, kernel, stride, padding, name=name)(x)


def _conv1x1_siblings(x, layers: Sequence[tuple[str, int]]) -> list:
  """The 1x1 layers [(name, channels)] of one input as one wider convolution (the same
  parameters and outputs as `_conv` on each; one matrix product instead of several)."""
  folded = [BasicConv2d(c, 1, name=name).folded(x.shape[-1]) for name, c in layers]
  y = _conv_relu(x, jnp.concatenate([w for w, _ in folded], axis=-1),
                 jnp.concatenate([b for _, b in folded]), (1, 1), (0, 0))
  return jnp.split(y, np.cumsum([c for _, c in layers])[:-1], axis=-1)


def max_pool(x: jax.Array, stride: int, padding: int = 0) -> jax.Array:
  """3x3 max pool (padding with -inf, i.e. ignored)."""
  pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, stride, stride, 1), pad)


def avg_pool_exclude_pad(x: jax.Array) -> jax.Array:
  """3x3 stride-1 average pool, padding 1, averaging valid pixels only (count_include_pad=False)."""
  pad = ((0, 0), (1, 1), (1, 1), (0, 0))
  total = lax.reduce_window(x, 0.0, lax.add, (1, 3, 3, 1), (1, 1, 1, 1), pad)
  ones = np.ones((1, x.shape[1], x.shape[2], 1), np.float32)
  count = lax.reduce_window(ones, np.float32(0.0), lax.add, (1, 3, 3, 1), (1, 1, 1, 1), pad)
  return total / count


def _inception_a(x, pool_features):
  b1, b5, b3 = _conv1x1_siblings(x, [('branch1x1', 64), ('branch5x5_1', 48),
                                     ('branch3x3dbl_1', 64)])
  b5 = _conv(b5, 'branch5x5_2', 64, 5, padding=2)
  b3 = _conv(_conv(b3, 'branch3x3dbl_2', 96, 3, padding=1), 'branch3x3dbl_3', 96, 3, padding=1)
  bp = _conv(avg_pool_exclude_pad(x), 'branch_pool', pool_features, 1)
  return jnp.concatenate([b1, b5, b3, bp], axis=-1)


def _inception_b(x):
  b3 = _conv(x, 'branch3x3', 384, 3, stride=2)
  bd = _conv(x, 'branch3x3dbl_1', 64, 1)
  bd = _conv(_conv(bd, 'branch3x3dbl_2', 96, 3, padding=1), 'branch3x3dbl_3', 96, 3, stride=2)
  return jnp.concatenate([b3, bd, max_pool(x, 2)], axis=-1)


def _inception_c(x, c7):
  b1, b7, bd = _conv1x1_siblings(x, [('branch1x1', 192), ('branch7x7_1', c7),
                                      ('branch7x7dbl_1', c7)])
  b7 = _conv(b7, 'branch7x7_2', c7, (1, 7), padding=(0, 3))
  b7 = _conv(b7, 'branch7x7_3', 192, (7, 1), padding=(3, 0))
  bd = _conv(bd, 'branch7x7dbl_2', c7, (7, 1), padding=(3, 0))
  bd = _conv(bd, 'branch7x7dbl_3', c7, (1, 7), padding=(0, 3))
  bd = _conv(bd, 'branch7x7dbl_4', c7, (7, 1), padding=(3, 0))
  bd = _conv(bd, 'branch7x7dbl_5', 192, (1, 7), padding=(0, 3))
  bp = _conv(avg_pool_exclude_pad(x), 'branch_pool', 192, 1)
  return jnp.concatenate([b1, b7, bd, bp], axis=-1)


def _inception_d(x):
  b3, b7 = _conv1x1_siblings(x, [('branch3x3_1', 192), ('branch7x7x3_1', 192)])
  b3 = _conv(b3, 'branch3x3_2', 320, 3, stride=2)
  b7 = _conv(b7, 'branch7x7x3_2', 192, (1, 7), padding=(0, 3))
  b7 = _conv(b7, 'branch7x7x3_3', 192, (7, 1), padding=(3, 0))
  b7 = _conv(b7, 'branch7x7x3_4', 192, 3, stride=2)
  return jnp.concatenate([b3, b7, max_pool(x, 2)], axis=-1)


def _inception_e(x, pool: str):
  """FIDInceptionE_1 (pool='avg', padding excluded) or FIDInceptionE_2 (pool='max')."""
  b1, b3, bd = _conv1x1_siblings(x, [('branch1x1', 320), ('branch3x3_1', 384),
                                      ('branch3x3dbl_1', 448)])
  b3 = jnp.concatenate([_conv(b3, 'branch3x3_2a', 384, (1, 3), padding=(0, 1)),
                        _conv(b3, 'branch3x3_2b', 384, (3, 1), padding=(1, 0))], axis=-1)
  bd = _conv(bd, 'branch3x3dbl_2', 384, 3, padding=1)
  bd = jnp.concatenate([_conv(bd, 'branch3x3dbl_3a', 384, (1, 3), padding=(0, 1)),
                        _conv(bd, 'branch3x3dbl_3b', 384, (3, 1), padding=(1, 0))], axis=-1)
  pooled = avg_pool_exclude_pad(x) if pool == 'avg' else max_pool(x, 1, padding=1)
  bp = _conv(pooled, 'branch_pool', 192, 1)
  return jnp.concatenate([b1, b3, bd, bp], axis=-1)


_MIXED = (
    ('Mixed_5b', functools.partial(_inception_a, pool_features=32)),
    ('Mixed_5c', functools.partial(_inception_a, pool_features=64)),
    ('Mixed_5d', functools.partial(_inception_a, pool_features=64)),
    ('Mixed_6a', _inception_b),
    ('Mixed_6b', functools.partial(_inception_c, c7=128)),
    ('Mixed_6c', functools.partial(_inception_c, c7=160)),
    ('Mixed_6d', functools.partial(_inception_c, c7=160)),
    ('Mixed_6e', functools.partial(_inception_c, c7=192)),
    ('Mixed_7a', _inception_d),
    ('Mixed_7b', functools.partial(_inception_e, pool='avg')),
    ('Mixed_7c', functools.partial(_inception_e, pool='max')),
)


def preprocess(images: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
  """[N, H, W, C in (1, 3)] in [-1, 1] -> [N, size, size, 3]: grey -> RGB, torch bilinear."""
  x = images.astype(jnp.float32)
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  return resize_bilinear(x, (size, size))


def _forward(images: jax.Array, size: int = INPUT_SIZE) -> tuple[jax.Array, jax.Array]:
  """images [N, H, W, C] in [-1, 1] -> (pool3 features [N, 2048], logits [N, 1008])."""
  x = preprocess(images, size)
  x = _conv(x, 'Conv2d_1a_3x3', 32, 3, stride=2)
  x = _conv(x, 'Conv2d_2a_3x3', 32, 3)
  x = _conv(x, 'Conv2d_2b_3x3', 64, 3, padding=1)
  x = max_pool(x, 2)
  x = _conv(x, 'Conv2d_3b_1x1', 80, 1)
  x = _conv(x, 'Conv2d_4a_3x3', 192, 3)
  x = max_pool(x, 2)
  for name, block in _MIXED:
    with hk.name_scope(name):
      x = block(x)
  features = jnp.mean(x, axis=(1, 2))
  logits = hk.Linear(NUM_LOGITS, name='fc')(features, precision=_PRECISION)
  return features, logits


NETWORK = hk.without_apply_rng(hk.transform(_forward))


@functools.lru_cache(maxsize=1)
def param_shapes() -> dict[str, tuple[int, ...]]:
  """{'<module path>/<name>': shape} of every parameter (the structure a weights file needs)."""
  tree = jax.eval_shape(lambda: NETWORK.init(
      jax.random.PRNGKey(0), jnp.zeros((1, 75, 75, 3)), size=75))
  return {f'{module}/{name}': tuple(leaf.shape)
          for module, leaves in tree.items() for name, leaf in leaves.items()}


def flat_to_params(flat: dict) -> dict:
  """{'<module>/<name>': array} -> haiku params {'<module>': {'<name>': array}}."""
  params = {}
  for key, value in flat.items():
    module, name = key.rsplit('/', 1)
    params.setdefault(module, {})[name] = jnp.asarray(value, jnp.float32)
  return params


# ----------------------------------------------------------------------------- weights file


class InceptionWeights(NamedTuple):
  """Loaded weights.

  Attributes:
    params: haiku params of NETWORK.
    source_sha256: SHA-256 (hex) of the .pth file the weights were converted from, the
      checksum recorded with every score.
    path: the .npz the weights were read from.
  """
  params: dict
  source_sha256: str
  path: str


def read_npz(path: str, read: Callable[..., dict], *, missing: str, unreadable: str,
             format_key: str, expected: str, not_format: str) -> dict:
  """read(the opened .npz at `path`), a dict whose `format_key` must be `expected` (read
  only what it needs: np.load is lazy).

  Raises:
    DataError: `missing` when there is no file; 'cannot read ' + `unreadable` when it does
      not read; `not_format` for another format (both formatted with path, error / format).
  """
  if not path or not os.path.isfile(path):
    raise DataError(missing)
  try:
    with np.load(path, allow_pickle=False) as f:
      value = read(f)
  except (OSError, ValueError) as e:
    raise DataError('cannot read ' + unreadable.format(path=path, error=e)) from None
  if value.get(format_key) != expected:
    raise DataError(not_format.format(path=path, format=value.get(format_key)))
  return value


def missing_weights_message(path: str) -> str:
  """The one-line fix for a missing converted weights file."""
  return (f'Inception weights {path!r} not found: download {WEIGHTS_FILE} from the pytorch-fid '
          f'GitHub release ({WEIGHTS_URL}) and convert it once (needs torch): python -m '
          f'wgan_jax.eval.convert_inception --torch_weights={WEIGHTS_FILE} --out={path}')


def check_weights_file(path: str) -> str:
  """Raises DataError when `path` is not a converted FID Inception file; returns its checksum.

  Checks existence, the format tag, and that the recorded source SHA-256 starts with a
  trusted prefix (6726825d: pytorch-fid's pt_inception-2015-12-05-6726825d.pth). Reads only
  the small metadata arrays.

  Returns:
    The SHA-256 of the source .pth recorded in the file.
  """
  meta = read_npz(path, lambda f: {k: str(f[k]) for k in META_KEYS if k in f.files},
                  missing=missing_weights_message(path or 'inception_fid.npz'),
                  unreadable='Inception weights {path!r} ({error}); re-create it with python '
                             '-m wgan_jax.eval.convert_inception',
                  format_key='__format__', expected=CONVERTED_FORMAT,
                  not_format='{path!r} is not a converted FID Inception file (format {format!r}, '
                             f'expected {CONVERTED_FORMAT!r}); create it with python -m '
                             'wgan_jax.eval.convert_inception')
  sha = meta.get('__source_sha256__', '')
  if not sha.startswith(TRUSTED_SOURCE_SHA256_PREFIXES):
    raise DataError(f'{path!r} was converted from {meta.get("__source_file__", "?")!r} with '
                    f'SHA-256 {sha[:16]}..., not from {WEIGHTS_FILE} (SHA-256 6726825d...); '
                    f'scores would not be comparable: convert the pytorch-fid file ({WEIGHTS_URL})')
  return sha


def check_structure(flat: dict) -> None:
  """Raises DataError unless `flat` has exactly the network's parameters and shapes."""
  expected = param_shapes()
  missing = sorted(set(expected) - set(flat))
  extra = sorted(set(flat) - set(expected))
  if missing or extra:
    raise DataError(f'Inception weights do not match the FID Inception network: '
                    f'{len(missing)} missing (e.g. {missing[:2]}), {len(extra)} unexpected '
                    f'(e.g. {extra[:2]}); re-create the file with wgan_jax.eval.convert_inception')
  for key, shape in expected.items():
    if tuple(flat[key].shape) != shape:
      raise DataError(f'Inception weights: {key} has shape {tuple(flat[key].shape)}, the network '
                      f'needs {shape}; re-create the file with wgan_jax.eval.convert_inception')


def load_params(path: str) -> InceptionWeights:
  """Loads and verifies a converted weights file (see `check_weights_file`, `check_structure`).

  Raises:
    DataError: missing file (naming where to get the .pth and the convert command), a file
      not converted from pytorch-fid's weights, or a parameter of the wrong shape.
  """
  sha = check_weights_file(path)
  with np.load(path, allow_pickle=False) as f:
    flat = {k: f[k] for k in f.files if k not in META_KEYS}
  check_structure(flat)
  return InceptionWeights(flat_to_params(flat), sha, os.path.abspath(path))


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
  """Hex SHA-256 of a file's bytes."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(chunk), b''):
      digest.update(block)
  return digest.hexdigest()


# ----------------------------------------------------------------------------- batched features


@functools.partial(jax.jit, static_argnames=('size',))
def apply(params: dict, images: jax.Array, size: int = INPUT_SIZE) -> tuple[jax.Array, jax.Array]:
  """Jitted NETWORK.apply: images [N, H, W, C] in [-1, 1] -> (features [N, 2048], logits [N, 1008])."""
  return NETWORK.apply(params, images, size=size)


def make_feature_fn(params: dict, *, batch_size: int = 100,
                    size: int = INPUT_SIZE) -> Callable[[np.ndarray], tuple[np.ndarray, ...]]:
  """A function images -> (features, logits), jitted once per image shape and batched.

  Every batch is padded to `batch_size` (one compilation whatever N is).

  Args:
    params: haiku params of NETWORK (e.g. `load_params(path).params`).
    batch_size: images per forward pass.
    size: network input size (299 for FID).

  Returns:
    fn(images float [N, H, W, C] in [-1, 1]) -> (features float32 [N, 2048],
    logits float32 [N, 1008]) as NumPy arrays.
  """

  def features(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images = np.asarray(images, np.float32)
    n = len(images)
    feats, logits = [], []
    for start in range(0, n, batch_size):
      chunk = images[start:start + batch_size]
      pad = batch_size - len(chunk)
      if pad:
        chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), np.float32)])
      f, l = apply(params, jnp.asarray(chunk), size)
      feats.append(np.asarray(f)[:batch_size - pad])
      logits.append(np.asarray(l)[:batch_size - pad])
    if not feats:
      return np.zeros((0, FEATURE_DIM), np.float32), np.zeros((0, NUM_LOGITS), np.float32)
    return np.concatenate(feats), np.concatenate(logits)

  return features
