"""Image datasets: the named ones (IMAGE_DATASETS) and any tfds image dataset (tfds:NAME).

Datasets are read with `tfds.data_source` (array_record files, decoded with Pillow), so the
training environment needs no TensorFlow. Preparing a dataset (downloading it and writing the
array_record files) does need TensorFlow and is done once, in a separate environment:

  pip install tensorflow tensorflow-datasets
  tfds build cifar10 --file_format=array_record --data_dir=DIR

then train with `--config.data.data_dir=DIR`. `check_prepared` says so in one line.

cifar10, mnist and fashion_mnist can instead be prepared without TensorFlow from their
official archives (wgan_jax.data.prepare):

  python -m wgan_jax.data.prepare --dataset=cifar10 --out=DIR

which writes DIR/cifar10/{train,test}.npz (raw uint8 images, int64 labels). When data.data_dir
holds `<name>/<split>.npz`, the named dataset is read from there (whole split in memory, the
preprocessing below applied once) and tfds is not used. The images and labels are the same as
tfds gives; their index order is the archive's, not tfds', which changes nothing for training
(batches are drawn by a keyed permutation of the indices, wgan_jax.data.source) but selects
other images for reference statistics. Sub-splits of prepared files: `split[a:b]` with
integers or percentages (`train[:90%]`, `test[-1000:]`), rounded as tfds does; unions
(`train+test`) are not supported.

Registry (shapes after preprocessing, NHWC):

  cifar10        32x32x3, 10 classes, unchanged.
  mnist          28x28x1 zero-padded to 32x32x1 (the border is -1 after scaling), 10 classes.
  fashion_mnist  as mnist.
  celeb_a        218x178x3, centre crop 140x140, bilinear (antialiased) resize to 64x64x3,
                 1 class (labels are zeros).
  stl10          96x96x3, bilinear (antialiased) resize to 48x48x3 as in SNGAN (Miyato et al.
                 2018), 10 classes. The default split is `train` (5k labelled images); SNGAN
                 trained on `unlabelled` (100k images, label -1: unconditional models only).

tfds:NAME is any tfds dataset with a uint8 `image` feature, prepared in array_record format
as above. Its labels are the `label` feature when that is a ClassLabel (num_classes from it),
else zeros (1 class). Its images are used as they are when they have one square size and
data.image_size is 0; otherwise data.image_size = S is required (variable or non-square
sizes). data.channels (1 or 3; 0: the feature's) converts grey / grey + alpha / RGB / RGBA
(`pixels.to_channels`: alpha composited on white), then data.image_size = S resizes the
centred square of side min(H, W) to S x S with Pillow BICUBIC (`pixels.resize_square_pixels`).
This is the convention of wgan_jax.data.pixels, shared with folder:PATH and npz:PATH (which
converts channels only): the same picture gives the same pixels from a tfds dataset, an image
folder or an npz array.

The stores here (TfdsStore) read one example at a time; order, batches and placement are
wgan_jax.data.source's.
"""
import functools
import glob
import os
import re
from typing import Callable, Mapping, NamedTuple

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from wgan_jax import registry
from wgan_jax.data import npz, pixels, prepare
from wgan_jax.data import store as store_lib
from wgan_jax.errors import ConfigError, DataError


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
  """Zero-pads uint8 [..., H0, W0, C] symmetrically (extra pixel at the end) to
  [..., *size, C]: one image or a batch."""
  dh, dw = size[0] - image.shape[-3], size[1] - image.shape[-2]
  lead = ((0, 0),) * (image.ndim - 3)
  return np.pad(image, lead + ((dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2), (0, 0)))


