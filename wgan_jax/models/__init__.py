"""Generator / critic pairs as haiku transforms with state, and the MODELS registry.

The only package that imports haiku. Each model module (mlp, dcgan, resnet) provides
`make_fns(...) -> (g_fn, d_fn)` with explicit keyword arguments; this file reads and checks
the model config, transforms the two functions and returns a `ModelPair`:

  g.init(rng, z, is_training=True) -> (params, state)
  g.apply(params, state, None, z, is_training=bool) -> (x [B, *data_shape] float32, state)
  d.init(rng, x, update_stats=True) -> (params, state)
  d.apply(params, state, None, x, update_stats=bool) -> (scores [B] float32, state)

G's state holds batch-norm statistics (updated when is_training) and, with g_spectral_norm,
power-iteration vectors (updated when is_training); D's state holds power-iteration vectors
(updated only when update_stats). Non-updating passes return their state unchanged.
"""
import numbers
from typing import Callable, Dict, NamedTuple, Optional, Sequence

import haiku as hk

from wgan_jax import registry
from wgan_jax.errors import ConfigError
from wgan_jax.models import dcgan, layers, mlp, resnet

# Base widths of the papers' models where the config does not give one.
DEFAULT_WIDTHS = {'dcgan': (64, 64), 'resnet': (256, 128)}


class ModelPair(NamedTuple):
  g: hk.TransformedWithState
  d: hk.TransformedWithState
  z_dim: int


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
      d_norm=_choice(model_config, 'd_norm', layers.D_NORMS, 'none'))


def _pair(g_fn: Callable, d_fn: Callable, z_dim: int) -> ModelPair:
  return ModelPair(g=hk.transform_with_state(g_fn), d=hk.transform_with_state(d_fn),
                   z_dim=z_dim)


# ----------------------------------------------------------------------------- builders
def build_mlp(model_config, *, data_shape: tuple,
              bn_axis_name: Optional[str] = None) -> ModelPair:
  """gan_toy.py's MLP pair for data of any shape (flattened; (2,) for the toy problems)."""
  g_fn, d_fn = mlp.make_fns(
      data_shape=_data_shape(data_shape),
      hidden=_positive_int(model_config, 'mlp_hidden', 512),
      n_layers=_positive_int(model_config, 'mlp_layers', 3),
      activation=_choice(model_config, 'activation', tuple(layers.ACTIVATIONS), 'relu'),
      bn_axis_name=bn_axis_name, **_common(model_config))
  return _pair(g_fn, d_fn, _positive_int(model_config, 'z_dim', 2))


def _build_cnn(module, name: str, model_config, data_shape, bn_axis_name) -> ModelPair:
  activation = _choice(model_config, 'activation', tuple(layers.ACTIVATIONS), 'relu')
  if activation != 'relu':
    raise ConfigError(f'model.activation {activation!r} is only supported by model mlp; '
                      f'model {name} uses its paper\'s activations (set activation=relu)')
  g_ch, d_ch = DEFAULT_WIDTHS[name]
  g_fn, d_fn = module.make_fns(
      data_shape=_data_shape(data_shape),
      g_ch=_positive_int(model_config, 'g_ch', g_ch),
      d_ch=_positive_int(model_config, 'd_ch', d_ch),
      bn_axis_name=bn_axis_name, **_common(model_config))
  return _pair(g_fn, d_fn, _positive_int(model_config, 'z_dim', 128))


def build_dcgan(model_config, *, data_shape: tuple,
                bn_axis_name: Optional[str] = None) -> ModelPair:
  """The SNGAN standard CNN pair (Miyato et al. 2018, Table 3) for [S, S, C] images."""
  return _build_cnn(dcgan, 'dcgan', model_config, data_shape, bn_axis_name)


def build_resnet(model_config, *, data_shape: tuple,
                 bn_axis_name: Optional[str] = None) -> ModelPair:
  """The SNGAN / WGAN-GP CIFAR ResNet pair (Miyato et al. 2018, Table 4) for [S, S, C] images."""
  return _build_cnn(resnet, 'resnet', model_config, data_shape, bn_axis_name)


MODELS: Dict[str, Callable[..., ModelPair]] = {
    'mlp': build_mlp,
    'dcgan': build_dcgan,
    'resnet': build_resnet,
}


def build_models(model_config, *, data_shape: tuple,
                 bn_axis_name: Optional[str] = None) -> ModelPair:
  """The generator / critic pair named by model_config.name.

  Args:
    model_config: attributes name, z_dim, g_batch_norm, d_norm ('none' | 'spectral' |
      'layer'), g_spectral_norm, g_ch, d_ch, activation ('relu' | 'tanh', mlp only),
      mlp_hidden, mlp_layers (missing ones take the paper defaults).
    data_shape: the shape of one example, e.g. (2,) or (32, 32, 3).
    bn_axis_name: the mapped axis over which G's batch norm averages its statistics (pmap /
      shard_map), or None for per-device statistics.
  Returns:
    ModelPair(g, d, z_dim).
  Raises:
    ConfigError: an unknown model name or an invalid option.
  """
  builder = registry.lookup(MODELS, _field(model_config, 'name'), 'model.name')
  return builder(model_config, data_shape=data_shape, bn_axis_name=bn_axis_name)


__all__ = ['ModelPair', 'MODELS', 'build_models', 'build_mlp', 'build_dcgan', 'build_resnet']
