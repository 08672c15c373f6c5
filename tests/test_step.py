"""The train step: determinism, one compile, spectral-norm state, clipping, EMA."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wgan_jax import lipschitz, train
from wgan_jax import step as step_lib
from wgan_jax.state import GanState

from tests import configs_loader


def _run(arg='gaussians8,smoke', file='wgan_gp', **overrides):
  config = configs_loader.load(file, arg, **overrides)
  return train.Run(config)


def _steps(run, n, state=None):
  state = run.init_state() if state is None else state
  step_fn = run.train_step()
  history = []
  for t in range(int(state.step), int(state.step) + n):
    state, metrics = step_fn(state, run.batch(t))
    history.append(jax.device_get(metrics))
  return state, history


def test_step_is_deterministic_and_compiles_once():
  run = _run()
  step_fn = chex.assert_max_traces(run.step_fn(), n=1)
  jitted = jax.jit(step_fn, donate_argnums=0)
  state = run.init_state()
  metrics = []
  for t in range(3):
    state, m = jitted(state, run.batch(t))
    metrics.append(jax.device_get(m))
  assert int(state.step) == 3
  _, again = _steps(_run(), 3)
  chex.assert_trees_all_equal(metrics, again)
  for key in ('d_loss', 'g_loss', 'critic_gap', 'penalty', 'd_grad_norm', 'g_grad_norm'):
    assert key in metrics[0] and np.isfinite(metrics[0][key]), key
  assert metrics[0]['d_loss'] != metrics[1]['d_loss']  # fresh data and noise every step


def test_metrics_have_scalar_float32_values():
  _, history = _steps(_run(), 1)
  for key, value in history[0].items():
    chex.assert_shape(value, ())
    assert value.dtype == np.float32, key


def test_critic_gap_matches_definition():
  run = _run(**{'lipschitz.method': 'none', 'optim.d.lr': 0.0, 'optim.g.lr': 0.0})
  state = jax.device_get(run.init_state())  # a host copy: the step donates its input
  _, history = _steps(run, 1, jax.device_put(state))
  # With lr 0 nothing changes: recompute mean D(real) - mean D(fake) by hand.
  batch = run.batch(0)['x']
  keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(0), 0), run.config.n_critic + 1)
  gaps = []
  for k in range(run.config.n_critic):
    z = jax.random.normal(jax.random.split(keys[k])[0], (run.config.batch_size, 2))
    fake, _ = run.models.g.apply(state.g_params, state.g_state, None, z, is_training=True)
    d = lambda x: run.models.d.apply(state.d_params, state.d_state, None, x,
                                     update_stats=False)[0]
    gaps.append(jnp.mean(d(batch[k])) - jnp.mean(d(fake)))
  np.testing.assert_allclose(history[0]['critic_gap'], np.mean(gaps), rtol=1e-5, atol=1e-7)


def test_clip_keeps_every_critic_weight_in_bounds():
  run = _run(file='wgan', **{'optim.d.lr': 0.5})  # huge steps: clipping must bind
  state, _ = _steps(run, 2)
  leaves = jax.tree.leaves(state.d_params)
  assert max(float(jnp.max(jnp.abs(p))) for p in leaves) == pytest.approx(0.01)


@functools.lru_cache(maxsize=None)
def _sngan_frozen_step():
  """(run, state before, state after, metrics) of one SNGAN step with both lr 0 (shared)."""
  run = _run(file='sngan', **{'optim.d.lr': 0.0, 'optim.g.lr': 0.0})
  state0 = jax.device_get(run.init_state())  # a host copy: the step donates its input
  state1, history = _steps(run, 1, jax.device_put(state0))
  return run, state0, jax.device_get(state1), history


def test_spectral_state_advances_once_per_critic_update():
  run, state0, state1, history = _sngan_frozen_step()
  u0 = state0.d_state
  # lr 0: W is constant, so n_critic updating passes = n_critic power iterations on u.
  n = run.config.n_critic
  for module, leaves in jax.device_get(state1.d_state).items():
    w = jax.device_get(state1.d_params)[module]['w']
    w_mat = w.reshape(-1, w.shape[-1])
    expected = lipschitz.power_iteration(w_mat, u0[module]['u'], n_iters=n)
    np.testing.assert_allclose(leaves['u'], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(leaves['sigma'], np.linalg.norm(w_mat @ expected), rtol=1e-5)
    assert f'sigma/{module}' in history[0]


def test_ema_tracks_generator_weights():
  # decay 0.9, not 0.5: a swap of decay and 1 - decay must show.
  assert float(step_lib.ema_update(jnp.float32(10.0), jnp.float32(0.0), 0.9)) == \
      pytest.approx(9.0)
  run = _run(**{'ema_decay': 0.9})
  state0 = run.init_state()
  g0 = jax.device_get(state0.g_params)
  state1, _ = _steps(run, 1, state0)
  expected = jax.tree.map(lambda e, p: 0.9 * e + 0.1 * p, g0, jax.device_get(state1.g_params))
  chex.assert_trees_all_close(state1.g_ema_params, expected, rtol=1e-6)
  assert _run().init_state().g_ema_params is None


def _step_keys(run, step=0):
  """The keys of generator step `step`: n_critic critic-update keys, then the G key."""
  return jax.random.split(step_lib.step_key(run.config.seed, step), run.config.n_critic + 1)


def test_generator_loss_uses_the_stored_critic_state():
  """lr 0: g_loss is -mean D(G(z)) under the critic's state after the step's critic updates
  (the generator's pass through a spectrally normalised critic must not power-iterate)."""
  run, state0, state1, history = _sngan_frozen_step()
  z = step_lib.sample_z(_step_keys(run)[-1], run.step_config.g_batch_size, run.models.z_dim)
  fake, _ = run.models.g.apply(state0.g_params, state0.g_state, None, z, is_training=True)
  d_fake, _ = run.models.d.apply(state1.d_params, state1.d_state, None, fake,
                                 update_stats=False)
  np.testing.assert_allclose(history[0]['g_loss'], -jnp.mean(d_fake), rtol=1e-5, atol=1e-7)
  # The same with one more power iteration is measurably different (the test can fail).
  d_ahead, _ = run.models.d.apply(state1.d_params, state1.d_state, None, fake,
                                  update_stats=True)
  assert abs(float(jnp.mean(d_ahead) - jnp.mean(d_fake))) > 0.01 * abs(float(jnp.mean(d_fake)))


def test_gradient_penalty_uses_the_critic_state_of_its_update():
  """lr 0, one critic update: the penalty is that of the critic under the state its
  updating pass just wrote (the penalty's passes must not power-iterate again)."""
  run = _run(**{'optim.d.lr': 0.0, 'optim.g.lr': 0.0, 'model.d_norm': 'spectral',
                'n_critic': 1})
  state0 = jax.device_get(run.init_state())
  state1, history = _steps(run, 1, jax.device_put(state0))
  z_key, penalty_key = jax.random.split(_step_keys(run)[0])
  b = run.config.batch_size
  fake, _ = run.models.g.apply(state0.g_params, state0.g_state, None,
                               step_lib.sample_z(z_key, b, run.models.z_dim), is_training=True)
  alpha = jax.random.uniform(penalty_key, (b,), jnp.float32)
  real = run.batch(0)['x'][0]

  def penalty(update_stats):
    d_fn = lambda x: run.models.d.apply(state1.d_params, state1.d_state, None, x,
                                        update_stats=update_stats)[0]
    return lipschitz.gradient_penalty(d_fn, real=real, fake=fake, alpha=alpha)[0]

  np.testing.assert_allclose(history[0]['penalty'], penalty(False), rtol=1e-5, atol=1e-7)
  assert abs(float(penalty(True) - penalty(False))) > 1e-3 * float(penalty(False))


def test_bfloat16_compute_step_keeps_state_and_metrics_float32():
  """model.compute_dtype=bfloat16 (gradient penalty config): the state keeps its float32
  dtypes and structure, metrics (losses, penalty) are float32 and close to the float32
  step's; the optimiser updates float32 parameters."""
  ref_state, ref = _steps(_run(), 2)
  state, bf16 = _steps(_run(**{'model.compute_dtype': 'bfloat16'}), 2)
  chex.assert_trees_all_equal_dtypes(state, ref_state)
  chex.assert_trees_all_equal_shapes(state, ref_state)
  for key in ('d_loss', 'g_loss', 'penalty'):
    for a, b in zip(bf16, ref):
      assert a[key].dtype == np.float32
      np.testing.assert_allclose(a[key], b[key], rtol=0.05, atol=0.01, err_msg=key)
  assert bf16[1]['d_loss'] != ref[1]['d_loss']  # the bf16 option is in effect
