"""Standing statistics for the generator's batch norm (Brock et al. 2019;
BigGAN-PyTorch utils.accumulate_standing_stats).

Instead of the moving averages kept during training, sampling uses batch-norm statistics
averaged over N forward passes in training mode on fresh noise and classes (BigGAN's
sample.py: --num_standing_accumulations 16). Needs a generator that takes `bn_momentum`
(model biggan, models/biggan.py): pass i runs with momentum 1 / (i + 1), so after N passes
the stored `mean` and `var` are the plain means of the N passes' batch statistics, as
BigGAN's myBN accumulates (sum, then divide by the counter); the starting statistics do
not matter (pass 0 overwrites them). Only the `mean` / `var` state entries change: the
spectral-norm vectors keep their values (BigGAN-PyTorch's training-mode passes also
advance them).

Shape glossary: n noise rows per pass [n, Z]; labels int32 [n].
"""
from typing import Any, Callable

import jax
import jax.numpy as jnp

from wgan_jax import step as step_lib

# The model-state entries that standing statistics replace (models/biggan.py BatchNorm).
STAT_NAMES = ('mean', 'var')


def keep_stats(old_state: Any, new_state: Any) -> Any:
  """old_state with its STAT_NAMES entries taken from new_state (haiku {module: {name: x}})."""
  return {module: {name: (new_state[module][name] if name in STAT_NAMES else value)
                   for name, value in entries.items()}
          for module, entries in old_state.items()}


def accumulate_standing_stats(g_apply: Callable, params: Any, g_state: Any, *, key,
                              num_accumulations: int, batch_size: int, z_dim: int,
                              num_classes: int = 0) -> Any:
  """G's model state with batch-norm statistics averaged over `num_accumulations` passes.

  Pure (jit it). Pass i draws z ~ N(0, I) [batch_size, z_dim] and, when num_classes > 0,
  uniform labels from fold_in(key, i), and runs g_apply(params, state, None, z,
  is_training=True, bn_momentum=1 / (i + 1)).

  Args:
    g_apply: the generator's haiku apply (ModelPair.g.apply) taking bn_momentum.
    params, g_state: the weights to sample with (the EMA weights where kept) and G's state.
    key: PRNG key of the passes.
    num_accumulations: N >= 1 passes.
    batch_size, z_dim, num_classes: the passes' batch, noise size and classes.
  Returns:
    g_state with every `mean` / `var` replaced by the standing statistics.
  """

  def one_pass(i, state):
    k = jax.random.fold_in(key, i)
    z = step_lib.sample_z(k, batch_size, z_dim)
    cond = ({'labels': step_lib.sample_labels(jax.random.fold_in(k, 1), batch_size,
                                              num_classes)} if num_classes else {})
    momentum = 1.0 / (i + 1).astype(jnp.float32)
    _, new_state = g_apply(params, state, None, z, is_training=True, bn_momentum=momentum,
                           **cond)
    return keep_stats(state, new_state)

  return jax.lax.fori_loop(0, num_accumulations, one_pass, g_state)
