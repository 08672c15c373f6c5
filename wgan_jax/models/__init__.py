"""Generator / critic pairs as haiku transforms with state, and the MODELS registry.

Haiku lives here and in wgan_jax.eval.inception (the Inception network of FID / IS):
nothing else imports it. Each model module (mlp, dcgan, resnet, biggan) provides
`make_fns(...) -> (g_fn, d_fn)` with explicit keyword arguments; this file reads and checks
the model config (resolving the convolution algorithm once), transforms the two functions
and returns a `ModelPair`:

  g.init(rng, z, is_training=True) -> (params, state)
  g.apply(params, state, None, z, is_training=bool) -> (x [B, *data_shape] float32, state)
  d.init(rng, x, update_stats=True) -> (params, state)
  d.apply(params, state, None, x, update_stats=bool) -> (scores [B] float32, state)

Class-conditional pairs (build_models(..., num_classes=K > 0, critic_head=...)) take int
labels [B] as the keyword `labels` of both players (unconditional ones take none, and their
parameter trees and outputs are those of a pair built without any conditional code):
  g.apply(params, state, None, z, labels=y, is_training=bool)   conditional batch norm
                                                                 (CNNs) / embedding (MLP)
  d.apply(params, state, None, x, labels=y, update_stats=bool) -> (scores [B], state)
      'projection': scores = linear(phi(x)) + <embed(y), phi(x)>; labels None: linear only
      'acgan':      labels are not used by the scores; with_logits=True returns
                    ((scores [B], logits [B, K]), state); init an acgan critic with
                    with_logits=True so that its auxiliary head exists.

BigGAN's generator (class-conditional only) also takes bn_momentum= (a scalar: its batch
norm's momentum in training passes; wgan_jax.eval.standing).

G's state holds batch-norm statistics (updated when is_training) and, with g_spectral_norm,
power-iteration vectors (updated when is_training); D's state holds power-iteration vectors
and, with d_norm 'batch' (model dcgan only), batch-norm moving averages (both updated only
when update_stats). Non-updating passes return their state unchanged. A critic with batch
norm (ModelPair.d_batch_norm) normalises with batch statistics in every pass and also takes
`batch_groups=n`: x is n consecutive parts, each normalised with its own statistics.
"""
import functools
import numbers
from typing import Callable, Dict, NamedTuple, Optional, Sequence

import haiku as hk

from wgan_jax import registry
from wgan_jax.errors import ConfigError
from wgan_jax.models import autoencoder, biggan, cyclegan, dcgan, layers, mlp, resnet
from wgan_jax.ops import conv

# Base widths of the papers' models where the config does not give one.
DEFAULT_WIDTHS = {'dcgan': (64, 64), 'resnet': (256, 128)}


class ModelPair(NamedTuple):
  g: hk.TransformedWithState
  d: hk.TransformedWithState
  z_dim: int
  num_classes: int = 0          # > 0: class-conditional players (labels=)
  critic_head: str = 'none'     # layers.CRITIC_HEADS: none | projection | acgan
  d_batch_norm: bool = False    # critic with batch norm (d_norm 'batch'): takes batch_groups=
  data_shape: tuple = ()        # the shape of one example (build_models sets it)
  # The families' second network on the generator side (wgan_jax.families): the encoder
  # E: x -> z of bigan / wae_gan / wae_mmd / vae, CycleGAN's F: Y -> X; None for gan.
  e: Optional[hk.TransformedWithState] = None


# ----------------------------------------------------------------------------- config reading
def _field(model_config, key: str, default=None):
  value = getattr(model_config, key, default)
  return default if value is None else value


def _positive_int(model_config, key: str, default=None) -> int:
  value = _field(model_config, key, default)
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
    raise ConfigError(f'model.{key} must be a positive integer, got {value!r}')
  return int(value)


def _flag(model_config, key: str, default: bool) -> bool:
  value = _field(model_config, key, default)
  if not isinstance(value, bool):
    raise ConfigError(f'model.{key} must be true or false, got {value!r}')
  return value


def _choice(model_config, key: str, valid: Sequence[str], default: str) -> str:
  value = _field(model_config, key, default)
  if value not in valid:
    raise ConfigError(f'model.{key} must be one of {", ".join(valid)}, got {value!r}')
  return value


def _data_shape(data_shape) -> tuple:
  message = f'data_shape must be a tuple of positive integers, got {data_shape!r}'
  try:
    shape = tuple(int(n) for n in data_shape)
  except (TypeError, ValueError):
    raise ConfigError(message) from None
  if not shape or min(shape) < 1:
    raise ConfigError(message)
  return shape


