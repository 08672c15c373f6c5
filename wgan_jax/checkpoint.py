"""Checkpoints with orbax (the only module that imports it): save, resume, compatibility.

Layout: <workdir>/checkpoints/<step>/{state, meta}. `state` is the whole GanState (both
players' parameters and optimizer states, spectral-norm and batch-norm state, EMA weights,
the step); `meta` is JSON: the config and the data position. The data position of a run is
its step (batches are a pure function of (seed, step)) and so is its randomness
(fold_in(seed, step)), so restoring the state resumes the run bit-exactly.

A save killed midway leaves `<step>.orbax-checkpoint-tmp-*`, which orbax never lists:
resume always reads the latest complete checkpoint.
"""
import signal
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

from wgan_jax import workdir as workdir_lib
from wgan_jax.errors import WorkdirError

CHECKPOINT_DIR = 'checkpoints'
CONFIG_FILE = 'config.json'
# Keys that may differ between a checkpoint's config and the resuming run's config.
HARMLESS_KEYS = ('total_steps', 'log_every_steps', 'eval_every_steps',
                 'checkpoint_every_steps', 'keep_checkpoints', 'eval.', 'evals.', 'parallel.')
# Keys added to the config after workdirs were written without them: a saved config that
# lacks one ran with this value.
ADDED_KEYS = {'model.compute_dtype': 'float32', 'n_critic_warmup': 0,
              'n_critic_warmup_steps': 25, 'n_critic_warmup_every': 500,
              'model.d_pool': 'sum', 'model.d_out_bias': True}


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


def read_config(workdir: str) -> Optional[dict]:
  return workdir_lib.read_json(workdir_lib.path(workdir, CONFIG_FILE))


def check_resumable(workdir: str, config_dict: dict) -> None:
  """Raises WorkdirError if the workdir's checkpoints come from an incompatible config."""
  saved = read_config(workdir)
  if saved is None or latest_step(workdir) is None:
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


def all_steps(workdir: str) -> list[int]:
  """The steps of the complete checkpoints, ascending (a save cut off midway has a
  `<step>.orbax-checkpoint-tmp-*` name and is not listed)."""
  directory = workdir_lib.path(workdir, CHECKPOINT_DIR)
  if not directory.is_dir():
    return []
  return sorted(int(d.name) for d in directory.iterdir() if d.name.isdigit()
                and (d / 'state').is_dir() and (d / '_CHECKPOINT_METADATA').exists())


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
  return '.'.join(parts)


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


class Checkpointer:
  """Async saves every `every_steps`, keeps the last `keep`; all processes take part."""

  def __init__(self, workdir: str, *, every_steps: int, keep: int):
    self.workdir = workdir
    self.every_steps = every_steps
    self.manager = ocp.CheckpointManager(
        workdir_lib.path(workdir, CHECKPOINT_DIR).resolve(),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=True),
        item_handlers={'state': ocp.StandardCheckpointHandler(),
                       'meta': ocp.JsonCheckpointHandler()})

  def save(self, step: int, state, meta: dict, *, force: bool = False) -> bool:
    """Starts an async save of `state` at `step` (every `every_steps`, or when forced)."""
    if not force and step % self.every_steps:
      return False
    if self.manager.latest_step() == step:
      return False
    return self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  def restore(self, step: int, abstract_state):
    """The GanState saved at `step`, placed as `abstract_state` (ShapeDtypeStructs with
    shardings) says: a checkpoint saved on another device count or strategy restores onto
    this one. Raises WorkdirError for a checkpoint of another model."""
    metadata = self.manager.item_metadata(step)['state']
    tree = getattr(metadata, 'tree', metadata)
    mismatches = tree_mismatches(tree, abstract_state)
    if mismatches:
      raise WorkdirError(
          f'checkpoint {step} in {self.workdir!r} does not fit this model '
          f'({len(mismatches)} differences, e.g. {"; ".join(mismatches[:3])}); '
          f'use a new --workdir or the config it was saved with')
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    return restored.state, restored.meta

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def abstract_like(state) -> Any:
  """ShapeDtypeStructs with the shardings of `state` (a restore target)."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


class PreemptionWatcher:
  """Turns SIGTERM (a preemption notice) into a flag the train loop checks each step."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    def handler(signum, frame):
      del signum, frame
      self.requested = True
    try:
      self._previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: no handler, no preemption saves
      self._previous = None
    return self

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
