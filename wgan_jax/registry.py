"""Name -> object registries are plain UPPER_CASE dicts looked up with `lookup`."""
from typing import Mapping, TypeVar

from wgan_jax.errors import ConfigError

T = TypeVar('T')


def lookup(registry: Mapping[str, T], name: str, what: str) -> T:
  """registry[name], or a ConfigError that names `what` and lists the valid names."""
  try:
    return registry[name]
  except (KeyError, TypeError):
    valid = ', '.join(sorted(registry))
    raise ConfigError(f'unknown {what} {name!r}; valid: {valid}') from None
