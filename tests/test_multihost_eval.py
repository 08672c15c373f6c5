"""Two real processes (launch/local_multihost.sh, 2 devices each) train and evaluate as one
process with 4 devices does: from the two processes' checkpoint of step 1, one step here has
their losses of step 2 (up to the reduction order), and the image metrics' passes, split over
the 4 devices of both processes and scored by the chief, equal those of their checkpoint of
step 2 evaluated in this one process (1e-6)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests import configs_loader
from tests import inception_testdata as testdata
from wgan_jax import checkpoint, evaluate, train
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
      'total_steps': 2, 'n_critic': 1, 'batch_size': 4, 'checkpoint_every_steps': 1,
      'eval.metrics_every_steps': 2, 'eval.metrics': 'is,swd', 'eval.is_num_samples': 20,
      'eval.swd_num_images': 12, 'eval.batch_size': 2, 'eval.inception_weights': weights}
  two = str(tmp_path / 'two')
  result = subprocess.run(
      ['launch/local_multihost.sh', '2', f'--workdir={two}', '--config=configs/sngan.py:cnn,smoke',
       *(f'--config.{k}={v}' for k, v in overrides.items())],
      cwd=configs_loader.ROOT, env=ENV, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  # Step 2 here, on 4 devices of one process, from the two processes' state of step 1.
  run = train.Run(configs_loader.load('sngan', 'cnn,smoke', **overrides))
  state, _ = checkpoint.Checkpointer(two, keep=2).restore(1, run.abstract_state())
  _, metrics = run.train_steps()(1)(run.strategy.to_device(state), run.batch(1))
  losses = _losses(two)
  assert [step for step, _, _ in losses] == [1, 2]
  np.testing.assert_allclose([float(metrics['d_loss']), float(metrics['g_loss'])],
                             losses[1][1:], rtol=RTOL, atol=ATOL)
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(inception, 'TRUSTED_SOURCE_SHA256_PREFIXES', (SHA[:8],))
    again = evaluate.evaluate_workdir(two, step=2, metrics='is,swd')  # two's checkpoint, here
  with open(os.path.join(two, image_eval.SCORES_FILE)) as f:
    scores = json.load(f)['2']
  assert scores['protocol']['is_num_samples'] == 20
  for key in SCORES:
    assert np.isfinite(scores[key]) and scores[key] > 0, key
    assert scores[key] == pytest.approx(again[key], rel=1e-6, abs=1e-9), key
