"""Preemption safety: bit-exact resume after SIGKILL / SIGTERM, config checks, restore targets."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import chex
import jax
import numpy as np
import pytest

from wgan_jax import checkpoint, sample, train
from wgan_jax.errors import WorkdirError
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
  ckpt = checkpoint.Checkpointer(workdir, every_steps=4, keep=2)
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
  ckpt = checkpoint.Checkpointer(workdir, every_steps=4, keep=2)
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
  old = json.loads(json.dumps(config))
  del old['model']['d_pool'], old['model']['d_out_bias']
  workdir = tmp_path / 'old_run'
  os.makedirs(workdir / 'checkpoints' / '1000' / 'state')
  (workdir / 'checkpoints' / '1000' / '_CHECKPOINT_METADATA').write_text('{}')
  (workdir / checkpoint.CONFIG_FILE).write_text(json.dumps(old))
  assert checkpoint.latest_step(str(workdir)) == 1000
  with pytest.raises(WorkdirError, match=f'holds checkpoints of a different run: .*{changed}'):
    checkpoint.check_resumable(str(workdir), config)
  checkpoint.check_resumable(str(workdir), old)   # the saved config itself still resumes


def test_workdir_of_a_config_saved_before_a_model_key_existed_resumes_when_it_means_the_same(
    tmp_path):
  """A missing model.d_pool / d_out_bias ran with a sum pool and an output bias (ADDED_KEYS):
  a run whose recipe still has those values resumes."""
  config = configs_loader.load('sngan', 'gaussians8').to_dict()
  old = json.loads(json.dumps(config))
  del old['model']['d_pool'], old['model']['d_out_bias']
  workdir = tmp_path / 'old_run'
  os.makedirs(workdir / 'checkpoints' / '1000' / 'state')
  (workdir / 'checkpoints' / '1000' / '_CHECKPOINT_METADATA').write_text('{}')
  (workdir / checkpoint.CONFIG_FILE).write_text(json.dumps(old))
  checkpoint.check_resumable(str(workdir), config)
