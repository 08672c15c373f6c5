"""CycleGAN's networks (Zhu et al. 2017, Appendix 7.2; junyanz/pytorch-CycleGAN-and-pix2pix
models/networks.py): the ResNet generator, the 70x70 PatchGAN critic, toy MLPs for 2-D
pairs, and the critic side that holds both critics.

Images (data_shape (H, W, C), H and W multiples of 4):
  generator  c7s1-ngf, d(2 ngf), d(4 ngf), n_blocks x R(4 ngf), u(2 ngf), u(ngf), c7s1-C, tanh
             (ngf 64: c7s1-64, d128, d256, R256, u128, u64, c7s1-3; n_blocks 9 at 256x256,
             6 at 128x128): c7s1-k a 7x7 stride-1 conv after reflection padding 3, then
             instance norm and ReLU; dk a 3x3 stride-2 conv (zero padding 1), instance norm,
             ReLU; Rk two reflection-padded 3x3 convs with instance norm (ReLU after the
             first) plus the input; uk ConvTranspose2d(3, stride 2, padding 1,
             output_padding 1), instance norm, ReLU. Biases everywhere (the official
             use_bias = norm is InstanceNorm2d), weights N(0, 0.02), biases 0 (init_weights
             'normal', gain 0.02); instance norm without affine parameters.
  critic     C(ndf)-C(2 ndf)-C(4 ndf)-C(8 ndf), then a 1-channel conv (ndf 64, d_layers 3:
             the 70x70 PatchGAN C64-C128-C256-C512): 4x4 convs with zero padding 1,
             stride 2 except the last C and the output conv (stride 1), leaky ReLU 0.2, no
             norm in the first C, instance norm in the others; scores [B, H', W']
             (30 x 30 at 256). Its normalisation follows model.d_norm: 'none' the paper's
             instance norm, 'layer' layer norm instead, 'spectral' spectral normalisation
             of every conv and no instance norm (dividing by a per-example std would undo
             the Lipschitz bound), 'batch' is not supported.
2-D data (data_shape (2,)): each map an MLP x -> x (n_layers x (Dense hidden, ReLU), Dense
2), each critic the toy MLP critic of wgan_jax.models.mlp (scores [B]).

The up-convolution runs as its exact equivalent without a transposed convolution (slow to
differentiate on XLA:CPU): the input with zeros inserted after every row and column
(`zero_insert2x`), zero-padded by 1, then a 3x3 VALID convolution (the kernel is the
transposed conv's flipped, an equivalent parameterisation).

The networks are name-scoped so that one player's haiku dicts merge (families.merge): the
maps 'G' (A -> B) and 'F' (B -> A), the critics 'D_A' (judges domain A) and 'D_B' in one
transform over the pair (x_a, x_b) that returns the scores of both, each flattened per
example and concatenated, [B, P_A + P_B].

Shape glossary:
  B       batch
  H W C   image side and channels (the same for both domains)
  P_A     scores of D_A per example (H'W' for the PatchGAN, 1 for the toy critic)
"""
import math
from typing import Callable, Optional, Sequence

import haiku as hk
import jax
import jax.numpy as jnp

from wgan_jax.errors import ConfigError
from wgan_jax.models import layers, mlp

# Weights N(0, 0.02) (the official init_weights(init_type='normal', init_gain=0.02)).
NORMAL_002 = hk.initializers.RandomNormal(0.02)
PATCH_SLOPE = 0.2  # the PatchGAN's leaky ReLU
PATCH_NORMS = {'none': 'instance', 'layer': 'layer', 'spectral': 'none'}  # model.d_norm ->


def default_blocks(side: int) -> int:
  """The generator's residual blocks by image side: 9 at 256 and above, 6 below (the paper:
  6 blocks for 128x128 training images, 9 for 256x256 and higher)."""
  return 9 if side >= 256 else 6


def reflect_pad(x: jax.Array, p: int) -> jax.Array:
  """nn.ReflectionPad2d(p) of x [B, H, W, C]."""
  return jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode='reflect')


