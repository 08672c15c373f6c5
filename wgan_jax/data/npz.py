"""`data.name=npz:PATH`: images and labels saved with numpy, the whole split in memory.

The file is an .npz archive (np.savez or np.savez_compressed) holding

  x  uint8 [N, H, W, C], C 1 (grey) or 3 (RGB), pixel values in [0, 255]; a grey
     [N, H, W] array is read as [N, H, W, 1]
  y  optional int [N] labels 0 .. K-1: num_classes = max(y) + 1 (so a split that lacks the
     last classes counts fewer). Without y, or with y all -1 (the tfds convention for
     unlabelled examples, e.g. stl10 'unlabelled'), the labels are zeros and there is 1
     class; other negative labels are an error.

Other arrays are ignored; data.split is ignored (one file, one split). The arrays are used
as they are: data.image_size must be 0 or equal H == W (resize the images before saving
them). data.channels (1 or 3; 0: C) converts grey / RGB as folder:PATH and tfds:NAME do
(wgan_jax.data.pixels.to_channels: Pillow's luma, grey repeated), so a picture gives the same
pixels from an npz array as from a PNG file in a folder.

`describe_npz` reads only the .npy headers inside the archive (and y, which is small), not
the pixels. Every problem is one DataError line naming the file and the fix.
"""
import os
import zipfile
import zlib
from typing import Mapping

import numpy as np

from wgan_jax.data import pixels
from wgan_jax.data import store as store_lib
from wgan_jax.errors import ConfigError, DataError

SAVE_HINT = 'np.savez(PATH, x=uint8 [N, H, W, C], y=int [N])'
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def error_text(error: BaseException) -> str:
  """An exception's text on one line (at most 200 characters)."""
  text = ' '.join(str(error).split()) or type(error).__name__
  return text if len(text) <= 200 else text[:197] + '...'


def _check_file(path: str) -> None:
  """DataError unless `path` is an existing zip archive (what np.savez writes)."""
  if not os.path.isfile(path):
    raise DataError(f'npz file {path!r} not found; write it with {SAVE_HINT}')
  if not zipfile.is_zipfile(path):
    with open(path, 'rb') as f:
      is_npy = f.read(6) == b'\x93NUMPY'
    kind = 'a single .npy array' if is_npy else 'not an .npz (zip) archive, or a corrupt one'
    raise DataError(f'npz file {path!r} is {kind}; write it with {SAVE_HINT}')


def _check_members(path: str, names: list[str]) -> None:
  """DataError unless the archive holds x."""
  if 'x' not in names:
    have = ', '.join(sorted(names)) or 'none'
    raise DataError(f'npz file {path!r} has no array x (its arrays: {have}); save the images '
                    f'as {SAVE_HINT}')


def check_images(path: str, shape: tuple, dtype: np.dtype) -> tuple[int, int, int]:
  """(H, W, C) of an x array of `shape` and `dtype`; DataError unless uint8 [N, H, W, C]
  with C 1 or 3 (or grey [N, H, W])."""
  if dtype != np.uint8:
    raise DataError(f'npz file {path!r}: x is {dtype}, expected uint8 pixel values in [0, 255]; '
                    'save x.astype(np.uint8) (scale [0, 1] or [-1, 1] images to [0, 255] first)')
  if len(shape) == 3:
    return (int(shape[1]), int(shape[2]), 1)
  if len(shape) != 4 or shape[-1] not in (1, 3):
    raise DataError(f'npz file {path!r}: x has shape {tuple(shape)}, expected [N, H, W, C] with '
                    'C 1 or 3 (or grey [N, H, W]); transpose NCHW arrays with '
                    'x.transpose(0, 2, 3, 1)')
  return tuple(int(s) for s in shape[1:])


