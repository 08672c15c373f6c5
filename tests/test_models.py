"""Tests of wgan_jax.models: shapes, the conv layers, spectral norm, batch norm, registry."""
import functools
import math
import types

import chex
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.test_conv import reference_upconv
from wgan_jax.errors import ConfigError
from wgan_jax.models import MODELS, ModelPair, build_models, layers
from wgan_jax.ops import conv

B = 4
SMALL_IMAGE = (16, 16, 3)
# Layer-init keys. 'rbg' keys: XLA:CPU compiles their random bits several times faster than
# threefry's, and the tests compile a lot (models.g.init uses them all the same).
INIT_KEY = jax.random.key(0, impl='rbg')


def normal(shape, seed=0, loc=0.0, scale=1.0):
  """Test data from numpy (no XLA compilation per shape, unlike jax.random)."""
  rng = np.random.default_rng(seed)
  return jnp.asarray(loc + scale * rng.standard_normal(shape), jnp.float32)


def model_config(**overrides):
  """A small model config (attribute object) with the config files' keys."""
  c = dict(name='mlp', z_dim=2, g_batch_norm=True, d_norm='none', g_spectral_norm=False,
           g_ch=16, d_ch=16, activation='relu', mlp_hidden=32, mlp_layers=3)
  c.update(overrides)
  return types.SimpleNamespace(**c)


def data_shape_of(name):
  return (2,) if name == 'mlp' else SMALL_IMAGE


def init_pair(models: ModelPair, data_shape, key=None):
  """(z, x, (g_params, g_state), (d_params, d_state)) for a batch of B examples."""
  g_key, d_key = (INIT_KEY, INIT_KEY) if key is None else jax.random.split(key)
  z = normal((B, models.z_dim), seed=1)
  x = normal((B,) + tuple(data_shape), seed=2)
  g_vars = models.g.init(g_key, z, is_training=True)
  d_vars = models.d.init(d_key, x, update_stats=True)
  return z, x, g_vars, d_vars


@functools.lru_cache(maxsize=None)
def _cached(name, data_shape, overrides):
  models = build_models(model_config(name=name, **dict(overrides)), data_shape=data_shape)
  return (models,) + init_pair(models, data_shape)


def initialised(name, data_shape=None, **overrides):
  """(models, z, x, g_vars, d_vars) of a small model, shared between tests (pure values)."""
  data_shape = data_shape or data_shape_of(name)
  overrides.setdefault('z_dim', 2 if name == 'mlp' else 8)
  return _cached(name, tuple(data_shape), tuple(sorted(overrides.items())))


def n_params(tree):
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize('name', ['mlp', 'dcgan', 'resnet'])
@pytest.mark.parametrize('d_norm', ['none', 'spectral', 'layer'])
def test_shapes_dtypes_and_state_structure(name, d_norm):
  data_shape = data_shape_of(name)
  models, z, x, (g_params, g_state), (d_params, d_state) = initialised(
      name, d_norm=d_norm, g_spectral_norm=d_norm == 'spectral')

  fake, new_g_state = models.g.apply(g_params, g_state, None, z, is_training=True)
  chex.assert_shape(fake, (B,) + data_shape)
  chex.assert_type(fake, jnp.float32)
  chex.assert_tree_all_finite(fake)
  chex.assert_trees_all_equal_structs(g_state, new_g_state)
  if name != 'mlp':
    assert float(jnp.max(jnp.abs(fake))) <= 1.0  # tanh output

  for update_stats in (True, False):
    scores, new_d_state = models.d.apply(d_params, d_state, None, fake,
                                         update_stats=update_stats)
    chex.assert_shape(scores, (B,))
    chex.assert_type(scores, jnp.float32)
    chex.assert_tree_all_finite(scores)
    chex.assert_trees_all_equal_structs(d_state, new_d_state)
  has_sn_state = any('u' in v for v in d_state.values())
  assert has_sn_state == (d_norm == 'spectral')
  has_ln = any('scale' in v for v in d_params.values())
  assert has_ln == (d_norm == 'layer')


def test_mlp_tanh_activation_and_flat_data():
  models, z, x, (g_params, g_state), (d_params, d_state) = initialised(
      'mlp', (6,), activation='tanh', g_batch_norm=False)
  fake, _ = models.g.apply(g_params, g_state, None, z, is_training=False)
  chex.assert_shape(fake, (B, 6))
  scores, _ = models.d.apply(d_params, d_state, None, x, update_stats=False)
  chex.assert_shape(scores, (B,))
  relu_models = build_models(model_config(g_batch_norm=False), data_shape=(6,))
  relu_fake, _ = relu_models.g.apply(g_params, g_state, None, z, is_training=False)
  assert not np.allclose(fake, relu_fake)  # the activation is really switched


