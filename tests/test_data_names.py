"""End to end: every kind of data.name trains on data the test makes; bad data is one line,
before anything is written."""
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from wgan_jax import data, train
from wgan_jax.data import prepare
from wgan_jax.errors import ConfigError, DataError
from tests import configs_loader
from tests.test_data_prepare import _write_cifar_tarball

SIZE = 8


def _config(name, **overrides):
  """Two steps of the WGAN-GP recipe with a 16-unit MLP on the images (cheap to compile)."""
  return configs_loader.load('wgan_gp', 'cifar10,smoke', total_steps=2, n_critic=1,
                             batch_size=4, **{'data.name': name, 'model.name': 'mlp',
                                              'model.mlp_hidden': 16, **overrides})


def _train(config, workdir):
  last = train.train_and_evaluate(config, str(workdir))
  assert last['step'] == 2 and np.isfinite(last['d_loss']) and np.isfinite(last['g_loss'])
  assert os.listdir(workdir / 'samples') == ['step_0000002.png']
  with open(workdir / 'config.json') as f:
    assert json.load(f)['data']['name'] == config.data.name
  return last


def _png(path, pixels):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(pixels).save(path)


def _class_folders(root, sizes=((SIZE, SIZE),) * 3):
  """root/{cat,dog}/i.png: random RGB images of `sizes` per class, and one grey one."""
  rng = np.random.default_rng(0)
  for label in ('cat', 'dog'):
    for i, (h, w) in enumerate(sizes):
      _png(str(root / label / f'{i}.png'), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    _png(str(root / label / 'grey.png'), rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8))
  return root


def test_folder_of_class_subfolders_trains_a_conditional_model(tmp_path, capsys):
  root = _class_folders(tmp_path / 'images')
  config = _config(f'folder:{root}', **{'conditional.method': 'projection'})
  assert data.describe(config.data) == ((SIZE, SIZE, 3), 2)
  _train(config, tmp_path / 'run')
  assert capsys.readouterr().err.count('converted') == 1  # the grey images, said once


def test_folder_of_mixed_sizes_trains_with_image_size(tmp_path):
  root = _class_folders(tmp_path / 'images', sizes=((SIZE, SIZE), (12, 10), (20, 30)))
  with pytest.raises(DataError, match='data.image_size'):
    data.make_source(_config(f'folder:{root}').data, seed=0)
  config = _config(f'folder:{root}', **{'data.image_size': SIZE, 'data.channels': 1})
  assert data.describe(config.data) == ((SIZE, SIZE, 1), 2)
  _train(config, tmp_path / 'run')


def test_npz_trains(tmp_path):
  rng = np.random.default_rng(1)
  path = tmp_path / 'made.npz'
  np.savez(path, x=rng.integers(0, 256, (10, SIZE, SIZE, 3), dtype=np.uint8),
           y=np.arange(10) % 3)
  _train(_config(f'npz:{path}', **{'data.placement': 'host'}), tmp_path / 'run')


def test_any_tfds_image_dataset_trains_at_image_size(tmp_path):
  config = _config('tfds:cifar10', **{'data.image_size': SIZE})
  with tfds.testing.mock_data(num_examples=8):
    assert data.describe(config.data) == ((SIZE, SIZE, 3), 10)
    _train(config, tmp_path / 'run')


def test_named_dataset_trains_on_prepared_files(tmp_path):
  archive = tmp_path / 'cifar-10-python.tar.gz'
  _write_cifar_tarball(archive)
  prepare.prepare('cifar10', str(tmp_path / 'prepared'), archive=str(archive))
  config = _config('cifar10', **{'data.data_dir': str(tmp_path / 'prepared')})
  _train(config, tmp_path / 'run')


def test_bad_data_is_one_line_and_writes_nothing(tmp_path):
  one_class = tmp_path / 'one'
  _png(str(one_class / 'a.png'), np.zeros((SIZE, SIZE, 3), np.uint8))
  corrupt = tmp_path / 'corrupt'
  _png(str(corrupt / 'a.png'), np.zeros((SIZE, SIZE, 3), np.uint8))
  (corrupt / 'b.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 20)
  cases = [
      (_config(f'folder:{tmp_path / "missing"}'), DataError, 'missing'),
      (_config(f'folder:{tmp_path / "empty"}'), DataError, 'empty'),
      (_config(f'folder:{corrupt}'), DataError, 'b.png'),
      (_config(f'npz:{tmp_path / "none.npz"}'), DataError, 'none.npz'),
      (_config(f'folder:{one_class}', **{'conditional.method': 'projection'}), ConfigError,
       'class'),
      (_config(f'folder:{one_class}', **{'data.placement': 'device',
                                           'data.device_budget_mb': 1e-6}),
       ConfigError, 'device_budget_mb'),
  ]
  (tmp_path / 'empty').mkdir()
  for config, error, needle in cases:
    workdir = tmp_path / 'run'
    with pytest.raises(error) as info:
      train.train_and_evaluate(config, str(workdir))
    message = str(info.value)
    assert needle in message and '\n' not in message, message
    assert not workdir.exists(), message