def _common(model_config) -> dict:
  """The options every model takes, checked."""
  return dict(
      g_batch_norm=_flag(model_config, 'g_batch_norm', True),
      g_spectral_norm=_flag(model_config, 'g_spectral_norm', False),
      d_norm=_choice(model_config, 'd_norm', layers.D_NORMS, 'none'),
      # Missing keys (configs saved before they existed) mean what those runs trained.
      d_out_bias=_flag(model_config, 'd_out_bias', True),
      compute_dtype=layers.COMPUTE_DTYPES[
          _choice(model_config, 'compute_dtype', tuple(layers.COMPUTE_DTYPES), 'float32')])


def _conv_impl(model_config) -> str:
  """The convolution algorithm, resolved here once per pair: model.conv_impl (missing:
  'auto'), overridden by $WGAN_JAX_CONV_IMPL when that is set (see conv.resolve_impl)."""
  return conv.resolve_impl(_choice(model_config, 'conv_impl', conv.CONV_IMPLS, 'auto'))


def _pair(g_fn: Callable, d_fn: Callable, z_dim: int, num_classes: int = 0,
          head: str = 'none', d_batch_norm: bool = False) -> ModelPair:
  return ModelPair(g=hk.transform_with_state(g_fn), d=hk.transform_with_state(d_fn),
                   z_dim=z_dim, num_classes=num_classes,
                   critic_head=head if num_classes else 'none', d_batch_norm=d_batch_norm)


def _no_critic_batch_norm(options: dict, name: str) -> None:
  if options['d_norm'] == 'batch':
    raise ConfigError(f"model.d_norm 'batch' is only supported by model dcgan (the official "
                      f"WGAN critic), not {name}; use none, spectral or layer")


def _conditioning(num_classes, head) -> dict:
  """Checked conditional keyword arguments of make_fns ({} when unconditional)."""
  if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) \
      or num_classes < 0:
    raise ConfigError(f'num_classes must be a non-negative integer, got {num_classes!r}')
  registry.lookup({h: h for h in layers.CRITIC_HEADS}, head, 'conditional.method')
  if not num_classes:
    return {}
  return dict(num_classes=int(num_classes), head=head)


# ----------------------------------------------------------------------------- builders
def build_mlp(model_config, *, data_shape: tuple, bn_axis_name: Optional[str] = None,
              num_classes: int = 0, critic_head: str = 'none') -> ModelPair:
  """gan_toy.py's MLP pair for data of any shape (flattened; (2,) for the toy problems)."""
  cond = _conditioning(num_classes, critic_head)
  _choice(model_config, 'd_pool', tuple(resnet.POOLS), 'sum')  # checked; MLPs do not pool
  _conv_impl(model_config)  # checked; MLPs do not convolve
  _no_critic_batch_norm(_common(model_config), 'mlp')
  g_fn, d_fn = mlp.make_fns(
      data_shape=_data_shape(data_shape),
      hidden=_positive_int(model_config, 'mlp_hidden', 512),
      n_layers=_positive_int(model_config, 'mlp_layers', 3),
      activation=_choice(model_config, 'activation', tuple(layers.ACTIVATIONS), 'relu'),
      bn_axis_name=bn_axis_name, **_common(model_config), **cond)
  return _pair(g_fn, d_fn, _positive_int(model_config, 'z_dim', 2), num_classes, critic_head)


def _build_cnn(module, name: str, model_config, data_shape, bn_axis_name, num_classes=0,
               critic_head='none') -> ModelPair:
  cond = _conditioning(num_classes, critic_head)
  activation = _choice(model_config, 'activation', tuple(layers.ACTIVATIONS), 'relu')
  if activation != 'relu' and name != 'dcgan':
    raise ConfigError(f'model.activation {activation!r} is only supported by models mlp and '
                      f'dcgan; model {name} uses its paper\'s activations (set activation=relu)')
  g_ch, d_ch = DEFAULT_WIDTHS[name]
  d_pool = _choice(model_config, 'd_pool', tuple(resnet.POOLS), 'sum')
  extra = {'activation': activation} if name == 'dcgan' else {'d_pool': d_pool}
  common = _common(model_config)
  if name != 'dcgan':
    _no_critic_batch_norm(common, name)
  g_fn, d_fn = module.make_fns(
      data_shape=_data_shape(data_shape),
      g_ch=_positive_int(model_config, 'g_ch', g_ch),
      d_ch=_positive_int(model_config, 'd_ch', d_ch),
      conv_impl=_conv_impl(model_config),
      bn_axis_name=bn_axis_name, **common, **extra, **cond)
  return _pair(g_fn, d_fn, _positive_int(model_config, 'z_dim', 128), num_classes,
               critic_head, d_batch_norm=common['d_norm'] == 'batch')


def build_dcgan(model_config, *, data_shape: tuple, bn_axis_name: Optional[str] = None,
                num_classes: int = 0, critic_head: str = 'none') -> ModelPair:
  """The SNGAN standard CNN pair (Miyato et al. 2018, Table 3) for [S, S, C] images."""
  return _build_cnn(dcgan, 'dcgan', model_config, data_shape, bn_axis_name, num_classes,
                    critic_head)


