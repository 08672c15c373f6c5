"""Preemption safety: bit-exact resume after SIGKILL / SIGTERM / SIGINT, config checks,
restore targets, and every fault (divergence, broken or corrupt checkpoints, full disk)
ending in one line and a workdir that resumes."""
import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from etils import epath

from benchmarks import faults
from wgan_jax import checkpoint, sample, train
from wgan_jax import step as step_lib
from wgan_jax.errors import CheckpointError, Diverged, DiskFull, UserError, WorkdirError
from tests import configs_loader

CONFIG = 'configs/sngan.py:gaussians8,smoke'
OVERRIDES = {'total_steps': 30, 'checkpoint_every_steps': 4, 'eval_every_steps': 10,
             'log_every_steps': 1, 'keep_checkpoints': 2}


def _flags(overrides):
  return [f'--config.{k}={v}' for k, v in overrides.items()]


def _start(workdir, overrides=OVERRIDES):
  return subprocess.Popen(
      [sys.executable, '-m', 'wgan_jax.main', f'--config={CONFIG}', f'--workdir={workdir}',
       *_flags(overrides)], cwd=configs_loader.ROOT, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True,
      env=dict(os.environ, JAX_PLATFORMS='cpu', WGAN_JAX_COMPILATION_CACHE=''))


def _records(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [{k: v for k, v in json.loads(line).items() if k != 'steps_per_sec'} for line in f]


def _final(workdir):
  run, state, step = train.load_for_inference(workdir)
  return jax.device_get(state), step, sample.generate(run, state, num_samples=64, seed=1)


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('uninterrupted')
  proc = _start(workdir)
  assert proc.wait(timeout=300) == 0, proc.stderr.read()
  return workdir, _records(workdir), _final(workdir)


def _wait_for_records(proc, workdir, n):
  """Waits until metrics.jsonl has n records; False if the process ended first."""
  file = workdir / 'metrics.jsonl'
  while proc.poll() is None:
    if file.exists() and len(file.read_text().splitlines()) >= n:
      return True
    time.sleep(0.01)
  return False


def test_sigkill_at_random_moments_then_resume_is_bit_exact(reference, tmp_path):
  _, ref_records, (ref_state, ref_step, ref_samples) = reference
  rng = random.Random(0)
  kills = 0
  while True:
    proc = _start(tmp_path)
    # Kill at a random step, a random moment after it (saves run every 4 steps).
    if kills < 4 and _wait_for_records(proc, tmp_path, rng.randint(1, 29)):
      time.sleep(rng.uniform(0.0, 0.2))
      proc.send_signal(signal.SIGKILL)
      proc.wait()
      kills += 1
      continue
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    break
  assert kills >= 1
  assert _records(tmp_path) == ref_records  # every logged step, identical losses
  state, step, samples = _final(tmp_path)
  assert step == ref_step == 30
  chex.assert_trees_all_equal(state, ref_state)
  np.testing.assert_array_equal(samples, ref_samples)


def test_sigterm_saves_then_resumes_bit_exact(reference, tmp_path, monkeypatch):
  _, ref_records, (ref_state, _, _) = reference
  config = _config(checkpoint_every_steps=1000)
  original = train.MetricWriter.write

  def write_then_preempt(self, step, metrics):
    if step == 7:
      os.kill(os.getpid(), signal.SIGTERM)  # the preemption notice, mid-run
    return original(self, step, metrics)

  monkeypatch.setattr(train.MetricWriter, 'write', write_then_preempt)
  with pytest.raises(train.Preempted) as stopped:
    train.train_and_evaluate(config, str(tmp_path))
  assert 7 <= stopped.value.step < 30
  assert checkpoint.all_steps(str(tmp_path)) == [stopped.value.step]
  monkeypatch.setattr(train.MetricWriter, 'write', original)
  train.train_and_evaluate(config, str(tmp_path))
  assert _records(tmp_path) == ref_records
  chex.assert_trees_all_equal(_final(tmp_path)[0], ref_state)


def test_save_cut_off_midway_is_ignored(reference, tmp_path):
  workdir, _, (ref_state, _, _) = reference
  steps = checkpoint.all_steps(str(workdir))
  assert steps == [28, 30]  # keep_checkpoints = 2
  os.makedirs(workdir / 'checkpoints' / '32.orbax-checkpoint-tmp-1700000000' / 'state')
  assert checkpoint.latest_step(str(workdir)) == 30
  chex.assert_trees_all_equal(_final(workdir)[0], ref_state)


def _config(**overrides):
  return configs_loader.load('sngan', 'gaussians8,smoke', **{**OVERRIDES, **overrides})


def test_resume_with_a_different_model_or_objective_is_one_clear_error(reference):
  workdir = str(reference[0])
  with pytest.raises(WorkdirError, match=r"loss \('hinge' -> 'wasserstein'\).*model.mlp_hidden"):
    train.train_and_evaluate(_config(loss='wasserstein', **{'model.mlp_hidden': 64}), workdir)
  with pytest.raises(WorkdirError, match='optim.d.lr'):
    checkpoint.check_resumable(workdir, _config(**{'optim.d.lr': 1e-3}).to_dict())
  # Harmless changes are allowed: a longer run continues from step 30.
  checkpoint.check_resumable(workdir, _config(total_steps=40, log_every_steps=5,
                                               eval_every_steps=7).to_dict())


def test_checkpoint_of_another_architecture_is_one_clear_error(reference):
  workdir = str(reference[0])
  other = train.Run(_config(**{'model.mlp_hidden': 64}))
  ckpt = checkpoint.Checkpointer(workdir, keep=2)
  try:
    with pytest.raises(WorkdirError, match='does not fit this model.*checkpoint .*vs model'):
      ckpt.restore(30, checkpoint.abstract_like(other.init_state()))
  finally:
    ckpt.close()


def test_restore_onto_another_device_layout(reference):
  workdir = str(reference[0])
  run = train.Run(_config(), open_data=False)
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:4]), ('data',))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                        jax.eval_shape(run.init_state))
  ckpt = checkpoint.Checkpointer(workdir, keep=2)
  try:
    state, meta = ckpt.restore(30, target)
  finally:
    ckpt.close()
  assert meta['step'] == 30
  assert all(leaf.sharding == replicated for leaf in jax.tree.leaves(state))
  chex.assert_trees_all_equal(jax.device_get(state), reference[2][0])


