"""Bad input: one readable line on stderr, a non-zero exit, nothing written."""
import os
import subprocess
import sys

import pytest

from tests import configs_loader

TOY = 'configs/wgan_gp.py:gaussians8,smoke'


def _main(tmp_path, *args, workdir=None):
  workdir = workdir or str(tmp_path / 'run')
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  proc = subprocess.run([sys.executable, '-m', 'wgan_jax.main', f'--workdir={workdir}', *args],
                        cwd=configs_loader.ROOT, capture_output=True, text=True, env=env,
                        timeout=300)
  return proc, workdir


BAD_INPUTS = [
    ([f'--config={TOY}', '--config.nonexistent=1'], "unknown config key 'nonexistent'"),
    ([f'--config={TOY}', '--config.lipschitz.bogus=1'], "unknown config key 'lipschitz.bogus'"),
    ([f'--config={TOY}', '--config.loss=bogus'], "unknown loss 'bogus'; valid: f_gan, f_hellinger"),
    ([f'--config={TOY}', '--config.lipschitz.method=bogus'], "unknown lipschitz.method 'bogus'"),
    ([f'--config={TOY}', '--config.model.name=bogus'], "unknown model.name 'bogus'"),
    ([f'--config={TOY}', '--config.data.name=bogus'], "unknown data.name 'bogus'"),
    ([f'--config={TOY}', '--config.parallel.strategy=bogus'], "unknown parallel.strategy"),
    ([f'--config={TOY}', '--config.n_critic=0'], 'n_critic must be >= 1, got 0'),
    ([f'--config={TOY}', '--config.batch_size=0'], 'batch_size must be >= 1, got 0'),
    ([f'--config={TOY}', '--config.optim.g.lr=-1'], 'optim.g.lr must be >= 0, got -1'),
    ([f'--config={TOY}', '--config.lipschitz.clip_value=-0.1'], 'clip_value must be > 0'),
    ([f'--config={TOY}', '--config.n_critic=abc'], 'n_critic'),
    (['--config=configs/wgan_gp.py:bogus'], "unknown config argument 'bogus'"),
    (['--config=configs/nofile.py'], 'nofile.py'),
    (['--config=configs/sngan.py:cifar10,smoke', '--config.data.data_dir=/nonexistent/tfds'],
     'tfds build cifar10'),
]


@pytest.mark.parametrize('args,expected', BAD_INPUTS, ids=[a[-1] for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, expected):
  proc, workdir = _main(tmp_path, *args)
  assert proc.returncode != 0
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(lines) == 1, proc.stderr
  assert lines[0].startswith('error: ') and expected in lines[0], lines[0]
  assert 'Traceback' not in proc.stdout + proc.stderr
  assert not os.path.exists(workdir)


def test_unwritable_workdir(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('x')
  proc, _ = _main(tmp_path, f'--config={TOY}', workdir=str(blocker / 'run'))
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode != 0 and len(lines) == 1, proc.stderr
  assert 'cannot write to workdir' in lines[0]
  assert blocker.read_text() == 'x'