def build_resnet(model_config, *, data_shape: tuple, bn_axis_name: Optional[str] = None,
                 num_classes: int = 0, critic_head: str = 'none') -> ModelPair:
  """The SNGAN / WGAN-GP ResNet pair for [S, S, C] images, by resolution (resnet.SCHEDULES:
  32 CIFAR, 48 STL-10, 64 / 128 / 256 ImageNet)."""
  return _build_cnn(resnet, 'resnet', model_config, data_shape, bn_axis_name, num_classes,
                    critic_head)


def _attention_side(model_config, key: str) -> int:
  value = _field(model_config, key, 64)
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
    raise ConfigError(f'model.{key} must be the side at which to attend (0: none), got '
                      f'{value!r}')
  return int(value)


def build_biggan(model_config, *, data_shape: tuple, bn_axis_name: Optional[str] = None,
                 num_classes: int = 0, critic_head: str = 'none') -> ModelPair:
  """BigGAN (Brock et al. 2019; models/biggan.py) for square [S, S, C] images, S in 32, 64,
  128, 256; class-conditional only. Its own keys: shared_dim (128), g_attn and d_attn (the
  sides of the self-attention blocks, 0: none; 64)."""
  cond = _conditioning(num_classes, critic_head)
  z_dim = _positive_int(model_config, 'z_dim', 120)
  g_fn, d_fn = biggan.make_fns(
      data_shape=_data_shape(data_shape), g_ch=_positive_int(model_config, 'g_ch', 96),
      d_ch=_positive_int(model_config, 'd_ch', 96), z_dim=z_dim,
      shared_dim=_positive_int(model_config, 'shared_dim', 128),
      g_attn=_attention_side(model_config, 'g_attn'),
      d_attn=_attention_side(model_config, 'd_attn'), bn_axis_name=bn_axis_name,
      compute_dtype=_common(model_config)['compute_dtype'], conv_impl=_conv_impl(model_config),
      num_classes=cond.get('num_classes', 0), head=cond.get('head', 'none'))
  return _pair(g_fn, d_fn, z_dim, num_classes, critic_head)


def build_wae_conv(name: str, model_config, *, data_shape: tuple,
                   bn_axis_name: Optional[str] = None, num_classes: int = 0,
                   critic_head: str = 'none') -> ModelPair:
  """The WAE paper's decoder (models/autoencoder.py: 'wae_mnist' latent 8, 'wae_celeba'
  latent 64, base width g_ch 128) as G, with the standard CNN critic (d_ch) as the pair's
  critic; unconditional only."""
  if num_classes:
    raise ConfigError(f'model {name} is unconditional; set conditional.method=none')
  common = _common(model_config)
  _no_critic_batch_norm(common, name)
  g_fn, d_fn = autoencoder.make_conv_fns(
      name, data_shape=layers.check_image_shape(_data_shape(data_shape), name),
      g_ch=_positive_int(model_config, 'g_ch', 128), d_ch=_positive_int(model_config, 'd_ch', 64),
      d_norm=common['d_norm'], d_out_bias=common['d_out_bias'],
      conv_impl=_conv_impl(model_config), bn_axis_name=bn_axis_name)
  z_dim = _positive_int(model_config, 'z_dim', 8 if name == 'wae_mnist' else 64)
  return _pair(g_fn, d_fn, z_dim)
def build_cyclegan(model_config, *, data_shape: tuple, bn_axis_name: Optional[str] = None,
                   num_classes: int = 0, critic_head: str = 'none', n_blocks: int = 0,
                   d_layers: Optional[int] = None) -> ModelPair:
  """CycleGAN's networks (models/cyclegan.py) for a pair of domains of `data_shape`: g the
  map G: A -> B, e the inverse map F: B -> A (x -> x; apply(params, state, None, x,
  is_training=bool)), d the critic side over pairs (D_A, D_B): apply(params, state, None,
  (x_a, x_b), update_stats=bool) -> scores [B, P_A + P_B]. Images: ResNet generators of
  width g_ch with n_blocks residual blocks (0: 9 at 256, 6 below) and PatchGAN critics of
  width d_ch with d_layers stride-2 layers (None: 3, fewer on images too small for 3);
  2-D data: MLPs of mlp_hidden x mlp_layers.
  Unconditional only; no batch norm (instance norm), so bn_axis_name is unused."""
  del bn_axis_name, critic_head
  if num_classes:
    raise ConfigError('model cyclegan is unconditional; set conditional.method=none')
  common = _common(model_config)
  g_fn, f_fn, d_fn = cyclegan.make_fns(
      data_shape=_data_shape(data_shape), d_norm=common['d_norm'],
      ngf=_positive_int(model_config, 'g_ch', 64), ndf=_positive_int(model_config, 'd_ch', 64),
      n_blocks=n_blocks, d_layers=d_layers,
      hidden=_positive_int(model_config, 'mlp_hidden', 512),
      n_layers=_positive_int(model_config, 'mlp_layers', 3),
      conv_impl=_conv_impl(model_config))
  t = hk.transform_with_state
  return ModelPair(g=t(g_fn), d=t(d_fn), e=t(f_fn),
                   z_dim=_positive_int(model_config, 'z_dim', 2))


