"""Examples read from the files by worker processes (data.placement stream).

A `StreamReader` keeps `workers` processes, each with its own store opened from the plain
dict of config.data (`store.open_store`). `read(indices)` splits the indices into contiguous
chunks, one per worker; every worker reads and decodes its chunk and writes the uint8 images
into one of its PREFETCH_DEPTH shared-memory buffers (each sized for the largest chunk it
held so far), and the labels come back through its pipe; the trainer copies the images out
(a new array: the buffer is reused). The result is the same bit for bit as
`store.read(indices)`.

Shapes:
  n        indices of one read
  H W C    image_shape of the store
  read(indices int [n]) -> (uint8 [n, H, W, C], int32 [n])

Overlap: `prefetch(indices)` hands a coming read to the workers and returns at once; up to
PREFETCH_DEPTH reads are queued (a worker that finishes one starts on the next without
waiting for the trainer). A `read` of the indices at the head of the queue collects them;
any other read discards the queue and reads anew. wgan_jax.data.source prefetches the next
`depth` steps' indices after each batch.

Processes: workers are started with the 'spawn' method (never forked from a process that has
initialised jax) and import no jax: the worker function lives here, and the parent's
__main__ (the trainer's imports jax) is hidden from multiprocessing while they start. They
ignore SIGINT and SIGTERM (the trainer decides when to stop, and saves first), exit when
their pipe closes (the trainer died), and are daemons. `close()` stops and reaps them and
unlinks the shared memory; so does an exit hook that runs before multiprocessing's own
(which would wait forever on a daemon that ignores its SIGTERM).

Errors: an error in a worker (a corrupt file) is raised in the trainer as the same one-line
error (a UserError keeps its class, anything else becomes a DataError), a worker that dies
as a one-line DataError naming its exit code; never a hang.
"""
import atexit
import collections
import contextlib
import multiprocessing
from multiprocessing import connection, resource_tracker, shared_memory
import signal
import sys
import types
from typing import Mapping, NamedTuple
import weakref

import numpy as np

from wgan_jax import errors
from wgan_jax.data import store as store_lib
from wgan_jax.errors import DataError

START_METHOD = 'spawn'
PREFETCH_DEPTH = 2    # reads queued ahead, and shared-memory buffers per worker
STOP_TIMEOUT_S = 2.0  # a worker asked to stop gets this long before it is killed


