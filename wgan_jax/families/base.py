"""The family interface: Family, CriticView, Networks and the global-batch draws."""
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from wgan_jax.parallel import local_slice

PyTree = Any


class CriticView(NamedTuple):
  """What one critic update sees (wgan_jax.step.make_critic_update).

  real, fake:      the critic's inputs, pytrees of [b, ...] leaves of one structure (an
                   array; BiGAN's pair (x, z); CycleGAN's pair of domains); fake is constant
                   (stop_gradient) for the critic.
  kwargs:          the critic's keyword arguments in its pass over [real; fake].
  penalty_kwargs:  its keyword arguments in the penalty's passes (interpolates or reals).
  read:            None (the output is the scores [2b, ...]) or out -> (scores [2b, ...],
                   extra critic loss term or None, metrics), e.g. the AC-GAN classifier's
                   cross-entropy on the real half.
  """
  real: PyTree
  fake: PyTree
  kwargs: Optional[dict] = None
  penalty_kwargs: Optional[dict] = None
  read: Optional[Callable] = None


class Networks(NamedTuple):
  """A family's initial networks: each side's merged haiku params and state (d_params /
  d_state None without a critic) and what the family keeps beside them (`extra`)."""
  g_params: PyTree
  g_state: PyTree
  d_params: Optional[PyTree]
  d_state: Optional[PyTree]
  extra: Optional[PyTree] = None


class Family(NamedTuple):
  """A model family over the one train step (see the module docstring).

  init(key, *, batch_size) -> Networks.
  critic_view(g_params, g_state, real, *, key, z_key, extra) -> (CriticView, extra):
      the inputs of one critic update, built with the generator side's current weights
      (training mode; its state change is dropped); key: the update's key (streams are
      fold_in(key, STREAM)), z_key: the key of its noise. None: no critic.
  g_objective(g_params, g_state, real, *, key, critic) -> (loss, new g_state, metrics):
      the generator side's objective; critic(x, **kwargs) is the critic's non-updating
      pass; real is the last critic update's real batch (the only one without a critic).
  models: the family's networks (models.ModelPair: g samples or translates, e the encoder
      or inverse map, d the critic side or None); sampling and evaluation use these.
  d_batch_norm: the critic normalises with batch statistics (takes batch_groups=).
  """
  name: str
  init: Callable
  critic_view: Optional[Callable]
  g_objective: Callable
  models: Any
  d_batch_norm: bool = False

  @property
  def d_apply(self) -> Optional[Callable]:
    """The critic side's haiku apply (None without a critic)."""
    return None if self.models.d is None else self.models.d.apply


class Draws(NamedTuple):
  """Random draws of the global batch, sliced to this device's rows under pmap (the step
  computes the same numbers whatever the device count)."""
  z_dim: int
  axis_name: Optional[str] = None
  num_shards: int = 1

  def local(self, x, global_size: int):
    """This device's slice of a globally drawn [global_size, ...] array (pmap), else x."""
    return local_slice(x, axis_name=self.axis_name, size=global_size // self.num_shards)

  def z(self, key, global_size: int, dim: Optional[int] = None):
    """z ~ N(0, I) [global_size, dim (default z_dim)] for the global batch; this device's
    rows."""
    return self.local(sample_z(key, global_size, dim or self.z_dim), global_size)

  def labels(self, key, global_size: int, num_classes: int):
    """y ~ U{0, ..., C - 1} for the global batch; this device's rows."""
    return self.local(sample_labels(key, global_size, num_classes), global_size)


def sample_z(key, n: int, z_dim: int) -> jax.Array:
  """Generator noise z ~ N(0, I), [n, Z]."""
  return jax.random.normal(key, (n, z_dim), jnp.float32)


def sample_labels(key, n: int, num_classes: int) -> jax.Array:
  """Fake-example classes y ~ U{0, ..., C - 1}, int32 [n]."""
  return jax.random.randint(key, (n,), 0, num_classes, jnp.int32)


def merge(*trees: dict) -> dict:
  """One haiku dict of several networks' (module names must be disjoint)."""
  out = {}
  for tree in trees:
    clash = set(out) & set(tree)
    if clash:
      raise ValueError(f'networks share haiku module names: {sorted(clash)[:3]}')
    out.update(tree)
  return out
