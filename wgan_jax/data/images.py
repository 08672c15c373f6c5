"""Image datasets from tensorflow-datasets, read by random access without TensorFlow.

Datasets are read with `tfds.data_source` (array_record files, decoded with Pillow), so the
training environment needs no TensorFlow. Preparing a dataset (downloading it and writing the
array_record files) does need TensorFlow and is done once, in a separate environment:

  pip install tensorflow tensorflow-datasets
  tfds build cifar10 --file_format=array_record --data_dir=DIR

then train with `--config.data.data_dir=DIR`. `check_prepared` says so in one line.

Registry (shapes after preprocessing, NHWC):

  cifar10        32x32x3, 10 classes, unchanged.
  mnist          28x28x1 zero-padded to 32x32x1 (the border is -1 after scaling), 10 classes.
  fashion_mnist  as mnist.
  celeb_a        218x178x3, centre crop 140x140, bilinear (antialiased) resize to 64x64x3,
                 1 class (labels are zeros).
  stl10          96x96x3, bilinear (antialiased) resize to 48x48x3 as in SNGAN (Miyato et al.
                 2018), 10 classes. The default split is `train` (5k labelled images); SNGAN
                 trained on `unlabelled` (100k images, label -1: unconditional models only).

Shapes:
  S      batch shape, e.g. (n_critic, B): B is the global batch (the last axis)
  P      process_count; each process gets the contiguous slice B // P of the last axis
  H W C  image_shape of the dataset after preprocessing
  images float32 [*S_local, H, W, C] in [-1, 1] (uint8 v -> v / 127.5 - 1)
  labels int32 [*S_local]

Order is keyed, never streamed: example j (row-major over S) of step t has the global counter
c = start + j, start = t * prod(S) by default, read from index
`permutation(seed, c // N)[c % N]`. Each epoch visits every example exactly once, and the data
of step t is a pure function of (seed, t): a resumed run reads exactly the same batches
without storing any iterator state. A run whose steps differ in size (a critic schedule)
passes start = (critic updates before step t) * B, a function of t too.
"""
import concurrent.futures
import functools
import math
import os
import threading
from typing import Callable, NamedTuple, Sequence

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from wgan_jax import registry
from wgan_jax.errors import ConfigError, DataError

_NUM_THREADS = 4
_EVAL_SEED_OFFSET = 12345


class ImageSpec(NamedTuple):
  """One image dataset.

  Attributes:
    tfds_name: name of the tensorflow-datasets builder.
    image_shape: (H, W, C) after preprocessing.
    num_classes: number of label values (1 without labels).
    preprocess: pure function uint8 [H0, W0, C] -> uint8 [H, W, C].
    label_key: feature holding an integer label, or None (labels are then zeros).
  """
  tfds_name: str
  image_shape: tuple[int, int, int]
  num_classes: int
  preprocess: Callable[[np.ndarray], np.ndarray]
  label_key: str | None


# ----------------------------------------------------------------------------- preprocessing


def identity(image: np.ndarray) -> np.ndarray:
  """Returns `image` unchanged."""
  return image