def zero_insert2x(x: jax.Array) -> jax.Array:
  """x [B, H, W, C] -> [B, 2H, 2W, C] with x at the even rows and columns, zeros elsewhere
  (a stride-2 transposed convolution's dilated input, with one trailing zero row / column)."""
  b, h, w, c = x.shape
  out = jnp.zeros((b, h, 2, w, 2, c), x.dtype).at[:, :, 0, :, 0].set(x)
  return out.reshape(b, 2 * h, 2 * w, c)


def _conv(channels: int, kernel: int, *, conv_impl: str, stride: int = 1, padding=0,
          spectral_norm: bool = False, name: Optional[str] = None):
  return layers.Conv2D(channels, kernel, conv_impl=conv_impl, stride=stride,
                       padding=padding, spectral_norm=spectral_norm, w_init=NORMAL_002,
                       name=name)


def resnet_generator_fn(*, channels: int, ngf: int, n_blocks: int, conv_impl: str,
                        name: str) -> Callable:
  """The ResNet generator x [B, H, W, C] -> [B, H, W, channels] in [-1, 1] (module
  docstring), its modules under `name`."""

  def g(x: jax.Array, *, is_training: bool) -> jax.Array:
    del is_training  # instance norm: the same in training and inference
    conv = lambda ch, k, n, **kw: _conv(ch, k, conv_impl=conv_impl, name=n, **kw)
    un = {}
    norm_relu = lambda h: jax.nn.relu(layers.instance_norm(h))
    with hk.name_scope(name):
      h = norm_relu(conv(ngf, 7, 'c7s1_in')(reflect_pad(x, 3), **un))
      h = norm_relu(conv(2 * ngf, 3, 'down_0', stride=2, padding=1)(h, **un))
      h = norm_relu(conv(4 * ngf, 3, 'down_1', stride=2, padding=1)(h, **un))
      for i in range(n_blocks):
        r = norm_relu(conv(4 * ngf, 3, f'res_{i}_0')(reflect_pad(h, 1), **un))
        h = h + layers.instance_norm(conv(4 * ngf, 3, f'res_{i}_1')(reflect_pad(r, 1), **un))
      for i, ch in enumerate((2 * ngf, ngf)):  # ConvTranspose2d(3, 2, 1, output_padding=1)
        h = norm_relu(conv(ch, 3, f'up_{i}', padding=((1, 1), (1, 1)))(zero_insert2x(h), **un))
      h = conv(channels, 7, 'c7s1_out')(reflect_pad(h, 3), **un)
    return jnp.tanh(h.astype(jnp.float32))

  return g


def patchgan_fn(*, ndf: int, n_layers: int, d_norm: str, conv_impl: str) -> Callable:
  """The PatchGAN critic x [B, H, W, C] -> scores [B, H', W'] (module docstring); call it
  inside a name scope."""
  norm = PATCH_NORMS[d_norm]
  sn = d_norm == 'spectral'

  def d(x: jax.Array, *, update_stats: bool) -> jax.Array:
    h = x
    for i in range(n_layers + 1):
      stride = 2 if i < n_layers else 1
      ch = ndf * min(2 ** i, 8)
      h = _conv(ch, 4, conv_impl=conv_impl, stride=stride, padding=1, spectral_norm=sn,
                name=f'conv_{i}')(h, update_stats=update_stats)
      if i > 0 and norm == 'instance':
        h = layers.instance_norm(h)
      elif i > 0 and norm == 'layer':
        h = layers.LayerNorm(name=f'ln_{i}')(h)
      h = jax.nn.leaky_relu(h, PATCH_SLOPE)
    out = _conv(1, 4, conv_impl=conv_impl, padding=1, spectral_norm=sn, name='conv_out')(
        h, update_stats=update_stats)
    return out[..., 0].astype(jnp.float32)

  return d


def mlp_map_fn(*, hidden: int, n_layers: int, name: str) -> Callable:
  """A toy map x [B, 2] -> [B, 2]: n_layers x (Dense hidden, ReLU), Dense 2 (gan_toy.py's
  initialisation), its modules under `name`."""

  def g(x: jax.Array, *, is_training: bool) -> jax.Array:
    del is_training  # no batch norm, no spectral norm
    h = x.reshape(x.shape[0], -1)
    with hk.name_scope(name):
      for i in range(n_layers):
        h = jax.nn.relu(layers.Dense(hidden, w_init=layers.HE_UNIFORM, name=f'dense_{i}')(h))
      out = layers.Dense(math.prod(x.shape[1:]), name='dense_out')(h)
    return out.reshape(x.shape).astype(jnp.float32)

  return g