def test_mlp_init_follows_gan_toy():
  _, _, _, (g_params, _), (d_params, _) = initialised('mlp', mlp_hidden=512, g_batch_norm=False)
  w = d_params['dense_1']['w']      # hidden: 'he' uniform, bound sqrt(6 / fan_in)
  bound = math.sqrt(6.0 / 512)
  assert float(jnp.max(jnp.abs(w))) <= bound
  np.testing.assert_allclose(float(jnp.std(w)), math.sqrt(2.0 / 512), rtol=0.02)
  w_out = g_params['dense_out']['w']  # output: glorot uniform
  assert float(jnp.max(jnp.abs(w_out))) <= math.sqrt(6.0 / (512 + 2))
  assert float(jnp.max(jnp.abs(w_out))) > math.sqrt(6.0 / 512) * 0.5
  assert all(float(jnp.max(jnp.abs(p['b']))) == 0.0 for p in d_params.values())


def test_models_are_deterministic():
  mlp_models = build_models(model_config(d_norm='spectral'), data_shape=(2,))
  key = jax.random.PRNGKey(3)   # the default (threefry) keys of the train step
  inits = [init_pair(mlp_models, (2,), key)[2:] for _ in range(2)]
  chex.assert_trees_all_equal(*inits)
  models, z, x, g_vars, d_vars = initialised('dcgan', d_norm='spectral', g_spectral_norm=True)
  out1 = models.g.apply(*g_vars, None, z, is_training=True)
  out2 = models.g.apply(*g_vars, None, z, is_training=True)
  chex.assert_trees_all_equal(out1, out2)
  out1 = models.d.apply(*d_vars, None, x, update_stats=True)
  out2 = models.d.apply(*d_vars, None, x, update_stats=True)
  chex.assert_trees_all_equal(out1, out2)


# ----------------------------------------------------------------------------- convolutions
def test_conv_layers_compute_the_ops_with_their_conv_impl():
  """Conv2D and UpConv hold kernels of the documented shapes and compute wgan_jax.ops.conv's
  functions with the algorithm they were built with (the algorithms: tests/test_conv.py)."""
  x = normal((2, 5, 6, 3), seed=1)
  for impl in conv.CONV_IMPLS[1:]:
    up = hk.transform(lambda x_: layers.UpConv(4, with_bias=False, conv_impl=impl)(x_))
    params = up.init(INIT_KEY, x)
    chex.assert_shape(params['up_conv']['w'], (4, 4, 3, 4))
    w = params['up_conv']['w']
    chex.assert_trees_all_equal(up.apply(params, None, x), conv.upconv2x(x, w, impl=impl))
    c2 = hk.transform(lambda x_: layers.Conv2D(4, 3, conv_impl=impl, with_bias=False)(x_))
    params = c2.init(INIT_KEY, x)
    w = params['conv2_d']['w']
    chex.assert_trees_all_equal(c2.apply(params, None, x), conv.conv2d(x, w, impl=impl))


def test_conv_impl_is_resolved_when_the_models_are_built(monkeypatch):
  """model.conv_impl reaches the layers, and $WGAN_JAX_CONV_IMPL read at build time wins."""
  seen, conv2d = [], conv.conv2d
  monkeypatch.setattr(conv, 'conv2d', lambda *a, **k: seen.append(k['impl']) or conv2d(*a, **k))
  monkeypatch.delenv(conv.CONV_IMPL_ENV)
  models = build_models(model_config(name='resnet', conv_impl='xla'), data_shape=SMALL_IMAGE)
  monkeypatch.setenv(conv.CONV_IMPL_ENV, 'winograd')  # after building: too late to matter
  jax.eval_shape(lambda: models.d.init(INIT_KEY, jnp.zeros((1,) + SMALL_IMAGE),
                                       update_stats=True))
  assert seen and set(seen) == {'xla'}
  models = build_models(model_config(name='resnet', conv_impl='xla'), data_shape=SMALL_IMAGE)
  seen.clear()
  jax.eval_shape(lambda: models.d.init(INIT_KEY, jnp.zeros((1,) + SMALL_IMAGE),
                                       update_stats=True))
  assert seen and set(seen) == {'winograd'}
  with pytest.raises(ConfigError, match='model.conv_impl must be one of auto, xla'):
    build_models(model_config(name='mlp', conv_impl='cudnn'), data_shape=(2,))


