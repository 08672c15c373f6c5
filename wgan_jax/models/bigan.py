"""BiGAN / ALI networks: an encoder E: x -> z and a joint critic D(x, z) (haiku functions).

The generator G: z -> x is the run's model (config.model, wgan_jax.models.build_models); the
bigan family (wgan_jax.families.bigan) adds the two networks built here. Module names are
scoped ('encoder/...', 'joint_critic/...') so that E's haiku dicts merge with G's and the
critic's stand alone.

  e.apply(params, state, None, x, is_training=bool) -> (h [B, z_out] float32, state)
      z_out = z_dim (deterministic encoder: h is E(x)) or 2 * z_dim (Gaussian encoder: h is
      [mean, log_std], the family draws z = mean + exp(log_std) * eps)
  d.apply(params, state, None, (x, z), update_stats=bool) -> (scores [B] float32, state)

Network sets (config.bigan.nets):
  mlp          toy data: E = model.mlp_layers x (Dense mlp_hidden, activation) -> Dense(z_out)
               (batch norm after each hidden layer when model.g_batch_norm); D = concat(flatten
               x, z) -> model.mlp_layers x (Dense mlp_hidden, [LayerNorm], activation) ->
               Dense(1). Initialisation as the toy MLPs (wgan_jax.models.mlp).
  bigan_mnist  the permutation-invariant MNIST nets of the BiGAN code (Donahue et al. 2017;
               jeffdonahue/bigan net.py, arch 'mnist_mlp' with size 64: 1024 units;
               train_mnist.sh): E = flatten -> Dense 1024 -> LReLU -> Dense 1024 -> BN -> LReLU
               -> Dense(z_out); D: h1 = LReLU(Dense 1024 (x)), h2 = LReLU(Dense 1024 (h1) +
               Dense 1024 (z)) (the code adds a learnt projection of z to the second layer,
               `apply_cond`), scores = Dense 1 (h2). Width = model.mlp_hidden (1024 in
               configs/bigan.py:mnist).
  ali_cifar10  ALI's CIFAR-10 encoder and discriminator (Dumoulin et al. 2017, the appendix
               table of the CIFAR10 model; IshmaelBelghazi/ALI experiments/ali_cifar10.py) for
               32x32 images, widths in units of ch = model.d_ch (32 in the paper; the table's
               feature maps are the convolutions' outputs, before maxout):
               E: conv 5x5/1 ch, 4x4/2 2ch, 4x4/1 4ch, 4x4/2 8ch, 4x4/1 16ch, 1x1/1 16ch
                  (VALID padding, each + BN + LReLU(0.1), no bias), 1x1 conv -> z_out (bias);
               D(x): conv 5x5/1 ch, 4x4/2 2ch, 4x4/1 4ch, 4x4/2 8ch, 4x4/1 16ch, each a
                  maxout of 2 pieces (so ch/2 ... 8ch channels out), D(z): two 1x1 layers of
                  16ch with maxout 2, D(x, z): concat -> two layers of 32ch with maxout 2 ->
                  1 unit.
Simplifications (said here once): ALI's critic applies dropout (0.2 on the inputs of D(x) and
D(z), 0.5 before later layers) and BiGAN's applies batch norm in its second layer; neither is
reproduced here (the train step calls the critic without a random key, and the critic keeps
the penalties' batch-independent passes: WGAN-GP has no batch norm in the critic). The
initialisations are this package's (Glorot / He uniform) rather than the papers' N(0, 0.02)
(BiGAN) / N(0, 0.01) (ALI). BiGAN's prior is U[-1, 1]^50 and ALI's encoder / decoder end
in a sigmoid on [0, 1] images; here the prior is N(0, I) (wgan_jax.families.Draws) and
images are in [-1, 1] with the run's G (configs/bigan.py says which).
model.d_norm 'spectral' spectrally normalises every weight layer of D (its u / sigma live in
D's state and advance only when update_stats); 'layer' is supported by the mlp nets.
"""
from typing import Callable, Optional

import haiku as hk
import jax
import jax.numpy as jnp

from wgan_jax.models import layers

NETS = ('mlp', 'bigan_mnist', 'ali_cifar10')
BIGAN_LEAK = 0.2  # dcgan_code / BiGAN's LReLU slope
ALI_LEAK = 0.1    # ali_cifar10.py LEAK
MAXOUT_PIECES = 2  # ali_cifar10.py NUM_PIECES


