"""Tests of wgan_jax.data.images and the order of wgan_jax.data.source on
tfds.testing.mock_data and on a tiny real array_record build."""
import json
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from wgan_jax import errors
from wgan_jax.data import images, source as source_lib

N = 10


@pytest.fixture
def mock_tfds():
  """Every tfds dataset has N random examples (per index deterministic) in every split."""
  with tfds.testing.mock_data(num_examples=N):
    yield


class _FloatSource(source_lib.ImageSource):
  """ImageSource (host placement) whose batches are float32 images, as the step sees them."""

  def batches(self, *args, **kwargs):
    arrays, labels = super().batches(*args, **kwargs)
    return source_lib.to_float(arrays['x']), labels


def _source(name='cifar10', *, split='train', data_dir=None, seed=0, **kwargs):
  data = dict(name=name, split=split, data_dir=data_dir or '', placement='host')
  return _FloatSource(data, seed=seed, **kwargs)


def _keys(batch):
  """uint8 bytes of each image of float32 [..., H, W, C]: a key per example."""
  flat = batch.reshape(-1, *batch.shape[-3:])
  return [np.round((x + 1.0) * 127.5).astype(np.uint8).tobytes() for x in flat]


def _index_of_key(name='cifar10'):
  """key -> dataset index, from the raw (mocked) data source and the spec's preprocess."""
  spec = images.IMAGE_DATASETS[name]
  raw = tfds.data_source(spec.tfds_name, split='train', download=False)
  keys = [spec.preprocess(np.asarray(raw[i]['image'])).tobytes() for i in range(N)]
  assert len(set(keys)) == N
  return {key: i for i, key in enumerate(keys)}


# ----------------------------------------------------------------------------- registry / errors


def test_registry():
  assert set(images.IMAGE_DATASETS) == {'cifar10', 'mnist', 'fashion_mnist', 'celeb_a', 'stl10'}
  for spec in images.IMAGE_DATASETS.values():
    assert len(spec.image_shape) == 3 and spec.label_key in ('label', None)


def test_unknown_name_is_config_error(tmp_path):
  with pytest.raises(errors.ConfigError, match='cifar10'):
    images.check_prepared('cifar11', split='train', data_dir=str(tmp_path))
  with pytest.raises(errors.ConfigError, match='unknown dataset'):
    _source('imagenet', data_dir=str(tmp_path))


def test_check_prepared_empty_data_dir(tmp_path):
  with pytest.raises(errors.DataError) as info:
    images.check_prepared('cifar10', split='train', data_dir=str(tmp_path))
  message = str(info.value)
  assert '\n' not in message
  assert 'cifar10' in message and str(tmp_path) in message and 'not prepared' in message
  assert 'tfds build cifar10 --file_format=array_record' in message
  assert '--config.data.data_dir' in message
  with pytest.raises(errors.DataError, match='tfds build'):
    _source('cifar10', data_dir=str(tmp_path))


# ----------------------------------------------------------------------------- preprocessing


def test_preprocess_helpers():
  image = np.arange(218 * 178 * 3, dtype=np.uint32).astype(np.uint8).reshape(218, 178, 3)
  crop = images.center_crop(image, (140, 140))
  np.testing.assert_array_equal(crop, image[39:179, 19:159])
  assert images.resize(crop, (64, 64)).shape == (64, 64, 3)
  gray = np.full((28, 28, 1), 255, np.uint8)
  padded = images.pad_to(gray, (32, 32))
  assert padded.shape == (32, 32, 1) and padded.sum() == 255 * 28 * 28
  assert images.resize(np.full((96, 96, 1), 7, np.uint8), (48, 48)).shape == (48, 48, 1)
  np.testing.assert_array_equal(images.resize(np.full((96, 96, 3), 7, np.uint8), (48, 48)), 7)
  np.testing.assert_array_equal(source_lib.to_float(np.array([0, 255], np.uint8)), [-1.0, 1.0])


# ----------------------------------------------------------------------------- mocked datasets


@pytest.mark.parametrize('name', sorted(images.IMAGE_DATASETS))
def test_batches_shapes_dtypes_range(mock_tfds, name):
  del mock_tfds
  images.check_prepared(name, split='train', data_dir=None)
  source = _source(name)
  spec = images.IMAGE_DATASETS[name]
  assert source.num_examples == N and source.data_shape == spec.image_shape
  assert source.num_classes == spec.num_classes
  x, y = source.batches(3, shape=(2, 4))
  assert x.shape == (2, 4, *spec.image_shape) and x.dtype == np.float32
  assert y.shape == (2, 4) and y.dtype == np.int32
  assert x.min() >= -1.0 and x.max() <= 1.0 and x.std() > 0.1
  assert y.min() >= 0 and y.max() < spec.num_classes
  source.close()


def test_stl10_unlabelled_split_opens(mock_tfds):
  del mock_tfds
  x, _ = _source('stl10', split='unlabelled').batches(0, shape=(1, 2))
  assert x.shape == (1, 2, 48, 48, 3)


@pytest.mark.parametrize('name', ['mnist', 'fashion_mnist'])
def test_mnist_padding_is_minus_one(mock_tfds, name):
  del mock_tfds
  x, _ = _source(name).batches(0, shape=(1, 4))
  border = np.ones((32, 32), bool)
  border[2:30, 2:30] = False
  assert np.all(x[..., border, :] == -1.0)
  assert np.any(x[..., ~border, :] > -1.0)