def _transposed_convs(jaxpr):
  """conv_general_dilated equations with input (lhs) dilation, in jaxpr and its sub-jaxprs."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'conv_general_dilated':
      if tuple(eqn.params['lhs_dilation']) != (1, 1):
        found.append(eqn)
    for param in eqn.params.values():
      for sub in (param if isinstance(param, (tuple, list)) else (param,)):
        if isinstance(sub, jax.extend.core.ClosedJaxpr):
          found += _transposed_convs(sub.jaxpr)
        elif isinstance(sub, jax.extend.core.Jaxpr):
          found += _transposed_convs(sub)
  return found


def test_generator_gradient_has_no_transposed_convolution(monkeypatch):
  monkeypatch.delenv(conv.CONV_IMPL_ENV)  # model.conv_impl decides
  # (xla: im2col has no convolution at all)
  models, z, _, (g_params, g_state), _ = initialised('dcgan', d_norm='none', conv_impl='xla')

  def loss(p):
    return jnp.sum(models.g.apply(p, g_state, None, z, is_training=True)[0])

  jaxpr = jax.make_jaxpr(jax.grad(loss))(g_params)
  assert not _transposed_convs(jaxpr.jaxpr)
  # ... while the detector does see the reference's transposed convolution.
  ref = jax.make_jaxpr(reference_upconv)(jnp.zeros((1, 2, 2, 1)), jnp.zeros((4, 4, 1, 1)))
  assert _transposed_convs(ref.jaxpr)


def test_upsample_conv_layer_takes_only_kernel_3():
  with pytest.raises(ValueError, match='upsample=True. takes kernel 3, stride 1'):
    hk.transform(lambda x: layers.Conv2D(4, 1, upsample=True, conv_impl='xla')(x)).init(
        INIT_KEY, jnp.zeros((1, 2, 2, 1)))


# ----------------------------------------------------------------------------- spectral norm
def sn_layer(make_layer):
  return hk.transform_with_state(
      lambda x, update_stats: make_layer()(x, update_stats=update_stats))


def test_spectral_dense_of_4_identity():
  layer = sn_layer(lambda: layers.Dense(3, spectral_norm=True))
  x = normal((5, 3))
  params, state = layer.init(INIT_KEY, x, update_stats=True)
  params = {'dense': {'w': 4.0 * jnp.eye(3), 'b': jnp.zeros(3)}}
  y, state = layer.apply(params, state, None, x, update_stats=True)
  np.testing.assert_allclose(state['dense']['sigma'], 4.0, rtol=1e-6)
  np.testing.assert_allclose(y, x @ jnp.eye(3), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('kind', ['dense', 'conv'])
def test_spectral_sigma_converges_to_largest_singular_value(kind):
  if kind == 'dense':
    make, x, w_shape = (lambda: layers.Dense(6, spectral_norm=True, name='layer'),
                        jnp.ones((2, 9)), (9, 6))
  else:
    make, x, w_shape = (lambda: layers.Conv2D(6, 3, spectral_norm=True, conv_impl='xla',
                                              name='layer'),
                        jnp.ones((2, 5, 5, 4)), (3, 3, 4, 6))
  layer = sn_layer(make)
  params, state = layer.init(INIT_KEY, x, update_stats=True)
  w = normal(w_shape, seed=3)
  params = {'layer': {'w': w, 'b': params['layer']['b']}}
  apply = jax.jit(functools.partial(layer.apply, update_stats=True))
  for _ in range(50):
    _, state = apply(params, state, None, x)
  w_np = np.asarray(w, np.float64)
  sigma_max = np.linalg.svd(w_np.reshape(-1, w_shape[-1]), compute_uv=False)[0]
  np.testing.assert_allclose(state['layer']['sigma'], sigma_max, rtol=1e-3)
  if kind == 'conv':  # the [kh * kw * c_in, c_out] reshape, not another one
    other = np.linalg.svd(w_np.reshape(9, -1), compute_uv=False)[0]
    assert abs(other - sigma_max) > 1e-2 * sigma_max
    w_sn = params['layer']['w'] / state['layer']['sigma']
    np.testing.assert_allclose(np.linalg.norm(np.asarray(w_sn).reshape(-1, 6), ord=2), 1.0,
                               rtol=1e-3)


def test_spectral_state_only_changes_in_updating_passes():
  models, z, x, (g_params, g_state), (d_params, d_state) = initialised(
      'resnet', d_norm='spectral', g_spectral_norm=True)
  _, same = models.d.apply(d_params, d_state, None, x, update_stats=False)
  chex.assert_trees_all_equal(same, d_state)
  _, g_same = models.g.apply(g_params, g_state, None, z, is_training=False)
  chex.assert_trees_all_equal(g_same, g_state)
  _, updated = models.d.apply(d_params, d_state, None, x, update_stats=True)
  chex.assert_trees_all_equal_structs(updated, d_state)
  for module, leaves in d_state.items():
    if leaves['u'].size == 1:   # a single output: u = +-1 is already the fixed point
      continue
    assert not np.allclose(updated[module]['u'], leaves['u']), module
    np.testing.assert_allclose(jnp.linalg.norm(updated[module]['u']), 1.0, rtol=1e-5)


def test_spectral_state_created_by_non_updating_init():
  layer = sn_layer(lambda: layers.UpConv(3, spectral_norm=True, conv_impl='xla'))
  x = jnp.ones((1, 2, 2, 2))
  _, state_a = layer.init(INIT_KEY, x, update_stats=False)
  params, state_b = layer.init(INIT_KEY, x, update_stats=True)
  chex.assert_trees_all_equal_structs(state_a, state_b)
  chex.assert_shape(state_b['up_conv']['u'], (3,))
  chex.assert_shape(state_b['up_conv']['sigma'], ())
  _, state_c = layer.apply(params, state_b, None, x, update_stats=True)
  chex.assert_trees_all_equal_structs(state_b, state_c)


# ----------------------------------------------------------------------------- batch / layer norm
def _cross_example_change(apply_fn, inputs):
  """Max change of examples 1.. when only example 0 of the input changes."""
  out = apply_fn(inputs)
  out2 = apply_fn(inputs.at[0].multiply(3.0))
  return float(jnp.max(jnp.abs(out[1:] - out2[1:])))


@pytest.mark.parametrize('name', ['mlp', 'dcgan'])
def test_generator_batch_norm_train_vs_eval(name):
  models, z, _, (g_params, g_state), _ = initialised(name, d_norm='none')

  def run(is_training):
    return lambda z_: models.g.apply(g_params, g_state, None, z_, is_training=is_training)[0]

  assert _cross_example_change(run(True), z) > 1e-4      # batch statistics
  assert _cross_example_change(run(False), z) == 0.0     # moving averages
  _, new_state = models.g.apply(g_params, g_state, None, 2.0 * z, is_training=True)
  ema_keys = [k for k in g_state if k.startswith('bn_') and k.endswith('_ema')]
  assert ema_keys
  for k in ema_keys:   # moving averages advance in training mode only
    assert new_state[k]['counter'] == g_state[k]['counter'] + 1
    assert not np.allclose(new_state[k]['average'], g_state[k]['average'])
  _, eval_state = models.g.apply(g_params, g_state, None, 2.0 * z, is_training=False)
  chex.assert_trees_all_equal(eval_state, g_state)

  no_bn, _, _, (p, s), _ = initialised(name, d_norm='none', g_batch_norm=False)
  assert not s
  assert _cross_example_change(lambda z_: no_bn.g.apply(p, s, None, z_, is_training=True)[0],
                               z) == 0.0


def test_batch_norm_uses_batch_statistics_in_training():
  bn = hk.transform_with_state(
      lambda x, is_training: layers.batch_norm(None)(x, is_training=is_training))
  x = normal((64, 3, 3, 4), loc=5.0, scale=2.0)
  params, state = bn.init(None, x, is_training=True)
  y, _ = bn.apply(params, state, None, x, is_training=True)
  np.testing.assert_allclose(jnp.mean(y, axis=(0, 1, 2)), 0.0, atol=1e-4)
  np.testing.assert_allclose(jnp.std(y, axis=(0, 1, 2)), 1.0, atol=1e-3)
  x2 = 2.0 * x + 1.0
  y_eval, _ = bn.apply(params, state, None, x2, is_training=False)
  mean = state['batch_norm/~/mean_ema']['average']   # (zero-debiased) moving averages
  var = state['batch_norm/~/var_ema']['average']
  np.testing.assert_allclose(y_eval, (x2 - mean) / jnp.sqrt(var + 1e-5), atol=1e-4)
  assert float(jnp.mean(y_eval)) > 2.0   # not the batch statistics of x2


def test_cross_replica_batch_norm_uses_the_global_batch():
  plain, z, _, (g_params, g_state), _ = initialised('mlp', d_norm='none')
  synced = build_models(model_config(), data_shape=(2,), bn_axis_name='replica')
  z_split = z.reshape(2, B // 2, -1)   # two replicas of B / 2 examples

  def per_replica(models):
    fn = lambda z_: models.g.apply(g_params, g_state, None, z_, is_training=True)[0]
    return jax.vmap(fn, axis_name='replica')(z_split).reshape(B, -1)

  full, _ = plain.g.apply(g_params, g_state, None, z, is_training=True)
  np.testing.assert_allclose(per_replica(synced), full, atol=1e-5)
  assert not np.allclose(per_replica(plain), full, atol=1e-3)


@pytest.mark.parametrize('name', ['mlp', 'dcgan', 'resnet'])
def test_layer_norm_critic_is_per_example(name):
  models, _, x, _, (d_params, d_state) = initialised(name, d_norm='layer')
  d = lambda x_: models.d.apply(d_params, d_state, None, x_, update_stats=True)[0]
  assert _cross_example_change(d, x) == 0.0


def test_layer_norm_dcgan_critic_is_scale_invariant_at_init():
  # Zero biases at init: conv(a x) = a conv(x), and LayerNorm removes the scale a > 0.
  scores = {}
  for d_norm in ('layer', 'none'):
    models, _, x, _, (d_params, d_state) = initialised('dcgan', d_norm=d_norm)
    d = lambda x_: models.d.apply(d_params, d_state, None, x_, update_stats=False)[0]
    scores[d_norm] = (d(x), d(3.0 * x))
  np.testing.assert_allclose(*scores['layer'], rtol=1e-3, atol=1e-4)
  assert not np.allclose(*scores['none'], rtol=1e-2)


def test_layer_norm_normalises_over_h_w_c():
  ln = hk.transform(lambda x: layers.LayerNorm()(x))
  x = 3.0 + normal((2, 4, 4, 5)) * jnp.arange(1.0, 6.0)
  params = ln.init(None, x)
  chex.assert_shape(params['layer_norm']['scale'], (5,))
  y = ln.apply(params, None, x)
  np.testing.assert_allclose(jnp.mean(y, axis=(1, 2, 3)), 0.0, atol=1e-5)
  np.testing.assert_allclose(jnp.std(y, axis=(1, 2, 3)), 1.0, atol=1e-3)
  assert float(jnp.std(jnp.std(y, axis=(1, 2)))) > 0.1  # not per channel


# ----------------------------------------------------------------------------- compute dtype
def _matmul_inputs(fn, *args):
  """[(dtypes, ndims)] of the operands of every dot / convolution in fn(*args)'s jaxpr
  (sub-jaxprs included)."""
  found = []

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name in ('dot_general', 'conv_general_dilated'):
        found.append((tuple(v.aval.dtype for v in eqn.invars),
                      tuple(v.aval.ndim for v in eqn.invars)))
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        walk(sub)

  walk(jax.make_jaxpr(fn)(*args).jaxpr)
  return found


@pytest.mark.parametrize('name', ['mlp', 'dcgan', 'resnet'])
def test_bfloat16_compute_keeps_params_state_and_outputs_float32(name):
  """bf16 compute: every matmul / conv takes bf16 inputs, while parameters, spectral-norm
  state (computed from the float32 weights: identical), samples and scores stay float32 and
  close to the float32 model's."""
  opts = dict(d_norm='spectral', g_spectral_norm=True, z_dim=2 if name == 'mlp' else 8)
  ref, z, x, g_vars, d_vars = initialised(name, **opts)
  bf16 = build_models(model_config(name=name, compute_dtype='bfloat16', **opts),
                      data_shape=data_shape_of(name))
  chex.assert_trees_all_equal(g_vars[0], bf16.g.init(INIT_KEY, z, is_training=True)[0])
  chex.assert_trees_all_equal(d_vars, bf16.d.init(INIT_KEY, x, update_stats=True))

  def run(models):
    fake, g_state = models.g.apply(*g_vars, None, z, is_training=True)
    scores, d_state = models.d.apply(*d_vars, None, fake, update_stats=True)
    return fake, scores, g_state, d_state

  (fake32, scores32, g32, d32), (fake16, scores16, g16, d16) = run(ref), run(bf16)
  chex.assert_type([fake16, scores16], jnp.float32)
  chex.assert_trees_all_equal_dtypes((g16, d16), (g32, d32))
  sn_state = lambda st: {m: v for m, v in st.items() if 'u' in v}
  chex.assert_trees_all_equal(sn_state(d16), sn_state(d32))
  rel_err = lambda a, b: float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))
  assert rel_err(fake16, fake32) < 0.03 and rel_err(scores16, scores32) < 0.03
  assert not np.array_equal(scores16, scores32)  # really computed in another precision

  # Every layer's matmul / conv (forward and backward) takes bf16 operands; the only float32
  # products are spectral norm's power-iteration matrix-vector products.
  d_fn = lambda f: bf16.d.apply(*d_vars, None, f, update_stats=False)[0]
  for fn, arg in ((lambda z: bf16.g.apply(*g_vars, None, z, is_training=True)[0], z),
                  (d_fn, fake32), (jax.grad(lambda f: jnp.sum(d_fn(f))), fake32)):
    ops = _matmul_inputs(fn, arg)
    layer_ops = [dtypes for dtypes, ndims in ops if min(ndims) > 1]
    sn_ops = [dtypes for dtypes, ndims in ops if min(ndims) <= 1]
    assert layer_ops and all(d == jnp.bfloat16 for pair in layer_ops for d in pair), ops
    assert sn_ops and all(d == jnp.float32 for pair in sn_ops for d in pair), ops
  assert all(d == jnp.float32 for pair, _ in _matmul_inputs(
      lambda f: ref.d.apply(*d_vars, None, f, update_stats=False)[0], fake32) for d in pair)


