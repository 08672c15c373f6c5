"""Data parallelism: `single`, `pmap` and `jit` (one jit over a device mesh) strategies.

Shape glossary:
  D      devices in the run (all processes), P processes, L = D / P local devices
  K, B   n_critic, global critic batch; b = B / D per device
  batch  process-local host data {'x': [K, B / P, ...]} from the data source

Every strategy computes the same global step: the noise and interpolation weights are drawn
for the global batch from the step's key and each device takes its slice (so the numbers do
not depend on the device count), gradients and batch-norm statistics are means over the
global batch. `jit` gets this from XLA's partitioner (batch sharded over the mesh axis
`data`, parameters replicated); `pmap` from `lax.pmean` over the axis `data` and
cross-replica batch norm.

The canonical state (what is checkpointed and sampled from) is the unreplicated GanState,
replicated over the mesh as global jax.Arrays; `pmap` keeps a stacked per-device copy while
training.
"""
import os
import threading
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

from wgan_jax.errors import ConfigError
from wgan_jax.registry import lookup

AXIS = 'data'


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D mesh over all devices (process-major order) with the axis `data`."""
  devices = np.asarray(jax.devices() if devices is None else devices)
  return jax.sharding.Mesh(devices, (AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def check_batch(config, num_devices: int, num_processes: int) -> None:
  """One clear error when the global batches do not split evenly over the devices."""
  for key, size in (('batch_size', config.batch_size),
                    ('g_batch_size', config.g_batch_size or config.batch_size)):
    if size % num_devices or size % num_processes:
      raise ConfigError(
          f'{key}={size} does not split over {num_devices} devices '
          f'({config.parallel.strategy}, {num_processes} processes); use a multiple of '
          f'{num_devices} or parallel.strategy=single')


class Strategy(NamedTuple):
  """How the train step runs on the devices.

  name:        single | pmap | jit
  num_shards:  devices the global batch is split over (1 for single; for jit XLA does the
               split, so the step is built with step.StepConfig.num_shards = 1)
  axis_name:   the collective axis inside the step (pmap), else None
  compile:     pure step (state, batch) -> (state, metrics) -> the callable the loop runs
  to_device:   canonical state -> the layout `compile`'s callable takes
  to_canonical: that layout -> canonical state (for checkpoints and sampling)
  put_batch:   process-local host batch -> the batch layout the step takes
  metrics:     the step's metrics -> host-fetchable scalars
  put_table:   a uint8 array the step reads whole (data.placement device: the split's
               images) -> one copy on every device, in the layout the step takes, placed
               once and passed with every batch without a transfer
  """
  name: str
  num_shards: int
  axis_name: Optional[str]
  compile: Callable
  to_device: Callable
  to_canonical: Callable
  put_batch: Callable
  metrics: Callable
  put_table: Callable


def _identity(x):
  return x


def replicated_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def to_replicated(tree, mesh):
  """Host-identical values -> global arrays replicated over `mesh` (every process calls)."""
  sharding = replicated_sharding(mesh)
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  return jax.tree.map(
      lambda x: multihost_utils.host_local_array_to_global_array(np.asarray(x), mesh, P()),
      tree)


def local_copy(tree):
  """This process's copy of a replicated state: single-device arrays, no collectives."""
  return jax.tree.map(lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else x, tree)


def _single(mesh) -> Strategy:
  del mesh  # one device
  if jax.process_count() > 1:
    raise ConfigError('parallel.strategy=single runs in one process; use pmap or jit for '
                      f'a {jax.process_count()}-process job')
  return Strategy('single', 1, None, lambda fn: jax.jit(fn, donate_argnums=0),
                  _identity, _identity, lambda batch: batch, _identity, jax.device_put)


def _jit(mesh) -> Strategy:
  replicated = replicated_sharding(mesh)
  batch_sharding = NamedSharding(mesh, P(None, AXIS))  # [K, B, ...]: B over the devices

  def compile_(fn):
    # The inputs keep the shardings they were placed with (to_device, put_batch,
    # put_table): the table is replicated while the batch's leaves are sharded over B.
    return jax.jit(fn, out_shardings=(replicated, replicated), donate_argnums=0)

  def put_batch(batch):
    def put(x):
      global_shape = (x.shape[0], x.shape[1] * jax.process_count()) + x.shape[2:]
      return jax.make_array_from_process_local_data(batch_sharding, x, global_shape)
    return jax.tree.map(put, batch)

  return Strategy('jit', mesh.size, None, compile_, lambda s: to_replicated(s, mesh),
                  _identity, put_batch, _identity, lambda table: to_replicated(table, mesh))


