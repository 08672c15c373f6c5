"""Workdir files through etils.epath: local folders and gs:// buckets alike.

On a TPU pod every process writes into one shared workdir, usually a Cloud Storage bucket
(gs://..., reading and writing it needs `pip install etils[epath-gcs]`). Object stores
cannot append, so appended files are rewritten whole there.
"""
import json
import os
from typing import Iterable

from etils import epath

from wgan_jax.errors import WorkdirError

REMOTE_PREFIXES = ('gs://', 's3://')


def path(workdir: str, *parts: str) -> epath.Path:
  return epath.Path(workdir).joinpath(*parts)


def is_remote(workdir: str) -> bool:
  return str(workdir).startswith(REMOTE_PREFIXES)


def prepare(workdir: str) -> None:
  """Creates the workdir or raises WorkdirError naming why it cannot be written."""
  try:
    root = path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    # One probe per process: the processes of a multi-host job prepare the same workdir.
    probe = root / f'.write_probe.{os.uname().nodename}.{os.getpid()}'
    probe.write_text('ok')
    probe.unlink(missing_ok=True)
  except (OSError, ImportError) as e:
    reason = getattr(e, 'strerror', None) or str(e)
    raise WorkdirError(f'cannot write to workdir {workdir!r} ({reason}); pass --workdir=DIR '
                       f'with a writable directory (gs:// needs etils[epath-gcs])') from None


def write_json(file: epath.Path, value) -> None:
  """Writes JSON whole (through a temporary file and a rename where that is atomic)."""
  text = json.dumps(value, indent=2, sort_keys=True)
  if is_remote(str(file)):
    file.write_text(text)
    return
  tmp = file.parent / (file.name + '.tmp')
  tmp.write_text(text)
  tmp.replace(file)


def read_json(file: epath.Path):
  return json.loads(file.read_text()) if file.exists() else None


class LineFile:
  """A text file that grows a line at a time (metrics.jsonl)."""

  def __init__(self, file: epath.Path, lines: Iterable[str] = ()):
    """Starts the file with `lines` (the kept part of an earlier run)."""
    self.file = file
    self.remote = is_remote(str(file))
    self.lines = list(lines)
    self._rewrite()
    self._handle = None if self.remote else file.open('a')

  def _rewrite(self) -> None:
    if self.remote:
      self.file.write_text(''.join(self.lines))
    else:
      tmp = self.file.parent / (self.file.name + '.tmp')
      tmp.write_text(''.join(self.lines))
      tmp.replace(self.file)

  def append(self, line: str) -> None:
    if self.remote:
      self.lines.append(line)
      self.file.write_text(''.join(self.lines))
    else:
      self._handle.write(line)
      self._handle.flush()

  def close(self) -> None:
    if self._handle is not None:
      self._handle.close()
