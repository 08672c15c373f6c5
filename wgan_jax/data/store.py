"""Example stores: random access to the uint8 images and int labels of one split.

A store knows nothing of order, batches or devices (wgan_jax.data.source does): it maps
dataset indices to preprocessed examples. Every kind of `data.name` opens as one:

  cifar10, mnist, ...  the named datasets (wgan_jax.data.images.IMAGE_DATASETS): files
                       written by `python -m wgan_jax.data.prepare` under data.data_dir
                       when they are there, else tfds array_record files
  tfds:NAME            any tfds image dataset with an `image` feature (data.image_size)
  npz:PATH             arrays x uint8 [N, H, W, C] and optional y int [N]
  folder:PATH          image files under PATH (wgan_jax.data.folder)

Shapes:
  N        examples in the split
  H W C    image_shape after preprocessing
  read(indices int [n]) -> (uint8 [n, H, W, C], int32 [n]); labels are 0 without classes.

`open_store(data)` takes the plain dict of config.data, so a worker process (the `stream`
placement) opens the same store from a picklable description. `describe(data)` gives
(image_shape, num_classes) without reading pixels where the format allows it.
"""
import os
from typing import Callable, Mapping, NamedTuple

import numpy as np

from wgan_jax.errors import ConfigError, DataError


class Store:
  """Random access to one split. Subclasses set the attributes and implement `read`.

  Attributes:
    name: data.name, for messages.
    image_shape: (H, W, C) after preprocessing.
    num_classes: label values (1 without labels).
    num_examples: N.
  """
  name: str
  image_shape: tuple[int, int, int]
  num_classes: int
  num_examples: int

  def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Examples at int `indices` [n]: (uint8 [n, H, W, C], int32 [n])."""
    raise NotImplementedError

  def read_all(self) -> tuple[np.ndarray, np.ndarray]:
    """The whole split in index order: (uint8 [N, H, W, C], int32 [N])."""
    return self.read(np.arange(self.num_examples))

  @property
  def nbytes(self) -> int:
    """Bytes of the whole split as uint8 images."""
    return self.num_examples * int(np.prod(self.image_shape))

  def close(self) -> None:
    """Releases files and threads (nothing by default)."""


class ArrayStore(Store):
  """A split held in memory as arrays (npz files, prepared datasets)."""

  def __init__(self, name: str, x: np.ndarray, y: np.ndarray, num_classes: int):
    self.name = name
    self.x, self.y = x, np.asarray(y, np.int32)
    self.image_shape = tuple(int(s) for s in x.shape[1:])
    self.num_classes = num_classes
    self.num_examples = int(x.shape[0])

  def read(self, indices):
    indices = np.asarray(indices, np.int64)
    return self.x[indices], self.y[indices]

  def read_all(self):
    return self.x, self.y


class Kind(NamedTuple):
  """A `data.name` prefix ('folder:PATH'): how to open and describe what follows it."""
  open: Callable[[str, Mapping], Store]                       # (rest, data) -> Store
  describe: Callable[[str, Mapping], tuple[tuple, int]]       # -> (image_shape, classes)


def _load_npz(path: str, data: Mapping) -> Store:
  from wgan_jax.data import npz  # pylint: disable=import-outside-toplevel
  return npz.open_npz(path, data)


def _describe_npz(path: str, data: Mapping):
  from wgan_jax.data import npz  # pylint: disable=import-outside-toplevel
  return npz.describe_npz(path, data)


def _open_folder(path: str, data: Mapping) -> Store:
  from wgan_jax.data import folder  # pylint: disable=import-outside-toplevel
  return folder.FolderStore(path, data)


def _describe_folder(path: str, data: Mapping):
  from wgan_jax.data import folder  # pylint: disable=import-outside-toplevel
  return folder.describe_folder(path, data)


def _open_tfds(name: str, data: Mapping) -> Store:
  from wgan_jax.data import images  # pylint: disable=import-outside-toplevel
  return images.open_tfds(name, data)


def _describe_tfds(name: str, data: Mapping):
  from wgan_jax.data import images  # pylint: disable=import-outside-toplevel
  return images.describe_tfds(name, data)


# data.name prefix -> Kind. A name without a prefix is a named dataset.
KINDS: dict[str, Kind] = {
    'npz': Kind(_load_npz, _describe_npz),
    'folder': Kind(_open_folder, _describe_folder),
    'tfds': Kind(_open_tfds, _describe_tfds),
}


def split_name(name: str) -> tuple[str | None, str]:
  """'folder:PATH' -> ('folder', PATH); 'cifar10' -> (None, 'cifar10'). ConfigError for an
  unknown prefix or an empty rest."""
  if ':' not in name:
    return None, name
  kind, rest = name.split(':', 1)
  if kind not in KINDS:
    raise ConfigError(f'data.name {name!r}: unknown prefix {kind + ":"!r}; valid: '
                      f'{", ".join(k + ":" for k in sorted(KINDS))} or a dataset name')
  if not rest:
    raise ConfigError(f'data.name {name!r} names no {"dataset" if kind == "tfds" else "path"} '
                      f'after {kind + ":"!r}')
  return kind, os.path.expanduser(rest) if kind != 'tfds' else rest


def open_store(data: Mapping) -> Store:
  """The store of config.data (a dict or ConfigDict); ConfigError / DataError (one line) on
  an unknown name or unreadable data."""
  kind, rest = split_name(data['name'])
  if kind is None:
    from wgan_jax.data import images  # pylint: disable=import-outside-toplevel
    return images.open_named(rest, data)
  return KINDS[kind].open(rest, data)


def describe(data: Mapping) -> tuple[tuple[int, int, int], int]:
  """(image_shape, num_classes) of config.data's images, reading as little as the format
  allows (headers, metadata)."""
  kind, rest = split_name(data['name'])
  if kind is None:
    from wgan_jax.data import images  # pylint: disable=import-outside-toplevel
    spec = images.get_image_spec(rest)
    return tuple(spec.image_shape), spec.num_classes
  return KINDS[kind].describe(rest, data)


def check_size(store: Store) -> None:
  """DataError when the store is empty."""
  if store.num_examples == 0:
    raise DataError(f'data.name {store.name!r} has no examples')