def pair_critic_fn(critic: Callable) -> Callable:
  """The critic side over pairs: d((x_a, x_b), update_stats) -> [B, P_A + P_B], D_A's scores
  of x_a and D_B's of x_b (two networks of the architecture `critic`, scopes 'D_A' and
  'D_B'), each flattened per example, concatenated."""

  def d(pair, *, update_stats: bool) -> jax.Array:
    x_a, x_b = pair
    with hk.name_scope('D_A'):
      s_a = critic(x_a, update_stats=update_stats)
    with hk.name_scope('D_B'):
      s_b = critic(x_b, update_stats=update_stats)
    b = x_a.shape[0]
    return jnp.concatenate([s_a.reshape(b, -1), s_b.reshape(b, -1)], axis=1)

  return d


def make_fns(*, data_shape: Sequence[int], d_norm: str, ngf: int = 64, ndf: int = 64,
             n_blocks: int = 0, d_layers: Optional[int] = 3, hidden: int = 512,
             n_layers: int = 3,
             conv_impl: str = 'xla') -> tuple:
  """(G, F, D) haiku functions of a domain pair of examples of `data_shape`.

  Args:
    data_shape: (2,) (toy MLPs) or (H, W, C) (ResNet generators, PatchGAN critics).
    d_norm: model.d_norm: none (instance norm) | layer | spectral (see the docstring).
    ngf, ndf: the generators' / critics' base width (64).
    n_blocks: residual blocks (0: default_blocks(H)).
    d_layers: the PatchGAN's stride-2 layers (3: the 70x70 PatchGAN; None: 3, or fewer
      where the images are too small for 3).
    hidden, n_layers: the toy MLPs' width and depth.
    conv_impl: the resolved convolution algorithm (wgan_jax.ops.conv).
  Returns:
    g(x, is_training) (A -> B, scope 'G'), f(x, is_training) (B -> A, scope 'F'),
    d((x_a, x_b), update_stats) -> [B, P_A + P_B].
  Raises:
    ConfigError: an image side that is not a multiple of 4, an unsupported d_norm, or a
      PatchGAN whose scores would be empty.
  """
  shape = tuple(data_shape)
  if d_norm not in PATCH_NORMS:
    raise ConfigError(f'model.d_norm {d_norm!r} is not supported by model cyclegan; use none '
                      f'(instance norm), layer or spectral')
  if len(shape) == 1:
    maps = [mlp_map_fn(hidden=hidden, n_layers=n_layers, name=n) for n in ('G', 'F')]
    critic = mlp.critic_fn(hidden=hidden, n_layers=n_layers, activation='relu',
                           d_norm=d_norm)
    toy_critic = lambda x, *, update_stats: critic(x, update_stats=update_stats)
    return maps[0], maps[1], pair_critic_fn(toy_critic)
  if len(shape) != 3:
    raise ConfigError(f'model cyclegan needs data of shape (2,) or (H, W, C), got {shape}')
  h, w, c = shape
  if h % 4 or w % 4:
    raise ConfigError(f'model cyclegan needs image sides that are multiples of 4, got {h}x{w}')
  fits = lambda k: min(h, w) // 2 ** k - 2 >= 1  # the PatchGAN leaves scores
  if d_layers is None:  # the 70x70 PatchGAN's 3, or as many as the images allow
    d_layers = max([k for k in range(1, 4) if fits(k)] or [1])
  if not fits(d_layers):
    raise ConfigError(f'a PatchGAN of cyclegan.d_layers={d_layers} has no scores on {h}x{w} '
                      f'images; lower cyclegan.d_layers or use larger images')
  blocks = n_blocks or default_blocks(min(h, w))
  maps = [resnet_generator_fn(channels=c, ngf=ngf, n_blocks=blocks, conv_impl=conv_impl,
                              name=n) for n in ('G', 'F')]
  critic = patchgan_fn(ndf=ndf, n_layers=d_layers, d_norm=d_norm, conv_impl=conv_impl)
  return maps[0], maps[1], pair_critic_fn(critic)

