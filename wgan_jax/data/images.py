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

The stores here (TfdsStore) read one example at a time; order, batches and placement are
wgan_jax.data.source's.
"""
import functools
import os
from typing import Callable, Mapping, NamedTuple

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from wgan_jax import registry
from wgan_jax.data import store as store_lib
from wgan_jax.errors import DataError


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


class TfdsStore(store_lib.Store):
  """One split of a tfds dataset read from array_record files, decoded per example."""

  def __init__(self, name: str, *, tfds_name: str, split: str, data_dir: str | None,
               image_shape: tuple[int, int, int], num_classes: int,
               preprocess: Callable[[np.ndarray], np.ndarray], label_key: str | None):
    self.name, self.image_shape, self.num_classes = name, tuple(image_shape), num_classes
    self._preprocess, self._label_key = preprocess, label_key
    self._source = _open(tfds_name, split, data_dir)
    self.num_examples = len(self._source)
    if self.num_examples == 0:
      raise DataError(f'dataset {name!r} split {split!r} in {_searched_dir(data_dir)} is empty')

  def _load(self, index: int) -> tuple[np.ndarray, int]:
    """Example `index` preprocessed: (uint8 [H, W, C], label)."""
    example = self._source[int(index)]
    image = self._preprocess(np.asarray(example['image']))
    if image.shape != self.image_shape:
      raise DataError(f'dataset {self.name!r} yields images of shape {image.shape} after '
                      f'preprocessing, expected {self.image_shape}')
    label = int(example[self._label_key]) if self._label_key else 0
    return image, label

  def read(self, indices):
    images = np.empty((len(indices), *self.image_shape), np.uint8)
    labels = np.empty((len(indices),), np.int32)
    for i, index in enumerate(np.asarray(indices).reshape(-1)):
      images[i], labels[i] = self._load(index)
    return images, labels


def open_named(name: str, data: Mapping) -> store_lib.Store:
  """The named dataset `name` (IMAGE_DATASETS) from tfds array_record files under
  data.data_dir (or the tfds default); ConfigError / DataError on an unknown name or
  unprepared data."""
  spec = get_image_spec(name)
  split, data_dir = data.get('split', 'train'), data.get('data_dir') or None
  check_prepared(name, split=split, data_dir=data_dir)
  return TfdsStore(name, tfds_name=spec.tfds_name, split=split, data_dir=data_dir,
                   image_shape=spec.image_shape, num_classes=spec.num_classes,
                   preprocess=spec.preprocess, label_key=spec.label_key)
