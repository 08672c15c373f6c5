"""Every fault a run can meet, one line each: what happened, the exit code, the one line the
program printed on stderr, and whether the workdir then resumes.

  python -m benchmarks.faults [--only=NAME[,NAME...]] [--list]

Each case runs the real command lines (python -m wgan_jax.main / sample / launch/*.sh) as
subprocesses on the toy config (configs/sngan.py:gaussians8,smoke: a few steps, CPU) in a
temporary folder. "resumes" reruns `wgan_jax.main` with the case's config and a few more
steps and reports its exit code (0: the workdir resumed); "-" where no resume applies. A
full disk is simulated by making every checkpoint write raise OSError(ENOSPC) from a step on
(`python -m benchmarks.faults --enospc_from=STEP <main args>`: the wrapper this script uses).
About 10 minutes on 2 CPU cores (each case starts Python and JAX afresh).
"""
import errno
import functools
import glob
import os
import runpy
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from etils import epath

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = 'configs/sngan.py:gaussians8,smoke'
ENV = dict(os.environ, JAX_PLATFORMS='cpu', WGAN_JAX_COMPILATION_CACHE='')


# ------------------------------------------------------------------ ways to break a workdir
def checkpoint_dir(workdir: str, step: int) -> str:
  return os.path.join(workdir, 'checkpoints', str(step))


def truncate_arrays(workdir: str, step: int) -> None:
  """Cuts every array data file of checkpoint `step` to half its size."""
  for file in glob.glob(os.path.join(checkpoint_dir(workdir, step), 'state', '**', 'd', '*'),
                        recursive=True):
    with open(file, 'r+b') as f:
      f.truncate(os.path.getsize(file) // 2)


def delete_manifest(workdir: str, step: int) -> None:
  os.remove(os.path.join(checkpoint_dir(workdir, step), 'state', 'manifest.ocdbt'))


def delete_metadata(workdir: str, step: int) -> None:
  os.remove(os.path.join(checkpoint_dir(workdir, step), 'state', '_METADATA'))


def make_empty_checkpoint(workdir: str, step: int) -> None:
  os.makedirs(checkpoint_dir(workdir, step), exist_ok=True)


def make_partial_checkpoint(workdir: str, step: int) -> None:
  os.makedirs(os.path.join(checkpoint_dir(workdir, step), 'state'), exist_ok=True)


# ------------------------------------------------------------------------- running commands
def _python(*args, wait=True):
  cmd = [sys.executable, *args]
  if not wait:
    return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
  return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)


def main_args(workdir: str, *overrides: str, config: str = CONFIG) -> list:
  return ['-m', 'wgan_jax.main', f'--config={config}', f'--workdir={workdir}', *overrides]


def train(workdir: str, *overrides: str, config: str = CONFIG):
  return _python(*main_args(workdir, *overrides, config=config))


def sample(workdir: str, *args: str):
  return _python('-m', 'wgan_jax.sample', f'--workdir={workdir}', *args)


def stderr_lines(text: str) -> list:
  return [line for line in text.splitlines() if line.strip()]


def _wait_for_records(proc, workdir: str, n: int) -> bool:
  file = os.path.join(workdir, 'metrics.jsonl')
  while proc.poll() is None:
    if os.path.exists(file):
      with open(file) as f:
        if len(f.read().splitlines()) >= n:
          return True
    time.sleep(0.01)
  return False


def interrupt(workdir: str, signals, *overrides: str):
  """Starts a long run, sends `signals` (one after the other) after 3 logged steps."""
  proc = _python(*main_args(workdir, '--config.total_steps=100000', *overrides), wait=False)
  if _wait_for_records(proc, workdir, 3):
    for signum in signals:
      proc.send_signal(signum)
      time.sleep(0.05)  # two at once would arrive as one
  _, err = proc.communicate(timeout=600)
  return subprocess.CompletedProcess(proc.args, proc.returncode, '', err)


# ---------------------------------------------------------------------------------- the cases
def _trained(base: str, name: str, *overrides: str) -> str:
  """A copy of a finished 6-step run (checkpoints 4, 6) named `name`."""
  reference = os.path.join(base, '_reference')
  if not os.path.exists(reference):
    proc = train(reference, '--config.total_steps=6', '--config.keep_checkpoints=2')
    assert proc.returncode == 0, proc.stderr
  workdir = os.path.join(base, name)
  shutil.copytree(reference, workdir)
  return workdir


RESUME = ('--config.total_steps=8', '--config.keep_checkpoints=2')


