"""Tests of wgan_jax.data.folder (`data.name=folder:PATH`) on tiny image files made here."""
import os

import numpy as np
from PIL import Image
import pytest

from wgan_jax.data import folder, source as source_lib, store as store_lib
from wgan_jax.errors import ConfigError, DataError


def _save(path, pixels, **kwargs):
  """Writes uint8 [H, W] or [H, W, C] (or a PIL image) to `path`, format from the name."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(np.asarray(pixels))
  image.save(path, **kwargs)
  return path


def _random(shape, seed):
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _data(path, **kwargs):
  return dict(name=f'folder:{path}', **kwargs)


def _open(path, **kwargs):
  return store_lib.open_store(_data(path, **kwargs))


def _one_line_error(kind, fn, *args, **kwargs):
  """The message of the `kind` error fn raises, checked to be one line."""
  with pytest.raises(kind) as info:
    fn(*args, **kwargs)
  message = str(info.value)
  assert '\n' not in message
  return message


@pytest.fixture(scope='module')
def classes_dir(tmp_path_factory):
  """cat/ (3 PNG), dog/ (2 JPEG + 1 WebP in a subfolder), 8x8 RGB; plus files to skip and
  one image directly under the root."""
  root = tmp_path_factory.mktemp('classes')
  for i in range(3):
    _save(f'{root}/cat/c{i}.png', _random((8, 8, 3), i))
  _save(f'{root}/dog/d0.JPG', _random((8, 8, 3), 10), quality=95)
  _save(f'{root}/dog/d1.jpeg', _random((8, 8, 3), 11), quality=95)
  _save(f'{root}/dog/deep/d2.WebP', _random((8, 8, 3), 12), lossless=True)
  _save(f'{root}/top.png', _random((8, 8, 3), 20))
  (root / 'readme.txt').write_text('not an image')
  (root / 'dog' / '._d0.jpg').write_bytes(b'macOS resource fork, not an image')
  (root / '.hidden').mkdir()
  (root / '.hidden' / 'x.png').write_bytes(b'garbage')
  (root / 'empty').mkdir()
  return str(root)


def test_class_subfolders_are_labels_and_top_level_images_are_ignored(classes_dir, capsys):
  store = _open(classes_dir)
  assert store.files == ('cat/c0.png', 'cat/c1.png', 'cat/c2.png', 'dog/d0.JPG', 'dog/d1.jpeg',
                         'dog/deep/d2.WebP')
  assert store.classes == ('cat', 'dog') and store.num_classes == 2
  assert store.image_shape == (8, 8, 3) and store.num_examples == 6
  x, y = store.read_all()
  assert x.dtype == np.uint8 and x.shape == (6, 8, 8, 3)
  np.testing.assert_array_equal(y, [0, 0, 0, 1, 1, 1])
  np.testing.assert_array_equal(x[0], _random((8, 8, 3), 0))  # PNG, lossless
  np.testing.assert_array_equal(x[5], _random((8, 8, 3), 12))  # lossless WebP
  err = capsys.readouterr().err.splitlines()
  assert len(err) == 1 and 'top.png' in err[0] and 'ignored' in err[0], err
  assert folder.describe_folder(classes_dir, _data(classes_dir)) == ((8, 8, 3), 2)
  _open(classes_dir)
  assert capsys.readouterr().err == ''  # said once per process


def test_one_class_reads_every_subfolder_in_path_order(tmp_path):
  _save(f'{tmp_path}/b.PNG', _random((6, 5), 1))
  _save(f'{tmp_path}/a/x/z.png', _random((6, 5), 2))
  _save(f'{tmp_path}/a/x y/y.png', _random((6, 5), 3))  # 'x y' > 'x' by components
  store = _open(tmp_path)  # one first-level folder: one class
  assert store.files == ('a/x/z.png', 'a/x y/y.png', 'b.PNG')
  assert store.num_classes == 1 and store.classes == ()
  assert store.image_shape == (6, 5, 1)  # equal non-square sizes are kept
  x, y = store.read(np.array([2, 0]))
  np.testing.assert_array_equal(y, [0, 0])
  np.testing.assert_array_equal(x[0, ..., 0], _random((6, 5), 1))
  np.testing.assert_array_equal(x[1, ..., 0], _random((6, 5), 2))


def test_image_size_crops_the_centre_square_and_resizes(tmp_path):
  colour = np.array([10, 200, 30], np.uint8)
  _save(f'{tmp_path}/const.png', np.broadcast_to(colour, (10, 12, 3)).copy())
  half = np.zeros((8, 12, 3), np.uint8)
  half[:, 6:] = 255                             # left half black, right half white
  _save(f'{tmp_path}/half.png', half)
  wide = np.zeros((8, 16, 3), np.uint8)
  wide[:, 8:] = 255
  _save(f'{tmp_path}/wide.png', wide)
  store = _open(tmp_path, image_size=8)
  assert store.image_shape == (8, 8, 3)
  x, _ = store.read_all()
  np.testing.assert_array_equal(x[0], np.broadcast_to(colour, (8, 8, 3)))  # const, 12x10
  # half.png: the crop is columns 2..9 at full size: 4 black, then 4 white, exactly.
  np.testing.assert_array_equal(x[1][:, :4], 0)
  np.testing.assert_array_equal(x[1][:, 4:], 255)
  small = _open(tmp_path, image_size=4).read(np.array([2]))[0][0].astype(int)
  # wide.png: columns 4..11 (half black) downscaled 2x: symmetric about the middle.
  assert small.shape == (4, 4, 3) and small[:, 0].max() < 20 and small[:, 3].min() > 235
  np.testing.assert_allclose(small[:, :2] + small[:, :1:-1], 255, atol=1)


def test_large_jpeg_draft_decode_is_close_to_a_full_decode(tmp_path, monkeypatch):
  yy, xx = np.mgrid[0:240, 0:200]
  pixels = np.stack([xx, yy, xx + yy], -1) % 256
  _save(f'{tmp_path}/big.jpg', pixels.astype(np.uint8), quality=95)
  drafted = _open(tmp_path, image_size=16).read_all()[0].astype(int)
  monkeypatch.setattr(folder, 'JPEG_DRAFT_GAP', 10**6)  # never draft
  full = _open(tmp_path, image_size=16).read_all()[0].astype(int)
  assert drafted.shape == (1, 16, 16, 3)
  assert np.abs(drafted - full).mean() < 1.5 and np.abs(drafted - full).max() <= 8


def test_upscaled_images_are_said_once(tmp_path, capsys):
  _save(f'{tmp_path}/a.png', _random((4, 6, 3), 0))
  _save(f'{tmp_path}/b.png', _random((8, 8, 3), 1))
  store = _open(tmp_path, image_size=8)
  assert store.read_all()[0].shape == (2, 8, 8, 3)
  err = capsys.readouterr().err.splitlines()
  assert len(err) == 1 and '1 of 2 images' in err[0] and 'a.png, 6x4' in err[0], err


@pytest.fixture(scope='module')
def mixed_modes_dir(tmp_path_factory):
  """3 RGB, 1 grey, 1 RGBA (fully transparent black), 1 palette image, all 4x4."""
  root = tmp_path_factory.mktemp('modes')
  for i in range(3):
    _save(f'{root}/rgb{i}.png', _random((4, 4, 3), i))
  _save(f'{root}/grey.png', np.full((4, 4), 77, np.uint8))
  _save(f'{root}/rgba.png', np.zeros((4, 4, 4), np.uint8))
  palette = Image.new('P', (4, 4), 1)
  palette.putpalette([0, 0, 0, 40, 50, 60] + [0] * 762)
  _save(f'{root}/palette.png', palette)
  return str(root)


def test_channels_follow_the_majority_with_one_warning_line(mixed_modes_dir, capsys):
  store = _open(mixed_modes_dir)
  assert store.image_shape == (4, 4, 3)
  x, _ = store.read_all()
  index = {f: i for i, f in enumerate(store.files)}
  np.testing.assert_array_equal(x[index['grey.png']], 77)
  np.testing.assert_array_equal(x[index['rgba.png']], 255)        # composited on white
  np.testing.assert_array_equal(x[index['palette.png']], np.broadcast_to([40, 50, 60], (4, 4, 3)))
  np.testing.assert_array_equal(x[index['rgb1.png']], _random((4, 4, 3), 1))
  err = capsys.readouterr().err.splitlines()
  assert err == [f'warning: folder:{mixed_modes_dir}: 3 of 6 images converted to RGB '
                 '(data.channels=0: the majority): 1 L, 1 P (palette), '
                 '1 RGBA (alpha composited on white)'], err


def test_channels_1_converts_to_grey(mixed_modes_dir):
  store = _open(mixed_modes_dir, channels=1)
  assert store.image_shape == (4, 4, 1)
  x, _ = store.read_all()
  index = {f: i for i, f in enumerate(store.files)}
  np.testing.assert_array_equal(x[index['grey.png']], 77)
  np.testing.assert_array_equal(x[index['rgba.png']], 255)
  expected = np.asarray(Image.fromarray(_random((4, 4, 3), 2)).convert('L'))
  np.testing.assert_array_equal(x[index['rgb2.png'], ..., 0], expected)


def test_grey_majority_and_16_bit_grey(tmp_path):
  deep = np.arange(16, dtype=np.uint16).reshape(4, 4) * 4096 + 300
  _save(f'{tmp_path}/a16.png', Image.fromarray(deep))
  assert Image.open(f'{tmp_path}/a16.png').mode.startswith('I')
  _save(f'{tmp_path}/b.png', np.full((4, 4), 5, np.uint8))
  _save(f'{tmp_path}/c.png', _random((4, 4, 3), 0))
  store = _open(tmp_path)
  assert store.image_shape == (4, 4, 1)
  np.testing.assert_array_equal(store.read(np.array([0]))[0][0, ..., 0], deep >> 8)


def test_describe_scans_headers_once_and_rescans_a_changed_folder(tmp_path, monkeypatch):
  for i in range(3):
    _save(f'{tmp_path}/{i}.png', _random((5, 7, 3), i))
  calls = []
  read_header = folder.read_header
  monkeypatch.setattr(folder, 'read_header', lambda *a: calls.append(a) or read_header(*a))
  data = _data(tmp_path)
  assert store_lib.describe(data) == ((5, 7, 3), 1)
  store = store_lib.open_store(data)
  assert (store.image_shape, store.num_classes, store.num_examples) == ((5, 7, 3), 1, 3)
  assert len(calls) == 3
  _save(f'{tmp_path}/3.png', _random((5, 7, 3), 3))
  assert store_lib.open_store(data).num_examples == 4 and len(calls) == 7


def test_image_source_returns_uint8_batches(classes_dir):
  data = dict(name=f'folder:{classes_dir}', placement='host', image_size=4)
  source = source_lib.ImageSource(data, seed=0)
  arrays, labels = source.batches(0, shape=(2, 3))
  assert arrays['x'].dtype == np.uint8 and arrays['x'].shape == (2, 3, 4, 4, 3)
  assert labels.dtype == np.int32 and labels.shape == (2, 3)
  assert sorted(labels.reshape(-1).tolist()) == [0, 0, 0, 1, 1, 1]  # one epoch, each once


# ----------------------------------------------------------------------------- errors


def test_missing_folder_and_a_file(tmp_path):
  message = _one_line_error(DataError, _open, f'{tmp_path}/nope')
  assert f'{tmp_path}/nope' in message and 'no such folder' in message
  _save(f'{tmp_path}/a.png', _random((4, 4), 0))
  message = _one_line_error(DataError, folder.describe_folder, f'{tmp_path}/a.png', {})
  assert 'a.png' in message and 'not a folder' in message


def test_folder_without_images_names_the_extensions(tmp_path):
  (tmp_path / 'x.txt').write_text('text')
  (tmp_path / 'sub').mkdir()
  (tmp_path / 'sub' / 'y.gif').write_bytes(b'GIF89a')
  message = _one_line_error(DataError, _open, tmp_path)
  assert str(tmp_path) in message and '.png' in message and '.webp' in message


def test_corrupt_header_is_named_when_scanning(tmp_path):
  _save(f'{tmp_path}/good.png', _random((4, 4), 0))
  (tmp_path / 'bad.jpg').write_bytes(b'not a jpeg at all')
  message = _one_line_error(DataError, folder.describe_folder, str(tmp_path), {})
  assert f'{tmp_path}/bad.jpg' in message and 'replace or remove' in message


@pytest.mark.parametrize('name', ['cut.png', 'cut.jpg'])
def test_truncated_data_is_named_when_reading(tmp_path, name):
  path = _save(f'{tmp_path}/{name}', _random((32, 32, 3), 0))
  with open(path, 'rb') as f:
    head = f.read()
  with open(path, 'wb') as f:
    f.write(head[:len(head) * 2 // 3])
  store = _open(tmp_path)  # the header is intact
  message = _one_line_error(DataError, store.read_all)
  assert f'{tmp_path}/{name}' in message and 'cannot decode' in message


def test_mixed_sizes_need_image_size(tmp_path):
  _save(f'{tmp_path}/a.png', _random((8, 8), 0))
  _save(f'{tmp_path}/b.png', _random((8, 8), 1))
  _save(f'{tmp_path}/c.png', _random((10, 12), 2))
  message = _one_line_error(DataError, _open, tmp_path)
  assert 'a.png is 8x8' in message and 'c.png is 12x10' in message
  assert '--config.data.image_size=N' in message
  assert _open(tmp_path, image_size=8).image_shape == (8, 8, 1)


@pytest.mark.parametrize('key,value', [('channels', 2), ('image_size', -1), ('image_size', 3.5)])
def test_invalid_settings(tmp_path, key, value):
  _save(f'{tmp_path}/a.png', _random((4, 4), 0))
  message = _one_line_error(ConfigError, _open, tmp_path, **{key: value})
  assert f'data.{key}' in message and str(value) in message
