"""The toy MLPs of gan_toy.py (Gulrajani et al. 2017): n_layers x (Dense hidden, activation).

Generator: z [B, z_dim] -> trunk -> Dense(prod(data_shape)) -> reshape [B, *data_shape]
(no output activation). Critic: x [B, *data_shape] -> flatten -> trunk -> Dense(1) -> [B].
Initialisation as in gan_toy.py: hidden layers 'he' uniform (std sqrt(2 / fan_in)), output
layers Glorot uniform, biases zero.
Options: g_batch_norm (BatchNorm after each hidden Dense of G), g_spectral_norm (every Dense
of G), d_norm 'spectral' (every Dense of D) or 'layer' (LayerNorm after each hidden Dense of D).
Class conditioning (num_classes > 0): G concatenates a learnt class embedding
[num_classes, CLASS_EMBED_DIM] (N(0, 1) init) to z; the critic's head on its last hidden
features is layers.critic_head ('projection' or 'acgan').
"""
import math
from typing import Callable, Optional, Sequence, Tuple

import haiku as hk
import jax
import jax.numpy as jnp

from wgan_jax.models import layers

CLASS_EMBED_DIM = 16


def generator_fn(*, data_shape: Sequence[int], hidden: int, n_layers: int,
                 activation: str, g_batch_norm: bool, g_spectral_norm: bool,
                 bn_axis_name: Optional[str] = None, num_classes: int = 0,
                 compute_dtype: layers.DType = jnp.float32) -> Callable:
  """The generator's haiku function g(z [B, z_dim], labels [B] | None, is_training)
  -> x float32."""
  act = layers.ACTIVATIONS[activation]
  out_size = math.prod(data_shape)

  def g(z: jax.Array, labels: Optional[jax.Array] = None, *, is_training: bool):
    layers.check_labels(labels, num_classes, 'generator')
    h = z
    if num_classes:
      embed = hk.get_parameter('class_embed', [num_classes, CLASS_EMBED_DIM], jnp.float32,
                               init=hk.initializers.RandomNormal())
      h = jnp.concatenate([z, embed[labels]], axis=-1)
    for i in range(n_layers):
      h = layers.Dense(hidden, spectral_norm=g_spectral_norm, w_init=layers.HE_UNIFORM,
                       compute_dtype=compute_dtype, name=f'dense_{i}')(
                           h, update_stats=is_training)
      if g_batch_norm:
        h = layers.g_batch_norm(h, None, num_classes=0, bn_axis_name=bn_axis_name,
                                name=f'bn_{i}', is_training=is_training)
      h = act(h)
    x = layers.Dense(out_size, spectral_norm=g_spectral_norm, w_init=layers.GLOROT_UNIFORM,
                     compute_dtype=compute_dtype, name='dense_out')(h, update_stats=is_training)
    return x.astype(jnp.float32).reshape((z.shape[0],) + tuple(data_shape))

  return g


def critic_fn(*, hidden: int, n_layers: int, activation: str, d_norm: str,
              d_out_bias: bool = True, num_classes: int = 0, head: str = 'none',
              compute_dtype: layers.DType = jnp.float32) -> Callable:
  """The critic's haiku function d(x [B, ...], labels, update_stats, with_logits) -> scores [B]
  (with_logits, acgan head: (scores, logits [B, num_classes]))."""
  act = layers.ACTIVATIONS[activation]
  sn = d_norm == 'spectral'

  def d(x: jax.Array, labels: Optional[jax.Array] = None, *, update_stats: bool,
        with_logits: bool = False):
    h = x.reshape(x.shape[0], -1)
    for i in range(n_layers):
      h = layers.Dense(hidden, spectral_norm=sn, w_init=layers.HE_UNIFORM,
                       compute_dtype=compute_dtype, name=f'dense_{i}')(
                           h, update_stats=update_stats)
      if d_norm == 'layer':
        h = layers.LayerNorm(name=f'ln_{i}')(h)
      h = act(h)
    return layers.critic_head(h, labels, head=head, num_classes=num_classes,
                              spectral_norm=sn, update_stats=update_stats,
                              with_logits=with_logits, w_init=layers.GLOROT_UNIFORM,
                              compute_dtype=compute_dtype, out_bias=d_out_bias)

  return d


def make_fns(*, data_shape: Sequence[int], hidden: int, n_layers: int, activation: str,
             g_batch_norm: bool, g_spectral_norm: bool, d_norm: str, d_out_bias: bool = True,
             bn_axis_name: Optional[str] = None, num_classes: int = 0,
             head: str = 'none',
             compute_dtype: layers.DType = jnp.float32) -> Tuple[Callable, Callable]:
  """(generator_fn, critic_fn) of the toy MLP pair, ready for hk.transform_with_state."""
  g = generator_fn(data_shape=data_shape, hidden=hidden, n_layers=n_layers,
                   activation=activation, g_batch_norm=g_batch_norm,
                   g_spectral_norm=g_spectral_norm, bn_axis_name=bn_axis_name,
                   num_classes=num_classes, compute_dtype=compute_dtype)
  d = critic_fn(hidden=hidden, n_layers=n_layers, activation=activation, d_norm=d_norm,
                d_out_bias=d_out_bias, num_classes=num_classes, head=head,
                compute_dtype=compute_dtype)
  return g, d
