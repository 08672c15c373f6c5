"""User-facing errors: each carries one readable line naming the problem and the fix.

`wgan_jax.main` (and the other command-line entry points) print the message of a
`UserError` as a single line on stderr and exit 2, without a traceback. A `Fault` (the
run diverged, the disk filled up) is one line too, with its own exit status; SIGTERM and
SIGINT stop a run with 143 and 130 after saving (wgan_jax.train.Preempted); in a
multi-process job every process stops at the same step.
"""
import errno


class UserError(Exception):
  """A problem with what the user asked for (config, data, workdir, checkpoint)."""


class ConfigError(UserError):
  """An unknown config key, an unknown name or an invalid value."""


class DataError(UserError):
  """A dataset that is missing, unprepared or of the wrong shape."""


class WorkdirError(UserError):
  """A workdir that cannot be written or holds an incompatible run."""


class CheckpointError(WorkdirError):
  """A checkpoint that cannot be read (truncated or missing files) or holds NaN / inf."""


class Fault(Exception):
  """A run stopped by something that happened while it ran; `exit_code` is the process's
  exit status and the message its one line. The workdir stays resumable."""
  exit_code = 1


class Diverged(Fault):
  """A loss, gradient norm or parameter became NaN or infinite."""
  exit_code = 3


class DiskFull(Fault):
  """The workdir's disk filled up while writing (a checkpoint, metrics)."""
  exit_code = 4


class PeerLost(Fault):
  """Another process of a multi-process job died (or its link broke) mid-run: a collective
  with it failed. The process leaves at once (no shutdown handshake with the dead peer)."""
  exit_code = 5


def is_disk_full(error: BaseException) -> bool:
  """Whether `error` (or one it was raised from) is ENOSPC / EDQUOT: an OSError with that
  errno, or an error whose text carries the OS message (tensorstore raises ValueError)."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    text = str(error)
    if 'No space left on device' in text or 'Disk quota exceeded' in text:
      return True
    error = error.__cause__ or error.__context__
  return False
