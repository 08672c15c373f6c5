"""Loads configs/<file>.py:<arg> the way --config does (wgan_jax.config_lib.load_config,
overrides as keyword arguments); an unknown override key is a ConfigError."""
import os

from wgan_jax.config_lib import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(file: str, arg: str = '', **overrides):
  return load_config(file, arg, overrides)
