"""Checks that a change leaves training bit-identical: metrics.jsonl before and after.

  python -m benchmarks.same_behaviour [--base=REV]

Trains two runs with the code of git revision REV (default HEAD, checked out into a temporary
worktree) and with the working tree, and compares their metrics.jsonl record by record,
every key but the wall-clock `steps_per_sec`, for exact equality:

  quickstart  configs/wgan_gp.py:gaussians8 shortened to 200 steps (its learning-rate decay
              then spans those 200), logged every 10 steps, evaluated at 100 and 200
  resnet      configs/sngan.py:cifar10,smoke: the SNGAN CIFAR ResNet at smoke size, 4 steps,
              on tensorflow-datasets' mock CIFAR-10 (no download)

Prints one JSON line per run ({"run", "records", "identical", "first_difference"}) and exits
1 when any run differs. Refactors that promise the same behaviour are checked with it.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMING_KEYS = ('steps_per_sec',)

# Runs in the tree under test (its own wgan_jax), so only code both revisions share is used:
# configs/<file>.py's get_config and train.train_and_evaluate.
_RUNNER = r'''
import contextlib, importlib.util, os, sys
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
sys.path.insert(0, os.getcwd())
file, arg, workdir, overrides, mock = sys.argv[1], sys.argv[2], sys.argv[3], eval(sys.argv[4]), sys.argv[5] == '1'
spec = importlib.util.spec_from_file_location('cfg', os.path.join('configs', file + '.py'))
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
config = module.get_config(arg)
for key, value in overrides.items():
  node = config
  *parents, leaf = key.split('.')
  for p in parents:
    node = node[p]
  node[leaf] = value
from wgan_jax import train
context = contextlib.nullcontext()
if mock:
  import tensorflow_datasets as tfds
  context = tfds.testing.mock_data(num_examples=64)
with context:
  train.train_and_evaluate(config, workdir)
'''

RUNS = {
    'quickstart': ('wgan_gp', 'gaussians8',
                   {'total_steps': 200, 'log_every_steps': 10, 'eval_every_steps': 100,
                    'checkpoint_every_steps': 100}, False),
    'resnet': ('sngan', 'cifar10,smoke', {}, True),
}


def train_in(tree: str, name: str, workdir: str) -> list[dict]:
  """The metrics.jsonl records of run `name` trained with the code in `tree`."""
  file, arg, overrides, mock = RUNS[name]
  env = dict(os.environ, WGAN_JAX_CONV_IMPL=os.environ.get('WGAN_JAX_CONV_IMPL', 'im2col'))
  subprocess.run([sys.executable, '-c', _RUNNER, file, arg, workdir, repr(overrides),
                  '1' if mock else '0'], cwd=tree, env=env, check=True,
                 stdout=subprocess.DEVNULL)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in f]


def first_difference(a: list[dict], b: list[dict]):
  """(step, key, before, after) of the first difference, or None."""
  if len(a) != len(b):
    return ('records', None, len(a), len(b))
  for ra, rb in zip(a, b):
    for key in sorted(set(ra) | set(rb)):
      if ra.get(key) != rb.get(key):
        return (ra.get('step'), key, ra.get(key), rb.get(key))
  return None


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--base', default='HEAD', help='git revision to compare against')
  args = parser.parse_args()
  differs = False
  with tempfile.TemporaryDirectory() as tmp:
    base_tree = os.path.join(tmp, 'base')
    subprocess.run(['git', 'worktree', 'add', '--detach', '-q', base_tree, args.base],
                   cwd=REPO, check=True)
    try:
      for name in RUNS:
        before = train_in(base_tree, name, os.path.join(tmp, f'{name}_base'))
        after = train_in(REPO, name, os.path.join(tmp, f'{name}_now'))
        diff = first_difference(before, after)
        differs |= diff is not None
        print(json.dumps({'run': name, 'records': len(after), 'identical': diff is None,
                          'first_difference': diff}), flush=True)
    finally:
      subprocess.run(['git', 'worktree', 'remove', '--force', base_tree], cwd=REPO, check=False)
  return 1 if differs else 0


if __name__ == '__main__':
  sys.exit(main())