def test_sample_cli_is_byte_identical(reference, tmp_path):
  workdir = str(reference[0])
  outs = []
  for name in ('a.png', 'b.png', 'a.npy'):
    proc = subprocess.run([sys.executable, '-m', 'wgan_jax.sample', f'--workdir={workdir}',
                           '--num_samples=200', '--seed=7', f'--out={tmp_path / name}'],
                          cwd=configs_loader.ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    outs.append((tmp_path / name).read_bytes())
  assert outs[0] == outs[1]
  assert np.load(tmp_path / 'a.npy').shape == (200, 2)


def _run_saved_before_model_keys(tmp_path, config: dict):
  """A workdir with a checkpoint at step 1000 whose config.json is `config` without
  model.d_pool / d_out_bias (as written before they existed): (workdir, that config)."""
  old = json.loads(json.dumps(config))
  del old['model']['d_pool'], old['model']['d_out_bias']
  workdir = tmp_path / 'old_run'
  os.makedirs(workdir / 'checkpoints' / '1000' / 'state')
  (workdir / 'checkpoints' / '1000' / '_CHECKPOINT_METADATA').write_text('{}')
  (workdir / checkpoint.CONFIG_FILE).write_text(json.dumps(old))
  return workdir, old


@pytest.mark.parametrize('file, changed', [
    ('wgan_gp', "model.d_pool \\('sum' -> 'mean'\\)"),           # sum then, mean now
    ('sngan', "model.d_out_bias \\(True -> False\\)"),           # a bias then, none now
])
def test_workdir_of_a_config_saved_before_a_model_key_existed_is_one_clear_error(
    tmp_path, file, changed):
  """A config.json written before model.d_pool / model.d_out_bias existed: those runs
  pooled by summing and had an output bias, so resuming under today's recipe must stop
  with the incompatibility error, never run another model on the old checkpoint."""
  config = configs_loader.load(file).to_dict()
  workdir, old = _run_saved_before_model_keys(tmp_path, config)
  assert checkpoint.latest_step(str(workdir)) == 1000
  with pytest.raises(WorkdirError, match=f'holds checkpoints of a different run: .*{changed}'):
    checkpoint.check_resumable(str(workdir), config)
  checkpoint.check_resumable(str(workdir), old)   # the saved config itself still resumes


def test_workdir_of_a_config_saved_before_a_model_key_existed_resumes_when_it_means_the_same(
    tmp_path):
  """A missing model.d_pool / d_out_bias ran with a sum pool and an output bias (ADDED_KEYS):
  a run whose recipe still has those values resumes."""
  config = configs_loader.load('sngan', 'gaussians8').to_dict()
  workdir, _ = _run_saved_before_model_keys(tmp_path, config)
  checkpoint.check_resumable(str(workdir), config)


def _with_evals_block(config: dict) -> dict:
  """`config` as saved before the image-metric keys moved from `evals` into `eval`."""
  old = json.loads(json.dumps(config))
  eval_ = old.pop('eval')
  old['eval'] = {'num_samples': eval_['num_samples'], 'num_images': eval_['num_images']}
  old['evals'] = {'every_steps': 0, 'metrics': 'fid,kid', 'num_samples': 123,
                  'is_num_samples': 50000, 'swd_num_images': 2048, 'batch_size': 100,
                  'reference_stats': '', 'inception_weights': '', 'intra_fid_num_samples': 1000}
  return old


def test_workdir_of_a_config_saved_with_the_evals_block_resumes_and_loads(reference, tmp_path,
                                                                         monkeypatch):
  """A config.json / checkpoint config with the old `evals` block: the run resumes under
  today's config (eval keys never change a run) and sample / evaluate read it in today's
  layout (config_lib.upgrade_eval): evals.num_samples -> eval.fid_num_samples."""
  from wgan_jax import config_lib
  workdir = _copy(reference, tmp_path)
  saved = json.loads((tmp_path / 'run' / 'config.json').read_text())
  old = _with_evals_block(saved)
  upgraded = config_lib.upgrade_eval(old)
  assert 'evals' not in upgraded and 'evals' in old  # a new dict
  assert upgraded['eval'] == dict(saved['eval'], metrics='fid,kid', fid_num_samples=123)
  monkeypatch.setattr(checkpoint, 'checkpoint_config', lambda workdir, step: old)
  checkpoint.check_resumable(workdir, saved)
  run, state, step = train.load_for_inference(workdir)
  assert run.config.eval.fid_num_samples == 123 and 'evals' not in run.config
  np.testing.assert_array_equal(sample.generate(run, state, num_samples=64, seed=1),
                                reference[2][2])


# ------------------------------------------------------------------------------------- faults
def _copy(reference, tmp_path, name='run'):
  workdir = tmp_path / name
  shutil.copytree(reference[0], workdir)
  return str(workdir)


def _stderr_lines(capfd):
  return [line for line in capfd.readouterr().err.splitlines() if line.strip()]


def test_config_is_stored_in_every_checkpoint_and_checked_without_config_json(reference,
                                                                              tmp_path):
  workdir = _copy(reference, tmp_path)
  saved = json.loads((tmp_path / 'run' / 'config.json').read_text())
  for step in checkpoint.all_steps(workdir):
    assert checkpoint.checkpoint_config(workdir, step) == saved
  os.remove(os.path.join(workdir, 'config.json'))
  with pytest.raises(WorkdirError, match=r"loss \('hinge' -> 'wasserstein'\)"):
    train.train_and_evaluate(_config(loss='wasserstein'), workdir)
  assert not os.path.exists(os.path.join(workdir, 'config.json'))  # nothing written


def test_truncated_config_json_reads_the_checkpoint_copy_else_one_line(reference, tmp_path):
  workdir = _copy(reference, tmp_path)
  (tmp_path / 'run' / 'config.json').write_text('{"seed": ')
  checkpoint.check_resumable(workdir, _config().to_dict())  # the checkpoints' copy
  run, _, step = train.load_for_inference(workdir)
  assert step == 30 and run.config.loss == 'hinge'
  for step in checkpoint.all_steps(workdir):  # checkpoints of versions without the copy
    meta_file = tmp_path / 'run' / 'checkpoints' / str(step) / 'meta' / 'metadata'
    meta = json.loads(meta_file.read_text())
    del meta['config']
    meta_file.write_text(json.dumps(meta))
  with pytest.raises(WorkdirError, match="config.json' is empty or truncated"):
    train.load_for_inference(workdir)
  with pytest.raises(WorkdirError, match="config.json' is empty or truncated"):
    checkpoint.check_resumable(workdir, _config().to_dict())


def test_broken_folders_are_moved_aside_and_never_block_a_save(reference, tmp_path, capfd):
  workdir = _copy(reference, tmp_path)
  faults.make_empty_checkpoint(workdir, 32)     # ahead of the run: would block the last save
  faults.make_partial_checkpoint(workdir, 29)   # would count toward keep_checkpoints
  train.train_and_evaluate(_config(total_steps=32), workdir)
  assert checkpoint.all_steps(workdir) == [30, 32]
  moved = sorted(os.listdir(os.path.join(workdir, 'checkpoints')))
  assert [m.split('.broken-')[0] for m in moved if '.broken-' in m] == ['29', '32']
  warnings = [line for line in _stderr_lines(capfd) if line.startswith('warning: ')]
  assert len(warnings) == 2 and all('is empty or incomplete; moved aside' in w for w in warnings)
  state, step, _ = _final(workdir)
  assert step == 32 and int(state.step) == 32


@pytest.mark.parametrize('corrupt', [faults.truncate_arrays, faults.delete_manifest,
                                     faults.delete_metadata])
def test_corrupt_checkpoint_falls_back_to_the_newest_that_reads(reference, tmp_path, capfd,
                                                                corrupt):
  workdir = _copy(reference, tmp_path)
  corrupt(workdir, 30)
  capfd.readouterr()
  with pytest.raises(CheckpointError, match='checkpoint 30 .* does not read') as error:
    train.load_for_inference(workdir, step=30)
  assert 'does not fit' not in str(error.value)
  assert _stderr_lines(capfd) == []  # tensorstore's tracebacks stay off the terminal
  _, state, step = train.load_for_inference(workdir)
  assert step == 28 and int(state.step) == 28
  (line,) = _stderr_lines(capfd)
  assert line.startswith('warning: skipped checkpoint 30') and 'does not read' in line


def test_resume_moves_a_corrupt_checkpoint_aside_and_resaves_its_step(reference, tmp_path,
                                                                      capfd):
  workdir = _copy(reference, tmp_path)
  faults.truncate_arrays(workdir, 30)
  train.train_and_evaluate(_config(), workdir)  # from 28 back to 30
  (line,) = [l for l in _stderr_lines(capfd) if l.startswith('warning: ')]
  assert 'skipped checkpoint 30' in line and 'moved aside to checkpoints/30.broken-' in line
  assert checkpoint.all_steps(workdir) == [28, 30]
  chex.assert_trees_all_equal(_final(workdir)[0], reference[2][0])


def _poisoned_step_fn(nan_from: int):
  """Run.step_fn whose generator parameters become NaN at step `nan_from` (the losses of
  that step stay finite: only the parameter check catches it)."""
  original = train.Run.step_fn

  def step_fn(self, n_critic=None):
    fn = original(self, n_critic)

    def step(state, batch):
      new, metrics = fn(state, batch)
      poison = new.step >= nan_from
      new = new._replace(g=new.g._replace(params=jax.tree.map(
          lambda x: jnp.where(poison, jnp.nan, x), new.g.params)))
      metrics['all_finite'] = step_lib.all_finite((metrics, new))
      return new, metrics
    return step
  return step_fn


def test_divergence_stops_at_that_step_and_no_nonfinite_checkpoint_is_written(tmp_path,
                                                                             monkeypatch):
  monkeypatch.setattr(train.Run, 'step_fn', _poisoned_step_fn(nan_from=6))
  config = _config(total_steps=10, checkpoint_every_steps=1, keep_checkpoints=2,
                   log_every_steps=3, eval_every_steps=100)
  with pytest.raises(Diverged, match=r'diverged at step 6: parameter g_params\.\S+ not finite;'
                                     r'.*the last checkpoint, step 5, is finite'):
    train.train_and_evaluate(config, str(tmp_path))
  assert checkpoint.all_steps(str(tmp_path)) == [4, 5]  # the last finite one kept
  for step in (4, 5):
    _, state, _ = train.load_for_inference(str(tmp_path), step)
    assert checkpoint.nonfinite_leaves(state) == []
  records = _records(tmp_path)  # step 6's record is written (its losses are still finite)
  assert [r['step'] for r in records] == [3, 6] and np.isfinite(records[-1]['d_loss'])
  assert all('all_finite' not in r for r in records)


def test_sample_and_evaluate_refuse_a_nonfinite_checkpoint(reference, tmp_path):
  workdir = _copy(reference, tmp_path)
  run, state, _ = train.load_for_inference(workdir)
  state = state._replace(step=jnp.int32(32), d=state.d._replace(
      params=jax.tree.map(lambda x: x * jnp.nan, state.d.params)))
  ckpt = checkpoint.Checkpointer(workdir, keep=3)
  ckpt.save(32, state, {'step': 32, 'config': run.config.to_dict()})
  ckpt.close()  # as versions without the divergence check could write
  with pytest.raises(CheckpointError, match=r'checkpoint 32 .* holds NaN or infinite values '
                                            r'\(d_params\..*pass --step=30'):
    train.load_for_inference(workdir)
  proc = subprocess.run([sys.executable, '-m', 'wgan_jax.evaluate', f'--workdir={workdir}'],
                        cwd=configs_loader.ROOT, capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, JAX_PLATFORMS='cpu'))
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode == 2 and len(lines) == 1 and 'holds NaN' in lines[0], proc.stderr


