"""Checkpoints with orbax (the only module that imports it): save, resume, compatibility.

Layout: <workdir>/checkpoints/<step>/{state, meta}. `state` is the whole TrainState (both
players' parameters and optimizer states, spectral-norm and batch-norm state, EMA weights,
the step); `meta` is JSON: the resolved config (`config`, the source of truth for resume
checks and for sampling; <workdir>/config.json is a readable copy) and the data position.
The data position of a run is its step (batches are a pure function of (seed, step)) and so
is its randomness (fold_in(seed, step)), so restoring the state resumes the run bit-exactly.

Faults:
  - A save killed midway leaves `<step>.orbax-checkpoint-tmp-*`, which orbax never lists:
    resume always reads the latest complete checkpoint.
  - A `<step>` folder that is not a complete checkpoint (empty, partial) is moved aside to
    `<step>.broken-<time>` by `move_aside_incomplete` before a run starts saving, with one
    warning line, so that it never counts toward keep_checkpoints nor blocks a save.
  - A checkpoint whose data does not read (truncated array files, a deleted manifest or
    metadata file) raises CheckpointError; resuming falls back to the newest one that reads.
  - A full disk during a save raises DiskFull (one line: the workdir, the space needed).
"""
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from typing import Any, Callable, Iterable, Mapping, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from wgan_jax import state as state_lib
from wgan_jax import workdir as workdir_lib
from wgan_jax.errors import CheckpointError, DiskFull, WorkdirError, is_disk_full

CHECKPOINT_DIR = 'checkpoints'
CONFIG_FILE = 'config.json'
# Keys that may differ between a checkpoint's config and the resuming run's config.
HARMLESS_KEYS = ('total_steps', 'log_every_steps', 'eval_every_steps',
                 'checkpoint_every_steps', 'keep_checkpoints', 'eval.', 'evals.', 'parallel.',
                 'model.conv_impl', 'data.placement', 'data.device_budget_mb',
                 'data.host_budget_mb', 'data.stream_workers', 'data.data_dir')
# Keys added to the config after workdirs were written without them: a saved config that
# lacks one ran with this value.
ADDED_KEYS = {'model.compute_dtype': 'float32', 'n_critic_warmup': 0,
              'n_critic_warmup_steps': 25, 'n_critic_warmup_every': 500,
              'model.d_pool': 'sum', 'model.d_out_bias': True, 'data.random_flip': False,
              'data.image_size': 0, 'data.channels': 0}
ADDED_KEYS.update({'optim.g.decay_start_step': 0, 'optim.d.decay_start_step': 0})
ADDED_KEYS.update({'ema_start': 0, 'ortho_reg': 0.0})  # BigGAN's (configs/biggan.py)
ADDED_KEYS.update({'family': 'gan'})  # wgan_jax.families
ADDED_KEYS.update({'bigan.encoder': 'deterministic', 'bigan.nets': 'mlp'})  # families.bigan
ADDED_KEYS.update({'wae.lambda_': 10.0, 'wae.recon_scale': 1.0, 'wae.critic_hidden': 512,
                   'wae.critic_layers': 4, 'vae.obs_std': 0.1})  # wae_gan, wae_mmd, vae
ADDED_KEYS.update({'data.domain_a': '', 'data.domain_b': '', 'cyclegan.lambda_cyc': 10.0,
                   'cyclegan.lambda_identity': 0.5, 'cyclegan.pool_size': 50,
                   'cyclegan.n_blocks': 0, 'cyclegan.d_layers': 3})  # family cyclegan