def test_deterministic_in_seed_and_step(mock_tfds):
  del mock_tfds
  a, b, c = _source(seed=3), _source(seed=3), _source(seed=4)
  xa, ya = a.batches(7, shape=(2, 3))
  xb, yb = b.batches(7, shape=(2, 3))
  np.testing.assert_array_equal(xa, xb)
  np.testing.assert_array_equal(ya, yb)
  assert not np.array_equal(xa, a.batches(8, shape=(2, 3))[0])
  assert not np.array_equal(xa, c.batches(7, shape=(2, 3))[0])
  np.testing.assert_array_equal(xa, a.batches(7, shape=(2, 3))[0])  # Random access: again.


def test_epochs_cover_every_example_once(mock_tfds):
  del mock_tfds
  index_of = _index_of_key()
  source = _source(seed=1)
  seen = [index_of[k] for step in range(4) for k in _keys(source.batches(step, shape=(1, 5))[0])]
  assert sorted(seen[:N]) == list(range(N)) and sorted(seen[N:]) == list(range(N))
  assert seen[:N] != seen[N:]  # A new permutation per epoch.
  # Batches that straddle epochs follow the same global counter (3 x 10 = 30 examples).
  straddle = [index_of[k] for step in range(10) for k in _keys(source.batches(step, shape=(3,))[0])]
  expected = [source_lib.permutation(1, c // N, N)[c % N] for c in range(30)]
  assert straddle == expected
  assert straddle[:20] == seen


def test_process_slices_concatenate_to_global_batch(mock_tfds):
  del mock_tfds
  x, y = _source(seed=2).batches(5, shape=(3, 4))
  parts = [_source(seed=2, process_index=p, process_count=2).batches(5, shape=(3, 4))
           for p in range(2)]
  assert parts[0][0].shape == (3, 2, 32, 32, 3) and parts[0][1].shape == (3, 2)
  np.testing.assert_array_equal(np.concatenate([p[0] for p in parts], axis=1), x)
  np.testing.assert_array_equal(np.concatenate([p[1] for p in parts], axis=1), y)
  with pytest.raises(errors.DataError, match='divisible'):
    _source(process_index=1, process_count=2).batches(0, shape=(2, 3))


def test_eval_real(mock_tfds):
  del mock_tfds
  source = _source()
  real = source.eval_real(6, index=0)
  assert real.shape == (6, 32, 32, 3) and real.dtype == np.float32
  assert len(set(_keys(real))) == 6
  np.testing.assert_array_equal(real, _source(process_index=1, process_count=2).eval_real(6, index=0))
  assert not np.array_equal(real, source.eval_real(6, index=1))
  with pytest.raises(errors.DataError, match='only 10'):
    source.eval_real(N + 1, index=0)


# ----------------------------------------------------------------------------- real array_record


class WganJaxTinyImages(tfds.core.GeneratorBasedBuilder):
  """12 train + 4 test random 32x32x3 images; Tensor features, so no TensorFlow to build."""
  VERSION = tfds.core.Version('1.0.0')
  # tfds resolves the code path of builders defined in packages with `importlib_resources`,
  # which tfds 4.9.10 does not install; no code path means no checksums file to look for.
  code_path = None

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        'image': tfds.features.Tensor(shape=(32, 32, 3), dtype=np.uint8),
        'label': tfds.features.ClassLabel(num_classes=10)}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(12), 'test': self._generate_examples(4)}

  def _generate_examples(self, n):
    rng = np.random.default_rng(n)
    for i in range(n):
      yield i, {'image': rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), 'label': i % 10}


@pytest.fixture(scope='module')
def tiny_dirs(tmp_path_factory):
  """(array_record data_dir, the same metadata marked tfrecord) of WganJaxTinyImages."""
  good = tmp_path_factory.mktemp('array_record')
  WganJaxTinyImages(data_dir=str(good), file_format='array_record').download_and_prepare()
  bad = tmp_path_factory.mktemp('tfrecord')
  shutil.copytree(good / 'wgan_jax_tiny_images', bad / 'wgan_jax_tiny_images')
  info_path = bad / 'wgan_jax_tiny_images' / '1.0.0' / 'dataset_info.json'
  info = json.loads(info_path.read_text())
  info['fileFormat'] = 'tfrecord'
  info_path.write_text(json.dumps(info))
  return str(good), str(bad)


@pytest.fixture
def tiny_spec(monkeypatch):
  spec = images.ImageSpec('wgan_jax_tiny_images', (32, 32, 3), 10, images.identity, 'label')
  monkeypatch.setitem(images.IMAGE_DATASETS, 'tiny', spec)


def test_real_array_record_reads(tiny_dirs, tiny_spec):
  del tiny_spec
  good, _ = tiny_dirs
  images.check_prepared('tiny', split='train', data_dir=good)
  source = _source('tiny', data_dir=good)
  assert source.num_examples == 12
  x, y = source.batches(0, shape=(2, 6))
  assert x.shape == (2, 6, 32, 32, 3) and sorted(y.reshape(-1) % 10) == sorted(np.arange(12) % 10)
  assert len(set(_keys(x))) == 12  # One epoch = every example once.
  assert _source('tiny', split='train[:50%]', data_dir=good).num_examples == 6


def test_real_unknown_split_and_wrong_format(tiny_dirs, tiny_spec):
  del tiny_spec
  good, bad = tiny_dirs
  with pytest.raises(errors.DataError, match="no split 'validation'.*test, train"):
    images.check_prepared('tiny', split='validation', data_dir=good)
  with pytest.raises(errors.DataError) as info:
    images.check_prepared('tiny', split='train', data_dir=bad)
  message = str(info.value)
  assert 'tfrecord' in message and 'array_record' in message and bad in message
  assert 'tfds build wgan_jax_tiny_images' in message and '\n' not in message