MODELS: Dict[str, Callable[..., ModelPair]] = {
    'mlp': build_mlp,
    'dcgan': build_dcgan,
    'resnet': build_resnet,
    'biggan': build_biggan,
    'wae_mnist': functools.partial(build_wae_conv, 'wae_mnist'),
    'wae_celeba': functools.partial(build_wae_conv, 'wae_celeba'),
    'cyclegan': build_cyclegan,
}


def build_models(model_config, *, data_shape: tuple, bn_axis_name: Optional[str] = None,
                 num_classes: int = 0, critic_head: str = 'none') -> ModelPair:
  """The generator / critic pair named by model_config.name.

  Args:
    model_config: attributes name, z_dim, g_batch_norm, d_norm ('none' | 'spectral' |
      'layer' | 'batch', dcgan only), g_spectral_norm, compute_dtype ('float32' | 'bfloat16', see
      layers' module docstring), g_ch, d_ch, activation ('relu' | 'tanh'; mlp and dcgan),
      d_pool ('sum' | 'mean': the resnet critic's global pooling), d_out_bias (a bias in
      the critic's output layer), conv_impl ('auto' | 'winograd' | 'im2col' | 'xla': the
      convolutions' algorithm, wgan_jax.ops.conv; $WGAN_JAX_CONV_IMPL, when set, wins),
      mlp_hidden, mlp_layers, shared_dim, g_attn, d_attn (biggan: the shared class
      embedding's size, the sides of the self-attention blocks, 0: none) (missing ones take
      the paper defaults), and for a generator
      of another architecture than the critic g_name (a MODELS name; '' = name) and
      g_mlp_layers (0 = mlp_layers).
    data_shape: the shape of one example, e.g. (2,) or (32, 32, 3).
    bn_axis_name: the mapped axis over which G's batch norm averages its statistics (pmap /
      shard_map), or None for per-device statistics.
    num_classes: K > 0 for class-conditional players (0: unconditional, the default).
    critic_head: with num_classes, how the critic uses the class: 'none' (G conditional
      only), 'projection' or 'acgan' (see the module docstring).
  Returns:
    ModelPair(g, d, z_dim, num_classes, critic_head).
  Raises:
    ConfigError: an unknown model name or an invalid option.
  """
  name = _field(model_config, 'name')
  builder = registry.lookup(MODELS, name, 'model.name')
  cond = dict(num_classes=num_classes, critic_head=critic_head)
  pair = builder(model_config, data_shape=data_shape, bn_axis_name=bn_axis_name, **cond)
  pair = pair._replace(data_shape=_data_shape(data_shape))
  g_name = _field(model_config, 'g_name') or name
  g_mlp_layers = _field(model_config, 'g_mlp_layers', 0)
  if isinstance(g_mlp_layers, bool) or not isinstance(g_mlp_layers, numbers.Integral) \
      or g_mlp_layers < 0:
    raise ConfigError(f'model.g_mlp_layers must be a non-negative integer (0: mlp_layers), '
                      f'got {g_mlp_layers!r}')
  if g_name == name and not g_mlp_layers:
    return pair
  # The generator of another architecture (WGAN-GP paper: an MLP G against a CNN critic)
  # or depth (a deep critic against the toy G): its own pair, of which G is kept.
  g_config = dict(name=g_name, z_dim=pair.z_dim,
                  mlp_layers=g_mlp_layers or _field(model_config, 'mlp_layers', 3),
                  d_norm='none')  # that pair's critic is not used
  g_builder = registry.lookup(MODELS, g_name, 'model.g_name')
  g_pair = g_builder(_Overlay(model_config, g_config), data_shape=data_shape,
                     bn_axis_name=bn_axis_name, **cond)
  return pair._replace(g=g_pair.g)


class _Overlay:
  """model_config with some attributes replaced (model configs are read with getattr)."""

  def __init__(self, base, overrides: dict):
    self._base, self._overrides = base, overrides

  def __getattr__(self, key):
    if key in self._overrides:
      return self._overrides[key]
    return getattr(self._base, key)


__all__ = ['ModelPair', 'MODELS', 'build_models', 'build_mlp', 'build_dcgan', 'build_resnet',
           'build_biggan', 'build_cyclegan']
