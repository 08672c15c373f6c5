"""The train state: everything a run needs to continue, as one pytree, grouped per player."""
from typing import Any, NamedTuple, Optional

import jax

PyTree = Any


class PlayerState(NamedTuple):
  """One player's parameters, model state and optimizer state.

  A player is every network one optimizer trains: the generator side `g` (the generator;
  with an encoder or an inverse map in the families that have one, wgan_jax.families) or the
  critic side `d` (one critic, or CycleGAN's two). Its networks' haiku dicts are merged into
  one (their module names are disjoint), so each network applies to the player's whole
  params and state (haiku reads its own entries and passes the others through).

  params:     the networks' parameters.
  state:      their model state (batch-norm statistics, spectral-norm vectors u and sigma;
              the critic's advance in critic updates only).
  opt_state:  the player's optimizer state.
  """
  params: PyTree
  state: PyTree
  opt_state: PyTree


class TrainState(NamedTuple):
  """Both players and what the step keeps beside them.

  step:         int32 scalar, generator updates done so far (the data position and the
                randomness of step t are functions of t alone, so this is all a resume needs).
  g:            the generator side (PlayerState).
  d:            the critic side (PlayerState), or None for families without a critic (vae,
                wae_mmd).
  g_ema_params: exponential moving average of g.params, or None when EMA is off.
  extra:        what a family keeps between steps beside the players (CycleGAN's histories
                of generated images), or None.
  """
  step: jax.Array
  g: PlayerState
  d: Optional[PlayerState]
  g_ema_params: Optional[PyTree]
  extra: Optional[PyTree] = None



def sampling_params(state: TrainState) -> PyTree:
  """The generator weights to sample from: the EMA weights where configured."""
  return state.g.params if state.g_ema_params is None else state.g_ema_params


# The layout of train states written before the players were grouped: the checkpoint's
# top-level key of each PlayerState field (wgan_jax.checkpoint maps old workdirs with it).
FLAT_FIELDS = {('g', 'params'): 'g_params', ('g', 'state'): 'g_state',
               ('g', 'opt_state'): 'g_opt_state', ('d', 'params'): 'd_params',
               ('d', 'state'): 'd_state', ('d', 'opt_state'): 'd_opt_state'}


def path_names(names: list) -> list:
  """A leaf's key-path names with a player's field joined to the player as in the flat
  layout (['g', 'params', ...] -> ['g_params', ...]): how paths are shown and matched
  (sharding rules, checkpoint messages)."""
  if len(names) >= 2 and tuple(names[:2]) in FLAT_FIELDS:
    return [FLAT_FIELDS[tuple(names[:2])]] + list(names[2:])
  return list(names)


def to_flat_layout(state: TrainState) -> dict:
  """`state` in the layout of checkpoints written before PlayerState (a dict of step,
  g_params, g_state, d_params, d_state, g_opt_state, d_opt_state, g_ema_params)."""
  flat = {name: getattr(getattr(state, player), field)
          for (player, field), name in FLAT_FIELDS.items()}
  return dict(flat, step=state.step, g_ema_params=state.g_ema_params)


def from_flat_layout(flat: dict) -> TrainState:
  """The TrainState of a dict in the flat layout (`to_flat_layout`'s inverse)."""
  player = lambda p: PlayerState(*(flat[FLAT_FIELDS[(p, f)]] for f in PlayerState._fields))
  return TrainState(step=flat['step'], g=player('g'), d=player('d'),
                    g_ema_params=flat.get('g_ema_params'))