def _pmap(mesh) -> Strategy:
  n_local = jax.local_device_count()

  def compile_(fn):
    return jax.pmap(fn, axis_name=AXIS, donate_argnums=0)

  def to_device(state):
    host = jax.device_get(state)
    return jax.tree.map(lambda x: np.broadcast_to(x, (n_local,) + np.shape(x)), host)

  def to_canonical(state):
    return to_replicated(jax.device_get(jax.tree.map(lambda x: x[0], state)), mesh)

  def put_batch(batch):
    # [K, B / P, ...] -> [L, K, B / D, ...]: local device i takes the i-th block.
    def split(x):
      k, b = x.shape[:2]
      x = x.reshape((k, n_local, b // n_local) + x.shape[2:])
      return np.moveaxis(x, 1, 0)
    return jax.tree.map(split, batch)

  def put_table(table):
    # [L, N, ...] with device i holding block i: pmap maps it without a copy.
    local = jax.sharding.Mesh(np.asarray(jax.local_devices()), (AXIS,))
    return jax.device_put(np.broadcast_to(table, (n_local,) + table.shape),
                          NamedSharding(local, P(AXIS)))

  return Strategy('pmap', mesh.size, AXIS, compile_, to_device, to_canonical, put_batch,
                  lambda m: jax.tree.map(lambda x: x[0], m), put_table)


# parallel.strategy -> builder(mesh or None) -> Strategy (config_lib.STRATEGIES lists the
# same names for config validation without importing jax; a test checks they agree).
STRATEGIES = {'single': _single, 'pmap': _pmap, 'jit': _jit}


def make_strategy(name: str, mesh=None) -> Strategy:
  """The Strategy `name` over `mesh` (default: every device; unused by single)."""
  build = lookup(STRATEGIES, name, 'parallel.strategy')
  if name != 'single' and mesh is None:
    mesh = make_mesh()
  return build(mesh)


# ----------------------------------------------------------------------------- in-step helpers
def local_slice(x, *, axis_name: Optional[str], size: int):
  """This device's block of a globally drawn array (leading axis), or x itself."""
  if axis_name is None:
    return x
  index = jax.lax.axis_index(axis_name)
  return jax.lax.dynamic_slice_in_dim(x, index * size, size, axis=0)


def mean_over_devices(tree, axis_name: Optional[str]):
  return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


# ----------------------------------------------------------------------------- process setup
CACHE_ENV = 'WGAN_JAX_COMPILATION_CACHE'


def enable_compilation_cache() -> Optional[str]:
  """XLA's persistent compilation cache: a second run of the same config skips compiling.

  The folder is $WGAN_JAX_COMPILATION_CACHE (default ~/.cache/wgan_jax/xla; an empty value
  turns the cache off). Returns the folder or None.
  """
  path = os.environ.get(CACHE_ENV, os.path.join(os.path.expanduser('~'), '.cache', 'wgan_jax',
                                                'xla'))
  if not path:
    return None
  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
  return path


# ----------------------------------------------------------------------------- multi-host
HEARTBEAT_TIMEOUT_SECONDS = 60  # --heartbeat_timeout_seconds's default
_heartbeat_timeout = [HEARTBEAT_TIMEOUT_SECONDS]  # as set by initialize_distributed


class PeerWatchdog:
  """A thread that notices a peer process that died (or an unreachable coordinator) while
  this one waits in a barrier or a collective that does not fail by itself, and calls
  `on_lost(reason)`. Each process bumps a counter in the coordination service's key-value
  store every `interval` seconds; a peer whose counter has not moved for `timeout` seconds,
  or a store that does not answer, is lost. jax.distributed's own heartbeat timeout (twice
  as long) would end the process too, with many lines of its own."""

  KEY = 'wgan_jax/alive'

  def __init__(self, timeout: float, on_lost: Callable[[str], None], interval: float = 1.0):
    from jax._src import distributed  # pylint: disable=import-outside-toplevel
    self._client = distributed.global_state.client
    self._timeout, self._interval, self._on_lost = timeout, interval, on_lost
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, name='wgan_jax.PeerWatchdog',
                                    daemon=True)

  def _run(self) -> None:
    me, beat = jax.process_index(), 0
    seen = {p: (None, time.monotonic()) for p in range(jax.process_count()) if p != me}
    while not self._stop.wait(self._interval):
      beat += 1
      try:
        self._client.key_value_set(f'{self.KEY}/{me}', str(beat), allow_overwrite=True)
        beats = dict(self._client.key_value_dir_get(self.KEY))  # one request for all peers
        now = time.monotonic()
        for peer, (last, since) in seen.items():
          value = beats.get(f'{self.KEY}/{peer}')  # None: not started yet, as if silent
          if value != last:
            seen[peer] = (value, now)
          elif now - since > self._timeout:
            self._on_lost(f'process {peer} sent no heartbeat for {self._timeout:.0f} s')
            return
      except Exception as e:  # pylint: disable=broad-except
        if self._stop.is_set():
          return
        self._on_lost(f'the coordination service does not answer: '
                      f'{(str(e).strip().splitlines() or [type(e).__name__])[0][:120]}')
        return

  def __enter__(self):
    if jax.process_count() > 1 and self._client is not None:
      self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()


def heartbeat_timeout() -> float:
  """Seconds after which a silent peer process counts as dead (PeerWatchdog)."""
  return _heartbeat_timeout[0]


def agreed_signal(local: int) -> int:
  """The signal every process acts on: the largest of the processes' `local` signal numbers
  (0: none; SIGTERM 15 wins over SIGINT 2), the same value on every process. Every process
  calls it at the same step (a collective); one process: `local` itself, no collective."""
  if jax.process_count() == 1:
    return int(local)
  return int(np.max(multihost_utils.process_allgather(np.asarray(local, np.int32))))


def cluster_detected() -> bool:
  """True on a multi-process SLURM job or a multi-worker Cloud TPU slice."""
  if int(os.environ.get('SLURM_NTASKS', '1')) > 1:
    return True
  hosts = os.environ.get('TPU_WORKER_HOSTNAMES', '')
  return ',' in hosts


def initialize_distributed(*, mode: str = 'auto', coordinator_address: Optional[str] = None,
                           num_processes: Optional[int] = None,
                           process_id: Optional[int] = None,
                           heartbeat_timeout_seconds: int = HEARTBEAT_TIMEOUT_SECONDS) -> bool:
  """jax.distributed.initialize when asked or on a detected cluster; True if multi-process.

  mode: 'auto' (explicit coordinator flags, or a detected SLURM / TPU-pod environment),
  'on' (always; jax auto-detects the cluster) or 'off'.
  heartbeat_timeout_seconds: a peer process silent this long counts as dead: the train
  loop's PeerWatchdog ends this one with one line (wgan_jax.errors.PeerLost) when it waits
  for the dead peer in a barrier or a collective that does not fail by itself (NCCL's,
  TPU's; CPU collectives fail at once); jax.distributed's own heartbeat timeout, the
  backstop, is twice as long.
  SIGTERM stays the train loop's (wgan_jax.checkpoint.PreemptionWatcher, agreed over the
  processes by `agreed_signal`): jax's own preemption service, which would install a second
  SIGTERM handler, is turned off.
  """
  explicit = coordinator_address is not None
  if mode == 'off' or (mode == 'auto' and not explicit and not cluster_detected()):
    return False
  # Cross-process collectives between CPU devices go through gloo (no effect on GPU / TPU).
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.config.update('jax_enable_preemption_service', False)
  _heartbeat_timeout[0] = heartbeat_timeout_seconds
  kwargs: dict[str, Any] = dict(heartbeat_timeout_seconds=2 * heartbeat_timeout_seconds)
  if explicit:
    kwargs.update(coordinator_address=coordinator_address, num_processes=num_processes,
                  process_id=process_id)
  jax.distributed.initialize(**kwargs)
  if jax.process_count() > 1:
    # The first cross-process collective sets up the CPU collectives; do it now, while all
    # processes are in step, rather than after minutes of unequal compilation.
    multihost_utils.sync_global_devices('wgan_jax: distributed initialised')
  return jax.process_count() > 1
