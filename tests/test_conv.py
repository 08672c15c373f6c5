"""Tests of wgan_jax.ops.conv: every algorithm computes XLA's convolution, transposed
convolution and upsample-convolution (outputs, first and second derivatives), and the
algorithm is chosen once from model.conv_impl or $WGAN_JAX_CONV_IMPL."""
import functools
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import configs_loader
from wgan_jax import checkpoint, config_lib
from wgan_jax.errors import ConfigError
from wgan_jax.ops import conv


def normal(shape, seed=0, loc=0.0, scale=1.0):
  """Test data from numpy (no XLA compilation per shape, unlike jax.random)."""
  rng = np.random.default_rng(seed)
  return jnp.asarray(loc + scale * rng.standard_normal(shape), jnp.float32)


# ----------------------------------------------------------------------------- up-conv
def reference_upconv(x, w):
  """ConvTranspose2d(4, stride 2, padding 1) as a dilated convolution with the flipped kernel."""
  return jax.lax.conv_general_dilated(
      x, w[::-1, ::-1], window_strides=(1, 1), padding=((2, 2), (2, 2)), lhs_dilation=(2, 2),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def numpy_upconv(x, w):
  """The definition: y[2i - 1 + ky, 2j - 1 + kx] += x[i, j] @ w[ky, kx], cropped."""
  b, h, wd, _ = x.shape
  y = np.zeros((b, 2 * h + 2, 2 * wd + 2, w.shape[-1]), np.float64)
  for i in range(h):
    for j in range(wd):
      for ky in range(4):
        for kx in range(4):
          y[:, 2 * i + ky, 2 * j + kx] += x[:, i, j] @ w[ky, kx]
  return y[:, 1:-1, 1:-1]


@pytest.mark.parametrize('impl', conv.CONV_IMPLS[1:])
def test_upconv_matches_transposed_conv_outputs_and_gradients(impl):
  x = normal((2, 5, 6, 3), seed=1)
  w = normal((4, 4, 3, 4), seed=2)
  cot = normal((2, 10, 12, 4), seed=3)
  ours = functools.partial(conv.upconv2x, impl=impl)

  y = ours(x, w)
  chex.assert_shape(y, (2, 10, 12, 4))
  np.testing.assert_allclose(y, reference_upconv(x, w), atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(y, numpy_upconv(np.asarray(x, np.float64),
                                             np.asarray(w, np.float64)), atol=1e-4, rtol=1e-5)

  def loss(fn):
    return lambda x_, w_: jnp.sum(fn(x_, w_) * cot)

  gx, gw = jax.grad(loss(ours), argnums=(0, 1))(x, w)
  rx, rw = jax.grad(loss(reference_upconv), argnums=(0, 1))(x, w)
  np.testing.assert_allclose(gx, rx, atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(gw, rw, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- conv2d
def _value_and_grads(fn, x, w):
  """fn(x, w), and the gradients of <fn(x, w), cot> with respect to x and w."""
  y = fn(x, w)
  cot = normal(y.shape, seed=3)
  return y, jax.grad(lambda a, b: jnp.sum(fn(a, b) * cot), argnums=(0, 1))(x, w)


@pytest.mark.parametrize('kernel, stride, padding, c_in, c_out, winograd', [
    (3, 1, 'SAME', 5, 7, None), (4, 2, ((1, 1), (1, 1)), 5, 7, None), (1, 1, 'VALID', 5, 7, None),
    (3, 2, 'SAME', 5, 7, None), (3, 1, 0, 5, 7, None),
    (3, 1, 'SAME', 8, 3, None),                    # kn2row: fewer output than input channels
    (3, 1, 'SAME', 16, 24, 'F(2x2, 3x3)'),         # both gradients by the custom VJP
    (3, 1, ((2, 0), (0, 2)), 24, 16, 'F(2x2, 3x3)'),  # one-sided padding
    (3, 1, 'VALID', 16, 16, 'F(2x2, 3x3)'),
    (2, 1, ((1, 0), (0, 1)), 16, 16, 'F(2x2, 2x2)'),
    (4, 2, ((1, 1), (1, 1)), 16, 24, 'space-to-depth F(2x2, 2x2)')])
def test_matmul_convs_match_xla_convolution(kernel, stride, padding, c_in, c_out, winograd):
  """The CPU convolutions (im2col / kn2row / Winograd) compute XLA's convolution: outputs and
  the gradients with respect to input and kernel agree to float32 rounding."""
  impl = 'winograd' if winograd else 'im2col'  # (where no Winograd applies the two are one)
  x = normal((2, 8, 12, c_in), seed=1)
  w = normal((kernel, kernel, c_in, c_out), seed=2, scale=0.3)
  pads = conv._resolve_padding(padding, x.shape[1:3], w.shape[:2], stride)
  assert conv._winograd_applies(x, w, stride, pads) == (winograd in ('F(2x2, 3x3)',
                                                                     'F(2x2, 2x2)'))
  assert conv._is_down4x4(x, w, stride, pads) == (winograd == 'space-to-depth F(2x2, 2x2)')
  run = lambda impl_: _value_and_grads(
      lambda x_, w_: conv.conv2d(x_, w_, stride=stride, padding=padding, impl=impl_), x, w)
  chex.assert_trees_all_close(run(impl), run('xla'), rtol=1e-5, atol=3e-5)


@pytest.mark.parametrize('impl, kernel, stride', [
    ('winograd', 3, 1), ('winograd', 4, 2), ('im2col', 4, 2), ('im2col', 3, 1)])
def test_second_order_gradients_match_xla(impl, kernel, stride):
  """A gradient penalty differentiates the input gradient again: through the custom VJPs
  (Winograd, space-to-depth Winograd, im2col with its phase up-conv input gradient) this
  gives XLA's values too."""
  x = normal((2, 8, 8, 16), seed=1)
  w = normal((kernel, kernel, 16, 16), seed=2, scale=0.3)

  def penalty(impl_):
    def fn(w_):
      conv_ = lambda x_: conv.conv2d(x_, w_, stride=stride, padding=1, impl=impl_)
      gx = jax.grad(lambda x_: jnp.sum(jnp.tanh(conv_(x_))))(x)
      return jnp.sum(gx ** 2)
    return jax.value_and_grad(fn)(w)

  ours, ref = penalty(impl), penalty('xla')
  scale = jax.tree.map(lambda r: float(jnp.max(jnp.abs(r))), ref)  # relative to each leaf's size
  chex.assert_trees_all_close(jax.tree.map(jnp.divide, ours, scale),
                              jax.tree.map(jnp.divide, ref, scale), atol=1e-5)


@pytest.mark.parametrize('impl', ['im2col', 'winograd'])
@pytest.mark.parametrize('c_in, c_out', [(6, 4), (24, 16)])
def test_upsample_conv_is_a_transposed_convolution(impl, c_in, c_out):
  """conv3x3(upsample_nearest2x(x)) computed as ConvTranspose(4, 2, 1) with the kernel
  `_upsample_conv_kernel` (2.25x fewer multiplications), by 2x2 phase convolutions (Winograd
  ones for 16+ channels): outputs and gradients agree."""
  x = normal((2, 4, 6, c_in), seed=1)
  w = normal((3, 3, c_in, c_out), seed=2, scale=0.3)
  phase_x, phase_w = jnp.zeros((2, 5, 7, c_in)), jnp.zeros((2, 2, c_in, c_out))
  assert conv._winograd_applies(phase_x, phase_w, 1, ((0, 0), (0, 0))) == (c_in >= 16)
  literal = lambda x_, w_: conv.conv2d(conv.upsample_nearest2x(x_), w_, impl='xla')
  ours = functools.partial(conv.upsample_conv2x, impl=impl)
  chex.assert_trees_all_close(_value_and_grads(ours, x, w), _value_and_grads(literal, x, w),
                              rtol=1e-5, atol=1e-5)
  chex.assert_shape(ours(x, w), (2, 8, 12, c_out))


# ----------------------------------------------------------------------------- the choice
def test_conv_impl_choice_and_errors(monkeypatch):
  """The variable, when set, wins over model.conv_impl; 'auto' depends on the backend; an
  unknown name is one line, whichever says it; the functions take only resolved names."""
  monkeypatch.setenv(conv.CONV_IMPL_ENV, 'auto')
  assert conv.resolve_impl('im2col') == ('winograd' if jax.default_backend() == 'cpu' else 'xla')
  monkeypatch.setenv(conv.CONV_IMPL_ENV, 'im2col')
  assert conv.resolve_impl('xla') == 'im2col'
  monkeypatch.setenv(conv.CONV_IMPL_ENV, 'cudnn')
  with pytest.raises(ConfigError,
                     match='WGAN_JAX_CONV_IMPL=.cudnn.*valid: auto, xla, im2col, winograd'):
    conv.resolve_impl('auto')
  monkeypatch.delenv(conv.CONV_IMPL_ENV)
  assert conv.resolve_impl('xla') == 'xla'
  with pytest.raises(ConfigError, match='model.conv_impl=.cudnn.*valid: auto, xla'):
    conv.resolve_impl('cudnn')
  with pytest.raises(ValueError, match="impl must be one of xla, im2col, winograd.*'auto'"):
    conv.conv2d(normal((1, 4, 4, 2)), normal((3, 3, 2, 2)), impl='auto')


def test_config_lists_the_conv_impls():
  assert config_lib.CONV_IMPLS == conv.CONV_IMPLS
  assert config_lib.base_config().model.conv_impl == 'auto'


def test_bad_conv_impl_is_one_line_and_exit_2(tmp_path):
  config = configs_loader.load('wgan_gp', 'gaussians8,smoke', **{'model.conv_impl': 'cudnn'})
  with pytest.raises(ConfigError, match="unknown model.conv_impl 'cudnn'; valid: auto, xla"):
    config_lib.validate(config)
  workdir = tmp_path / 'run'
  proc = subprocess.run(
      [sys.executable, '-m', 'wgan_jax.main', f'--workdir={workdir}',
       '--config=configs/wgan_gp.py:gaussians8,smoke', '--config.model.conv_impl=cudnn'],
      cwd=configs_loader.ROOT, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      "error: unknown model.conv_impl 'cudnn'; valid: auto, xla, im2col, winograd"]
  assert not workdir.exists()


def test_a_workdir_may_switch_or_lack_conv_impl():
  """model.conv_impl changes float rounding, not the model: a config saved without it (or
  with another algorithm) resumes."""
  current = config_lib.base_config().to_dict()
  saved = config_lib.base_config().to_dict()
  del saved['model']['conv_impl']
  assert checkpoint.config_differences(saved, current) == []
  saved['model']['conv_impl'] = 'xla'
  assert checkpoint.config_differences(saved, current) == []
  saved['model']['d_ch'] = 64
  assert checkpoint.config_differences(saved, current) == ['model.d_ch']
