"""End to end: every config file on built-in data and on mock tfds images; the outputs."""
import json
import os
import struct

import numpy as np
import pytest
import tensorflow_datasets as tfds

from wgan_jax import data, train
from tests import configs_loader

CONFIG_FILES = ('wgan', 'wgan_gp', 'sngan')


def _records(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def _tensorboard_images(workdir) -> list:
  """(tag, step, height, width) of every image summary in the workdir's event files, read
  from the TFRecord framing (length, crc, Event proto, crc) with tensorboardX's protos."""
  from tensorboardX.proto import event_pb2
  out = []
  for name in sorted(os.listdir(workdir)):
    if not name.startswith('events.out.tfevents'):
      continue
    with open(os.path.join(workdir, name), 'rb') as f:
      data = f.read()
    i = 0
    while i < len(data):
      (length,) = struct.unpack('<Q', data[i:i + 8])
      event = event_pb2.Event.FromString(data[i + 12:i + 12 + length])
      i += 12 + length + 4
      out += [(v.tag, event.step, v.image.height, v.image.width) for v in event.summary.value
              if v.HasField('image') and v.image.encoded_image_string]
  return out


@pytest.mark.parametrize('file', CONFIG_FILES)
def test_config_trains_on_builtin_data(file, tmp_path):
  config = configs_loader.load(file, 'gaussians8,smoke')
  last = train.train_and_evaluate(config, str(tmp_path))
  records = _records(tmp_path)
  assert [r['step'] for r in records] == [1, 2, 3, 4]
  for r in records:
    for key in ('d_loss', 'g_loss', 'critic_gap', 'd_grad_norm', 'g_grad_norm'):
      assert np.isfinite(r[key]), (key, r)
  evals = [r for r in records if 'eval/w1' in r]
  assert [r['step'] for r in evals] == [2, 4]
  assert 0 < evals[-1]['eval/w1'] < 10 and 0 <= evals[-1]['eval/modes_covered'] <= 8
  assert last['step'] == 4 and 'eval/w1' in last
  assert sorted(os.listdir(tmp_path / 'samples')) == ['step_0000002.png', 'step_0000004.png']
  with open(tmp_path / 'config.json') as f:
    assert json.load(f)['data']['name'] == 'gaussians8'
  # The toy figures also go to TensorBoard, as PNG images of the figure's size.
  assert _tensorboard_images(tmp_path) == [('samples', 2, 500, 500), ('samples', 4, 500, 500)]
  if file == 'sngan':
    assert any(k.startswith('sigma/') for k in records[0])
  if file == 'wgan_gp':
    assert 'penalty' in records[0]


# SNGAN's ResNet end to end: tests/test_resnet_scales.py (stl10 and imagenet128 smoke runs).
@pytest.mark.parametrize('file,arg', [('wgan', 'cifar10,smoke'), ('wgan_gp', 'cifar10,smoke'),
                                      ('sngan', 'cnn,mnist,smoke')])
def test_config_trains_on_mock_images(file, arg, tmp_path, fast_compile):
  config = configs_loader.load(file, arg, total_steps=2, n_critic=1, batch_size=4)
  with tfds.testing.mock_data(num_examples=16):
    last = train.train_and_evaluate(config, str(tmp_path))
  assert last['step'] == 2 and np.isfinite(last['d_loss']) and np.isfinite(last['g_loss'])
  assert os.listdir(tmp_path / 'samples') == ['step_0000002.png']
  # The sample grid also goes to TensorBoard: 16 images (smoke eval.num_images) as 4 x 4.
  size = 4 * data.describe(config.data)[0][0]
  assert _tensorboard_images(tmp_path) == [('samples', 2, size, size)]


def test_toy_quality_improves_with_training(tmp_path):
  # 300 steps of the gan_toy recipe: W1 falls well below its value at initialisation and the
  # samples reach most of the 8 modes (0.60 of the initial W1 and 7 modes, from 2, in the suite's
  # arithmetic, tests/simulated_devices.py; at 300 steps they follow the last bits of it).
  config = configs_loader.load('wgan_gp', 'gaussians8', total_steps=300, eval_every_steps=300,
                               log_every_steps=300, **{'eval.num_samples': 500})
  run = train.Run(config)
  (evaluator,) = train.make_evaluators(run, str(tmp_path / 'init'))
  assert evaluator.due(300) and not evaluator.due(299)
  w1_init = evaluator(run.init_state(), 0)['eval/w1']
  last = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert last['eval/w1'] < 0.7 * w1_init, (w1_init, last['eval/w1'])
  assert last['eval/modes_covered'] >= 6, last


def test_config_argument_dataset_names_match_the_registries():
  from wgan_jax import config_lib
  from wgan_jax.data import images, toy
  assert config_lib.TOY_DATASETS == tuple(toy.TOY_DATASETS)
  assert config_lib.IMAGE_DATASETS == tuple(images.IMAGE_DATASETS)


def test_eval_every_steps_zero_turns_toy_evaluation_off(tmp_path):
  config = configs_loader.load('wgan_gp', 'gaussians8,smoke', eval_every_steps=0)
  last = train.train_and_evaluate(config, str(tmp_path))
  records = _records(tmp_path)
  assert [r['step'] for r in records] == [1, 2, 3, 4] and last['step'] == 4
  assert not any(k.startswith('eval/') for r in records for k in r)
  assert not os.path.exists(tmp_path / 'samples')