def split_chunks(n: int, workers: int) -> list[tuple[int, int]]:
  """Contiguous [lo, hi) chunks of n indices for `workers` workers, sizes differing by at most
  one (np.array_split's); empty chunks (n < workers) are left out."""
  sizes = [n // workers + (w < n % workers) for w in range(workers)]
  bounds = np.concatenate([[0], np.cumsum(sizes)])
  return [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]


def one_line(text: str) -> str:
  """`text` with its line breaks replaced by spaces."""
  return ' '.join(str(text).split('\n'))


def describe_error(error: BaseException, name: str) -> tuple[str, str]:
  """(class name, one-line message) of an error raised while reading in a worker: a UserError
  keeps its class and text, anything else becomes a DataError naming the dataset."""
  if isinstance(error, errors.UserError):
    return type(error).__name__, one_line(error)
  return 'DataError', one_line(f'data.name {name!r}: reading failed in a stream worker: '
                               f'{type(error).__name__}: {error}')


def rebuild_error(kind: str, message: str) -> errors.UserError:
  """The error of `describe_error`, to raise in the trainer."""
  cls = getattr(errors, kind, DataError)
  return cls(message) if isinstance(cls, type) and issubclass(cls, errors.UserError) \
      else DataError(message)


def exit_text(code: int | None) -> str:
  """'exit code 1', or 'exit code -9 (SIGKILL)' for a worker killed by a signal."""
  if code is not None and code < 0:
    try:
      return f'exit code {code} ({signal.Signals(-code).name})'
    except ValueError:
      pass
  return f'exit code {code}'


# ----------------------------------------------------------------------------- worker side


def serve(data: Mapping, conn) -> None:
  """A worker's loop: opens the store of `data`, then answers each request (buffer slot,
  shared-memory name, int64 indices [m]) in order by writing uint8 [m, H, W, C] at the start
  of that buffer and sending ('ok', labels int32 [m]), or ('error', class name, message).
  Ends on None or when the pipe closes."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  signal.signal(signal.SIGTERM, signal.SIG_IGN)
  name = data.get('name', '?')
  try:
    store, failure = store_lib.open_store(data), None
  except Exception as e:  # pylint: disable=broad-except
    store, failure = None, describe_error(e, name)
  buffers: dict[int, shared_memory.SharedMemory] = {}  # slot -> attached buffer
  try:
    while True:
      request = conn.recv()
      if request is None:
        break
      slot, shm_name, indices = request
      if failure is not None:
        conn.send(('error', *failure))
        continue
      try:
        images, labels = store.read(indices)
        expected = (len(indices), *store.image_shape)
        if images.dtype != np.uint8 or tuple(images.shape) != expected:
          raise DataError(f'data.name {name!r}: the store read {images.dtype} '
                          f'{tuple(images.shape)}, expected uint8 {expected}')
        if slot not in buffers or buffers[slot].name != shm_name:
          if slot in buffers:
            buffers.pop(slot).close()
          buffers[slot] = shared_memory.SharedMemory(shm_name)
        view = np.ndarray(images.shape, np.uint8, buffer=buffers[slot].buf)
        view[...] = images
        del view
        conn.send(('ok', np.asarray(labels, np.int32)))
      except Exception as e:  # pylint: disable=broad-except
        conn.send(('error', *describe_error(e, name)))
  except (EOFError, OSError):  # the trainer is gone
    pass
  finally:
    for shm in buffers.values():
      shm.close()
    if store is not None:
      store.close()


# ----------------------------------------------------------------------------- trainer side


@contextlib.contextmanager
def hidden_main():
  """Shows multiprocessing an empty __main__ while workers start: spawn would otherwise re-run
  the parent's main module in each worker (the trainer's imports jax); the worker function
  needs nothing from it."""
  main = sys.modules['__main__']
  sys.modules['__main__'] = types.ModuleType('__main__')
  try:
    yield
  finally:
    sys.modules['__main__'] = main


class _Worker:
  """One worker process, the parent's end of its pipe, its PREFETCH_DEPTH shared-memory
  buffers and the slots of its outstanding requests (in the order they were sent)."""

  def __init__(self, context, data: dict, index: int):
    self.index = index
    self.conn, child = context.Pipe()
    self.process = context.Process(target=serve, args=(data, child), daemon=True,
                                   name=f'wgan_jax-stream-{index}')
    with hidden_main():
      self.process.start()
    child.close()
    self.buffers: list[shared_memory.SharedMemory | None] = [None] * PREFETCH_DEPTH
    self.outstanding: list[int] = []

  def send(self, indices: np.ndarray, row_bytes: int) -> int:
    """Sends a request for `indices` into a free buffer (replaced by a larger one when too
    small); returns its slot. OSError when the pipe is broken."""
    slot = next(k for k in range(len(self.buffers)) if k not in self.outstanding)
    nbytes = max(len(indices) * row_bytes, 1)
    if self.buffers[slot] is None or self.buffers[slot].size < nbytes:
      self.release(slot)
      self.buffers[slot] = shared_memory.SharedMemory(create=True, size=nbytes)
    self.conn.send((slot, self.buffers[slot].name, indices))
    self.outstanding.append(slot)
    return slot

  def release(self, slot: int) -> None:
    """Closes and unlinks a buffer (the worker keeps its own mapping until it switches)."""
    shm, self.buffers[slot] = self.buffers[slot], None
    if shm is not None:
      shm.close()
      with contextlib.suppress(FileNotFoundError):
        shm.unlink()

  def stop(self) -> None:
    """Asks the worker to stop, kills it after STOP_TIMEOUT_S, reaps it, releases the
    buffers."""
    with contextlib.suppress(OSError, ValueError):
      self.conn.send(None)
    self.process.join(STOP_TIMEOUT_S)
    if self.process.is_alive():
      self.process.kill()
      self.process.join()
    self.conn.close()
    for slot in range(len(self.buffers)):
      self.release(slot)


class _Request(NamedTuple):
  """A read handed to the workers: its indices [n] and, per worker that got a chunk, the
  chunk's [lo, hi) and buffer slot."""
  indices: np.ndarray
  parts: list  # [(worker, lo, hi, slot)]


def _stop_all(workers: list) -> None:
  """Stops every worker (close(), garbage collection, exit), each even when another fails."""
  while workers:
    try:
      workers[-1].stop()
    finally:
      workers.pop()
  _OPEN[:] = [w for w in _OPEN if w is not workers]


# The workers of every open reader. Stopped at exit by a hook registered after
# multiprocessing's own (this module imports multiprocessing first), so it runs before
# multiprocessing terminates daemon children with SIGTERM, which workers ignore.
_OPEN: list[list] = []


@atexit.register
def _stop_open() -> None:
  for workers in list(_OPEN):
    _stop_all(workers)


