"""Command-line plumbing shared by the entry points: flags -> config, one-line errors."""
import sys
from typing import Callable, Sequence

from absl import flags
from ml_collections import config_dict
from ml_collections.config_flags.config_flags import ConfigFileFlagParser

from wgan_jax.errors import UserError


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
    if spec is not None:
      try:
        message = _bad_override(argv, _load_config_file(spec))
      except UserError as user_error:
        message = str(user_error)
      except Exception:  # pylint: disable=broad-except
        message = ''
    fail(message or f'bad command line: {type(e).__name__}: {e}')


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
      fail(f'cannot load config file {filename!r} (no such file or it does not define '
           f'get_config); pass --config=configs/<file>.py[:arg], e.g. configs/wgan_gp.py')
  return value


def run_user_errors(fn: Callable[[], object]) -> object:
  """Runs fn; a UserError becomes its one line on stderr and exit code 2."""
  try:
    return fn()
  except UserError as e:
    fail(str(e))
