"""Two real processes (launch/local_multihost.sh, 2 devices each) evaluate as one process does:
the image metrics' passes split over the 4 devices of both processes, scored by the chief,
equal those of the saved checkpoint evaluated in this one process (1e-6)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests import configs_loader
from tests import inception_testdata as testdata
from wgan_jax import evaluate
from wgan_jax.eval import image_eval, inception

# A source checksum with pytorch-fid's prefix: the processes load the weights unpatched.
SHA = inception.TRUSTED_SOURCE_SHA256_PREFIXES[0] + '0' * 56
ENV = dict(os.environ, PYTHON=sys.executable, DEVICES_PER_PROCESS='2', JAX_PLATFORMS='cpu')
KEYS = ('eval/is', 'eval/is_std', 'eval/swd', 'eval/swd_32', 'eval/swd_16')


def test_two_processes_score_the_checkpoint_as_one_process_does(tmp_path):
  images = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
  np.savez(tmp_path / 'images.npz', x=images)
  weights = testdata.write_weights(str(tmp_path / 'inception_fid.npz'), source_sha256=SHA)
  workdir = str(tmp_path / 'run')
  result = subprocess.run(
      ['launch/local_multihost.sh', '2', f'--workdir={workdir}', '--config=configs/sngan.py:cnn,smoke',
       f'--config.data.name=npz:{tmp_path / "images.npz"}', '--config.parallel.strategy=jit',
       '--config.total_steps=1', '--config.n_critic=1', '--config.batch_size=4',
       '--config.eval.metrics_every_steps=1', '--config.eval.metrics=is,swd',
       '--config.eval.is_num_samples=10', '--config.eval.swd_num_images=12',
       '--config.eval.batch_size=2', f'--config.eval.inception_weights={weights}'],
      cwd=configs_loader.ROOT, env=ENV, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  with open(os.path.join(workdir, image_eval.SCORES_FILE)) as f:
    two = json.load(f)['1']
  assert two['protocol']['is_num_samples'] == 10
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(inception, 'TRUSTED_SOURCE_SHA256_PREFIXES', (SHA[:8],))
    one = evaluate.evaluate_workdir(workdir, metrics='is,swd')
  for key in KEYS:
    assert np.isfinite(two[key]), key
    assert two[key] == pytest.approx(one[key], rel=1e-6, abs=1e-9), key
