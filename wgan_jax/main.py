"""python -m wgan_jax.main --config=configs/<file>.py[:arg] --workdir=DIR [--config.key=value]

Multi-host: on a Cloud TPU pod slice or a multi-task SLURM job jax.distributed is
initialised automatically; elsewhere pass --coordinator_address, --num_processes and
--process_id (see launch/).
"""
from absl import flags
from ml_collections import config_flags

from wgan_jax import cli

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file[:arg].', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for metrics, samples, checkpoints.')
_DISTRIBUTED = flags.DEFINE_enum(
    'distributed', 'auto', ['auto', 'on', 'off'],
    'jax.distributed.initialize: auto = with --coordinator_address or on a detected '
    'SLURM / TPU-pod job.')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None, 'host:port of process 0.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes in the job.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process\'s index.')
_HEARTBEAT = flags.DEFINE_integer(
    'heartbeat_timeout_seconds', 60,
    'Multi-process: a peer process silent this long counts as dead and every other process '
    'stops with one line (exit 5); jax.distributed\'s heartbeat timeout is twice this.',
    lower_bound=1)


def main(argv):
  del argv
  config = cli.config_from_flag(_CONFIG)
  if not _WORKDIR.value:
    cli.fail('--workdir is required, e.g. --workdir=runs/wgan_gp_gaussians8')
  from wgan_jax import parallel, train  # after flag checks: jax import cost only for real runs
  parallel.initialize_distributed(mode=_DISTRIBUTED.value, coordinator_address=_COORDINATOR.value,
                                  num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value,
                                  heartbeat_timeout_seconds=_HEARTBEAT.value)
  parallel.enable_compilation_cache()
  # Preempted (SIGTERM 143, SIGINT 130: as if the signal had ended the process; every
  # process of a multi-process job at the same step), Diverged, DiskFull, PeerLost: one line
  # and their exit codes (cli.entry).
  train.train_and_evaluate(config, _WORKDIR.value)


if __name__ == '__main__':
  cli.entry(main, workdir_flag='workdir')
