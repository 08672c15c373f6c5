"""Image batches of training step t: their order, and where the images live (data.placement).

Shapes:
  S      batch shape, e.g. (n_critic, B): B is the global batch (the last axis)
  P      process_count; each process gets the contiguous slice B // P of the last axis
  H W C  image_shape after preprocessing
  N      examples in the split

Order is keyed, never streamed: example j (row-major over S) of step t has the global counter
c = start + j, start = t * prod(S) by default, read from index
`permutation(seed, c // N)[c % N]`. Each epoch visits every example exactly once, and the data
of step t is a pure function of (seed, t): a resumed run reads exactly the same batches
without storing any iterator state. A run whose steps differ in size (a critic schedule)
passes start = (critic updates before step t) * B, a function of t too.

Placement (data.placement) decides only where the uint8 pixels of those indices come from;
the images the step sees are the same bit for bit (scaled to [-1, 1] on the device,
wgan_jax.step.real_images):

  device  the split as uint8 on every device, loaded once (`take_table`); a batch is the
          int32 indices {'index': [*S_local]}, gathered inside the jitted step
  host    the split as uint8 in host memory; a batch is {'x': uint8 [*S_local, H, W, C]}
  stream  examples read from the files by worker processes (wgan_jax.data.stream), uint8
          out, {'x': ...} as host; after each batch the workers start on the next steps'
          (StreamReader.depth of them, the same shape), read while the step runs
  auto    device when the split's uint8 bytes fit data.device_budget_mb, else host when
          they fit data.host_budget_mb, else stream

Labels (int32 [*S_local]) are gathered on the host in every placement.
"""
import math
from typing import Mapping, Sequence

import numpy as np

from wgan_jax.config_lib import PLACEMENTS
from wgan_jax.data import store as store_lib
from wgan_jax.errors import ConfigError, DataError

MB = 1 << 20
EVAL_SEED_OFFSET = 12345


# The float32 value of each uint8 level v, v / 127.5 - 1 rounded once. Images are scaled by
# looking their levels up in this table, on the host (to_float) and on the device
# (wgan_jax.step.real_images), so both give the same bits on every backend: computed
# arithmetic would not (XLA turns the division into a multiplication by 1 / 127.5).
LEVELS = np.arange(256, dtype=np.float32) / np.float32(127.5) - np.float32(1.0)


def to_float(images: np.ndarray) -> np.ndarray:
  """uint8 [...] -> float32 [...] in [-1, 1]: LEVELS[v] = v / 127.5 - 1."""
  return LEVELS[images]


def permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  """The order of epoch `epoch`: np.random.default_rng([seed, epoch]).permutation(n)."""
  return np.random.default_rng([seed, epoch]).permutation(n)


def local_counters(start: int, shape: tuple[int, ...], process_index: int,
                   process_count: int) -> np.ndarray:
  """Global example counters start + j of this process's slice, int64 [*shape[:-1], B // P]."""
  total = math.prod(shape)
  counters = np.int64(start) + np.arange(total, dtype=np.int64).reshape(shape)
  width = shape[-1] // process_count
  return counters[..., process_index * width:(process_index + 1) * width]


def resolve_placement(requested: str, nbytes: int, *, device_budget_mb: float,
                      host_budget_mb: float) -> str:
  """device | host | stream for a split of `nbytes` uint8 bytes; ConfigError (one line) for
  an unknown placement or a split over the budget of the placement asked for."""
  if requested not in PLACEMENTS:
    raise ConfigError(f'unknown data.placement {requested!r}; valid: {", ".join(PLACEMENTS)}')
  fits = {'device': nbytes <= device_budget_mb * MB, 'host': nbytes <= host_budget_mb * MB,
          'stream': True}
  if requested == 'auto':
    return next(p for p in ('device', 'host', 'stream') if fits[p])
  if not fits[requested]:
    budget = f'data.{requested}_budget_mb'
    limit = device_budget_mb if requested == 'device' else host_budget_mb
    raise ConfigError(
        f'data.placement={requested}: the split is {nbytes / MB:.1f} MB of uint8 images, over '
        f'{budget}={limit:g}; raise {budget} or use data.placement=stream (or auto)')
  return requested


