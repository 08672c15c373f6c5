"""The family mechanism: the gan family keeps the numbers of the code before it, and
workdirs written before the state was grouped per player resume bit-exactly."""
import json
import os
import shutil
import tarfile

import chex
import jax
import numpy as np
import pytest

from wgan_jax import config_lib, families, train
from wgan_jax.errors import ConfigError

from tests import configs_loader
from tests.data import make_quickstart_metrics

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')

# Every family's toy smoke config, run by the generic checks below: (file, argument,
# overrides).
FAMILY_SMOKE = {
    'gan': ('wgan_gp', 'gaussians8,smoke', {}),
    'bigan': ('bigan', 'gaussians8,smoke', {'loss': 'hinge', 'lipschitz.method': 'spectral'}),
    'cyclegan': ('cyclegan', 'gaussians8,smoke', {}),
    'wae_gan': ('wae', 'gan,gaussians8,smoke', {}),
    'wae_mmd': ('wae', 'mmd,gaussians8,smoke', {}),
    'vae': ('vae', 'gaussians8,smoke', {}),
}
# The families the generic checks below run (gan's strategies and resume are tested in
# test_parallel.py and test_checkpoint.py), and the scalars each one's evaluation logs.
EVAL_KEYS = {
    'bigan': ('eval/recon_mse', 'eval/latent_w1', 'eval/w1'),
    'cyclegan': ('eval/cycle_error', 'eval/w1'),
    'wae_gan': ('eval/recon_mse', 'eval/latent_mmd', 'eval/w1'),
    'wae_mmd': ('eval/recon_mse', 'eval/latent_mmd', 'eval/w1'),
    'vae': ('eval/recon_mse', 'eval/latent_mmd', 'eval/w1'),
}
# pmap and a sharded mesh: the same numbers up to reduction order.
RTOL, ATOL = 1e-3, 2e-4


def test_every_registered_family_has_a_smoke_config():
  assert set(FAMILY_SMOKE) == set(families.FAMILIES) == set(EVAL_KEYS) | {'gan'}


def _losses(family, strategy, steps=1, **overrides):
  """The logged scalars of `steps` steps of the family's smoke config under `strategy`."""
  file, arg, extra = FAMILY_SMOKE[family]
  config = configs_loader.load(file, arg, **{**extra, 'batch_size': 8, 'g_batch_size': 0,
                                             'parallel.strategy': strategy, **overrides})
  run = train.Run(config)
  state = run.strategy.to_device(run.init_state())
  step_fn, out = run.train_step(), []
  for t in range(steps):
    state, metrics = step_fn(state, run.batch(t))
    metrics = jax.device_get(run.strategy.metrics(metrics))
    out.append({k: float(v) for k, v in metrics.items() if not k.startswith('sigma/')})
  return out


@pytest.mark.parametrize('family', sorted(EVAL_KEYS))
def test_every_family_steps_alike_under_pmap_and_on_a_sharded_mesh(family):
  # pmap over 4 devices (per-device slices, pmean) and jit over a (data 2, fsdp 2) mesh with
  # every leaf sharded that can be (the global batch, XLA's partitioner): two code paths,
  # the same global step. (jit's step is the one-device step: the same program.)
  pmap = _losses(family, 'pmap')
  mesh = _losses(family, 'jit', **{'parallel.mesh': 'data=-1,fsdp=2',
                                   'parallel.fsdp_min_bytes': 0})
  for want, got in zip(pmap, mesh):
    assert set(got) == set(want)
    for key in want:
      np.testing.assert_allclose(got[key], want[key], rtol=RTOL, atol=ATOL, err_msg=key)


@pytest.mark.parametrize('family', sorted(EVAL_KEYS))
def test_every_family_trains_evaluates_and_resumes_bit_exactly(family, tmp_path):
  # Three steps straight (evaluated at the last), then the last two again from the
  # checkpoint of step 1 (as after a preemption): the same logged values and the same final
  # state, bit for bit (the family's `extra` included).
  file, arg, extra = FAMILY_SMOKE[family]
  config = configs_loader.load(file, arg, **{**extra, 'total_steps': 3, 'log_every_steps': 1,
                                             'eval_every_steps': 3, 'checkpoint_every_steps': 1,
                                             'keep_checkpoints': 3})
  workdir = str(tmp_path)
  train.train_and_evaluate(config, workdir)
  straight = _records(workdir)
  for key in EVAL_KEYS[family] + ('g_loss',):
    assert np.isfinite(straight[-1][key]), key
  if config.lipschitz.method == 'spectral':  # the critic's spectral-norm state is logged
    assert any(k.startswith('sigma/') for k in straight[0])
  _, want, _ = train.load_for_inference(workdir)
  for step in (2, 3):
    shutil.rmtree(os.path.join(workdir, 'checkpoints', str(step)))
  train.train_and_evaluate(config, workdir)
  drop = lambda records: [{k: v for k, v in r.items() if k != 'steps_per_sec'} for r in records]
  assert drop(_records(workdir)) == drop(straight)
  _, got, step = train.load_for_inference(workdir)
  assert step == 3
  chex.assert_trees_all_equal(jax.device_get(got), jax.device_get(want))


def _records(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def test_gan_family_reproduces_the_quickstart_metrics_bit_for_bit(tmp_path):
  # tests/data/quickstart_metrics.jsonl was written by the code before the families
  # (python -m tests.data.make_quickstart_metrics): every logged value must be equal.
  got = make_quickstart_metrics.train_quickstart(str(tmp_path))
  with open(make_quickstart_metrics.RECORD_FILE) as f:
    want = [json.loads(line) for line in f]
  assert [r['step'] for r in got] == [r['step'] for r in want]
  for g, w in zip(got, want):
    assert g == w


def test_workdir_of_the_flat_state_layout_resumes_bit_exactly(tmp_path):
  # A workdir written before PlayerState (top-level g_params, d_params, ..., EMA on; the
  # toy recipe shrunk to 6 steps, its checkpoint of step 4 kept as if preempted there):
  # it resumes, and steps 5 and 6 log exactly what that code logged training straight
  # through (tests/data/flat_layout_*: written by the code before PlayerState).
  with tarfile.open(os.path.join(DATA, 'flat_layout_workdir.tar.gz')) as archive:
    archive.extractall(tmp_path, filter='data')
  with open(os.path.join(DATA, 'flat_layout_resumed_metrics.json')) as f:
    want = json.load(f)
  config = configs_loader.load(
      'wgan_gp', 'gaussians8', total_steps=6, log_every_steps=1, eval_every_steps=0,
      checkpoint_every_steps=2, keep_checkpoints=3, batch_size=16, n_critic=2, ema_decay=0.9,
      **{'model.mlp_hidden': 8, 'model.mlp_layers': 2})
  train.train_and_evaluate(config, str(tmp_path))
  got = [{k: v for k, v in r.items() if k != 'steps_per_sec'} for r in _records(tmp_path)
         if r['step'] > 4]
  assert got == want
  # ... and the checkpoint it wrote has today's layout, which restores as it is.
  run, state, step = train.load_for_inference(str(tmp_path))
  assert step == 6 and state.d is not None and state.g_ema_params is not None


def test_unknown_family_is_one_config_error():
  config = config_lib.base_config()
  config.family = 'flow'
  with pytest.raises(ConfigError, match="unknown family 'flow'; valid: .*gan"):
    families.build(config, models=None, loss=None, cfg=None)