def center_crop(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """The central [*size, C] window of [H0, W0, C] (offsets rounded down)."""
  top, left = (image.shape[0] - size[0]) // 2, (image.shape[1] - size[1]) // 2
  return image[top:top + size[0], left:left + size[1]]


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Resizes uint8 [H0, W0, C] to [*size, C] with Pillow BILINEAR (antialiased downscale)."""
  pil = pixels.from_array(image)
  return pixels.as_array(pil.resize((size[1], size[0]), resample=Image.Resampling.BILINEAR))


def crop_and_resize(image: np.ndarray, crop: tuple[int, int],
                    size: tuple[int, int]) -> np.ndarray:
  """`center_crop` to `crop`, then `resize` to `size`."""
  return resize(center_crop(image, crop), size)


def preprocess_all(preprocess: Callable[[np.ndarray], np.ndarray],
                   images: np.ndarray) -> np.ndarray:
  """`preprocess` of every image of uint8 [N, H0, W0, C]: one call on the whole array for
  `identity` and `pad_to` (which take a batch), else one call per image."""
  base = getattr(preprocess, 'func', preprocess)
  if base in (identity, pad_to):
    return preprocess(images)
  if len(images) == 0:
    return np.empty((0, *preprocess(np.zeros(images.shape[1:], np.uint8)).shape), np.uint8)
  return np.stack([preprocess(image) for image in images])


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


def _build_hint(tfds_name: str, name: str = '') -> str:
  """The one-line fix for a dataset that is not readable without TensorFlow (with the
  TensorFlow-free wgan_jax.data.prepare first for the datasets it knows)."""
  tfds_build = ('prepare it once in array_record format in a separate environment that has '
                f'TensorFlow: `pip install tensorflow tensorflow-datasets && tfds build '
                f'{tfds_name} --file_format=array_record --data_dir=DIR`, then pass '
                '--config.data.data_dir=DIR')
  if name not in prepare.DATASETS:
    return tfds_build
  return (f'prepare it once without TensorFlow: `python -m wgan_jax.data.prepare '
          f'--dataset={name} --out=DIR`, then pass --config.data.data_dir=DIR; or {tfds_build}')


def _open(tfds_name: str, split: str, data_dir: str | None):
  """tfds.data_source without any download or preparation."""
  return tfds.data_source(tfds_name, split=split, data_dir=data_dir, download=False)


def _builder(tfds_name: str, data_dir: str | None):
  """tfds.builder, or a ConfigError (one line) when tfds has no dataset of that name."""
  try:
    return tfds.builder(tfds_name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise ConfigError(f'data.name {"tfds:" + tfds_name!r}: tensorflow-datasets has no dataset '
                      f'{tfds_name!r}; see tfds.list_builders() or '
                      'https://www.tensorflow.org/datasets/catalog') from None


def _problem(tfds_name: str, split: str, data_dir: str | None) -> str | None:
  """What keeps `split` of `tfds_name` from being read from array_record, or None."""
  builder = _builder(tfds_name, data_dir)
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


def _tfds_name_of(name: str) -> str:
  """The tfds builder name of a named dataset or of 'tfds:NAME'."""
  if name.startswith('tfds:'):
    return name[len('tfds:'):]
  return get_image_spec(name).tfds_name


def check_prepared(name: str, *, split: str, data_dir: str | None) -> None:
  """Raises a one-line DataError unless `split` of dataset `name` can be read from tfds.

  Readable means prepared in array_record format under data_dir (or $TFDS_DATA_DIR, or
  ~/tensorflow_datasets). When the metadata checks fail but the data source still opens
  (under `tfds.testing.mock_data`, which patches the builders), nothing is raised.

  Args:
    name: key of IMAGE_DATASETS, or 'tfds:NAME' for the tfds dataset NAME.
    split: tfds split, e.g. 'train' or 'train[:90%]'.
    data_dir: tfds data_dir, or None for the tfds default.

  Raises:
    ConfigError: unknown dataset name.
    DataError: not prepared, prepared in another format than array_record, or no such split.
  """
  tfds_name = _tfds_name_of(name)
  problem = _problem(tfds_name, split, data_dir)
  if problem is None:
    return
  try:
    _open(tfds_name, split, data_dir)
    return
  except Exception:  # pylint: disable=broad-except
    pass
  searched = _searched_dir(data_dir)
  if problem.startswith('has no split'):
    fix = 'use one of those splits'
  else:
    fix = _build_hint(tfds_name, name)
  raise DataError(f'dataset {name!r} (tfds {tfds_name!r}) in {searched} {problem}; {fix}')


# ----------------------------------------------------------------------------- tfds:NAME


def _compose(image: np.ndarray, steps: tuple) -> np.ndarray:
  """Applies the functions `steps` to `image` in order."""
  for step in steps:
    image = step(image)
  return image


def _shape_text(shape) -> str:
  return 'x'.join('?' if s is None else str(s) for s in shape)


def tfds_spec(tfds_name: str, data: Mapping) -> ImageSpec:
  """The ImageSpec of tfds dataset `tfds_name` read as config.data `data` says (image_size,
  channels), from its builder's metadata alone (module docstring for the rules).

  Raises:
    ConfigError: unknown dataset; data.image_size missing for variable or non-square images;
      images of other than 1 or 3 channels without data.channels.
    DataError: no uint8 `image` feature of shape [H, W, C].
  """
  name = f'tfds:{tfds_name}'
  features = _builder(tfds_name, data.get('data_dir') or None).info.features
  keys = list(features.keys())
  if 'image' not in keys:
    raise DataError(f'data.name {name!r}: the dataset has no image feature (features: '
                    f'{", ".join(keys)}); only tfds datasets with an `image` feature are read')
  feature = features['image']
  shape, dtype = tuple(feature.shape), np.dtype(feature.np_dtype)
  if dtype != np.uint8 or len(shape) != 3:
    raise DataError(f'data.name {name!r}: its image feature is {dtype} of shape '
                    f'{_shape_text(shape)}; only uint8 images [H, W, C] are read')
  height, width, have = shape
  size = int(data.get('image_size', 0) or 0)
  if not size and (height is None or width is None or height != width):
    kind = 'variable size' if None in (height, width) else 'not square'
    raise ConfigError(f'data.name {name!r} has images of shape {_shape_text(shape)} ({kind}); '
                      'set data.image_size=S: the centred square is resized to S x S')
  channels = int(data.get('channels', 0) or 0) or have
  if channels not in (1, 3):
    raise ConfigError(f'data.name {name!r} has images of {_shape_text([have])} channels; set '
                      'data.channels=1 (grey) or 3 (RGB)')
  steps = []
  if have != channels:
    steps.append(functools.partial(pixels.to_channels, channels=channels))
  if size and (height, width) != (size, size):
    steps.append(functools.partial(pixels.resize_square_pixels, size=size))
  label = features['label'] if 'label' in keys else None
  classes = getattr(label, 'num_classes', None) if isinstance(
      label, tfds.features.ClassLabel) else None
  return ImageSpec(tfds_name, (size or height, size or width, channels), classes or 1,
                   functools.partial(_compose, steps=tuple(steps)) if steps else identity,
                   'label' if classes else None)


def describe_tfds(tfds_name: str, data: Mapping) -> tuple[tuple[int, int, int], int]:
  """((H, W, C), num_classes) of `tfds:tfds_name` from builder.info only (`tfds_spec`)."""
  spec = tfds_spec(tfds_name, data)
  return spec.image_shape, spec.num_classes


def open_tfds(tfds_name: str, data: Mapping) -> store_lib.Store:
  """The split data.split of tfds dataset `tfds_name` from its array_record files under
  data.data_dir (or the tfds default), preprocessed as `tfds_spec` says.

  Raises:
    ConfigError / DataError: as `tfds_spec` and `check_prepared`.
  """
  spec = tfds_spec(tfds_name, data)
  split, data_dir = data.get('split', 'train'), data.get('data_dir') or None
  check_prepared(f'tfds:{tfds_name}', split=split, data_dir=data_dir)
  return TfdsStore(data.get('name', f'tfds:{tfds_name}'), tfds_name=tfds_name, split=split,
                   data_dir=data_dir, image_shape=spec.image_shape,
                   num_classes=spec.num_classes, preprocess=spec.preprocess,
                   label_key=spec.label_key)


# ----------------------------------------------------------------------------- prepared files

# name, then an optional [start:stop] of integers or percentages (tfds' slice syntax).
_SPLIT_RE = re.compile(r'^(?P<name>[\w-]+)(\[(?P<start>-?[\d.]+%?)?:(?P<stop>-?[\d.]+%?)?\])?$')


def parse_split(split: str) -> tuple[str, str | None, str | None]:
  """'train[10%:-5%]' -> ('train', '10%', '-5%'); 'test' -> ('test', None, None).

  Raises:
    DataError: another syntax (unions 'train+test', shards, single indices).
  """
  match = _SPLIT_RE.match(split.replace(' ', ''))
  if not match:
    raise DataError(f'data.split {split!r}: prepared .npz files take a split name with an '
                    "optional slice, e.g. 'train', 'train[:90%]', 'train[1000:]', "
                    "'test[-500:]'; unions and shards are not supported")
  return match['name'], match['start'], match['stop']


def split_bounds(split: str, num_examples: int) -> tuple[int, int]:
  """[start, stop) of `split`'s slice of a split of `num_examples`, as tfds computes it
  (percentages rounded to the closest example; negative bounds from the end).

  Raises:
    DataError: bad syntax (`parse_split`) or a bound beyond the split.
  """
  _, start, stop = parse_split(split)
  percent = any(b is not None and b.endswith('%') for b in (start, stop))
  bounds = []
  for bound, default in ((start, 0), (stop, num_examples)):
    if bound is None:
      bounds.append(default)
      continue
    try:
      value = float(bound.rstrip('%')) if percent else int(bound)
    except ValueError:
      raise DataError(f'data.split {split!r}: {bound!r} is not a number') from None
    if percent:
      if abs(value) > 100:
        raise DataError(f'data.split {split!r}: percentages are in [-100, 100]')
      value = int(round(value * num_examples / 100.0))
    if abs(value) > num_examples:
      raise DataError(f'data.split {split!r}: bound {bound} is beyond the split\'s '
                      f'{num_examples} examples')
    bounds.append(value + num_examples if value < 0 else value)
  return bounds[0], max(bounds[0], bounds[1])


def prepared_file(name: str, split: str, data_dir: str | None) -> str | None:
  """`<data_dir>/<name>/<split name>.npz` when data_dir holds prepared .npz files of dataset
  `name` (wgan_jax.data.prepare), else None (tfds is read).

  Raises:
    DataError: prepared files of `name` are there, but none of this split.
  """
  if not data_dir:
    return None
  folder = os.path.join(data_dir, name)
  found = sorted(glob.glob(os.path.join(glob.escape(folder), '*.npz')))
  if not found:
    return None
  path = os.path.join(folder, parse_split(split)[0] + '.npz')
  if path not in found:
    have = ', '.join(os.path.basename(f)[:-len('.npz')] for f in found)
    raise DataError(f'dataset {name!r}: {folder} holds the prepared splits {have} but not '
                    f'{os.path.basename(path)}; use one of those splits')
  return path


def open_prepared(name: str, split: str, path: str) -> store_lib.ArrayStore:
  """Named dataset `name` from its prepared file `path` (raw uint8 x [N, H0, W0, C], y
  [N]), sliced as `split` says and preprocessed once (`preprocess_all`).

  Raises:
    DataError: a file that is not what wgan_jax.data.prepare writes for `name`.
  """
  spec = get_image_spec(name)
  x, y = npz.read_arrays(path)
  fix = f'write it again with python -m wgan_jax.data.prepare --dataset={name}'
  raw = prepare.DATASETS[name].image_shape if name in prepare.DATASETS else None
  if raw is not None and x.shape[1:] != raw:
    raise DataError(f'prepared file {path!r} holds images of shape {x.shape[1:]}, dataset '
                    f'{name!r} has {raw}; {fix}')
  if spec.label_key is not None and y is None:
    raise DataError(f'prepared file {path!r} has no labels y; {fix}')
  start, stop = split_bounds(split, len(x))
  images = preprocess_all(spec.preprocess, x[start:stop])
  if images.shape[1:] != spec.image_shape:
    raise DataError(f'prepared file {path!r} holds images of shape {x.shape[1:]}, which '
                    f'preprocess to {images.shape[1:]}, not {spec.image_shape}; {fix}')
  labels = np.zeros((stop - start,), np.int32)
  if spec.label_key is not None:
    npz.check_labels(path, y, len(x))
    labels = y[start:stop].astype(np.int32)
    if labels.size and not -1 <= labels.min() <= labels.max() < spec.num_classes:
      raise DataError(f'prepared file {path!r} has labels outside 0 .. '
                      f'{spec.num_classes - 1}; {fix}')
  return store_lib.ArrayStore(name, images, labels, spec.num_classes)


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
  """The named dataset `name` (IMAGE_DATASETS): from the prepared file
  `<data.data_dir>/<name>/<split>.npz` when there is one (`open_prepared`), else from tfds
  array_record files under data.data_dir (or the tfds default); ConfigError / DataError on
  an unknown name or unprepared data."""
  spec = get_image_spec(name)
  split, data_dir = data.get('split', 'train'), data.get('data_dir') or None
  path = prepared_file(name, split, data_dir)
  if path is not None:
    return open_prepared(name, split, path)
  check_prepared(name, split=split, data_dir=data_dir)
  return TfdsStore(name, tfds_name=spec.tfds_name, split=split, data_dir=data_dir,
                   image_shape=spec.image_shape, num_classes=spec.num_classes,
                   preprocess=spec.preprocess, label_key=spec.label_key)
