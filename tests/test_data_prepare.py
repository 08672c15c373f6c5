"""Tests of wgan_jax.data.prepare (official archives -> .npz without TensorFlow), the named
datasets read from those files, npz:PATH (wgan_jax.data.npz) and tfds:NAME (on
tfds.testing.mock_data)."""
import gzip
import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from wgan_jax import errors
from wgan_jax.data import images, npz, pixels, prepare, source, store

RNG = np.random.default_rng(0)
# CIFAR-10 python batches: 2 images in each of data_batch_1 .. 5, 3 in test_batch.
CIFAR_TRAIN = [(RNG.integers(0, 256, (2, 3072), dtype=np.uint8), [i % 10, (i + 3) % 10])
               for i in range(5)]
CIFAR_TEST = (RNG.integers(0, 256, (3, 3072), dtype=np.uint8), [9, 0, 4])
MNIST = {'train': (RNG.integers(0, 256, (6, 28, 28), dtype=np.uint8), np.arange(6) + 2),
         'test': (RNG.integers(0, 256, (4, 28, 28), dtype=np.uint8), np.arange(4))}


def _one_line(info) -> str:
  message = str(info.value)
  assert '\n' not in message and message
  return message


def _cifar_batch(data, labels, *, old_numpy=False) -> bytes:
  raw = pickle.dumps({b'batch_label': b'tiny', b'labels': labels, b'data': data,
                      b'filenames': [b'a.png'] * len(labels)}, protocol=2)
  # The official batches were pickled by numpy 1 (module numpy.core.multiarray).
  return raw.replace(b'numpy._core.multiarray', b'numpy.core.multiarray') if old_numpy else raw


def _add(tar, name, data):
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def _write_cifar_tarball(path, *, skip=()):
  with tarfile.open(path, 'w:gz') as tar:
    for i, (data, labels) in enumerate(CIFAR_TRAIN):
      name = f'data_batch_{i + 1}'
      if name not in skip:
        _add(tar, f'cifar-10-batches-py/{name}', _cifar_batch(data, labels, old_numpy=i == 0))
    _add(tar, 'cifar-10-batches-py/test_batch', _cifar_batch(*CIFAR_TEST))
    _add(tar, 'cifar-10-batches-py/readme.html', b'<html></html>')


def _idx(array) -> bytes:
  header = (0x0800 + array.ndim).to_bytes(4, 'big')
  header += b''.join(int(s).to_bytes(4, 'big') for s in array.shape)
  return header + array.astype(np.uint8).tobytes()


def _write_mnist_dir(folder):
  os.makedirs(folder, exist_ok=True)
  for split, (images_file, labels_file) in prepare.MNIST_FILES.items():
    x, y = MNIST[split]
    with gzip.open(os.path.join(folder, images_file), 'wb') as f:
      f.write(_idx(x))
    # One file unzipped, as some mirrors serve them.
    unzipped = split == 'test'
    with (open(os.path.join(folder, labels_file[:-3]), 'wb') if unzipped
          else gzip.open(os.path.join(folder, labels_file), 'wb')) as f:
      f.write(_idx(np.asarray(y)))


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  """(archives dir, data_dir with cifar10 and mnist prepared from tiny archives)."""
  archives = tmp_path_factory.mktemp('archives')
  _write_cifar_tarball(archives / 'cifar-10-python.tar.gz')
  _write_mnist_dir(archives / 'mnist')
  out = tmp_path_factory.mktemp('prepared')
  summaries = {
      'cifar10': prepare.prepare('cifar10', str(out),
                                 archive=str(archives / 'cifar-10-python.tar.gz')),
      'mnist': prepare.prepare('mnist', str(out), archive=str(archives / 'mnist'))}
  return archives, str(out), summaries


# ----------------------------------------------------------------------------- prepare


