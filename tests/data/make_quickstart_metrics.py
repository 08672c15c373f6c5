"""Records the quickstart's metrics that the `gan` family must reproduce bit for bit.

  python -m tests.data.make_quickstart_metrics

Trains README's quickstart (configs/wgan_gp.py:gaussians8) shortened by QUICKSTART_OVERRIDES
and writes its metrics.jsonl records, without the wall-clock keys, to quickstart_metrics.jsonl
beside this file. tests/test_families.py trains the same run and compares every value exactly:
the file was written before the train state was grouped per player and the families were added,
so the test holds today's code to the numbers of that code. To record them again (another
arithmetic, tests/simulated_devices.py), run this at commit 6c1f747 with
tests/simulated_devices.py copied in, as tests/data/make_flat_layout_workdir.py says.
"""
import json
import os
import tempfile

from tests import simulated_devices

# The test environment (tests/conftest.py): XLA:CPU's results depend on the device count.
os.environ.setdefault('XLA_FLAGS', simulated_devices.xla_flags(4))
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

QUICKSTART = ('wgan_gp', 'gaussians8')
QUICKSTART_OVERRIDES = {'total_steps': 30, 'log_every_steps': 10, 'eval_every_steps': 30,
                        'checkpoint_every_steps': 30}
TIMING_KEYS = ('steps_per_sec',)
RECORD_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           'quickstart_metrics.jsonl')


def quickstart_config():
  from tests.configs_loader import load  # pylint: disable=import-outside-toplevel
  return load(*QUICKSTART, **QUICKSTART_OVERRIDES)


def train_quickstart(workdir: str) -> list[dict]:
  """The metrics.jsonl records (timing keys dropped) of the shortened quickstart."""
  from wgan_jax import train  # pylint: disable=import-outside-toplevel
  train.train_and_evaluate(quickstart_config(), workdir)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in f]


def main() -> None:
  with tempfile.TemporaryDirectory() as tmp:
    records = train_quickstart(tmp)
  with open(RECORD_FILE, 'w') as f:
    for record in records:
      f.write(json.dumps(record, sort_keys=True) + '\n')
  print(f'wrote {len(records)} records to {RECORD_FILE}')


if __name__ == '__main__':
  main()