class ImageSource:
  """Deterministic batches of one split of an image dataset, from the placement of
  config.data (module docstring).

  Attributes:
    store: the wgan_jax.data.store.Store of the split.
    placement: device | host | stream (auto resolved).
    data_shape: (H, W, C); num_classes; num_examples: N.
  """
  is_toy = False

  def __init__(self, data: Mapping, *, seed: int, process_index: int = 0,
               process_count: int = 1, store: store_lib.Store | None = None):
    """Opens the split and loads it where data.placement says.

    Args:
      data: config.data (dict or ConfigDict): name, split, data_dir, placement,
        device_budget_mb, host_budget_mb, stream_workers, ...
      seed: non-negative seed of the epoch permutations.
      process_index, process_count: this process of the ones sharing the global batch.
      store: an open store of `data` (default: open_store(data)).

    Raises:
      ConfigError: unknown name or placement, a budget too small, negative seed or invalid
        process index.
      DataError: data not readable or empty.
    """
    if seed < 0:
      raise ConfigError(f'data seed must be non-negative, got {seed}')
    if not 0 <= process_index < process_count:
      raise ConfigError(f'process_index {process_index} not in [0, {process_count})')
    data = dict(data)
    self.store = store if store is not None else store_lib.open_store(data)
    store_lib.check_size(self.store)
    self.placement = resolve_placement(
        data.get('placement', 'auto'), self.store.nbytes,
        device_budget_mb=data.get('device_budget_mb', 2048),
        host_budget_mb=data.get('host_budget_mb', 16384))
    self._seed = seed
    self._process_index, self._process_count = process_index, process_count
    self._perms: dict[tuple[int, int], np.ndarray] = {}
    self._x = self._labels = self._reader = None
    if self.placement == 'stream':
      from wgan_jax.data import stream  # pylint: disable=import-outside-toplevel
      self._reader = stream.StreamReader(data, workers=data.get('stream_workers', 2),
                                         store=self.store)
    else:
      self._x, self._labels = self.store.read_all()

  @property
  def num_examples(self) -> int:
    return self.store.num_examples

  @property
  def data_shape(self) -> tuple[int, int, int]:
    return tuple(self.store.image_shape)

  @property
  def num_classes(self) -> int:
    return self.store.num_classes

  def take_table(self) -> np.ndarray:
    """The split's uint8 images [N, H, W, C] to place on the devices (placement device);
    the source keeps no host copy of them afterwards."""
    if self.placement != 'device' or self._x is None:
      raise ValueError(f'take_table: placement is {self.placement}, or the table was taken')
    table, self._x = self._x, None
    return table

  def close(self) -> None:
    """Stops stream workers and closes the store."""
    if self._reader is not None:
      self._reader.close()
    self.store.close()

  def _permutation(self, seed: int, epoch: int) -> np.ndarray:
    """permutation(seed, epoch, N), keeping the two most recent epochs per seed."""
    perm = self._perms.get((seed, epoch))
    if perm is None:
      perm = permutation(seed, epoch, self.num_examples)
      same_seed = sorted(e for s, e in self._perms if s == seed)
      for old in same_seed[:-1]:
        del self._perms[(seed, old)]
      self._perms[(seed, epoch)] = perm
    return perm

  def indices(self, step: int, *, shape: Sequence[int], start: int | None = None) -> np.ndarray:
    """Dataset indices int64 [*shape[:-1], B // P] of this process's slice of step `step`.

    Args:
      step: training step t >= 0; example j (row-major over `shape`) has global counter
        start + j.
      shape: global batch shape, e.g. (n_critic, B); B (last axis) divisible by P.
      start: the global counter of the step's first example (default t * prod(shape)).

    Raises:
      DataError: B not divisible by process_count.
    """
    shape = tuple(int(s) for s in shape)
    if not shape or shape[-1] % self._process_count:
      raise DataError(f'global batch shape {shape}: the last axis must be divisible by the '
                      f'process count {self._process_count}')
    start = step * math.prod(shape) if start is None else start
    counters = local_counters(start, shape, self._process_index, self._process_count)
    epochs, positions = np.divmod(counters, self.num_examples)
    indices = np.empty_like(counters)
    for epoch in np.unique(epochs):
      mask = epochs == epoch
      indices[mask] = self._permutation(self._seed, int(epoch))[positions[mask]]
    return indices

  def _read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [*I, H, W, C] and int32 labels [*I] at indices [*I] (host or stream)."""
    flat = indices.reshape(-1)
    if self._reader is not None:
      x, y = self._reader.read(flat)
    elif self._x is not None:
      x, y = self._x[flat], self._labels[flat]
    else:  # device placement after take_table: evaluation reads from the store
      x, y = self.store.read(flat)
    return x.reshape(*indices.shape, *self.data_shape), y.reshape(indices.shape)

  def batches(self, step: int, *, shape: Sequence[int],
              start: int | None = None) -> tuple[dict, np.ndarray]:
    """This process's slice of the examples of training step `step` (see `indices`).

    Returns:
      ({'index': int32 [*S_local]} (device) or {'x': uint8 [*S_local, H, W, C]} (host,
      stream), labels int32 [*S_local]); S_local = (*shape[:-1], B // P), process p gets
      columns [p * B // P, (p + 1) * B // P).
    """
    indices = self.indices(step, shape=shape, start=start)
    if self.placement == 'device':
      return {'index': indices.astype(np.int32)}, self._labels[indices]
    x, labels = self._read(indices)
    if self._reader is not None:  # the workers read the next steps (same shape) meanwhile
      total = math.prod(int(s) for s in shape)
      first = step * total if start is None else start
      for ahead in range(1, self._reader.depth + 1):
        self._reader.prefetch(self.indices(step + ahead, shape=shape,
                                           start=first + ahead * total).reshape(-1))
    return {'x': x}, labels

  def eval_real(self, n: int, *, index: int) -> np.ndarray:
    """n distinct real images for evaluation, float32 [n, H, W, C] in [-1, 1].

    The first n of permutation(seed + index + 12345, 0, N), the same on every process.

    Raises:
      DataError: n > N.
    """
    if n > self.num_examples:
      raise DataError(f'asked for {n} real images but data.name {self.store.name!r} has only '
                      f'{self.num_examples} in this split')
    perm = permutation(self._seed + index + EVAL_SEED_OFFSET, 0, self.num_examples)
    return to_float(self._read(perm[:n])[0])