def test_cifar10_npz_is_the_archive(prepared):
  _, out, summaries = prepared
  assert summaries['cifar10']['examples'] == {'train': 10, 'test': 3}
  assert summaries['cifar10']['official'] is False  # A tiny archive, not the published one.
  with np.load(os.path.join(out, 'cifar10', 'train.npz')) as f:
    x, y = f['x'], f['y']
  assert x.shape == (10, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
  data = np.concatenate([d for d, _ in CIFAR_TRAIN])
  # Pixel (row 5, column 7) of image 3 in green: plane 1 of the CHW row of 3072.
  assert x[3, 5, 7, 1] == data[3, 1024 + 5 * 32 + 7]
  np.testing.assert_array_equal(x, data.reshape(10, 3, 32, 32).transpose(0, 2, 3, 1))
  np.testing.assert_array_equal(y, np.concatenate([l for _, l in CIFAR_TRAIN]))
  with np.load(os.path.join(out, 'cifar10', 'test.npz')) as f:
    np.testing.assert_array_equal(f['y'], CIFAR_TEST[1])
    assert f['x'][2, 31, 0, 2] == CIFAR_TEST[0][2, 2048 + 31 * 32]
  assert not [n for n in os.listdir(os.path.join(out, 'cifar10')) if not n.endswith('.npz')]


def test_cifar10_from_the_unpacked_directory(prepared, tmp_path):
  archives, out, _ = prepared
  with tarfile.open(archives / 'cifar-10-python.tar.gz') as tar:
    tar.extractall(tmp_path / 'unpacked', filter='data')
  prepare.prepare('cifar10', str(tmp_path / 'out'), archive=str(tmp_path / 'unpacked'))
  for split in ('train', 'test'):
    with np.load(tmp_path / 'out' / 'cifar10' / f'{split}.npz') as a, \
        np.load(os.path.join(out, 'cifar10', f'{split}.npz')) as b:
      np.testing.assert_array_equal(a['x'], b['x'])
      np.testing.assert_array_equal(a['y'], b['y'])


def test_mnist_npz_is_the_archive(prepared):
  _, out, summaries = prepared
  assert summaries['mnist']['examples'] == {'train': 6, 'test': 4}
  for split, (x, y) in MNIST.items():
    with np.load(os.path.join(out, 'mnist', f'{split}.npz')) as f:
      np.testing.assert_array_equal(f['x'], x[..., None])
      np.testing.assert_array_equal(f['y'], y)


def test_named_datasets_read_the_prepared_files(prepared):
  _, out, _ = prepared
  cifar = source.ImageSource(dict(name='cifar10', split='train', data_dir=out,
                                  placement='host'), seed=0)
  assert isinstance(cifar.store, store.ArrayStore)
  assert (cifar.num_examples, cifar.data_shape, cifar.num_classes) == (10, (32, 32, 3), 10)
  batch, labels = cifar.batches(0, shape=(2, 5))
  assert batch['x'].shape == (2, 5, 32, 32, 3) and batch['x'].dtype == np.uint8
  with np.load(os.path.join(out, 'cifar10', 'train.npz')) as f:
    x, y = f['x'], f['y']
  index = cifar.indices(0, shape=(2, 5))
  np.testing.assert_array_equal(batch['x'], x[index])  # One epoch: every image once.
  np.testing.assert_array_equal(labels, y[index])
  assert sorted(index.reshape(-1)) == list(range(10))
  mnist = source.ImageSource(dict(name='mnist', split='test', data_dir=out, placement='host'),
                             seed=0)
  x, _ = mnist.store.read_all()
  assert x.shape == (4, 32, 32, 1)
  np.testing.assert_array_equal(x[:, 2:30, 2:30, 0], MNIST['test'][0])
  assert x[:, :2].sum() == x[:, 30:].sum() == x[:, :, :2].sum() == x[:, :, 30:].sum() == 0
  for name in ('cifar10', 'mnist'):
    spec = images.IMAGE_DATASETS[name]
    assert store.describe(dict(name=name, data_dir=out)) == (spec.image_shape, spec.num_classes)


def test_prepared_sub_splits(prepared):
  _, out, _ = prepared

  def count(split):
    return images.open_named('cifar10', dict(split=split, data_dir=out)).num_examples

  assert [count(s) for s in ('train[:50%]', 'train[2:5]', 'train[-3:]', 'test[:2]')] == [5, 3, 3, 2]
  first = images.open_named('cifar10', dict(split='train[-3:]', data_dir=out)).read_all()[1]
  np.testing.assert_array_equal(first, np.concatenate([l for _, l in CIFAR_TRAIN])[-3:])
  for split, expected in (('validation', 'prepared splits test, train'),
                          ('train+test', 'unions'), ('train[:20]', 'beyond')):
    with pytest.raises(errors.DataError) as info:
      images.open_named('cifar10', dict(split=split, data_dir=out))
    assert expected in _one_line(info)


def test_prepare_errors_write_nothing(prepared, tmp_path):
  archives, _, _ = prepared
  out = tmp_path / 'out'
  bad = tmp_path / 'no_batch_3.tar.gz'
  _write_cifar_tarball(bad, skip=('data_batch_3',))
  (tmp_path / 'text.tar.gz').write_bytes(b'not a tarball')
  evil = tmp_path / 'evil.tar.gz'
  with tarfile.open(evil, 'w:gz') as tar:
    for name in (*prepare.CIFAR10_TRAIN, prepare.CIFAR10_TEST):
      _add(tar, name, pickle.dumps({b'data': os.system}))  # A global no batch holds.
  mnist_bad = tmp_path / 'mnist_bad'
  _write_mnist_dir(mnist_bad)
  with gzip.open(mnist_bad / 'train-images-idx3-ubyte.gz', 'wb') as f:
    f.write(_idx(MNIST['train'][0][:5]))  # 5 images for 6 labels
  cases = [('cifar10', tmp_path / 'missing.tar.gz', 'not found'),
           ('cifar10', bad, 'no data_batch_3'),
           ('cifar10', tmp_path / 'text.tar.gz', 'cannot read the CIFAR-10'),
           ('cifar10', evil, 'posix.system is not part of a CIFAR-10 batch'),
           ('mnist', tmp_path, 'lacks train-images-idx3-ubyte.gz'),
           ('mnist', archives / 'cifar-10-python.tar.gz', 'lacks'),
           ('mnist', mnist_bad, 'expected [n, 28, 28] and [n]')]
  for dataset, archive, expected in cases:
    with pytest.raises(errors.DataError) as info:
      prepare.prepare(dataset, str(out), archive=str(archive))
    assert expected in _one_line(info), (archive, str(info.value))
  with pytest.raises(errors.ConfigError, match='valid: cifar10, fashion_mnist, mnist'):
    prepare.prepare('celeb_a', str(out))
  assert not out.exists()


def test_download_checks_sha256_and_says_when_offline(prepared, tmp_path, monkeypatch):
  archives, _, _ = prepared
  tarball = archives / 'cifar-10-python.tar.gz'
  digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
  file = prepare.ArchiveFile('cifar-10-python.tar.gz', tarball.as_uri(), digest, 1)
  monkeypatch.setitem(prepare.DATASETS, 'cifar10',
                      prepare.DATASETS['cifar10']._replace(files=(file,)))
  summary = prepare.prepare('cifar10', str(tmp_path / 'a'))
  assert summary['official'] is True and summary['examples'] == {'train': 10, 'test': 3}
  assert (tmp_path / 'a' / 'downloads' / 'cifar-10-python.tar.gz').read_bytes() == \
      tarball.read_bytes()
  for changed, expected in ((file._replace(sha256='0' * 64), 'has sha256'),
                            (file._replace(url=(tmp_path / 'none.tar.gz').as_uri()),
                             'cannot download')):
    monkeypatch.setitem(prepare.DATASETS, 'cifar10',
                        prepare.DATASETS['cifar10']._replace(files=(changed,)))
    with pytest.raises(errors.DataError) as info:
      prepare.prepare('cifar10', str(tmp_path / 'b'))
    message = _one_line(info)
    assert expected in message and '--archive=cifar-10-python.tar.gz' in message
    assert os.listdir(tmp_path / 'b' / 'downloads') == []  # No .part left behind.
  assert not (tmp_path / 'b' / 'cifar10').exists()


def test_write_npz_never_leaves_a_partial_file(tmp_path, monkeypatch):
  path = str(tmp_path / 'x.npz')
  prepare.write_npz(path, x=np.zeros(3, np.uint8))

  def fail(f, **arrays):
    f.write(b'partial')
    raise OSError('interrupted')

  monkeypatch.setattr(np, 'savez', fail)
  with pytest.raises(OSError, match='interrupted'):
    prepare.write_npz(path, x=np.ones(3, np.uint8))
  assert os.listdir(tmp_path) == ['x.npz']
  with np.load(path) as f:
    np.testing.assert_array_equal(f['x'], np.zeros(3))  # The complete earlier file.


def test_published_digests_are_tfds_checksums():
  """The idx files' sha256 and sizes are those tensorflow-datasets checks."""
  folder = os.path.join(os.path.dirname(tfds.__file__), 'url_checksums')
  for dataset in ('mnist', 'fashion_mnist'):
    with open(os.path.join(folder, f'{dataset}.txt'), encoding='utf-8') as f:
      known = {line.split('\t')[0]: line.split('\t')[1:3] for line in f if '\t' in line}
    for file in prepare.DATASETS[dataset].files:
      assert known[file.url] == [str(file.size), file.sha256], file.url


# ----------------------------------------------------------------------------- npz:PATH


def _save(path, **arrays):
  np.savez(path, **arrays)
  return str(path)


def test_npz_store_and_describe(tmp_path):
  x = RNG.integers(0, 256, (5, 6, 6, 3), dtype=np.uint8)
  path = _save(tmp_path / 'a.npz', x=x, y=np.array([0, 2, 1, 2, 0]), extra=np.zeros(2))
  data = dict(name=f'npz:{path}', placement='host')
  assert store.describe(data) == ((6, 6, 3), 3)
  src = source.ImageSource(data, seed=0)
  assert (src.num_examples, src.data_shape, src.num_classes) == (5, (6, 6, 3), 3)
  np.testing.assert_array_equal(src.store.read([4, 1])[0], x[[4, 1]])
  grey = npz.open_npz(path, dict(data, channels=1, image_size=6))
  expected = np.stack([np.asarray(Image.fromarray(im).convert('L')) for im in x])[..., None]
  np.testing.assert_array_equal(grey.read_all()[0], expected)
  assert npz.describe_npz(path, dict(channels=1)) == ((6, 6, 1), 3)
  flat = _save(tmp_path / 'grey.npz', x=x[..., 0], y=np.full(5, -1))  # [N, H, W], unlabelled
  assert npz.describe_npz(flat, {}) == ((6, 6, 1), 1)
  opened = npz.open_npz(flat, dict(channels=3))
  assert opened.image_shape == (6, 6, 3) and opened.num_classes == 1
  np.testing.assert_array_equal(opened.read_all()[1], 0)
  compressed = str(tmp_path / 'c.npz')
  np.savez_compressed(compressed, x=x)
  assert npz.describe_npz(compressed, {}) == ((6, 6, 3), 1)


def test_npz_errors_are_one_line(tmp_path):
  x = np.zeros((4, 5, 5, 3), np.uint8)
  (tmp_path / 'text.npz').write_bytes(b'hello')
  np.save(tmp_path / 'single.npy', x)
  cases = [(str(tmp_path / 'none.npz'), 'not found'),
           (str(tmp_path / 'text.npz'), 'not an .npz (zip) archive'),
           (str(tmp_path / 'single.npy'), 'a single .npy array'),
           (_save(tmp_path / 'nox.npz', images=x, labels=np.zeros(4)),
            'has no array x (its arrays: images, labels)'),
           (_save(tmp_path / 'float.npz', x=x.astype(np.float32)),
            'x is float32, expected uint8'),
           (_save(tmp_path / 'nchw.npz', x=np.zeros((4, 3, 5, 5), np.uint8)),
            'expected [N, H, W, C]'),
           (_save(tmp_path / 'ylen.npz', x=x, y=np.zeros(3, int)), 'expected [4]'),
           (_save(tmp_path / 'yfloat.npz', x=x, y=np.zeros(4)), 'y is float64'),
           (_save(tmp_path / 'yneg.npz', x=x, y=np.array([0, -1, 1, 2])), 'negative labels')]
  for path, expected in cases:
    for fn in (npz.describe_npz, npz.open_npz):
      with pytest.raises(errors.DataError) as info:
        fn(path, {})
      message = _one_line(info)
      assert expected in message and os.path.basename(path) in message, message
  good = _save(tmp_path / 'good.npz', x=x)
  with pytest.raises(errors.ConfigError) as info:
    store.open_store(dict(name=f'npz:{good}', image_size=8))
  assert 'resize them before saving' in _one_line(info)
  with pytest.raises(errors.ConfigError) as info:
    store.open_store(dict(name=f'npz:{good}', channels=2))
  assert 'data.channels must be 0' in _one_line(info)


# ----------------------------------------------------------------------------- tfds:NAME


@pytest.fixture
def mock_tfds():
  with tfds.testing.mock_data(num_examples=6):
    yield


def test_tfds_fixed_size_dataset(mock_tfds):
  del mock_tfds
  data = dict(name='tfds:cifar10', placement='host')
  assert store.describe(data) == ((32, 32, 3), 10)
  src = source.ImageSource(data, seed=0)
  assert (src.num_examples, src.data_shape, src.num_classes) == (6, (32, 32, 3), 10)
  batch, labels = src.batches(0, shape=(1, 4))
  assert batch['x'].shape == (1, 4, 32, 32, 3) and labels.max() < 10
  raw = tfds.data_source('cifar10', split='train', download=False)
  np.testing.assert_array_equal(src.store.read([2])[0][0], raw[2]['image'])
  assert store.describe(dict(name='tfds:mnist', image_size=32, channels=3)) == ((32, 32, 3), 10)
  assert store.describe(dict(name='tfds:celeb_a', image_size=64)) == ((64, 64, 3), 1)


def test_tfds_variable_size_needs_image_size(mock_tfds):
  del mock_tfds
  with pytest.raises(errors.ConfigError) as info:
    store.describe(dict(name='tfds:tf_flowers'))
  assert 'variable size' in _one_line(info) and 'data.image_size' in str(info.value)
  data = dict(name='tfds:tf_flowers', image_size=24, channels=1, placement='host')
  assert store.describe(data) == ((24, 24, 1), 5)
  src = source.ImageSource(data, seed=0)
  x, labels = src.store.read_all()
  assert x.shape == (6, 24, 24, 1) and labels.max() < 5 and x.std() > 0
  raw = np.asarray(tfds.data_source('tf_flowers', split='train', download=False)[0]['image'])
  expected = pixels.resize_square_pixels(pixels.to_channels(raw, 1), 24)
  np.testing.assert_array_equal(x[0], expected)


def test_tfds_errors(mock_tfds):
  del mock_tfds
  with pytest.raises(errors.ConfigError) as info:
    store.describe(dict(name='tfds:no_such_dataset_xyz'))
  assert 'no dataset' in _one_line(info)
  with pytest.raises(errors.DataError) as info:
    store.describe(dict(name='tfds:imdb_reviews'))
  assert 'no image feature' in _one_line(info)


def test_unprepared_messages(tmp_path):
  with pytest.raises(errors.DataError) as info:
    images.check_prepared('tfds:cifar10', split='train', data_dir=str(tmp_path))
  message = _one_line(info)
  assert 'not prepared' in message and 'tfds build cifar10' in message
  with pytest.raises(errors.DataError) as info:
    images.check_prepared('cifar10', split='train', data_dir=str(tmp_path))
  message = _one_line(info)
  assert 'python -m wgan_jax.data.prepare --dataset=cifar10 --out=DIR' in message
  assert 'tfds build cifar10' in message


# ----------------------------------------------------------------------------- image helpers


def test_array_channels_are_what_pillow_gives_a_file():
  """pixels.to_channels of uint8 arrays == pixels.to_mode of the same Pillow image, for every
  (value, alpha) pair: alpha composited on white with Pillow's own rounding."""
  value, alpha = np.meshgrid(np.arange(256), np.arange(256), indexing='ij')
  rgba = np.stack([value, 255 - value, 7 * value % 256, alpha], -1).astype(np.uint8)
  for array in (rgba, rgba[..., :3], rgba[..., [0, 3]], rgba[..., :1]):
    image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    assert image.mode == ('L', 'LA', 'RGB', 'RGBA')[array.shape[-1] - 1]
    for channels, mode in pixels.MODES.items():
      expected = pixels.as_array(pixels.to_mode(image, mode))
      np.testing.assert_array_equal(pixels.to_channels(array, channels), expected)
  np.testing.assert_array_equal(pixels.to_channels(rgba[:1, :1], 3), 255)  # alpha 0: white
  assert pixels.to_channels(rgba, 4) is rgba
  with pytest.raises(ValueError, match='3 -> 2'):
    pixels.to_channels(rgba[..., :3], 2)


def test_square_resize_of_arrays():
  wide = np.zeros((20, 40, 3), np.uint8)
  wide[:, 10:30] = 200  # The centred square.
  out = pixels.resize_square_pixels(wide, 10)
  assert out.shape == (10, 10, 3) and np.all(out[:, 2:-2] == 200)
  np.testing.assert_array_equal(out[:, :5], out[:, :4:-1])  # Centred: symmetric.
  tall = RNG.integers(0, 256, (9, 7, 1), dtype=np.uint8)  # the centred square: rows 1..7
  np.testing.assert_array_equal(pixels.resize_square_pixels(tall, 7), tall[1:8])
  square = wide[:, :20]
  assert pixels.resize_square_pixels(square, 20) is square


# ----------------------------------------------------------------------------- reference_stats


def test_reference_stats_of_any_data_name(tmp_path, monkeypatch):
  """npz:PATH with --channels: the images Inception sees (here a stand-in that returns the first
  pixels) are the converted ones, and the protocol records channels."""
  from wgan_jax.eval import inception, reference_stats  # pylint: disable=import-outside-toplevel
  grey = RNG.integers(0, 256, (6, 4, 4), dtype=np.uint8)
  path = _save(tmp_path / 'grey.npz', x=grey)
  monkeypatch.setattr(inception, 'load_params',
                      lambda path: inception.InceptionWeights({}, 'f' * 64, path))
  seen = []

  def features_fn(params, *, batch_size, size):
    del params, batch_size, size
    return lambda x: (seen.append(x) or x.reshape(len(x), -1)[:, :3].astype(np.float64),)

  monkeypatch.setattr(inception, 'make_feature_fn', features_fn)
  out = str(tmp_path / 'stats.npz')
  protocol = reference_stats.compute_reference_stats(
      dataset=f'npz:{path}', split='train', out=out, weights='w.npz', num_samples=0,
      batch_size=4, num_kid_features=6, channels=3)
  assert protocol['dataset'] == f'npz:{path}' and protocol['num_samples'] == 6
  assert protocol['channels'] == 3 and 'image_size' not in protocol
  x = np.concatenate(seen)
  assert x.shape == (6, 4, 4, 3) and np.all(x[..., 0] == x[..., 2])
  assert reference_stats.load(out).protocol['channels'] == 3
  with pytest.raises(errors.ConfigError) as info:
    reference_stats.compute_reference_stats(dataset=f'npz:{path}', split='train', out=out,
                                            weights='w.npz', channels=2)
  assert 'channels 0, 1 or 3' in _one_line(info)
