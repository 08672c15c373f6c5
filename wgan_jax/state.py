"""The train state: everything a run needs to continue, as one pytree."""
from typing import Any, NamedTuple, Optional

import jax

PyTree = Any


class GanState(NamedTuple):
  """Both players' parameters, model state and optimizer state.

  step:         int32 scalar, generator updates done so far (the data position and the
                randomness of step t are functions of t alone, so this is all a resume needs).
  g_params:     generator parameters.
  g_state:      generator model state (batch-norm moving statistics, spectral-norm vectors).
  d_params:     critic parameters.
  d_state:      critic model state: the spectral-norm power-iteration vectors `u` and the
                last `sigma` of every normalised layer, and with d_norm 'batch' the batch-norm
                moving averages (all updated by critic updates only).
  g_opt_state:  generator optimizer state.
  d_opt_state:  critic optimizer state.
  g_ema_params: exponential moving average of g_params, or None when EMA is off.
  """
  step: jax.Array
  g_params: PyTree
  g_state: PyTree
  d_params: PyTree
  d_state: PyTree
  g_opt_state: PyTree
  d_opt_state: PyTree
  g_ema_params: Optional[PyTree]


def sampling_params(state: GanState) -> PyTree:
  """The generator weights to sample from: the EMA weights where configured."""
  return state.g_params if state.g_ema_params is None else state.g_ema_params