# ----------------------------------------------------------------------------- registry, config
def test_registry_and_unknown_model_name():
  assert set(MODELS) == {'mlp', 'dcgan', 'resnet', 'biggan', 'wae_mnist', 'wae_celeba',
                         'cyclegan'}
  with pytest.raises(ConfigError, match='resnet'):
    build_models(model_config(name='vgg'), data_shape=(2,))


@pytest.mark.parametrize('overrides, data_shape, match', [
    (dict(name='dcgan', d_norm='group'), SMALL_IMAGE, 'd_norm must be one of'),
    (dict(name='resnet', d_norm='batch'), SMALL_IMAGE, "d_norm 'batch' is only supported by"),
    (dict(name='resnet'), (12, 12, 3), 'multiple of 8'),
    (dict(name='dcgan'), (2,), r'data_shape \(H, W, C\)'),
    (dict(name='resnet', activation='tanh'), SMALL_IMAGE, 'only supported by models mlp and dcgan'),
    (dict(name='mlp', activation='elu'), (2,), 'activation must be one of'),
    (dict(name='mlp', mlp_hidden=0), (2,), 'mlp_hidden must be a positive integer'),
    (dict(name='mlp', g_batch_norm='yes'), (2,), 'g_batch_norm must be true or false'),
    (dict(name='resnet', z_dim=0), SMALL_IMAGE, 'z_dim'),
    (dict(name='dcgan', compute_dtype='float16'), SMALL_IMAGE,
     'compute_dtype must be one of float32, bfloat16'),
])
def test_invalid_configs_raise_config_error(overrides, data_shape, match):
  with pytest.raises(ConfigError, match=match):
    build_models(model_config(**overrides), data_shape=data_shape)


