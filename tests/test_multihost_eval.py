"""Two real processes (launch/local_multihost.sh, 2 devices each) train and evaluate as one
process with 4 devices does: the same losses (up to the reduction order), and the image
metrics' passes, split over the 4 devices of both processes and scored by the chief, equal
those of the saved checkpoint evaluated in this one process (1e-6)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests import configs_loader
from tests import inception_testdata as testdata
from wgan_jax import evaluate, train
from wgan_jax.eval import image_eval, inception

# A source checksum with pytorch-fid's prefix: the processes load the weights unpatched.
SHA = inception.TRUSTED_SOURCE_SHA256_PREFIXES[0] + '0' * 56
ENV = dict(os.environ, PYTHON=sys.executable, DEVICES_PER_PROCESS='2', JAX_PLATFORMS='cpu')
SCORES = ('eval/is', 'eval/is_std', 'eval/swd', 'eval/swd_32', 'eval/swd_16')
RTOL, ATOL = 1e-3, 2e-4  # losses across device layouts (tests/test_parallel.py)


def _losses(workdir) -> list:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [(r['step'], r['d_loss'], r['g_loss']) for r in map(json.loads, f) if 'd_loss' in r]


def test_two_processes_train_and_score_as_one_process_does(tmp_path):
  images = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
  np.savez(tmp_path / 'images.npz', x=images)
  weights = testdata.write_weights(str(tmp_path / 'inception_fid.npz'), source_sha256=SHA)
  overrides = {
      'data.name': f'npz:{tmp_path / "images.npz"}', 'parallel.strategy': 'jit',
      'total_steps': 2, 'n_critic': 1, 'batch_size': 4, 'eval_every_steps': 2,
      'eval.metrics_every_steps': 2, 'eval.metrics': 'is,swd', 'eval.is_num_samples': 20,
      'eval.swd_num_images': 12, 'eval.batch_size': 2, 'eval.inception_weights': weights}
  two = str(tmp_path / 'two')
  result = subprocess.run(
      ['launch/local_multihost.sh', '2', f'--workdir={two}', '--config=configs/sngan.py:cnn,smoke',
       *(f'--config.{k}={v}' for k, v in overrides.items())],
      cwd=configs_loader.ROOT, env=ENV, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(inception, 'TRUSTED_SOURCE_SHA256_PREFIXES', (SHA[:8],))
    one = str(tmp_path / 'one')
    train.train_and_evaluate(configs_loader.load('sngan', 'cnn,smoke', **overrides), one)
    again = evaluate.evaluate_workdir(two, metrics='is,swd')  # two's checkpoint, here
  (a, b) = _losses(one), _losses(two)
  assert [s for s, _, _ in a] == [s for s, _, _ in b] == [1, 2]
  np.testing.assert_allclose(np.array(b)[:, 1:], np.array(a)[:, 1:], rtol=RTOL, atol=ATOL)
  with open(os.path.join(two, image_eval.SCORES_FILE)) as f:
    scores = json.load(f)['2']
  assert scores['protocol']['is_num_samples'] == 20
  for key in SCORES:
    assert np.isfinite(scores[key]) and scores[key] > 0, key
    assert scores[key] == pytest.approx(again[key], rel=1e-6, abs=1e-9), key
