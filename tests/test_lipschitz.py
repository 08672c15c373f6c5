"""Closed forms for the Lipschitz methods: clipping, gradient penalties, spectral norm."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wgan_jax import lipschitz
from wgan_jax.errors import ConfigError


def _linear_critic(w, b=0.0):
  return lambda x: x.reshape(x.shape[0], -1) @ w + b


def test_clip_weights_projects_every_leaf():
  params = {'a': {'w': jnp.array([-1.0, -0.005, 0.0, 0.02]), 'b': jnp.array([3.0])}}
  out = lipschitz.clip_weights(params, clip_value=0.01)
  chex.assert_trees_all_close(out, {'a': {'w': jnp.array([-0.01, -0.005, 0.0, 0.01]),
                                          'b': jnp.array([0.01])}})


def test_gradient_penalty_of_linear_critic_is_closed_form():
  # D(x) = w.x: grad = w everywhere, so the penalty is (|w| - 1)^2 for any interpolate.
  w = jnp.array([3.0, 4.0])
  real = jax.random.normal(jax.random.PRNGKey(0), (16, 2))
  fake = jax.random.normal(jax.random.PRNGKey(1), (16, 2))
  alpha = jax.random.uniform(jax.random.PRNGKey(2), (16,))
  penalty, norms = lipschitz.gradient_penalty(_linear_critic(w), real=real, fake=fake,
                                              alpha=alpha)
  chex.assert_shape(norms, (16,))
  chex.assert_trees_all_close(norms, jnp.full((16,), 5.0), rtol=1e-6)
  chex.assert_trees_all_close(penalty, jnp.asarray(16.0), rtol=1e-6)
  one_sided, _ = lipschitz.gradient_penalty(_linear_critic(w * 0.1), real=real, fake=fake,
                                            alpha=alpha, one_sided=True)
  chex.assert_trees_all_close(one_sided, jnp.asarray(0.0))  # |w| = 0.5 < 1: no penalty
  two_sided, _ = lipschitz.gradient_penalty(_linear_critic(w * 0.1), real=real, fake=fake,
                                            alpha=alpha)
  chex.assert_trees_all_close(two_sided, jnp.asarray(0.25), rtol=1e-6)


def test_gradient_penalty_uses_per_example_interpolates():
  # D(x) = |x|^2 / 2 has gradient x: the norms are |x_hat_i|, one alpha per example.
  real = jnp.ones((64, 3))
  fake = jnp.zeros((64, 3))
  alpha = jax.random.uniform(jax.random.PRNGKey(3), (64,))
  _, norms = lipschitz.gradient_penalty(lambda x: 0.5 * jnp.sum(x ** 2, axis=-1),
                                        real=real, fake=fake, alpha=alpha)
  chex.assert_trees_all_close(norms, alpha * jnp.sqrt(3.0), rtol=1e-5)
  assert float(jnp.std(alpha)) > 0.2  # different weights per example


def test_gradient_penalty_finite_at_zero_gradient():
  real = jnp.ones((4, 2))
  grads = jax.grad(lambda w: lipschitz.gradient_penalty(
      _linear_critic(w), real=real, fake=-real, alpha=jnp.full((4,), 0.5))[0])(jnp.zeros(2))
  assert bool(jnp.all(jnp.isfinite(grads)))


def test_r1_penalty_of_quadratic_critic():
  # D(x) = |x|^2 / 2: ||grad||^2 = |x|^2.
  real = jnp.array([[1.0, 2.0], [0.0, 3.0]])
  penalty, norms = lipschitz.r1_penalty(lambda x: 0.5 * jnp.sum(x ** 2, -1), real=real)
  chex.assert_trees_all_close(penalty, jnp.asarray((5.0 + 9.0) / 2))
  chex.assert_trees_all_close(norms, jnp.sqrt(jnp.array([5.0, 9.0])), rtol=1e-6)


def test_spectral_norm_of_scaled_identity_is_exact():
  out = lipschitz.spectral_normalize(4.0 * jnp.eye(3), jnp.array([1.0, 0.0, 0.0]), n_iters=1)
  chex.assert_trees_all_close(out.sigma, jnp.asarray(4.0))
  chex.assert_trees_all_close(out.w_sn, jnp.eye(3))


@pytest.mark.parametrize('shape', [(6, 5), (3, 3, 4, 8)])
def test_spectral_norm_converges_to_svd(shape):
  w = jax.random.normal(jax.random.PRNGKey(0), shape)
  u = jax.random.normal(jax.random.PRNGKey(1), (shape[-1],))
  out = lipschitz.spectral_normalize(w, u, n_iters=200)
  expected = np.linalg.svd(np.asarray(w).reshape(-1, shape[-1]), compute_uv=False)[0]
  np.testing.assert_allclose(float(out.sigma), expected, rtol=1e-4)
  chex.assert_shape(out.u, (shape[-1],))
  top = np.linalg.svd(np.asarray(out.w_sn).reshape(-1, shape[-1]), compute_uv=False)[0]
  np.testing.assert_allclose(top, 1.0, rtol=1e-4)


def test_spectral_norm_without_iteration_reuses_u_and_matches_paper_gradient():
  w = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
  u = lipschitz.power_iteration(w, jnp.ones(3), n_iters=3)
  out = lipschitz.spectral_normalize(w, u, n_iters=0)
  chex.assert_trees_all_equal(out.u, u)
  # d sigma / dW = v u^T with v = W u / |W u| (u, v constants, Miyato et al.).
  grad = jax.grad(lambda w_: lipschitz.spectral_normalize(w_, u, n_iters=0).sigma)(w)
  v = (w @ u) / jnp.linalg.norm(w @ u)
  chex.assert_trees_all_close(grad, jnp.outer(v, u), rtol=1e-5)


@pytest.mark.parametrize('shape', [(5, 3), (3, 3, 2, 4)])
def test_spectral_norm_gradient_treats_the_iterated_u_as_a_constant(shape):
  """One power iteration from a u far from converged (u1 depends on W): d sigma / dW is
  still v u1^T, u1 = power_iteration(u0), v = W u1 / |W u1| (Miyato et al., Algorithm 1:
  u1 is not differentiated through). Without the stop_gradient the gradient would also
  carry d u1 / dW."""
  w = jax.random.normal(jax.random.PRNGKey(1), shape)
  u0 = jnp.ones(shape[-1]) / np.sqrt(shape[-1])
  w_mat = w.reshape(-1, shape[-1])
  u1 = lipschitz.power_iteration(w_mat, u0, n_iters=1)
  out = lipschitz.spectral_normalize(w, u0, n_iters=1)
  chex.assert_trees_all_close(out.u, u1, rtol=1e-6)
  grad = jax.grad(lambda w_: lipschitz.spectral_normalize(w_, u0, n_iters=1).sigma)(w)
  v = (w_mat @ u1) / jnp.linalg.norm(w_mat @ u1)
  expected = jnp.outer(v, u1).reshape(shape)
  chex.assert_trees_all_close(grad, expected, rtol=1e-5, atol=1e-6)
  # The test can fail: the gradient through u1 differs from v u1^T here.
  full = jax.grad(lambda w_: jnp.linalg.norm(
      w_.reshape(w_mat.shape) @ lipschitz.power_iteration(w_.reshape(w_mat.shape), u0)))(w)
  assert float(jnp.max(jnp.abs(full - expected))) > 1e-2


def test_spectral_norm_bound_is_product_of_layer_norms():
  params = {'l0': {'w': 2.0 * jnp.eye(2), 'b': jnp.zeros(2)}, 'l1': {'w': 3.0 * jnp.eye(2)}}
  bound, sigmas = lipschitz.spectral_norm_bound(params)
  chex.assert_trees_all_close(bound, jnp.asarray(6.0), rtol=1e-6)
  assert set(sigmas) == {'l0', 'l1'}


class _Cfg(dict):
  __getattr__ = dict.__getitem__


def _plan(method, **kw):
  cfg = _Cfg(method=method, clip_value=0.01, gp_weight=10.0, gp_one_sided=False,
             gp_target=1.0, r1_gamma=4.0)
  cfg.update(kw)
  return lipschitz.make_plan(cfg)


def test_make_plan_per_method():
  assert _plan('none') == lipschitz.LipschitzPlan(None, 0.0, None)
  assert _plan('clip') == lipschitz.LipschitzPlan(None, 0.0, 0.01)
  assert _plan('spectral') == _plan('none')  # a model option: nothing in the step
  gp = _plan('gp')
  assert gp.weight == 10.0 and gp.penalty is not None
  assert _plan('r1').weight == 2.0  # gamma / 2
  with pytest.raises(ConfigError, match='spectral'):
    _plan('bogus')