def flatten_config(d: dict, prefix: str = '') -> dict:
  """{'a': {'b': 1}} -> {'a.b': 1}."""
  out = {}
  for key, value in d.items():
    if isinstance(value, dict):
      out.update(flatten_config(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


def config_differences(saved: dict, current: dict) -> list[str]:
  """The flattened keys whose values differ and that change the run (not HARMLESS_KEYS)."""
  a, b = flatten_config(saved), flatten_config(current)
  keys = sorted(set(a) | set(b))
  return [k for k in keys
          if a.get(k, ADDED_KEYS.get(k, '<missing>')) != b.get(k, ADDED_KEYS.get(k, '<missing>'))
          and not any(k == h or (h.endswith('.') and k.startswith(h)) for h in HARMLESS_KEYS)]


def warn(message: str) -> None:
  """One warning line on stderr."""
  print(f'warning: {message}', file=sys.stderr, flush=True)


def read_config(workdir: str) -> Optional[dict]:
  """<workdir>/config.json, or None when there is none; CheckpointError (one line) when it
  is empty or truncated."""
  file = workdir_lib.path(workdir, CONFIG_FILE)
  try:
    return workdir_lib.read_json(file)
  except json.JSONDecodeError as e:
    raise CheckpointError(
        f'{str(file)!r} is empty or truncated ({e.msg}) and the checkpoints hold no copy of the '
        f'config; restore the file, or use a new --workdir') from None


def read_meta(workdir: str, step: int) -> dict:
  """The JSON `meta` item of checkpoint `step` (config, data position), without orbax's
  manager (nothing is created); CheckpointError when it is missing or does not parse."""
  file = workdir_lib.path(workdir, CHECKPOINT_DIR, str(step), 'meta', 'metadata')
  try:
    meta = json.loads(file.read_text())
  except FileNotFoundError:
    raise CheckpointError(f'checkpoint {step} in {workdir!r} has no meta/metadata file') from None
  except (OSError, ValueError) as e:
    raise CheckpointError(f'checkpoint {step} in {workdir!r} has an unreadable meta/metadata '
                          f'file ({type(e).__name__})') from None
  if not isinstance(meta, dict):
    raise CheckpointError(f'checkpoint {step} in {workdir!r} has a malformed meta/metadata file')
  return meta


def checkpoint_config(workdir: str, step: int) -> Optional[dict]:
  """The config stored in checkpoint `step` (None for checkpoints saved before configs were
  stored in them); CheckpointError when its meta item does not read."""
  return read_meta(workdir, step).get('config')


def saved_config(workdir: str, steps: Optional[Iterable[int]] = None) -> Optional[dict]:
  """The run's config: the copy in the newest of `steps` (default: all complete checkpoints)
  whose meta reads, else config.json (None if there is neither)."""
  for step in sorted(all_steps(workdir) if steps is None else steps, reverse=True):
    try:
      config = checkpoint_config(workdir, step)
    except CheckpointError:
      continue
    if config is not None:
      return config
  return read_config(workdir)


def check_resumable(workdir: str, config_dict: dict) -> None:
  """Raises WorkdirError if the workdir's checkpoints come from an incompatible config.

  The config stored in the checkpoints is the reference (config.json may be missing or
  edited); checkpoints saved before configs were stored in them are checked against
  config.json. Reads only: nothing is written.
  """
  if latest_step(workdir) is None:
    return
  saved = saved_config(workdir)
  if saved is None:
    return
  diff = config_differences(saved, config_dict)
  if diff:
    shown = ', '.join(f'{k} ({_get(saved, k)!r} -> {_get(config_dict, k)!r})' for k in diff[:8])
    more = f' and {len(diff) - 8} more' if len(diff) > 8 else ''
    raise WorkdirError(
        f'workdir {workdir!r} holds checkpoints of a different run: {shown}{more}; '
        f'use a new --workdir, or resume with the same config (only total_steps, logging, '
        f'eval, checkpoint and parallel settings may change)')


def _get(d: dict, dotted: str):
  return flatten_config(d).get(dotted, ADDED_KEYS.get(dotted, '<missing>'))


def _step_dirs(workdir: str) -> dict:
  """{step: folder} of every `checkpoints/<step>` folder, complete or not."""
  directory = workdir_lib.path(workdir, CHECKPOINT_DIR)
  if not directory.is_dir():
    return {}
  return {int(d.name): d for d in directory.iterdir() if d.name.isdigit()}


def _is_complete(folder) -> bool:
  return (folder / 'state').is_dir() and (folder / '_CHECKPOINT_METADATA').exists()


def all_steps(workdir: str) -> list[int]:
  """The steps of the complete checkpoints, ascending (a save cut off midway has a
  `<step>.orbax-checkpoint-tmp-*` name and is not listed)."""
  return sorted(step for step, d in _step_dirs(workdir).items() if _is_complete(d))


def move_aside(workdir: str, step: int, message: str) -> str:
  """Renames checkpoints/<step> to `<step>.broken-<time>` (which orbax never lists nor
  counts) with one warning line, `message` and where it went; returns the new name."""
  folder = workdir_lib.path(workdir, CHECKPOINT_DIR, str(step))
  name = f'{step}.broken-{time.strftime("%Y%m%d-%H%M%S")}'
  if (folder.parent / name).exists():
    name = f'{name}-{os.getpid()}'
  folder.rename(folder.parent / name)
  warn(f'{message}; moved aside to {CHECKPOINT_DIR}/{name}')
  return name


def move_aside_incomplete(workdir: str) -> list[int]:
  """Moves every `checkpoints/<step>` folder that is not a complete checkpoint (empty, or
  missing its state or orbax's _CHECKPOINT_METADATA) aside; returns their steps."""
  broken = sorted(step for step, d in _step_dirs(workdir).items() if not _is_complete(d))
  for step in broken:
    move_aside(workdir, step, f'checkpoint {step} in {workdir!r} is empty or incomplete')
  return broken


def latest_step(workdir: str) -> Optional[int]:
  """The step of the newest complete checkpoint, or None."""
  steps = all_steps(workdir)
  return steps[-1] if steps else None


def _path_str(path) -> str:
  parts = []
  for key in path:
    for attr in ('key', 'name', 'idx'):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
  return '.'.join(state_lib.path_names(parts))


def _leaf_shapes(tree) -> dict:
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {_path_str(path): tuple(leaf.shape) for path, leaf in leaves if leaf is not None}


def tree_mismatches(saved_metadata, abstract_state) -> list[str]:
  """Leaves missing on either side or of different shapes, as readable strings."""
  saved, want = _leaf_shapes(saved_metadata), _leaf_shapes(abstract_state)
  out = [f'{k}: missing in checkpoint' for k in sorted(set(want) - set(saved))]
  out += [f'{k}: not in this model' for k in sorted(set(saved) - set(want))]
  out += [f'{k}: checkpoint {saved[k]} vs model {want[k]}'
          for k in sorted(set(saved) & set(want)) if saved[k] != want[k]]
  return out


def is_flat_layout(tree) -> bool:
  """Whether a checkpoint's state tree has the layout of before PlayerState (top-level
  g_params, d_params, ...: wgan_jax.state.FLAT_FIELDS); such checkpoints restore into
  today's TrainState."""
  return isinstance(tree, Mapping) and 'g_params' in tree


class Checkpointer:
  """Async saves where the train loop asks for them, keeps the last `keep`; all processes
  take part."""

  def __init__(self, workdir: str, *, keep: int):
    self.workdir = workdir
    self._pending_bytes = 0  # size of the state being saved (for a full-disk message)
    self.manager = ocp.CheckpointManager(
        workdir_lib.path(workdir, CHECKPOINT_DIR).resolve(),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=True),
        item_handlers={'state': ocp.StandardCheckpointHandler(),
                       'meta': ocp.JsonCheckpointHandler()})

  def save(self, step: int, state, meta: dict) -> bool:
    """Starts an async save of `state` at `step` (False: `step` is already the latest)."""
    if self.manager.latest_step() == step:
      return False
    with disk_full_as_one_line(self.workdir, self._pending_bytes):
      self.manager.check_for_errors()  # an earlier async save that failed
    self._pending_bytes = state_bytes(state)
    with disk_full_as_one_line(self.workdir, self._pending_bytes):
      return self.manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  def restore(self, step: int, abstract_state):
    """The TrainState saved at `step`, placed as `abstract_state` (ShapeDtypeStructs with
    shardings) says: a checkpoint saved on another device count or strategy restores onto
    this one. Raises WorkdirError for a checkpoint of another model, CheckpointError for
    one whose files do not read (truncated, missing)."""
    with _quiet_stderr():
      try:
        metadata = self.manager.item_metadata(step)['state']
      except Exception as e:  # pylint: disable=broad-except  (tensorstore: ValueError)
        raise CheckpointError(f'checkpoint {step} in {self.workdir!r} does not read '
                              f'({_read_error(e)})') from None
    tree = getattr(metadata, 'tree', metadata)
    if not tree:
      raise CheckpointError(f'checkpoint {step} in {self.workdir!r} does not read (its '
                            f'state/_METADATA file is missing or empty)')
    flat = is_flat_layout(tree)  # written before the state was grouped per player
    if flat:
      abstract_state = state_lib.to_flat_layout(abstract_state)
    mismatches = tree_mismatches(tree, abstract_state)
    if mismatches:
      raise WorkdirError(
          f'checkpoint {step} in {self.workdir!r} does not fit this model '
          f'({len(mismatches)} differences, e.g. {"; ".join(mismatches[:3])}); '
          f'use a new --workdir or the config it was saved with')
    with _quiet_stderr():
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
      except Exception as e:  # pylint: disable=broad-except
        raise CheckpointError(f'checkpoint {step} in {self.workdir!r} does not read '
                              f'({_read_error(e)})') from None
    state = state_lib.from_flat_layout(restored.state) if flat else restored.state
    return state, restored.meta

  def restore_newest(self, abstract_state, *, on_skip: Callable[[int, str], None]):
    """(state, meta, step) of the newest checkpoint that reads and holds only finite values,
    or None when none does; `on_skip(step, reason)` is called for each one passed over
    (newest first). A checkpoint of another model raises WorkdirError (no fallback)."""
    for step in reversed(self.manager.all_steps()):
      try:
        state, meta = self.restore(step, abstract_state)
      except CheckpointError as e:
        on_skip(step, str(e))
        continue
      bad = nonfinite_leaves(state)
      if bad:
        on_skip(step, f'checkpoint {step} in {self.workdir!r} holds NaN or infinite values '
                      f'({bad[0]})')
        continue
      return state, meta, step
    return None

  def reload(self) -> None:
    """Re-reads the checkpoint folder (after checkpoints were moved aside)."""
    self.manager.reload()

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def wait(self) -> None:
    with disk_full_as_one_line(self.workdir, self._pending_bytes):
      self.manager.wait_until_finished()
      self.manager.check_for_errors()

  def close(self) -> None:
    try:
      self.wait()
    except BaseException:
      with contextlib.suppress(Exception):  # the same failure again: report the first
        self.manager.close()
      raise
    self.manager.close()


def nonfinite_leaves(state) -> list[str]:
  """The paths of the floating leaves of `state` that hold a NaN or an infinity."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(jax.device_get(state))
  return [_path_str(path) for path, leaf in leaves
          if leaf is not None and np.issubdtype(np.asarray(leaf).dtype, np.inexact)
          and not np.all(np.isfinite(leaf))]


def state_bytes(state) -> int:
  """Bytes of the arrays of `state` (about what a checkpoint of it takes on disk)."""
  return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize
                 for x in jax.tree.leaves(state) if hasattr(x, 'shape')))


def format_bytes(n: float) -> str:
  """1536 -> '1.5 KB'."""
  for unit in ('B', 'KB', 'MB', 'GB', 'TB'):
    if n < 1024:
      return f'{n:.0f} {unit}' if unit == 'B' else f'{n:.1f} {unit}'
    n /= 1024
  return f'{n:.1f} PB'


def disk_full_message(workdir: str, needed: int) -> str:
  free = ''
  if not workdir_lib.is_remote(workdir):
    with contextlib.suppress(OSError):
      free = f', {format_bytes(shutil.disk_usage(workdir).free)} free'
  return (f'no space left on device while writing to workdir {workdir!r}: a checkpoint needs '
          f'about {format_bytes(needed)}{free}; earlier checkpoints are intact, free some '
          f'space (or lower keep_checkpoints) and rerun the same command to resume')


@contextlib.contextmanager
def disk_full_as_one_line(workdir: str, needed: int):
  """Turns a full-disk error raised inside the block into DiskFull (one line)."""
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except
    if is_disk_full(e):
      raise DiskFull(disk_full_message(workdir, needed)) from None
    raise


def _read_error(error: BaseException) -> str:
  """A short reason for a checkpoint that does not read (tensorstore's text is long)."""
  text = str(error)
  if isinstance(error, FileNotFoundError) or 'NOT_FOUND' in text:
    return 'a file of it is missing (manifest, metadata or array data)'
  if any(code in text for code in ('OUT_OF_RANGE', 'DATA_LOSS', 'Byte range', 'truncated')):
    return 'an array file is truncated or corrupt'
  first = text.splitlines()[0] if text else type(error).__name__
  return first[:120]


@contextlib.contextmanager
def _quiet_stderr():
  """Keeps what tensorstore's threads print while a broken checkpoint fails to read
  (asyncio 'Event loop is closed' tracebacks) off the terminal: the caller reports the
  failure in one line."""
  try:
    fd = sys.stderr.fileno()
  except (AttributeError, OSError, ValueError):
    fd = 2
  sys.stderr.flush()
  saved = os.dup(fd)
  sink = tempfile.TemporaryFile()
  os.dup2(sink.fileno(), fd)
  failed = False
  try:
    yield
  except BaseException:
    failed = True
    raise
  finally:
    if failed:
      time.sleep(0.5)  # the reads still in flight fail (and print) after the first error
      # ... and asyncio logs their futures' errors when they are collected, later.
      logging.getLogger('asyncio').setLevel(logging.CRITICAL)
    sys.stderr.flush()
    os.dup2(saved, fd)
    os.close(saved)
    sink.close()


def abstract_like(state) -> Any:
  """ShapeDtypeStructs with the shardings of `state` (a restore target)."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


class PreemptionWatcher:
  """Turns SIGTERM (a preemption notice) and SIGINT (Ctrl-C) into a flag the train loop
  checks after each step (it then saves and stops). A second SIGINT ends the process at
  once with status 130, even mid-save: the save in flight stays a `*.orbax-checkpoint-tmp-*`
  folder that resume ignores, so the previous checkpoint is what the next run reads.

  requested: the number of the first signal received, else 0.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.requested = 0
    self._previous = {}

  def _handler(self, signum, frame):
    del frame
    if self.requested and signum == signal.SIGINT:
      print('error: interrupted again (second Ctrl-C): stopped without saving; the previous '
            'checkpoint is intact, rerun the same command to resume from it', file=sys.stderr,
            flush=True)
      os._exit(128 + signal.SIGINT)  # pylint: disable=protected-access
    self.requested = self.requested or signum

  def __enter__(self):
    for signum in self.SIGNALS:
      try:
        self._previous[signum] = signal.signal(signum, self._handler)
      except ValueError:  # not the main thread: no handler, no preemption saves
        pass
    return self

  def __exit__(self, *exc):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    self._previous = {}