def pad_to(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Zero-pads uint8 [H0, W0, C] symmetrically (extra pixel at the end) to [*size, C]."""
  dh, dw = size[0] - image.shape[0], size[1] - image.shape[1]
  return np.pad(image, ((dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2), (0, 0)))


def center_crop(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """The central [*size, C] window of [H0, W0, C] (offsets rounded down)."""
  top, left = (image.shape[0] - size[0]) // 2, (image.shape[1] - size[1]) // 2
  return image[top:top + size[0], left:left + size[1]]


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Resizes uint8 [H0, W0, C] to [*size, C] with Pillow BILINEAR (antialiased downscale)."""
  channels = image.shape[-1]
  pil = Image.fromarray(image[..., 0] if channels == 1 else image)
  out = np.asarray(pil.resize((size[1], size[0]), resample=Image.Resampling.BILINEAR))
  return out.reshape(size[0], size[1], channels)


def crop_and_resize(image: np.ndarray, crop: tuple[int, int],
                    size: tuple[int, int]) -> np.ndarray:
  """`center_crop` to `crop`, then `resize` to `size`."""
  return resize(center_crop(image, crop), size)


def to_float(images: np.ndarray) -> np.ndarray:
  """uint8 [...] -> float32 [...] in [-1, 1]: v / 127.5 - 1."""
  return images.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


IMAGE_DATASETS: dict[str, ImageSpec] = {
    'cifar10': ImageSpec('cifar10', (32, 32, 3), 10, identity, 'label'),
    'mnist': ImageSpec('mnist', (32, 32, 1), 10, functools.partial(pad_to, size=(32, 32)),
                       'label'),
    'fashion_mnist': ImageSpec('fashion_mnist', (32, 32, 1), 10,
                               functools.partial(pad_to, size=(32, 32)), 'label'),
    'celeb_a': ImageSpec('celeb_a', (64, 64, 3), 1,
                         functools.partial(crop_and_resize, crop=(140, 140), size=(64, 64)),
                         None),
    'stl10': ImageSpec('stl10', (48, 48, 3), 10, functools.partial(resize, size=(48, 48)),
                       'label'),
}


def get_image_spec(name: str) -> ImageSpec:
  """IMAGE_DATASETS[name], or a ConfigError listing the valid names."""
  return registry.lookup(IMAGE_DATASETS, name, 'dataset')


# ----------------------------------------------------------------------------- preparation


def _searched_dir(data_dir: str | None) -> str:
  """The data_dir tfds searches: data_dir, else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
  return data_dir or os.environ.get('TFDS_DATA_DIR') or os.path.expanduser(
      '~/tensorflow_datasets')


def _build_hint(tfds_name: str) -> str:
  """The one-line fix for a dataset that is not readable without TensorFlow."""
  return ('prepare it once in array_record format in a separate environment that has '
          f'TensorFlow: `pip install tensorflow tensorflow-datasets && tfds build {tfds_name} '
          '--file_format=array_record --data_dir=DIR`, then pass --config.data.data_dir=DIR')


def _open(tfds_name: str, split: str, data_dir: str | None):
  """tfds.data_source without any download or preparation."""
  return tfds.data_source(tfds_name, split=split, data_dir=data_dir, download=False)


def _problem(tfds_name: str, split: str, data_dir: str | None) -> str | None:
  """What keeps `split` of `tfds_name` from being read from array_record, or None."""
  builder = tfds.builder(tfds_name, data_dir=data_dir)
  if not builder.is_prepared():
    return 'is not prepared'
  file_format = builder.info.file_format
  if file_format != tfds.core.FileFormat.ARRAY_RECORD:
    name = getattr(file_format, 'value', file_format)
    return f'is prepared as {name}, but reading it without TensorFlow needs array_record'
  try:
    builder.info.splits[split]  # Parses sub-splits such as 'train[:90%]' too.
  except (KeyError, ValueError):
    return f'has no split {split!r} (splits: {", ".join(sorted(builder.info.splits))})'
  return None


def check_prepared(name: str, *, split: str, data_dir: str | None) -> None:
  """Raises a one-line DataError unless `split` of dataset `name` can be read.

  Readable means prepared in array_record format under data_dir (or $TFDS_DATA_DIR, or
  ~/tensorflow_datasets). When the metadata checks fail but the data source still opens
  (under `tfds.testing.mock_data`, which patches the builders), nothing is raised.

  Args:
    name: key of IMAGE_DATASETS (an unknown name is a ConfigError).
    split: tfds split, e.g. 'train' or 'train[:90%]'.
    data_dir: tfds data_dir, or None for the tfds default.

  Raises:
    ConfigError: unknown dataset name.
    DataError: not prepared, prepared in another format than array_record, or no such split.
  """
  spec = get_image_spec(name)
  problem = _problem(spec.tfds_name, split, data_dir)
  if problem is None:
    return
  try:
    _open(spec.tfds_name, split, data_dir)
    return
  except Exception:  # pylint: disable=broad-except
    pass
  searched = _searched_dir(data_dir)
  if problem.startswith('has no split'):
    fix = 'use one of those splits'
  else:
    fix = _build_hint(spec.tfds_name)
  raise DataError(f'dataset {name!r} (tfds {spec.tfds_name!r}) in {searched} {problem}; {fix}')


# ----------------------------------------------------------------------------- reading


def permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  """The order of epoch `epoch`: np.random.default_rng([seed, epoch]).permutation(n)."""
  return np.random.default_rng([seed, epoch]).permutation(n)


def _local_counters(start: int, shape: tuple[int, ...], process_index: int,
                    process_count: int) -> np.ndarray:
  """Global example counters start + j of this process's slice, int64 [*shape[:-1], B // P]."""
  total = math.prod(shape)
  counters = np.int64(start) + np.arange(total, dtype=np.int64).reshape(shape)
  width = shape[-1] // process_count
  return counters[..., process_index * width:(process_index + 1) * width]


class ImageSource:
  """Deterministic random-access batches of one split of an image dataset.

  Attributes:
    num_examples: N, the number of examples in the split.
    image_shape: (H, W, C) after preprocessing.
    num_classes: number of label values.
  """

  def __init__(self, name: str, *, split: str = 'train', data_dir: str | None = None,
               seed: int = 0, process_index: int = 0, process_count: int = 1):
    """Opens the data source once.

    Args:
      name: key of IMAGE_DATASETS.
      split: tfds split ('train', 'test', 'unlabelled' for stl10, sub-splits allowed).
      data_dir: tfds data_dir, or None for $TFDS_DATA_DIR or ~/tensorflow_datasets.
      seed: non-negative seed of the epoch permutations.
      process_index: index of this process, in [0, process_count).
      process_count: number of processes sharing the global batch.

    Raises:
      ConfigError: unknown name, negative seed or invalid process index.
      DataError: dataset not readable (see `check_prepared`) or empty.
    """
    self._spec = get_image_spec(name)
    if seed < 0:
      raise ConfigError(f'data seed must be non-negative, got {seed}')
    if not 0 <= process_index < process_count:
      raise ConfigError(f'process_index {process_index} not in [0, {process_count})')
    check_prepared(name, split=split, data_dir=data_dir)
    self._name = name
    self._source = _open(self._spec.tfds_name, split, data_dir)
    self._n = len(self._source)
    if self._n == 0:
      raise DataError(f'dataset {name!r} split {split!r} in {_searched_dir(data_dir)} is empty')
    self._seed = seed
    self._process_index = process_index
    self._process_count = process_count
    self._perms: dict[tuple[int, int], np.ndarray] = {}
    self._lock = threading.Lock()
    self._pool = concurrent.futures.ThreadPoolExecutor(_NUM_THREADS,
                                                       thread_name_prefix='images')

  @property
  def num_examples(self) -> int:
    return self._n

  is_toy = False

  @property
  def data_shape(self) -> tuple[int, int, int]:
    """(H, W, C) after preprocessing."""
    return self._spec.image_shape

  @property
  def num_classes(self) -> int:
    return self._spec.num_classes

  def close(self) -> None:
    """Stops the decoding threads."""
    self._pool.shutdown(wait=True)

  def _permutation(self, seed: int, epoch: int) -> np.ndarray:
    """permutation(seed, epoch, N), keeping the two most recent epochs per seed."""
    with self._lock:
      perm = self._perms.get((seed, epoch))
      if perm is None:
        perm = permutation(seed, epoch, self._n)
        same_seed = sorted(e for s, e in self._perms if s == seed)
        for old in same_seed[:-1]:
          del self._perms[(seed, old)]
        self._perms[(seed, epoch)] = perm
      return perm

  def _indices(self, seed: int, counters: np.ndarray) -> np.ndarray:
    """Dataset indices of global example counters (same shape)."""
    epochs, positions = np.divmod(counters, self._n)
    indices = np.empty_like(counters)
    for epoch in np.unique(epochs):
      mask = epochs == epoch
      indices[mask] = self._permutation(seed, int(epoch))[positions[mask]]
    return indices

  def _load(self, index: int) -> tuple[np.ndarray, int]:
    """Example `index` preprocessed: (uint8 [H, W, C], label)."""
    example = self._source[int(index)]
    image = self._spec.preprocess(np.asarray(example['image']))
    label = int(example[self._spec.label_key]) if self._spec.label_key else 0
    return image, label

  def _read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Examples at `indices` [*S]: (float32 [*S, H, W, C] in [-1, 1], int32 [*S])."""
    loaded = list(self._pool.map(self._load, indices.reshape(-1)))
    images = np.stack([image for image, _ in loaded]) if loaded else np.zeros(
        (0, *self.data_shape), np.uint8)
    if images.shape[1:] != self.data_shape:
      raise DataError(f'dataset {self._name!r} yields images of shape {images.shape[1:]} after '
                      f'preprocessing, expected {self.data_shape}')
    labels = np.array([label for _, label in loaded], dtype=np.int32)
    return (to_float(images).reshape(*indices.shape, *self.data_shape),
            labels.reshape(indices.shape))

  def batches(self, step: int, *, shape: Sequence[int],
              start: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """This process's slice of the examples of training step `step`.

    Args:
      step: training step t >= 0; example j (row-major over `shape`) has global counter
        start + j.
      shape: global batch shape, e.g. (n_critic, B); B (last axis) divisible by P.
      start: the global counter of the step's first example (default t * prod(shape), the
        position of a run whose steps all have this shape).

    Returns:
      images float32 [*shape[:-1], B // P, H, W, C] in [-1, 1], labels int32
      [*shape[:-1], B // P]: process p gets columns [p * B // P, (p + 1) * B // P).

    Raises:
      DataError: B not divisible by process_count.
    """
    shape = tuple(int(s) for s in shape)
    if not shape or shape[-1] % self._process_count:
      raise DataError(f'global batch shape {shape}: the last axis must be divisible by the '
                      f'process count {self._process_count}')
    start = step * math.prod(shape) if start is None else start
    counters = _local_counters(start, shape, self._process_index, self._process_count)
    return self._read(self._indices(self._seed, counters))

  def eval_real(self, n: int, *, index: int) -> np.ndarray:
    """n distinct real images for evaluation, float32 [n, H, W, C] in [-1, 1].

    The first n of permutation(seed + index + 12345, 0, N), the same on every process.

    Raises:
      DataError: n > N.
    """
    if n > self._n:
      raise DataError(f'asked for {n} real images but dataset {self._name!r} has only {self._n} '
                      'in this split')
    perm = permutation(self._seed + index + _EVAL_SEED_OFFSET, 0, self._n)
    return self._read(perm[:n])[0]
