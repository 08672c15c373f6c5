"""Two unpaired domains (CycleGAN, family cyclegan): data.domain_a and data.domain_b.

Each domain is a dataset name as data.name takes (a built-in 2-D one, folder:PATH, npz:PATH,
tfds:NAME, ...), read with the other keys of config.data. The tfds CycleGAN pairs
(tfds:cycle_gan/PAIR, e.g. tfds:cycle_gan/horse2zebra) keep both domains in one dataset:
domain A reads the split data.split + 'A' (train -> trainA, test -> testA), domain B
data.split + 'B', so domain_a = domain_b = tfds:cycle_gan/PAIR.

A step's batch is domain A's under its usual keys ('x', or 'index' with placement device)
and domain B's with the suffix _b ('x_b', or 'index_b' and the table 'table_b'), which
wgan_jax.step.real_examples reads as real['x_b']. The domains are unpaired: domain B draws
with its own seed, seed + DOMAIN_B_SEED_OFFSET (2**31: disjoint from every seed of domain A),
so its order (images) or its samples (toy) are independent of domain A's; otherwise both
toy domains would take the same draws and a deterministic map of one another (e.g.
gaussians8_rotated of gaussians8) would be a paired data set.
"""
from typing import Mapping, Optional

import numpy as np

from wgan_jax.errors import ConfigError

DOMAIN_B_SEED_OFFSET = 2**31
TFDS_PAIRS = 'tfds:cycle_gan/'  # tfds names whose domains are splits ...A / ...B
SUFFIX = '_b'


def domain_names(data: Mapping) -> Optional[tuple[str, str]]:
  """(data.domain_a, data.domain_b) when both are set, else None (one domain: data.name)."""
  a, b = data.get('domain_a', '') or '', data.get('domain_b', '') or ''
  return (a, b) if a and b else None


def domain_config(data: Mapping, name: str, domain: str) -> dict:
  """config.data (a dict) for the dataset `name` of domain 'A' or 'B' (module docstring)."""
  out = dict(data, name=name, domain_a='', domain_b='')
  if name.startswith(TFDS_PAIRS):
    out['split'] = f"{data.get('split', 'train')}{domain}"
  return out


def primary_name(data: Mapping) -> str:
  """The dataset that defines the run's example shape: domain A's, else data.name."""
  names = domain_names(data)
  return names[0] if names else data['name']


def describe_pair(data: Mapping, describe) -> tuple[tuple, int]:
  """(example shape, 1) of two domains described by `describe` (data.describe); ConfigError
  (one line) when their examples differ in shape."""
  a, b = domain_names(data)
  shape_a, _ = describe(as_config(domain_config(data, a, 'A')))
  shape_b, _ = describe(as_config(domain_config(data, b, 'B')))
  if tuple(shape_a) != tuple(shape_b):
    raise ConfigError(f'data.domain_a {a!r} has examples of shape {tuple(shape_a)} and '
                      f'data.domain_b {b!r} of shape {tuple(shape_b)}; they must agree (set '
                      f'data.image_size and data.channels)')
  return tuple(shape_a), 1


def as_config(d: dict):
  """A data dict as the ConfigDict the sources read."""
  import ml_collections  # pylint: disable=import-outside-toplevel
  return ml_collections.ConfigDict(d)


class PairSource:
  """Batches of two unpaired domains (module docstring): `a` and `b` are sources."""

  def __init__(self, a, b):
    self.a, self.b = a, b
    self.is_toy = a.is_toy
    self.data_shape = a.data_shape
    self.num_classes = 1
    self.spec = getattr(b, 'spec', None)  # the target domain of G (toy evaluation)

  @property
  def placement(self) -> Optional[str]:
    return getattr(self.a, 'placement', None)

  def batches(self, step: int, *, shape: tuple, start=None) -> tuple[dict, np.ndarray]:
    """({domain A's keys, domain B's keys + '_b'}, labels zeros [*S_local])."""
    batch_a, labels = self.a.batches(step, shape=shape, start=start)
    batch_b, _ = self.b.batches(step, shape=shape, start=start)
    batch = dict(batch_a, **{k + SUFFIX: v for k, v in batch_b.items()})
    return batch, np.zeros_like(labels)

  def eval_pair(self, n: int, *, index: int) -> tuple[np.ndarray, np.ndarray]:
    """n real examples of each domain for evaluation number `index`, float32."""
    return self.a.eval_real(n, index=index), self.b.eval_real(n, index=index)

  def take_tables(self) -> dict:
    """{'table': A's, 'table_b': B's} uint8 images of the domains placed on the devices."""
    out = {}
    for suffix, src in (('', self.a), (SUFFIX, self.b)):
      if getattr(src, 'placement', None) == 'device':
        out['table' + suffix] = src.take_table()
    return out

  def close(self) -> None:
    self.a.close()
    self.b.close()
