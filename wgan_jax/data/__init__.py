"""Data sources: built-in 2-D distributions and images (wgan_jax.data.source), one interface.

A source's batches are a pure function of (seed, step): `batches(step, shape, start)` returns
({'x': ...} or {'index': ...}, labels), the real examples of generator step `step` (shape =
(K, global batch)), so the data position of a run is its step and a resumed run reads
exactly the same examples. `start` (image sources) is the global counter of the step's first
example, step * prod(shape) by default; a run with a critic schedule (K depends on the step)
passes critic_updates_before(step) * B.
Toy sources draw each step's samples from a generator keyed by (seed, step), whatever the
shape, and ignore `start`. In a multi-process run each process gets only its slice of the
global batch axis. Two-domain runs (data.domain_a, data.domain_b: family cyclegan) read a
PairSource (wgan_jax.data.pair): domain B's keys carry the suffix _b.
"""
import numpy as np

from wgan_jax.data import pair, source, store, toy
from wgan_jax.errors import ConfigError


class ToySource:
  """A built-in 2-D distribution (wgan_jax.data.toy)."""

  def __init__(self, name: str, *, seed: int, process_index: int = 0, process_count: int = 1):
    self.name = name
    self.spec = toy.get_toy(name)
    self.seed = seed
    self.process_index, self.process_count = process_index, process_count
    self.data_shape = (2,)
    self.num_classes = self.spec.num_classes
    self.is_toy = True

  def batches(self, step: int, *, shape: tuple, start=None) -> tuple[dict, np.ndarray]:
    del start  # i.i.d. samples keyed by (seed, step): no position to keep
    x, labels = toy.toy_batches(self.name, seed=self.seed, step=step, shape=shape)
    x, labels = _process_slice(x, labels, self.process_index, self.process_count,
                               axis=len(shape) - 1)
    return {'x': x}, labels

  def eval_real(self, n: int, *, index: int) -> np.ndarray:
    return toy.toy_eval_samples(self.name, seed=self.seed, n=n, index=index)

  def close(self) -> None:
    """Nothing to release (the image sources' close stops workers and closes files)."""


def _process_slice(x, labels, index: int, count: int, *, axis: int):
  if count == 1:
    return x, labels
  n = x.shape[axis] // count
  sl = (slice(None),) * axis + (slice(index * n, (index + 1) * n),)
  return x[sl], labels[sl]


def describe(data_config) -> tuple[tuple, int]:
  """(shape of one example, number of label values (1 without labels)) of config.data,
  reading as little as the format allows (two domains: their common shape, no labels)."""
  if pair.domain_names(data_config):
    return pair.describe_pair(data_config, describe)
  if data_config.name in toy.TOY_DATASETS:
    return (2,), toy.TOY_DATASETS[data_config.name].num_classes
  name = data_config.name
  if ':' not in name and name not in _image_names():
    valid = sorted(_image_names() | set(toy.TOY_DATASETS)) + [
        f'{kind}:{"NAME" if kind == "tfds" else "PATH"}' for kind in sorted(store.KINDS)]
    raise ConfigError(f'unknown data.name {name!r}; valid: {", ".join(valid)}')
  return store.describe(data_config)


def _image_names() -> set:
  from wgan_jax.data import images  # pylint: disable=import-outside-toplevel
  return set(images.IMAGE_DATASETS)


def is_toy(name: str) -> bool:
  return name in toy.TOY_DATASETS


def make_source(data_config, *, seed: int, process_index: int = 0, process_count: int = 1):
  """The source of config.data (a pair.PairSource for two domains); raises ConfigError /
  DataError (one line) on bad input."""
  names = pair.domain_names(data_config)
  if names:
    a, b = (pair.as_config(pair.domain_config(data_config, n, d))
            for n, d in zip(names, 'AB'))
    return pair.PairSource(
        make_source(a, seed=seed, process_index=process_index, process_count=process_count),
        make_source(b, seed=seed + pair.DOMAIN_B_SEED_OFFSET, process_index=process_index,
                    process_count=process_count))
  if data_config.name in toy.TOY_DATASETS:
    return ToySource(data_config.name, seed=seed, process_index=process_index,
                     process_count=process_count)
  describe(data_config)  # an unknown name lists every valid one
  return source.ImageSource(data_config, seed=seed, process_index=process_index,
                            process_count=process_count)


def primary_name(data_config) -> str:
  """The dataset that gives the run's examples: domain A's for two domains, else data.name."""
  return pair.primary_name(data_config)


def take_tables(src) -> dict:
  """The uint8 tables a source places on the devices (data.placement device), by batch key:
  {'table'} (and {'table_b'} for domain B of a PairSource), {} for other placements."""
  if isinstance(src, pair.PairSource):
    return src.take_tables()
  return {'table': src.take_table()} if getattr(src, 'placement', None) == 'device' else {}