def test_full_disk_during_a_save_is_one_line_and_loses_nothing(reference, tmp_path,
                                                                monkeypatch):
  workdir = _copy(reference, tmp_path)
  original = epath.Path.write_text

  def full_disk(self, *args, **kwargs):
    if '/checkpoints/32' in str(self):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
    return original(self, *args, **kwargs)

  monkeypatch.setattr(epath.Path, 'write_text', full_disk)
  with pytest.raises(DiskFull, match=rf"no space left on device while writing to workdir "
                                     rf"'{re.escape(workdir)}': a checkpoint needs about "
                                     rf"[0-9.]+ KB, .* free; earlier checkpoints are intact"):
    train.train_and_evaluate(_config(total_steps=32), workdir)
  assert checkpoint.all_steps(workdir) == [28, 30]
  chex.assert_trees_all_equal(_final(workdir)[0], reference[2][0])
  monkeypatch.setattr(epath.Path, 'write_text', original)
  train.train_and_evaluate(_config(total_steps=32), workdir)  # space freed: resumes
  assert checkpoint.all_steps(workdir) == [30, 32]


def test_ctrl_c_saves_and_exits_130_then_resumes_bit_exact(reference, tmp_path):
  _, ref_records, (ref_state, _, _) = reference
  proc = _start(tmp_path, {**OVERRIDES, 'checkpoint_every_steps': 1000})
  assert _wait_for_records(proc, tmp_path, 5)
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=300)
  lines = [line for line in err.splitlines() if line.strip()]
  assert proc.returncode == 130 and len(lines) == 1, err
  assert lines[0].startswith('error: interrupted (SIGINT, Ctrl-C) after step ')
  stopped = int(lines[0].split('after step ')[1].split(';')[0])
  assert checkpoint.all_steps(str(tmp_path)) == [stopped] and stopped >= 5
  train.train_and_evaluate(_config(), str(tmp_path))
  assert _records(tmp_path) == ref_records
  chex.assert_trees_all_equal(_final(tmp_path)[0], ref_state)