def test_config_dict_is_accepted():
  ml_collections = pytest.importorskip('ml_collections')
  cfg = ml_collections.ConfigDict(vars(model_config(name='resnet', z_dim=8)))
  models = build_models(cfg, data_shape=(8, 8, 1))
  assert models.z_dim == 8


# ----------------------------------------------------------------------------- official recipes
def test_resnet_critic_pool_sums_or_averages_over_h_w():
  """d_pool 'mean' (WGAN-GP) is 'sum' (SNGAN) / (H' W') on the same weights, H' = W' = S / 4;
  a config without the key (saved before it existed) sums, as those runs did."""
  shape = (8, 8, 3)
  x = normal((B,) + shape, seed=2)
  scores, params = {}, None
  for pool in ('sum', 'mean', None):
    cfg = model_config(name='resnet', z_dim=8, d_out_bias=False)
    if pool:
      cfg.d_pool = pool
    d = build_models(cfg, data_shape=shape).d
    if params is None:
      params = jax.jit(functools.partial(d.init, update_stats=True))(INIT_KEY, x)
    scores[pool] = jax.jit(functools.partial(d.apply, update_stats=False))(
        *params, None, x)[0]
  hw = (shape[0] // 4) * (shape[1] // 4)
  np.testing.assert_allclose(scores['sum'], hw * scores['mean'], rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_equal(scores[None], scores['sum'])
  assert float(jnp.max(jnp.abs(scores['sum']))) > 0
  with pytest.raises(ConfigError, match='model.d_pool'):
    build_models(model_config(name='resnet', d_pool='max'), data_shape=SMALL_IMAGE)


def test_resnet_init_std_follows_the_official_code():
  """Residual 3x3 convs: Glorot uniform with gain sqrt(2), std sqrt(2) sqrt(2 / (fan_in +
  fan_out)) (sngan_projection resblocks.py GlorotUniform(math.sqrt(2)); tflib he_init);
  1x1 shortcuts, the dense layers and the output conv: plain Glorot, std sqrt(2 / (fan_in
  + fan_out)). Uniform: every |w| <= sqrt(3) std."""
  models = build_models(model_config(name='resnet', z_dim=64, g_ch=64, d_ch=64),
                        data_shape=(8, 8, 3))
  g_params, _ = jax.jit(functools.partial(models.g.init, is_training=True))(
      INIT_KEY, jnp.zeros((1, 64)))
  d_params, _ = jax.jit(functools.partial(models.d.init, update_stats=True))(
      INIT_KEY, jnp.zeros((1, 8, 8, 3)))
  checked = {1: 0, 2: 0}
  for tree in (g_params, d_params):
    for module, leaves in tree.items():
      if 'w' not in leaves:
        continue
      w = np.asarray(leaves['w'])
      receptive = math.prod(w.shape[:-2])
      fan_in, fan_out = receptive * w.shape[-2], receptive * w.shape[-1]
      gain2 = 2 if (w.ndim == 4 and w.shape[0] == 3 and 'block' in module) else 1
      std = math.sqrt(gain2 * 2 / (fan_in + fan_out))
      assert np.max(np.abs(w)) <= math.sqrt(3) * std * (1 + 1e-6), module
      if w.size >= 1000:   # sample std within 5% (its own error is < 1.2% at this size)
        assert np.std(w) == pytest.approx(std, rel=0.05), module
        checked[gain2] += 1
    for module, leaves in tree.items():
      if 'b' in leaves:
        assert not np.any(np.asarray(leaves['b'])), module
  # Every block conv (G: 3 blocks x 2; D: 2 + 2 + 2 x 2) and the larger plain-Glorot layers.
  assert checked[2] == 3 * 2 + 2 + 2 + 2 * 2 and checked[1] >= 4


def test_output_bias_is_a_model_option():
  """d_out_bias false: no bias in dense_out, in every critic (one code path); a config
  without the key (saved before it existed) has one, as those runs did."""
  for name in ('mlp', 'dcgan', 'resnet'):
    shape = data_shape_of(name)
    for bias in (False, True, None):
      cfg = model_config(name=name) if bias is None else model_config(name=name,
                                                                      d_out_bias=bias)
      d = build_models(cfg, data_shape=shape).d
      params, _ = jax.eval_shape(functools.partial(d.init, update_stats=True), INIT_KEY,
                                 jax.ShapeDtypeStruct((2,) + shape, jnp.float32))
      assert sorted(params['dense_out']) == (['w'] if bias is False else ['b', 'w']), name


def test_resnet_layer_norm_only_in_the_pre_activation_blocks():
  """d_norm 'layer' as gan_cifar_resnet.py's NORMALIZATION_D: N1 and N2 of the residual
  blocks (lines 130-134), none in OptimizedResBlockDisc1 (lines 139-149)."""
  d = build_models(model_config(name='resnet', d_norm='layer'), data_shape=SMALL_IMAGE).d
  params, _ = jax.eval_shape(functools.partial(d.init, update_stats=True), INIT_KEY,
                             jax.ShapeDtypeStruct((2,) + SMALL_IMAGE, jnp.float32))
  norms = sorted((m.split('/')[0], m.split('/')[-1]) for m in params if 'ln_' in m)
  assert norms == [(block, f'ln_{i}') for block in ('block_0', 'block_1', 'block_down')
                   for i in (1, 2)], norms


def test_dcgan_generator_batch_norm_is_per_feature_after_the_dense_layer():
  """chainer-gan-lib DCGANGenerator: bn0 = BatchNormalization(bottom_width**2 * ch): one
  scale per dense output; the up-convs' batch norms are per channel."""
  g = build_models(model_config(name='dcgan', z_dim=8), data_shape=SMALL_IMAGE).g
  g_params, _ = jax.eval_shape(functools.partial(g.init, is_training=True), INIT_KEY,
                               jax.ShapeDtypeStruct((2, 8), jnp.float32))
  dense = g_params['dense_in']['w'].shape[-1]
  assert g_params['bn_0']['scale'].size == dense == 2 * 2 * 8 * 16
  assert g_params['bn_1']['scale'].size == 4 * 16


# ----------------------------------------------------------------------------- parameter counts
# Counted layer by layer from the authors' code (weights + biases; batch / layer norm: one
# scale and one offset per normalised unit; running statistics and power-iteration vectors
# are not parameters there, and are state here).
def conv_params(k, c_in, c_out, bias=True):
  return k * k * c_in * c_out + (c_out if bias else 0)


def wgan_gp_resnet_counts():
  """improved_wgan_training/gan_cifar_resnet.py, DIM_G = DIM_D = 128 (lines 39-40), unconditional."""
  dim = 128
  block_up = (conv_params(1, dim, dim)          # .Shortcut, UpsampleConv 1x1 (line 127)
              + 2 * dim + conv_params(3, dim, dim)   # .N1 batchnorm, .Conv1 (lines 130-132)
              + 2 * dim + conv_params(3, dim, dim))  # .N2, .Conv2 (lines 133-135)
  g = (128 * 4 * 4 * dim + 4 * 4 * dim          # Generator.Input Linear(128, 4*4*DIM_G), 154
       + 3 * block_up                             # Generator.1-3, lines 156-158
       + 2 * dim + conv_params(3, dim, 3))        # OutputN, Output conv (lines 159-161)
  d = (conv_params(1, 3, dim) + conv_params(3, 3, dim) + conv_params(3, dim, dim)  # 139-149
       + conv_params(1, dim, dim) + 2 * conv_params(3, dim, dim)   # Discriminator.2 (down)
       + 2 * 2 * conv_params(3, dim, dim)                          # .3, .4: identity skips
       + dim + 1)                                 # Discriminator.Output Linear(DIM_D, 1), 173
  return g, d


def sngan_resnet_counts():
  """sngan_projection gen_models/resnet_32.py (ch 256) with gen_models/resblocks.py, and
  dis_models/snresnet_32.py (ch 128) with dis_models/resblocks.py."""
  ch, d_ch = 256, 128
  block = (2 * ch + conv_params(3, ch, ch) + 2 * ch + conv_params(3, ch, ch)  # b1 c1 b2 c2
           + conv_params(1, ch, ch))              # c_sc (resblocks.py lines 29-38)
  g = (128 * 16 * ch + 16 * ch                    # l1 = L.Linear(dim_z, 4 * 4 * ch), line 17
       + 3 * block                                # block2-4, lines 18-20
       + 2 * ch + conv_params(3, ch, 3))          # b5, c5 (lines 21-22)
  d = (conv_params(3, 3, d_ch) + conv_params(3, d_ch, d_ch) + conv_params(1, 3, d_ch)  # block1
       + 2 * conv_params(3, d_ch, d_ch) + conv_params(1, d_ch, d_ch)  # block2, downsample
       + 2 * 2 * conv_params(3, d_ch, d_ch)                           # block3, block4
       + d_ch)                                    # l5 = SNLinear(ch, 1, nobias=True), line 17
  return g, d


def sngan_cnn_counts():
  """The SNGAN standard CNN: chainer-gan-lib common/net.py, DCGANGenerator (ch 512,
  bottom_width 4, n_hidden 128; lines 69-79) and SNDCGANDiscriminator (ch 512; lines
  204-211)."""
  ch = 512
  g = 128 * 16 * ch + 16 * ch + 2 * 16 * ch       # l0, bn0 = BatchNormalization(4 * 4 * ch)
  for c_in, c_out in ((ch, ch // 2), (ch // 2, ch // 4), (ch // 4, ch // 8)):
    g += conv_params(4, c_in, c_out) + 2 * c_out  # dc1-dc3 (4, 2, 1), bn1-bn3
  g += conv_params(3, ch // 8, 3)                 # dc4 = Deconvolution2D(ch // 8, 3, 3, 1, 1)
  d = (conv_params(3, 3, ch // 8) + conv_params(4, ch // 8, ch // 4)       # c0_0, c0_1
       + conv_params(3, ch // 4, ch // 4) + conv_params(4, ch // 4, ch // 2)  # c1_0, c1_1
       + conv_params(3, ch // 2, ch // 2) + conv_params(4, ch // 2, ch)       # c2_0, c2_1
       + conv_params(3, ch, ch)                                              # c3_0
       + 16 * ch + 1)                             # l4 = SNLinear(4 * 4 * ch, 1): a bias
  return g, d


def abstract_counts(config):
  """(G, D) parameter counts of the config's models at 32x32x3, without computing anything."""
  models = build_models(config.model, data_shape=(32, 32, 3))
  key = jax.random.PRNGKey(0)
  g_params, _ = jax.eval_shape(functools.partial(models.g.init, is_training=True), key,
                               jax.ShapeDtypeStruct((2, models.z_dim), jnp.float32))
  d_params, d_state = jax.eval_shape(functools.partial(models.d.init, update_stats=True), key,
                                     jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32))
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves((g_params, d_params)))
  return (hk.data_structures.tree_size(g_params), hk.data_structures.tree_size(d_params)), \
      d_params, d_state


@pytest.mark.parametrize('file, arg, official, expected', [
    ('wgan_gp', '', wgan_gp_resnet_counts, (1_204_483, 1_053_825)),
    ('sngan', '', sngan_resnet_counts, (4_276_739, 1_053_824)),
    ('sngan', 'cnn', sngan_cnn_counts, (3_828_739, 5_860_865)),
])
def test_config_parameter_counts_match_the_official_code(file, arg, official, expected):
  from tests import configs_loader
  assert official() == expected   # the layer-by-layer count and the hand sum agree
  counts, d_params, d_state = abstract_counts(configs_loader.load(file, arg))
  assert counts == expected
  n_sn_layers = {'wgan_gp': 0, 'sngan': 3 + 3 + 2 * 2 + 1, 'sngan:cnn': 7 + 1}
  assert len(d_state) == n_sn_layers[f'{file}:{arg}'.rstrip(':')]
  # Only SNGAN's ResNet critic has no output bias (snresnet_32.py: nobias=True).
  assert ('b' in d_params['dense_out']) == (f'{file}:{arg}' != 'sngan:')
