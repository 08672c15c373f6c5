"""Loads configs/<file>.py:<arg> the way --config does, with --config.key=value overrides."""
import os

from ml_collections.config_flags.config_flags import ConfigFileFlagParser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def path(file: str) -> str:
  return os.path.join(ROOT, 'configs', f'{file}.py')


def load(file: str, arg: str = '', **overrides):
  config = ConfigFileFlagParser(name='config').parse(
      f'{path(file)}:{arg}' if arg else path(file))
  with config.unlocked():
    for key, value in overrides.items():
      node = config
      *parents, leaf = key.split('.')
      for p in parents:
        node = node[p]
      node[leaf] = value
  return config