class _Exited(Exception):
  pass


def test_second_ctrl_c_stops_at_once_with_130(monkeypatch, capfd):
  def fake_exit(code):
    raise _Exited(code)

  monkeypatch.setattr(os, '_exit', fake_exit)
  before = signal.getsignal(signal.SIGINT)  # SIG_IGN in a shell's background job
  with checkpoint.PreemptionWatcher() as watcher:
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)  # a repeated preemption notice: still saving
    assert watcher.requested == signal.SIGTERM
    with pytest.raises(_Exited) as exited:
      os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the save runs
  assert exited.value.args == (130,)
  (line,) = _stderr_lines(capfd)
  assert line.startswith('error: interrupted again (second Ctrl-C): stopped without saving')
  assert signal.getsignal(signal.SIGINT) is before  # handlers restored


def test_divergence_from_the_first_step_is_one_line_exit_3(tmp_path):
  proc = _start(tmp_path, {**OVERRIDES, 'optim.d.lr': 1e30})
  _, err = proc.communicate(timeout=300)
  lines = [line for line in err.splitlines() if line.strip()]
  assert proc.returncode == 3 and len(lines) == 1, err
  assert lines[0].startswith('error: training diverged at step 1: d_loss=nan')
  assert 'no checkpoint was written' in lines[0]
  assert checkpoint.all_steps(str(tmp_path)) == []


