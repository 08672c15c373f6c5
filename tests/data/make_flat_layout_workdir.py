"""Records a workdir of the flat train-state layout that tests/test_families.py resumes.

  python -m tests.data.make_flat_layout_workdir

Run it at commit 6c1f747, the last before the train state was grouped per player (a git
worktree of that commit with this file and tests/simulated_devices.py copied in), then copy
the two flat_layout_* files it writes back here. At that commit the checkpoints hold
top-level g_params, d_params, ... It trains the toy recipe shrunk to 6 steps (EMA on), keeps
its checkpoint of step 4 as if preempted there (flat_layout_workdir.tar.gz: config.json and
checkpoints/4) and what it logged at steps 5 and 6 (flat_layout_resumed_metrics.json, without
the wall-clock keys). The test resumes the workdir with today's code and must log exactly
those values.
"""
import json
import os
import tarfile
import tempfile

from tests import simulated_devices

os.environ.setdefault('XLA_FLAGS', simulated_devices.xla_flags(4))  # as tests/conftest.py
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

DATA = os.path.dirname(os.path.abspath(__file__))
OVERRIDES = {'total_steps': 6, 'log_every_steps': 1, 'eval_every_steps': 0,
             'checkpoint_every_steps': 2, 'keep_checkpoints': 3, 'batch_size': 16,
             'n_critic': 2, 'ema_decay': 0.9, 'model.mlp_hidden': 8, 'model.mlp_layers': 2}
PREEMPTED_AT = 4
TIMING_KEYS = ('steps_per_sec',)


def main() -> None:
  # pylint: disable=import-outside-toplevel
  from tests import configs_loader
  from wgan_jax import train
  with tempfile.TemporaryDirectory() as workdir:
    train.train_and_evaluate(configs_loader.load('wgan_gp', 'gaussians8', **OVERRIDES), workdir)
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      records = [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS}
                 for line in f]
    with open(os.path.join(DATA, 'flat_layout_resumed_metrics.json'), 'w') as f:
      json.dump([r for r in records if r['step'] > PREEMPTED_AT], f, indent=1, sort_keys=True)
    with tarfile.open(os.path.join(DATA, 'flat_layout_workdir.tar.gz'), 'w:gz') as archive:
      archive.add(os.path.join(workdir, 'config.json'), 'config.json')
      archive.add(os.path.join(workdir, 'checkpoints', str(PREEMPTED_AT)),
                  f'checkpoints/{PREEMPTED_AT}')
  print(f'wrote the workdir of step {PREEMPTED_AT} and the records of steps 5-6 to {DATA}')


if __name__ == '__main__':
  main()
