"""The toy MLPs of gan_toy.py (Gulrajani et al. 2017): n_layers x (Dense hidden, activation).

Generator: z [B, z_dim] -> trunk -> Dense(prod(data_shape)) -> reshape [B, *data_shape]
(no output activation). Critic: x [B, *data_shape] -> flatten -> trunk -> Dense(1) -> [B].
Initialisation as in gan_toy.py: hidden layers 'he' uniform (std sqrt(2 / fan_in)), output
layers Glorot uniform, biases zero.
Options: g_batch_norm (BatchNorm after each hidden Dense of G), g_spectral_norm (every Dense
of G), d_norm 'spectral' (every Dense of D) or 'layer' (LayerNorm after each hidden Dense of D).
"""
import math
from typing import Callable, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp

from wgan_jax.models import layers


def generator_fn(*, data_shape: Sequence[int], hidden: int, n_layers: int,
                 activation: str, g_batch_norm: bool, g_spectral_norm: bool,
                 bn_axis_name: Optional[str] = None) -> Callable:
  """The generator's haiku function g(z [B, z_dim], is_training) -> x [B, *data_shape]."""
  act = layers.ACTIVATIONS[activation]
  out_size = math.prod(data_shape)

  def g(z: jax.Array, is_training: bool) -> jax.Array:
    h = z
    for i in range(n_layers):
      h = layers.Dense(hidden, spectral_norm=g_spectral_norm, w_init=layers.HE_UNIFORM,
                       name=f'dense_{i}')(h, update_stats=is_training)
      if g_batch_norm:
        h = layers.batch_norm(bn_axis_name, name=f'bn_{i}')(h, is_training=is_training)
      h = act(h)
    x = layers.Dense(out_size, spectral_norm=g_spectral_norm, w_init=layers.GLOROT_UNIFORM,
                     name='dense_out')(h, update_stats=is_training)
    return x.reshape((z.shape[0],) + tuple(data_shape))

  return g


def critic_fn(*, hidden: int, n_layers: int, activation: str, d_norm: str) -> Callable:
  """The critic's haiku function d(x [B, ...], update_stats) -> scores [B]."""
  act = layers.ACTIVATIONS[activation]
  sn = d_norm == 'spectral'

  def d(x: jax.Array, update_stats: bool) -> jax.Array:
    h = x.reshape(x.shape[0], -1)
    for i in range(n_layers):
      h = layers.Dense(hidden, spectral_norm=sn, w_init=layers.HE_UNIFORM,
                       name=f'dense_{i}')(h, update_stats=update_stats)
      if d_norm == 'layer':
        h = layers.LayerNorm(name=f'ln_{i}')(h)
      h = act(h)
    scores = layers.Dense(1, spectral_norm=sn, w_init=layers.GLOROT_UNIFORM,
                          name='dense_out')(h, update_stats=update_stats)
    return jnp.squeeze(scores, axis=-1).astype(jnp.float32)

  return d


def make_fns(*, data_shape: Sequence[int], hidden: int, n_layers: int, activation: str,
             g_batch_norm: bool, g_spectral_norm: bool, d_norm: str,
             bn_axis_name: Optional[str] = None) -> Tuple[Callable, Callable]:
  """(generator_fn, critic_fn) of the toy MLP pair, ready for hk.transform_with_state."""
  g = generator_fn(data_shape=data_shape, hidden=hidden, n_layers=n_layers,
                   activation=activation, g_batch_norm=g_batch_norm,
                   g_spectral_norm=g_spectral_norm, bn_axis_name=bn_axis_name)
  d = critic_fn(hidden=hidden, n_layers=n_layers, activation=activation, d_norm=d_norm)
  return g, d