def test_sample_output_checks_come_before_loading(reference, tmp_path):
  workdir = str(reference[0])
  with pytest.raises(UserError, match=r"folder '.*/missing' does not exist"):
    sample.check_out_path(str(tmp_path / 'missing' / 's.png'))
  (tmp_path / 'grid.png').mkdir()
  with pytest.raises(UserError, match=r"--out='.*grid.png' is an existing folder"):
    sample.check_out_path(str(tmp_path / 'grid.png'))
  sample.check_out_path(str(tmp_path / 's.npy'))
  assert sample.planned_count(workdir, num_samples=10**14, labels_spec=None) == (10**14, (2,))
  with pytest.raises(UserError, match=r'--num_samples: 100000000000000 samples need 727.6 TB in '
                                      r".*s.npy' but only .* is free there"):
    sample.check_size(str(tmp_path / 's.npy'), count=10**14, example_shape=(2,))
  with pytest.raises(UserError, match=r'a .png of 100000000000000 samples needs about'):
    sample.check_size(str(tmp_path / 's.png'), count=10**14, example_shape=(2,))
  proc = subprocess.run([sys.executable, '-m', 'wgan_jax.sample', f'--workdir={workdir}',
                         f'--out={tmp_path}/no/such/s.png'], cwd=configs_loader.ROOT,
                        capture_output=True, text=True, timeout=300)
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode == 2 and len(lines) == 1 and 'does not exist' in lines[0], proc.stderr


def test_npy_is_streamed_in_chunks_and_sample_noise_does_not_depend_on_the_count(reference,
                                                                             tmp_path):
  run, state, _ = train.load_for_inference(str(reference[0]))
  n = sample.BATCH + 37
  full = sample.generate(run, state, num_samples=n, seed=3)
  assert full.shape == (n, 2)
  # The same noise for sample i whatever the count (outputs equal up to the matmul's rounding
  # at another batch size).
  np.testing.assert_allclose(sample.generate(run, state, num_samples=5, seed=3), full[:5],
                             rtol=1e-5, atol=1e-6)
  out = str(tmp_path / 's.npy')
  sample.stream_npy(out, sample.generate_chunks(run, state, num_samples=n, seed=3),
                    shape=(n, 2))
  np.testing.assert_array_equal(np.load(out), full)
  assert os.listdir(tmp_path) == ['s.npy']