AGAIN = ('--config.total_steps=10', '--config.keep_checkpoints=2')


def cases(base: str):
  """(name, description, run() -> (CompletedProcess, workdir or None, resume overrides)):
  each case is a function below, its docstring the description, in the order listed."""
  def fresh(fn):  # fn(workdir): a new workdir named after the case
    return functools.wraps(fn)(lambda: fn(os.path.join(base, fn.__name__)))

  def trained(fn):  # fn(workdir): a copy of a finished 6-step run named after the case
    return functools.wraps(fn)(lambda: fn(_trained(base, fn.__name__)))

  @fresh
  def diverge(w):
    """optim.d.lr=1e30: NaN from step 1"""
    return train(w, '--config.optim.d.lr=1e30'), None, ()

  @trained
  def sample_nonfinite(w):
    """sample of a checkpoint holding NaN"""
    _python('-c', POISON, w)  # a NaN checkpoint at step 8, as older versions could write
    return sample(w, f'--out={w}/s.npy'), None, ()

  @trained
  def config_deleted(w):
    """config.json deleted, resume with loss=wasserstein"""
    os.remove(os.path.join(w, 'config.json'))
    return train(w, '--config.loss=wasserstein'), w, RESUME

  @trained
  def config_truncated(w):
    """config.json truncated, sample"""
    with open(os.path.join(w, 'config.json'), 'w') as f:
      f.write('{"seed": ')
    return sample(w, f'--out={w}/s.npy'), w, RESUME

  @trained
  def empty_folder_ahead(w):
    """empty checkpoints/8 ahead of the run, resume"""
    make_empty_checkpoint(w, 8)
    return train(w, *RESUME), w, AGAIN

  @trained
  def partial_folder(w):
    """checkpoints/5 holding only state/, resume"""
    make_partial_checkpoint(w, 5)
    return train(w, *RESUME), w, AGAIN

  @trained
  def truncated_arrays(w):
    """latest checkpoint arrays truncated, resume"""
    truncate_arrays(w, 6)
    return train(w, *RESUME), w, AGAIN

  @trained
  def truncated_arrays_sample(w):
    """same, sample without --step"""
    truncate_arrays(w, 6)
    return sample(w, f'--out={w}/s.npy'), w, RESUME

  @trained
  def truncated_arrays_sample_step(w):
    """same, sample --step=6"""
    truncate_arrays(w, 6)
    return sample(w, '--step=6', f'--out={w}/s.npy'), None, ()

  @trained
  def manifest_deleted(w):
    """latest checkpoint manifest.ocdbt deleted, resume"""
    delete_manifest(w, 6)
    return train(w, *RESUME), w, AGAIN

  @trained
  def metadata_deleted(w):
    """state/_METADATA deleted, sample --step=6"""
    delete_metadata(w, 6)
    return sample(w, '--step=6', f'--out={w}/s.npy'), w, RESUME

  @fresh
  def sigint(w):
    """Ctrl-C mid-run"""
    return interrupt(w, [signal.SIGINT]), w, RESUME

  @fresh
  def sigint_twice(w):
    """Ctrl-C twice (the second during the save)"""
    signals = [signal.SIGINT, signal.SIGINT]
    return interrupt(w, signals, '--config.checkpoint_every_steps=2'), w, RESUME

  @fresh
  def sigterm(w):
    """SIGTERM mid-run"""
    return interrupt(w, [signal.SIGTERM]), w, RESUME

  @trained
  def disk_full(w):
    """ENOSPC during the save of step 8"""
    proc = _python('-m', 'benchmarks.faults', '--enospc_from=8', *main_args(w, *RESUME)[2:])
    return proc, w, RESUME

  @fresh
  def total_steps_int32(w):
    """total_steps=3e9"""
    return train(w, '--config.total_steps=3000000000'), None, ()

  @fresh
  def negative_seed(w):
    """seed=-1"""
    return train(w, '--config.seed=-1'), None, ()

  @trained
  def sample_out_missing_folder(w):
    """sample --out into a missing folder"""
    return sample(w, f'--out={w}/no/such/folder/s.png'), None, ()

  @trained
  def sample_out_is_folder(w):
    """sample --out onto an existing folder"""
    os.makedirs(os.path.join(w, 'grid.png'))
    return sample(w, f'--out={w}/grid.png'), None, ()

  @trained
  def sample_huge(w):
    """sample --num_samples=1e14"""
    return sample(w, '--num_samples=100000000000000', f'--out={w}/s.npy'), None, ()

  @fresh
  def unknown_dataset(w):
    """data.name=bogus"""
    return train(w, '--config.data.name=bogus'), None, ()

  @fresh
  def missing_config_file(w):
    """missing config file with an override"""
    return train(w, '--config.total_steps=3', config='configs/nofile.py'), None, ()

  @fresh
  def eval_off(w):
    """eval_every_steps=0"""
    proc = train(w, '--config.eval_every_steps=0')
    samples = os.path.join(w, 'samples')
    proc.stderr += f'\n(samples/ written: {os.path.exists(samples)})'
    return proc, w, ('--config.eval_every_steps=0', '--config.total_steps=6')

  def launch_help():
    """launch/* --help"""
    codes = []
    for script in sorted(os.listdir(os.path.join(ROOT, 'launch'))):
      proc = subprocess.run(['bash', os.path.join(ROOT, 'launch', script), '--help'],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
      codes.append(f'{script}:{proc.returncode}')
    return subprocess.CompletedProcess([], max(int(c.split(':')[1]) for c in codes), '',
                                       ' '.join(codes)), None, ()

  return [(fn.__name__, fn.__doc__, fn) for fn in (
      diverge, sample_nonfinite, config_deleted, config_truncated, empty_folder_ahead,
      partial_folder, truncated_arrays, truncated_arrays_sample, truncated_arrays_sample_step,
      manifest_deleted, metadata_deleted, sigint, sigint_twice, sigterm, disk_full,
      total_steps_int32, negative_seed, sample_out_missing_folder, sample_out_is_folder,
      sample_huge, unknown_dataset, missing_config_file, eval_off, launch_help)]


# A NaN checkpoint at step 8 (state of step 6 with NaN parameters), as versions without the
# divergence check wrote them.
POISON = '''
import sys
import jax, jax.numpy as jnp
from wgan_jax import checkpoint, train
workdir = sys.argv[1]
run, state, step = train.load_for_inference(workdir)
state = state._replace(step=jnp.int32(8), g_params=jax.tree.map(lambda x: x * jnp.nan,
                                                                state.g.params))
config = checkpoint.saved_config(workdir)
ckpt = checkpoint.Checkpointer(workdir, keep=3)
ckpt.save(8, state, {'step': 8, 'config': config})
ckpt.close()
'''


def _resume(workdir, overrides) -> str:
  if workdir is None:
    return '-'
  return str(train(workdir, *overrides).returncode)


def _enospc_main(from_step: int, argv: list) -> None:
  """Runs wgan_jax.main with every write under checkpoints/<step >= from_step> failing with
  ENOSPC (the errno a full disk gives)."""
  original = epath.Path.write_text

  def full_disk(self, *args, **kwargs):
    parts = str(self).split(os.sep)
    below = parts[parts.index('checkpoints') + 1:] if 'checkpoints' in parts else []
    if below and below[0].split('.')[0].isdigit():
      if int(below[0].split('.')[0]) >= from_step:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
    return original(self, *args, **kwargs)

  epath.Path.write_text = full_disk
  sys.argv = ['wgan_jax.main', *argv]
  runpy.run_module('wgan_jax.main', run_name='__main__')


def main(argv) -> None:
  if argv and argv[0].startswith('--enospc_from='):
    _enospc_main(int(argv[0].split('=', 1)[1]), argv[1:])
    return
  only = None
  for arg in argv:
    if arg.startswith('--only='):
      only = set(arg.split('=', 1)[1].split(','))
  base = tempfile.mkdtemp(prefix='wgan_faults_')
  try:
    all_cases = cases(base)
    if '--list' in argv:
      for name, description, _ in all_cases:
        print(f'{name:30s} {description}')
      return
    print(f'{"case":30s} {"exit":>4s}  {"resumes":>7s}  stderr (lines: text)')
    for name, description, fn in all_cases:
      if only and name not in only:
        continue
      proc, workdir, overrides = fn()
      lines = stderr_lines(proc.stderr)
      shown = ' | '.join(lines) if len(lines) <= 2 else f'{lines[-1]} [+{len(lines) - 1} lines]'
      print(f'{name:30s} {proc.returncode:>4d}  {_resume(workdir, overrides):>7s}  '
            f'{len(lines)}: {shown}', flush=True)
      print(f'{"":30s} ({description})', flush=True)
  finally:
    shutil.rmtree(base, ignore_errors=True)


if __name__ == '__main__':
  main(sys.argv[1:])
