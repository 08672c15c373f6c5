"""Data sources: built-in 2-D distributions and tensorflow-datasets images, one interface.

A source's batches are a pure function of (seed, step): `batches(step, shape, start)` returns
the real examples of generator step `step` (shape = (K, global batch)), so the data position
of a run is its step and a resumed run reads exactly the same examples. `start` (image
sources) is the global counter of the step's first example, step * prod(shape) by default;
a run with a critic schedule (K depends on the step) passes critic_updates_before(step) * B.
Toy sources draw each step's samples from a generator keyed by (seed, step), whatever the
shape, and ignore `start`. In a multi-process run each process gets only its slice of the
global batch axis.
"""
import numpy as np

from wgan_jax.data import toy
from wgan_jax.registry import lookup


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

  def batches(self, step: int, *, shape: tuple, start=None) -> tuple[np.ndarray, np.ndarray]:
    del start  # i.i.d. samples keyed by (seed, step): no position to keep
    x, labels = toy.toy_batches(self.name, seed=self.seed, step=step, shape=shape)
    return _process_slice(x, labels, self.process_index, self.process_count, axis=len(shape) - 1)

  def eval_real(self, n: int, *, index: int) -> np.ndarray:
    return toy.toy_eval_samples(self.name, seed=self.seed, n=n, index=index)


def _process_slice(x, labels, index: int, count: int, *, axis: int):
  if count == 1:
    return x, labels
  n = x.shape[axis] // count
  sl = (slice(None),) * axis + (slice(index * n, (index + 1) * n),)
  return x[sl], labels[sl]


def _lookup_image(name: str):
  """The image dataset `name`; ConfigError listing every valid data.name (toy ones too)."""
  from wgan_jax.data import images
  return lookup({**toy.TOY_DATASETS, **images.IMAGE_DATASETS}, name, 'data.name')


def data_shape(name: str) -> tuple:
  """The shape of one example of dataset `name`, without opening the dataset."""
  if name in toy.TOY_DATASETS:
    return (2,)
  return tuple(_lookup_image(name).image_shape)


def num_classes(name: str) -> int:
  """The number of label values of dataset `name` (1 without labels), without opening it."""
  if name in toy.TOY_DATASETS:
    return toy.TOY_DATASETS[name].num_classes
  return _lookup_image(name).num_classes


def is_toy(name: str) -> bool:
  return name in toy.TOY_DATASETS


def make_source(data_config, *, seed: int, process_index: int = 0, process_count: int = 1):
  """The source named by `config.data.name`; raises ConfigError / DataError on bad input."""
  if data_config.name in toy.TOY_DATASETS:
    return ToySource(data_config.name, seed=seed, process_index=process_index,
                     process_count=process_count)
  from wgan_jax.data import images  # tfds is imported only for image data
  lookup({**toy.TOY_DATASETS, **images.IMAGE_DATASETS}, data_config.name, 'data.name')
  return images.ImageSource(data_config.name, split=data_config.split,
                            data_dir=data_config.data_dir or None, seed=seed,
                            process_index=process_index, process_count=process_count)