class StreamReader:
  """Reads examples of config.data by `workers` worker processes (module docstring).

  Attributes:
    workers: the number of worker processes (0: reads in this process with the store).
    depth: how many reads `prefetch` queues (PREFETCH_DEPTH; 0 without workers).
    image_shape: (H, W, C).
  """

  def __init__(self, data: Mapping, *, workers: int, store: store_lib.Store | None = None):
    """Starts the workers (they open their stores while the trainer goes on).

    Args:
      data: config.data (dict or ConfigDict), opened in each worker with store.open_store.
      workers: worker processes; 0 reads in the calling process with `store`.
      store: an open store of `data` (default: open_store(data)); its image_shape sizes the
        buffers, and workers=0 reads with it.

    Raises:
      ConfigError: workers < 0; ConfigError / DataError of open_store.
    """
    if workers < 0:
      raise errors.ConfigError(f'data.stream_workers must be >= 0 (0: read in the training '
                               f'process), got {workers}')
    self.workers = int(workers)
    self.depth = PREFETCH_DEPTH if self.workers else 0
    self._own_store = store is None
    self._store = store_lib.open_store(data) if store is None else store
    self.image_shape = tuple(self._store.image_shape)
    self._name = self._store.name
    self._queue: collections.deque[_Request] = collections.deque()  # handed out, in order
    self._broken: str | None = None          # the message of a worker's death
    self._workers: list[_Worker] = []
    if self.workers:
      plain = {k: (v.to_dict() if hasattr(v, 'to_dict') else v) for k, v in dict(data).items()}
      resource_tracker.ensure_running()  # one tracker for the buffers of all processes
      context = multiprocessing.get_context(START_METHOD)
      self._workers = [_Worker(context, plain, w) for w in range(self.workers)]
      _OPEN.append(self._workers)
    self._finalizer = weakref.finalize(self, _stop_all, self._workers)

  def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Examples at int `indices` [n]: (uint8 [n, H, W, C], int32 [n]), bit for bit
    store.read(indices).

    Raises:
      DataError (or the UserError a worker met): unreadable data, a worker that died.
    """
    indices = np.asarray(indices, np.int64).reshape(-1)
    if not self.workers:
      return self._store.read(indices)
    if not (self._queue and np.array_equal(self._queue[0].indices, indices)):
      self._discard_queue()
      self._submit(indices)
    return self._collect(self._queue.popleft(), keep=True)

  def prefetch(self, indices: np.ndarray) -> None:
    """Starts reading `indices` [n] in the workers and returns; a `read` of the same indices
    (once the reads queued before are read) returns the result. Nothing happens with
    workers=0, when these indices are queued already, or when PREFETCH_DEPTH reads are."""
    if len(self._queue) >= self.depth:
      return
    indices = np.asarray(indices, np.int64).reshape(-1)
    if not any(np.array_equal(r.indices, indices) for r in self._queue):
      self._submit(indices.copy())

  def close(self) -> None:
    """Stops the workers (reaped, buffers unlinked); closes the store if it opened it."""
    self._queue.clear()
    self._finalizer()
    if self._own_store:
      self._store.close()

  def _discard_queue(self) -> None:
    """Waits for the prefetched reads nobody asked for and drops them (errors with them; a
    worker's death still raises)."""
    while self._queue:
      self._collect(self._queue.popleft(), keep=False)

  def _submit(self, indices: np.ndarray) -> None:
    """Sends each worker its contiguous chunk of `indices` and queues the request."""
    self._check_alive()
    row = int(np.prod(self.image_shape))
    parts = []
    for worker, (lo, hi) in zip(self._workers, split_chunks(len(indices), self.workers)):
      try:
        parts.append((worker, lo, hi, worker.send(indices[lo:hi], row)))
      except OSError:
        self._died(worker)
    self._queue.append(_Request(indices, parts))

  def _collect(self, request: _Request, *, keep: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """Waits for the replies of `request` (each worker's next one); keep: copies the images
    out of the buffers into a new array and raises the first worker's error, else drops
    both."""
    n = len(request.indices) if keep else 0
    images = np.empty((n, *self.image_shape), np.uint8)
    labels = np.empty((n,), np.int32)
    failure = None
    for worker, lo, hi, slot in request.parts:
      reply = self._receive(worker)
      worker.outstanding.remove(slot)
      if reply[0] == 'error':
        failure = failure or reply[1:]
      elif keep:
        images[lo:hi] = np.ndarray((hi - lo, *self.image_shape), np.uint8,
                                   buffer=worker.buffers[slot].buf)
        labels[lo:hi] = reply[1]
    if failure is not None and keep:
      raise rebuild_error(*failure)
    return (images, labels) if keep else None

  def _receive(self, worker: _Worker):
    """The reply of `worker`, or a DataError when it died first."""
    while True:
      ready = connection.wait([worker.conn, worker.process.sentinel])
      if worker.conn in ready:
        try:
          return worker.conn.recv()
        except (EOFError, OSError):
          pass
      if not worker.process.is_alive():
        self._died(worker)

  def _died(self, worker: _Worker):
    """Records and raises the one-line DataError of a worker that died."""
    worker.process.join()
    code = worker.process.exitcode
    cause = ' (out of memory?)' if code == -signal.SIGKILL else ''
    self._broken = (
        f'data.placement=stream: worker {worker.index} (pid {worker.process.pid}) reading '
        f'data.name {self._name!r} died with {exit_text(code)}{cause}; lower '
        'data.stream_workers or use data.placement=host')
    raise DataError(self._broken)

  def _check_alive(self) -> None:
    if self._broken is not None:
      raise DataError(self._broken)
    if not self._workers:
      raise DataError(f'data.placement=stream: the reader of data.name {self._name!r} is '
                      'closed')
