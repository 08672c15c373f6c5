"""Loads configs/<file>.py:<arg> the way --config does, with --config.key=value overrides.

A thin test-side spelling of wgan_jax.experiments.common.load_config (overrides as keyword
arguments); an override of a key the config lacks is a ConfigError, as on the command line.
"""
import os

from wgan_jax.experiments.common import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def path(file: str) -> str:
  return os.path.join(ROOT, 'configs', f'{file}.py')


def load(file: str, arg: str = '', **overrides):
  return load_config(file, arg, overrides)
