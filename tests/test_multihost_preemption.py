"""Two real processes (launch/local_multihost.sh): a signal to one process stops both at the
same step, a dead process ends the other with one line, and both workdirs resume exactly."""
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

from wgan_jax import checkpoint
from tests import configs_loader

# The toy smoke config under jit, at a constant rate: total_steps (which sets a linear decay's
# length) may then change on resume without changing the steps.
ARGS = ['--config=configs/wgan_gp.py:gaussians8,smoke', '--config.parallel.strategy=jit',
        '--config.optim.g.schedule=constant', '--config.optim.d.schedule=constant',
        '--config.log_every_steps=1', '--config.eval_every_steps=100000']
LONG = 100_000  # total_steps of the interrupted runs: they stop by the signal
SIGNAL_BOUND_S = 60  # every process has exited this long after the signal
ENV = dict(os.environ, PYTHON=sys.executable, DEVICES_PER_PROCESS='1', JAX_PLATFORMS='cpu')


def _commands(workdir, *args) -> list:
  """The two processes' commands, as launch/local_multihost.sh starts them."""
  out = subprocess.run(['launch/local_multihost.sh', '--dry-run', '2', f'--workdir={workdir}',
                        *ARGS, *args], cwd=configs_loader.ROOT, env=ENV, capture_output=True,
                       text=True, check=True).stdout
  return [shlex.split(line) for line in out.splitlines()]


def _wait_for(path, procs, timeout=120.0) -> None:
  """Until `path` exists and is not empty (the first metrics line: both processes are in
  the train loop)."""
  end = time.monotonic() + timeout
  while not (os.path.exists(path) and os.path.getsize(path)):
    assert time.monotonic() < end, f'{path} did not appear'
    assert all(p.poll() is None for p in procs), 'a process ended early'
    time.sleep(0.05)


def _interrupt(workdir, sig, when, *args):
  """Starts the two processes, sends `sig` to process 1 once `when` (a workdir file) exists;
  [(returncode, stderr)] of both and the seconds from the signal to the last exit."""
  procs = [subprocess.Popen(cmd, cwd=configs_loader.ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True) for cmd in _commands(workdir, *args)]
  try:
    _wait_for(os.path.join(workdir, when), procs)
    procs[1].send_signal(sig)
    sent = time.monotonic()
    errs = [p.communicate(timeout=SIGNAL_BOUND_S)[1] for p in procs]
    return [(p.returncode, err) for p, err in zip(procs, errs)], time.monotonic() - sent
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()


def _run(workdir, total):
  result = subprocess.run(['launch/local_multihost.sh', '2', f'--workdir={workdir}', *ARGS,
                           f'--config.total_steps={total}'], cwd=configs_loader.ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr


def _losses(workdir) -> dict:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    records = [json.loads(line) for line in f]
  return {r['step']: (r['d_loss'], r['g_loss']) for r in records}




@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """SIGTERM to one process, SIGKILL of one process, each resumed to step `end`, and an
  uninterrupted run to `end`."""
  root = tmp_path_factory.mktemp('multihost')
  term, kill, ref = str(root / 'term'), str(root / 'kill'), str(root / 'ref')
  out = {'term': _interrupt(term, signal.SIGTERM, 'metrics.jsonl',
                            f'--config.total_steps={LONG}', '--config.checkpoint_every_steps=1000'),
         'term_steps': checkpoint.all_steps(term)}
  out['kill'] = _interrupt(kill, signal.SIGKILL, os.path.join('checkpoints', '2', '_CHECKPOINT_METADATA'),
                           f'--config.total_steps={LONG}', '--config.checkpoint_every_steps=2',
                           '--heartbeat_timeout_seconds=10')
  out['kill_steps'] = checkpoint.all_steps(kill)
  end = max(out['term_steps'] + out['kill_steps']) + 2
  for workdir in (term, kill, ref):
    _run(workdir, end)
  out.update(end=end, losses={name: _losses(w) for name, w in
                              (('term', term), ('kill', kill), ('ref', ref))})
  return out


def test_sigterm_to_one_process_stops_both_at_the_same_saved_step(runs):
  (results, seconds), steps = runs['term'], runs['term_steps']
  assert len(steps) == 1, steps  # only the preemption save (checkpoint_every_steps=1000)
  assert [code for code, _ in results] == [143, 143], results
  for _, err in results:
    assert f'preempted (SIGTERM) after step {steps[0]}; checkpoint saved' in err, err
  assert seconds < SIGNAL_BOUND_S


def test_sigkill_of_one_process_ends_the_other_with_one_line(runs):
  (results, seconds), steps = runs['kill'], runs['kill_steps']
  (code, err), (killed, _) = results
  assert killed == -signal.SIGKILL
  assert code == 5, err
  lines = [line for line in err.splitlines() if 'peer process' in line]
  assert len(lines) == 1 and lines[0].startswith('error: a peer process of this 2-process job'
                                                 ' died'), err
  assert int(re.search(r'the last complete checkpoint is step (\d+)', lines[0]).group(1)) in steps
  assert 'Traceback' not in err
  assert seconds < SIGNAL_BOUND_S


def test_interrupted_runs_resume_to_the_uninterrupted_numbers(runs):
  losses, end = runs['losses'], runs['end']
  assert sorted(losses['ref']) == list(range(1, end + 1))
  for name in ('term', 'kill'):
    assert losses[name] == losses['ref'], name  # bit for bit: the same floats in the JSON
