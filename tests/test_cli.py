"""Bad input: one readable line on stderr, a non-zero exit, nothing written."""
import ast
import os
import re
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
    ([f'--config={TOY}', '--config.data.name=bogus'],
     "unknown data.name 'bogus'; valid: celeb_a, cifar10, fashion_mnist, gaussians25, gaussians8, "
     "gaussians8_rotated, mnist, parallel_lines, stl10, swissroll"),
    ([f'--config={TOY}', '--config.total_steps=3000000000'],
     'total_steps must be in [1, 2147483647] (the step counter is int32), got 3000000000'),
    ([f'--config={TOY}', '--config.seed=-1'], 'seed must be in [0, 2147483647], got -1'),
    (['--config=configs/nofile.py', '--config.total_steps=3'],
     "cannot load config file 'configs/nofile.py' (no such file)"),
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


# Every config value against where it is used: int32 counters, positive sizes, finite floats.
RANGE_CASES = [
    ('seed', -1, 'seed must be in [0, 2147483647], got -1'),
    ('seed', 2**31, 'seed must be in [0, 2147483647]'),
    ('total_steps', 0, 'total_steps must be in [1, 2147483647]'),
    ('total_steps', 2**31, 'total_steps must be in [1, 2147483647]'),
    ('batch_size', 0, 'batch_size must be >= 1, got 0'),
    ('batch_size', 2**31, 'batch_size must be <= 2147483647'),
    ('g_batch_size', -1, 'g_batch_size must be >= 0'),
    ('n_critic', 2**31, 'n_critic must be <= 2147483647'),
    ('log_every_steps', 0, 'log_every_steps must be >= 1'),
    ('checkpoint_every_steps', 0, 'checkpoint_every_steps must be >= 1'),
    ('keep_checkpoints', 0, 'keep_checkpoints must be >= 1'),
    ('eval_every_steps', -1, 'eval_every_steps must be >= 0 (0: off)'),
    ('optim.d.lr', float('inf'), 'optim.d.lr must be finite, got inf'),
    ('optim.g.lr', float('nan'), 'optim.g.lr must be >= 0, got nan'),
    ('optim.g.eps', 0.0, 'optim.g.eps must be > 0'),
    ('optim.d.b2', 1.0, 'optim.d.b1 and b2 must be in [0, 1)'),
    ('lipschitz.clip_value', float('inf'), 'lipschitz.clip_value must be finite'),
    ('lipschitz.gp_weight', -1.0, 'lipschitz.gp_weight must be >= 0'),
    ('lipschitz.gp_target', float('nan'), 'lipschitz.gp_target must be >= 0 and finite'),
    ('ema_decay', 1.0, 'ema_decay must be in [0, 1)'),
    ('ema_start', -1, 'ema_start must be in [0, 2147483647]'),
    ('ortho_reg', float('nan'), 'ortho_reg must be >= 0 and finite'),
    ('eval.standing_stats', -1, 'eval.standing_stats must be >= 0'),
    ('model.z_dim', 0, 'model.z_dim must be >= 1'),
    ('model.mlp_hidden', 0, 'model.mlp_hidden must be >= 1'),
    ('model.mlp_layers', 0, 'model.mlp_layers must be >= 1'),
    ('model.g_ch', 0, 'model.g_ch must be >= 1'),
    ('model.g_mlp_layers', -1, 'model.g_mlp_layers must be >= 0'),
    ('eval.num_samples', 1, 'eval.num_samples must be >= 2'),
    ('eval.num_images', 0, 'eval.num_images must be >= 1'),
    ('conditional.acgan_g_weight', float('inf'), 'conditional.acgan_g_weight must be >= 0'),
]


@pytest.mark.parametrize('key,value,expected', RANGE_CASES,
                         ids=[f'{k}={v}' for k, v, _ in RANGE_CASES])
def test_validate_rejects_out_of_range_values(key, value, expected):
  from wgan_jax import config_lib
  from wgan_jax.errors import ConfigError
  config = configs_loader.load('wgan_gp', 'gaussians8,smoke')
  config_lib.validate(config)  # the unchanged config is valid
  node = config
  *parents, leaf = key.split('.')
  for part in parents:
    node = node[part]
  with config.unlocked():
    node[leaf] = value
  with pytest.raises(ConfigError, match=re.escape(expected)):
    config_lib.validate(config)


def test_validate_allows_the_documented_zeros():
  from wgan_jax import config_lib
  config = configs_loader.load('wgan_gp', 'gaussians8,smoke', eval_every_steps=0,
                               g_batch_size=0, seed=0, ema_decay=0.0,
                               **{'eval.metrics_every_steps': 0, 'lipschitz.gp_weight': 0.0})
  config_lib.validate(config)


COMMANDS = ('wgan_jax/main.py', 'wgan_jax/sample.py', 'wgan_jax/evaluate.py',
            'wgan_jax/eval/reference_stats.py', 'wgan_jax/eval/convert_inception.py',
            'wgan_jax/experiments/parallel_lines.py', 'wgan_jax/experiments/toy_suite.py',
            'wgan_jax/experiments/clipping_gradients.py',
            'wgan_jax/experiments/lipschitz_check.py', 'wgan_jax/data/prepare.py')


@pytest.mark.parametrize('path', COMMANDS)
def test_every_command_main_is_the_entry_helper(path):
  """`if __name__ == '__main__':` is one call of cli.entry (or common.entry, built on it)."""
  with open(os.path.join(configs_loader.ROOT, path)) as f:
    tree = ast.parse(f.read())
  blocks = [n for n in tree.body if isinstance(n, ast.If) and '__main__' in ast.unparse(n.test)]
  assert len(blocks) == 1 and len(blocks[0].body) == 1, path
  call = blocks[0].body[0].value
  assert ast.unparse(call.func) in ('cli.entry', 'common.entry'), path