def maxout(h: jax.Array, pieces: int = MAXOUT_PIECES) -> jax.Array:
  """Maxout over groups of `pieces` consecutive channels: [..., C] -> [..., C / pieces]."""
  return jnp.max(h.reshape(h.shape[:-1] + (h.shape[-1] // pieces, pieces)), axis=-1)


def _flat(x: jax.Array) -> jax.Array:
  return x.reshape(x.shape[0], -1).astype(jnp.float32)


# ----------------------------------------------------------------------------- encoders
def mlp_encoder_fn(*, z_out: int, hidden: int, n_layers: int, activation: str,
                   batch_norm: bool, bn_axis_name: Optional[str] = None) -> Callable:
  """The toy encoder e(x [B, ...], is_training) -> [B, z_out]."""
  act = layers.ACTIVATIONS[activation]

  def e(x, *, is_training: bool):
    with hk.experimental.name_scope('encoder'):
      h = _flat(x)
      for i in range(n_layers):
        h = layers.Dense(hidden, w_init=layers.HE_UNIFORM, name=f'dense_{i}')(h)
        if batch_norm:
          h = layers.batch_norm(bn_axis_name, name=f'bn_{i}')(h, is_training=is_training)
        h = act(h)
      return layers.Dense(z_out, w_init=layers.GLOROT_UNIFORM, name='dense_out')(h)

  return e


def bigan_mnist_encoder_fn(*, z_out: int, hidden: int,
                           bn_axis_name: Optional[str] = None) -> Callable:
  """BiGAN's permutation-invariant MNIST encoder (module docstring)."""
  def e(x, *, is_training: bool):
    with hk.experimental.name_scope('encoder'):
      h = jax.nn.leaky_relu(layers.Dense(hidden, name='dense_0')(_flat(x)), BIGAN_LEAK)
      h = layers.Dense(hidden, with_bias=False, name='dense_1')(h)
      h = layers.batch_norm(bn_axis_name, name='bn_1')(h, is_training=is_training)
      h = jax.nn.leaky_relu(h, BIGAN_LEAK)
      return layers.Dense(z_out, name='dense_out')(h)

  return e


# (kernel, stride, width multiple of ch) of ALI's CIFAR-10 encoder and D(x) (VALID padding).
ALI_CONVS = ((5, 1, 1), (4, 2, 2), (4, 1, 4), (4, 2, 8), (4, 1, 16))


def ali_encoder_fn(*, z_out: int, ch: int, conv_impl: str,
                   bn_axis_name: Optional[str] = None) -> Callable:
  """ALI's CIFAR-10 encoder (module docstring) for [B, 32, 32, C] images."""
  def e(x, *, is_training: bool):
    with hk.experimental.name_scope('encoder'):
      h = x.astype(jnp.float32)
      for i, (k, s, m) in enumerate(ALI_CONVS + ((1, 1, 16),)):
        h = layers.Conv2D(ch * m, k, stride=s, padding='VALID', conv_impl=conv_impl,
                          with_bias=False, name=f'conv_{i}')(h)
        h = layers.batch_norm(bn_axis_name, name=f'bn_{i}')(h, is_training=is_training)
        h = jax.nn.leaky_relu(h, ALI_LEAK)
      h = layers.Dense(z_out, name='dense_out')(_flat(h))
      return h

  return e


# ----------------------------------------------------------------------------- joint critics
def mlp_critic_fn(*, hidden: int, n_layers: int, activation: str, d_norm: str,
                  d_out_bias: bool = True) -> Callable:
  """The toy joint critic d((x, z), update_stats) -> scores [B]: an MLP on concat(x, z)."""
  act = layers.ACTIVATIONS[activation]
  sn = d_norm == 'spectral'

  def d(pair, *, update_stats: bool):
    x, z = pair
    with hk.experimental.name_scope('joint_critic'):
      h = jnp.concatenate([_flat(x), _flat(z)], axis=-1)
      for i in range(n_layers):
        h = layers.Dense(hidden, spectral_norm=sn, w_init=layers.HE_UNIFORM,
                         name=f'dense_{i}')(h, update_stats=update_stats)
        if d_norm == 'layer':
          h = layers.LayerNorm(name=f'ln_{i}')(h)
        h = act(h)
      out = layers.Dense(1, spectral_norm=sn, with_bias=d_out_bias,
                         w_init=layers.GLOROT_UNIFORM, name='dense_out')(
                             h, update_stats=update_stats)
      return out[:, 0].astype(jnp.float32)

  return d


def bigan_mnist_critic_fn(*, hidden: int, d_norm: str, d_out_bias: bool = True) -> Callable:
  """BiGAN's permutation-invariant MNIST joint critic (module docstring)."""
  sn = d_norm == 'spectral'

  def d(pair, *, update_stats: bool):
    x, z = pair
    dense = lambda n, name, **kw: layers.Dense(n, spectral_norm=sn, name=name, **kw)
    with hk.experimental.name_scope('joint_critic'):
      h = jax.nn.leaky_relu(dense(hidden, 'dense_x0')(_flat(x), update_stats=update_stats),
                            BIGAN_LEAK)
      h = dense(hidden, 'dense_x1')(h, update_stats=update_stats)
      h = h + dense(hidden, 'dense_z1', with_bias=False)(_flat(z), update_stats=update_stats)
      h = jax.nn.leaky_relu(h, BIGAN_LEAK)
      out = dense(1, 'dense_out', with_bias=d_out_bias)(h, update_stats=update_stats)
      return out[:, 0].astype(jnp.float32)

  return d


def ali_critic_fn(*, ch: int, d_norm: str, conv_impl: str, d_out_bias: bool = True) -> Callable:
  """ALI's CIFAR-10 joint critic D(x), D(z), D(x, z) with maxout (module docstring)."""
  sn = d_norm == 'spectral'

  def d(pair, *, update_stats: bool):
    x, z = pair
    with hk.experimental.name_scope('joint_critic'):
      h = x.astype(jnp.float32)
      for i, (k, s, m) in enumerate(ALI_CONVS):  # D(x); bias on the first layer only
        h = layers.Conv2D(ch * m, k, stride=s, padding='VALID', conv_impl=conv_impl,
                          spectral_norm=sn, with_bias=i == 0, name=f'x_conv_{i}')(
                              h, update_stats=update_stats)
        h = maxout(h)
      hz = _flat(z)
      for i in range(2):  # D(z): two 1x1 maxout layers of 16 ch
        hz = maxout(layers.Dense(ch * 16, spectral_norm=sn, with_bias=False,
                                 name=f'z_dense_{i}')(hz, update_stats=update_stats))
      h = jnp.concatenate([_flat(h), hz], axis=-1)
      for i in range(2):  # D(x, z): two maxout layers of 32 ch, then one unit
        h = maxout(layers.Dense(ch * 32, spectral_norm=sn, name=f'xz_dense_{i}')(
            h, update_stats=update_stats))
      out = layers.Dense(1, spectral_norm=sn, with_bias=d_out_bias, name='xz_dense_out')(
          h, update_stats=update_stats)
      return out[:, 0].astype(jnp.float32)

  return d


def make_fns(*, nets: str, z_dim: int, gaussian: bool, hidden: int, n_layers: int,
             activation: str, g_batch_norm: bool, d_norm: str, d_out_bias: bool, ch: int,
             conv_impl: str, bn_axis_name: Optional[str] = None) -> tuple:
  """(encoder_fn, joint_critic_fn) of the network set `nets` (NETS; checked by the caller).

  Args:
    nets: 'mlp' | 'bigan_mnist' | 'ali_cifar10'.
    z_dim: the latent size; the encoder outputs 2 * z_dim (mean, log_std) when gaussian.
    hidden, n_layers, activation, g_batch_norm: the mlp nets' (bigan_mnist: hidden only).
    d_norm: 'none' | 'spectral' | 'layer' (mlp only).
    d_out_bias: a bias in the critic's output layer.
    ch: ALI's base width (32 in the paper).
    conv_impl: the convolutions' algorithm (resolved, wgan_jax.ops.conv).
    bn_axis_name: the encoder's cross-device batch-norm axis (pmap), or None.
  """
  z_out = 2 * z_dim if gaussian else z_dim
  if nets == 'mlp':
    return (mlp_encoder_fn(z_out=z_out, hidden=hidden, n_layers=n_layers,
                           activation=activation, batch_norm=g_batch_norm,
                           bn_axis_name=bn_axis_name),
            mlp_critic_fn(hidden=hidden, n_layers=n_layers, activation=activation,
                          d_norm=d_norm, d_out_bias=d_out_bias))
  if nets == 'bigan_mnist':
    return (bigan_mnist_encoder_fn(z_out=z_out, hidden=hidden, bn_axis_name=bn_axis_name),
            bigan_mnist_critic_fn(hidden=hidden, d_norm=d_norm, d_out_bias=d_out_bias))
  return (ali_encoder_fn(z_out=z_out, ch=ch, conv_impl=conv_impl, bn_axis_name=bn_axis_name),
          ali_critic_fn(ch=ch, d_norm=d_norm, conv_impl=conv_impl, d_out_bias=d_out_bias))


def transform(e_fn: Callable, d_fn: Callable) -> tuple:
  """(encoder, joint critic) as haiku TransformedWithState."""
  return hk.transform_with_state(e_fn), hk.transform_with_state(d_fn)
