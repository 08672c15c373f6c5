"""Command-line plumbing shared by the entry points: flags -> config, one-line errors.

Every command's `__main__` is `cli.entry(main)`: flag parsing, library logs off and the
one-line user error in one place.
"""
import os
import sys
import threading
from typing import Callable, Optional, Sequence

from absl import app, flags, logging
from ml_collections import config_dict
from ml_collections.config_flags.config_flags import ConfigFileFlagParser

from wgan_jax.errors import DiskFull, Fault, PeerLost, UserError, is_disk_full


def _bad_override(argv: Sequence[str], config) -> str:
  """Names the first --config.a.b=... override whose key the config lacks."""
  for arg in argv:
    if arg.startswith('--config.'):
      path = arg[len('--config.'):].split('=', 1)[0]
      node = config
      for i, part in enumerate(path.split('.')):
        if not isinstance(node, config_dict.ConfigDict) or part not in node:
          prefix = '.'.join(path.split('.')[:i]) or 'config'
          valid = ', '.join(sorted(node.keys())) if isinstance(node, config_dict.ConfigDict) else ''
          return f'unknown config key {path!r} ({arg}); keys under {prefix}: {valid}'
        node = node[part]
  return ''


def _load_config_file(spec: str):
  """The config of `file.py[:arg]`, loaded without overrides (for error messages)."""
  loader = ConfigFileFlagParser(name='config')
  return loader.parse(spec)


def parse_flags(argv: Sequence[str]) -> list:
  """absl flag parsing that turns every problem into one line on stderr and exit code 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(f'bad command line: {e}')
  except Exception as e:  # pylint: disable=broad-except
    # ml_collections raises bare exceptions (AttributeError, KeyError) for unknown keys.
    spec = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
    message = ''
    if spec is not None and not os.path.isfile(spec.split(':', 1)[0]):
      message = missing_config_file(spec.split(':', 1)[0])
    elif spec is not None:
      try:
        message = _bad_override(argv, _load_config_file(spec))
      except UserError as user_error:
        message = str(user_error)
      except Exception:  # pylint: disable=broad-except
        message = ''
    fail(message or f'bad command line: {type(e).__name__}: {e}')


def missing_config_file(filename: str) -> str:
  return (f'cannot load config file {filename!r} (no such file); pass '
          f'--config=configs/<file>.py[:arg], e.g. configs/wgan_gp.py')


def _not_orbax(record) -> bool:
  return f'{os.sep}orbax{os.sep}' not in record.pathname


def quiet_logs() -> None:
  """Library log lines off unless --verbosity is given: absl logging at ERROR, and none from
  orbax, which logs each failure (full disk, unreadable checkpoint) that it then raises and
  the run reports in one line."""
  if flags.FLAGS['verbosity'].present:
    return
  logging.set_verbosity(logging.ERROR)
  logging.get_absl_handler().addFilter(_not_orbax)


_LEAVING = threading.Lock()


def leave_now(message: str, code: int) -> None:
  """`error: message` on stderr and exit `code` at once, from any thread, skipping clean-up
  (a second caller, e.g. a watchdog thread racing the main one, waits for the exit)."""
  with _LEAVING:
    print(f'error: {message}', file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(code)  # pylint: disable=protected-access


def fail(message: str, code: int = 2):
  print(f'error: {message}', file=sys.stderr)
  sys.exit(code)


def config_from_flag(holder) -> config_dict.ConfigDict:
  """The config of a DEFINE_config_file flag, or a one-line error when it failed to load."""
  value = holder.value
  if value is None:
    fail('--config is required, e.g. --config=configs/wgan_gp.py:gaussians8')
  if not isinstance(value, config_dict.ConfigDict):
    # config_flags returns an _ErrorConfig that raises the loading error on access.
    try:
      value.to_dict()
    except UserError as e:
      fail(str(e))
    except Exception:  # pylint: disable=broad-except
      filename = flags.FLAGS['config'].config_filename
      if not os.path.isfile(filename):
        fail(missing_config_file(filename))
      fail(f'cannot load config file {filename!r} (no such file or it does not define '
           f'get_config); pass --config=configs/<file>.py[:arg], e.g. configs/wgan_gp.py')
  return value


def run_user_errors(fn: Callable[[], object], *, workdir: str = '') -> object:
  """Runs fn; a UserError becomes its one line on stderr and exit code 2, a Fault its line
  and its exit code, Ctrl-C one line and 130, a full disk or a lost peer process one line
  and its code, at once."""
  try:
    return fn()
  except UserError as e:
    fail(str(e))
  except (DiskFull, PeerLost) as e:
    # Orbax's background save threads may still be failing, and jax.distributed's shutdown
    # would wait for a dead peer until its heartbeat timeout: leave without waiting for them
    # (and their shutdown tracebacks); the earlier checkpoints are complete on disk.
    leave_now(str(e), e.exit_code)
  except Fault as e:
    fail(str(e), code=e.exit_code)
  except KeyboardInterrupt:
    fail('interrupted (Ctrl-C)', code=130)
  except Exception as e:  # pylint: disable=broad-except
    if not is_disk_full(e):
      raise
    where = f' while writing to workdir {workdir!r}' if workdir else ''
    print(f'error: no space left on device{where} ({getattr(e, "filename", None) or e}); '
          f'free some space and rerun the same command', file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(DiskFull.exit_code)  # pylint: disable=protected-access


def entry(main: Callable[[Sequence[str]], object], *,
          define_flags: Optional[Callable[[], None]] = None, workdir_flag: str = '') -> None:
  """A command's whole `__main__`: `if __name__ == '__main__': cli.entry(main)`.

  Args:
    main: main(argv) after flag parsing; it may call `fail` or raise a UserError.
    define_flags: defines the command's flags, for modules that define them only when run
      as a command (importing them from tests or other commands defines nothing).
    workdir_flag: the flag naming the directory the command writes into, named by the
      one-line full-disk error.
  Bad flags are one line and exit code 2 (parse_flags); library logs are off unless
  --verbosity is given (quiet_logs); errors from main as in run_user_errors.
  """
  if define_flags is not None:
    define_flags()

  def run(argv: Sequence[str]) -> None:
    quiet_logs()
    workdir = (flags.FLAGS[workdir_flag].value or '') if workdir_flag else ''
    run_user_errors(lambda: main(argv), workdir=workdir)

  app.run(run, flags_parser=parse_flags)