def check_labels(path: str, y: np.ndarray | None, n: int) -> tuple[np.ndarray, int]:
  """(int32 labels [n], num_classes) of the y array (None: no labels); DataError for a y that
  is not int [n] or has negative labels other than all -1 (unlabelled)."""
  if y is None:
    return np.zeros((n,), np.int32), 1
  if not np.issubdtype(y.dtype, np.integer):
    raise DataError(f'npz file {path!r}: y is {y.dtype}, expected integer labels 0 .. K-1; save '
                    'y.astype(np.int64)')
  if y.shape != (n,):
    raise DataError(f'npz file {path!r}: y has shape {y.shape}, expected [{n}] (one label per '
                    'image of x)')
  if n and np.all(y == -1):
    return np.zeros((n,), np.int32), 1
  if n and y.min() < 0:
    raise DataError(f'npz file {path!r}: y has negative labels (min {int(y.min())}); labels are '
                    '0 .. K-1, or -1 for every example of an unlabelled split')
  if n and y.max() > np.iinfo(np.int32).max - 1:
    raise DataError(f'npz file {path!r}: y has label {int(y.max())}; labels are 0 .. K-1')
  return y.astype(np.int32), int(y.max()) + 1 if n else 1


def _header(archive: zipfile.ZipFile, name: str) -> tuple[tuple, np.dtype]:
  """(shape, dtype) of member `name` + '.npy' from its header alone."""
  with archive.open(name + '.npy') as f:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
      shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
      shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
      raise ValueError(f'.npy format version {version} of {name} is not supported')
  return shape, dtype


def read_header(path: str) -> tuple[tuple, np.dtype, np.ndarray | None]:
  """(shape of x, dtype of x, y or None) of the file, reading x's header only."""
  _check_file(path)
  try:
    with zipfile.ZipFile(path) as archive:
      names = [n[:-len('.npy')] for n in archive.namelist() if n.endswith('.npy')]
      _check_members(path, names)
      shape, dtype = _header(archive, 'x')
    y = None
    if 'y' in names:
      with np.load(path, allow_pickle=False) as f:
        y = f['y']
  except _READ_ERRORS as e:
    raise DataError(f'npz file {path!r} cannot be read ({error_text(e)}); write it again with '
                    f'{SAVE_HINT}') from None
  return shape, dtype, y


def read_arrays(path: str) -> tuple[np.ndarray, np.ndarray | None]:
  """(x uint8 [N, H, W, C], y or None) of the file, checked (`check_images`)."""
  shape, dtype, _ = read_header(path)
  check_images(path, shape, dtype)
  try:
    with np.load(path, allow_pickle=False) as f:
      x = f['x']
      y = f['y'] if 'y' in f.files else None
  except _READ_ERRORS as e:
    raise DataError(f'npz file {path!r} cannot be read ({error_text(e)}); write it again with '
                    f'{SAVE_HINT}') from None
  return (x[..., None] if x.ndim == 3 else x), y


def _output_shape(path: str, shape: tuple[int, int, int], data: Mapping) -> tuple[int, int, int]:
  """(H, W, C) after data.channels; ConfigError for a data.image_size other than H == W or
  a data.channels other than 0, 1 or 3."""
  height, width, channels = shape
  size = int(data.get('image_size', 0) or 0)
  if size and not size == height == width:
    raise ConfigError(f'data.image_size={size}, but npz file {path!r} holds {height}x{width} '
                      'images: npz arrays are used as they are; resize them before saving, or '
                      'set data.image_size=0')
  wanted = int(data.get('channels', 0) or 0)
  if wanted not in (0, *pixels.MODES):
    raise ConfigError(f'data.channels must be 0 (the images\' own), 1 (grey) or 3 (RGB), got '
                      f'{wanted}')
  return height, width, wanted or channels


def describe_npz(path: str, data: Mapping) -> tuple[tuple[int, int, int], int]:
  """((H, W, C), num_classes) of npz file `path` read as config.data `data` says; reads the
  header of x and the labels y only (module docstring for the format)."""
  shape, dtype, y = read_header(path)
  image_shape = _output_shape(path, check_images(path, shape, dtype), data)
  return image_shape, check_labels(path, y, int(shape[0]))[1]


def open_npz(path: str, data: Mapping) -> store_lib.ArrayStore:
  """The images and labels of npz file `path` in memory (module docstring for the format).

  Raises:
    DataError: missing, unreadable or malformed file (one line naming the file and the fix).
    ConfigError: data.image_size other than 0 or the images' own square size.
  """
  x, y = read_arrays(path)
  channels = _output_shape(path, x.shape[1:], data)[-1]
  labels, num_classes = check_labels(path, y, len(x))
  x = pixels.to_channels(x, channels)
  return store_lib.ArrayStore(data.get('name', f'npz:{path}'), x, labels, num_classes)
