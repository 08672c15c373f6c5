"""Tests of wgan_jax.losses against closed forms computed independently in numpy / scipy."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize, special

from wgan_jax import losses
from wgan_jax.errors import ConfigError

F_NAMES = ('kl', 'reverse_kl', 'pearson', 'neyman', 'hellinger', 'jeffrey',
           'jensen_shannon', 'gan', 'total_variation')
ALL_NAMES = ('minimax', 'non_saturating', 'wasserstein', 'hinge', 'least_squares') + tuple(
    f'f_{n}' for n in F_NAMES)

D_REAL = np.array([2.0, 0.5, -1.0, 3.0, 0.1])
D_FAKE = np.array([-2.0, 0.5, 1.5, -0.3, 0.8])

# ----------------------------------------------------------------------------------------
# Independent numpy references (float64), written from the papers' formulas.


def _log_sigmoid(x):
  return np.log(1.0 / (1.0 + np.exp(-x)))


def _np_jeffrey_conj(t):
  w = np.real(special.lambertw(np.exp(1.0 - t)))
  return w + 1.0 / w + t - 2.0


# Nowozin et al. 2016, Table 2: name -> (f(u), g_f(v), f*(t), f'(u), g_f^{-1}(T)).
NP_F = {
    'kl': (lambda u: u * np.log(u), lambda v: v, lambda t: np.exp(t - 1.0),
           lambda u: 1.0 + np.log(u), lambda t: t),
    'reverse_kl': (lambda u: -np.log(u), lambda v: -np.exp(-v),
                   lambda t: -1.0 - np.log(-t),
                   lambda u: -1.0 / u, lambda t: -np.log(-t)),
    'pearson': (lambda u: (u - 1.0) ** 2, lambda v: v, lambda t: t ** 2 / 4.0 + t,
                lambda u: 2.0 * (u - 1.0), lambda t: t),
    'neyman': (lambda u: (1.0 - u) ** 2 / u, lambda v: 1.0 - np.exp(v),
               lambda t: 2.0 - 2.0 * np.sqrt(1.0 - t),
               lambda u: 1.0 - 1.0 / u ** 2, lambda t: np.log(1.0 - t)),
    'hellinger': (lambda u: (np.sqrt(u) - 1.0) ** 2, lambda v: 1.0 - np.exp(-v),
                  lambda t: t / (1.0 - t),
                  lambda u: 1.0 - 1.0 / np.sqrt(u), lambda t: -np.log(1.0 - t)),
    'jeffrey': (lambda u: (u - 1.0) * np.log(u), lambda v: v, _np_jeffrey_conj,
                lambda u: np.log(u) + 1.0 - 1.0 / u, lambda t: t),
    'jensen_shannon': (
        lambda u: -(u + 1.0) * np.log((1.0 + u) / 2.0) + u * np.log(u),
        lambda v: np.log(2.0) - np.log(1.0 + np.exp(-v)),
        lambda t: -np.log(2.0 - np.exp(t)),
        lambda u: np.log(2.0 * u / (1.0 + u)),
        lambda t: -np.log(2.0 * np.exp(-t) - 1.0)),
    'gan': (lambda u: u * np.log(u) - (u + 1.0) * np.log(u + 1.0),
            lambda v: -np.log(1.0 + np.exp(-v)),
            lambda t: -np.log(1.0 - np.exp(t)),
            lambda u: np.log(u / (u + 1.0)),
            lambda t: -np.log(np.exp(-t) - 1.0)),
    'total_variation': (lambda u: 0.5 * np.abs(u - 1.0), lambda v: 0.5 * np.tanh(v),
                        lambda t: t, None, None),
}


def _np_f_gan(name):
  _, g, conj, _, _ = NP_F[name]
  d = lambda r, f: -(np.mean(g(r)) - np.mean(conj(g(f))))
  return d, lambda f: -np.mean(g(f))


NP_LOSSES = {
    'minimax': (lambda r, f: -np.mean(_log_sigmoid(r)) - np.mean(np.log(1 - 1 / (1 + np.exp(-f)))),
                lambda f: np.mean(np.log(1.0 - 1.0 / (1.0 + np.exp(-f))))),
    'non_saturating': (lambda r, f: -np.mean(_log_sigmoid(r)) - np.mean(_log_sigmoid(-f)),
                       lambda f: -np.mean(_log_sigmoid(f))),
    'wasserstein': (lambda r, f: np.mean(f) - np.mean(r), lambda f: -np.mean(f)),
    'hinge': (lambda r, f: np.mean(np.maximum(0, 1 - r)) + np.mean(np.maximum(0, 1 + f)),
              lambda f: -np.mean(f)),
    'least_squares': (lambda r, f: 0.5 * np.mean((r - 1) ** 2) + 0.5 * np.mean(f ** 2),
                      lambda f: 0.5 * np.mean((f - 1) ** 2)),
    **{f'f_{n}': _np_f_gan(n) for n in F_NAMES},
}

# ----------------------------------------------------------------------------------------
# Registry.


def test_registry_has_exactly_the_named_losses():
  assert set(losses.LOSSES) == set(ALL_NAMES)
  assert set(losses.F_DIVERGENCES) == set(F_NAMES)
  assert losses.get_loss('hinge') is losses.LOSSES['hinge']


def test_get_loss_unknown_name_lists_valid_names():
  with pytest.raises(ConfigError, match='hinge') as info:
    losses.get_loss('bogus')
  assert 'bogus' in str(info.value) and 'f_jeffrey' in str(info.value)


# ----------------------------------------------------------------------------------------
# Every loss against its closed form.


@pytest.mark.parametrize('name', ALL_NAMES)
def test_loss_matches_closed_form_shape_dtype_and_jit(name):
  loss = losses.get_loss(name)
  np_d, np_g = NP_LOSSES[name]
  d_real, d_fake = jnp.asarray(D_REAL, jnp.float32), jnp.asarray(D_FAKE, jnp.float32)
  d_val = loss.d(d_real=d_real, d_fake=d_fake)
  g_val = loss.g(d_fake=d_fake)
  for val in (d_val, g_val):
    chex.assert_shape(val, ())
    chex.assert_type(val, jnp.float32)
  np.testing.assert_allclose(d_val, np_d(D_REAL, D_FAKE), rtol=2e-6, atol=1e-6)
  np.testing.assert_allclose(g_val, np_g(D_FAKE), rtol=2e-6, atol=1e-6)
  chex.assert_trees_all_close(
      (jax.jit(loss.d)(d_real=d_real, d_fake=d_fake), jax.jit(loss.g)(d_fake=d_fake)),
      (d_val, g_val), rtol=1e-6, atol=1e-6)


def test_hinge_hand_example():
  loss = losses.LOSSES['hinge']
  d_real, d_fake = jnp.array([2.0, 0.5]), jnp.array([-2.0, 0.5])
  # mean(relu(1 - [2, .5])) = (0 + .5) / 2; mean(relu(1 + [-2, .5])) = (0 + 1.5) / 2.
  np.testing.assert_allclose(loss.d(d_real=d_real, d_fake=d_fake), 0.25 + 0.75, rtol=1e-7)
  np.testing.assert_allclose(loss.g(d_fake=d_fake), 0.75, rtol=1e-7)


def test_wasserstein_d_loss_is_minus_critic_gap():
  d_real, d_fake = jnp.array([3.0, 1.0]), jnp.array([0.5, -0.5])
  gap = losses.critic_gap(d_real=d_real, d_fake=d_fake)
  np.testing.assert_allclose(gap, 2.0, rtol=1e-7)
  np.testing.assert_allclose(
      losses.LOSSES['wasserstein'].d(d_real=d_real, d_fake=d_fake), -2.0, rtol=1e-7)


def test_minimax_at_optimal_discriminator_is_two_log_two():
  zeros = jnp.zeros((8,))
  np.testing.assert_allclose(
      losses.LOSSES['minimax'].d(d_real=zeros, d_fake=zeros), 2 * np.log(2.0), rtol=1e-6)
  np.testing.assert_allclose(losses.LOSSES['minimax'].g(d_fake=zeros), -np.log(2.0), rtol=1e-6)


def test_f_gan_divergence_gan_is_the_standard_gan():
  d_real, d_fake = jnp.asarray(D_REAL), jnp.asarray(D_FAKE)
  chex.assert_trees_all_close(
      losses.LOSSES['f_gan'].d(d_real=d_real, d_fake=d_fake),
      losses.LOSSES['minimax'].d(d_real=d_real, d_fake=d_fake), rtol=1e-6)
  chex.assert_trees_all_close(losses.LOSSES['f_gan'].g(d_fake=d_fake),
                              losses.LOSSES['non_saturating'].g(d_fake=d_fake), rtol=1e-6)


@pytest.mark.parametrize('name', ALL_NAMES)
def test_values_and_gradients_finite_for_extreme_logits(name):
  loss = losses.get_loss(name)
  d_real = jnp.array([100.0, -100.0, 0.0, 60.0, -60.0])
  d_fake = jnp.array([-100.0, 100.0, 0.0, -60.0, 60.0])
  d_val, d_grads = jax.value_and_grad(
      lambda r, f: loss.d(d_real=r, d_fake=f), argnums=(0, 1))(d_real, d_fake)
  g_val, g_grad = jax.value_and_grad(lambda f: loss.g(d_fake=f))(d_fake)
  chex.assert_tree_all_finite((d_val, d_grads, g_val, g_grad))


def test_safe_exp_is_continuous_with_continuous_slope():
  c = losses.EXP_LINEAR_ABOVE
  for fn in (losses._safe_exp, losses._safe_expm1):
    below, above = fn(jnp.float32(c) - 1e-3), fn(jnp.float32(c) + 1e-3)
    np.testing.assert_allclose(below, np.exp(c) * (1 - 1e-3), rtol=1e-5)
    np.testing.assert_allclose(above, np.exp(c) * (1 + 1e-3), rtol=1e-5)
    np.testing.assert_allclose(jax.grad(fn)(jnp.float32(c) + 1.0), np.exp(c), rtol=1e-5)
    np.testing.assert_allclose(jax.grad(fn)(jnp.float32(c) - 1.0), np.exp(c - 1), rtol=1e-5)


# ----------------------------------------------------------------------------------------
# f-GAN: generators, conjugates, and the value at the optimal critic.

# Points in the domain of each f*.
CONJ_POINTS = {
    'kl': [-3.0, -0.5, 0.7, 2.0, 4.0],
    'reverse_kl': [-5.0, -1.3, -0.4, -0.05],
    'pearson': [-1.5, -0.5, 0.5, 2.0, 5.0],
    'neyman': [-8.0, -1.0, 0.3, 0.9],
    'hellinger': [-8.0, -1.0, 0.3, 0.9],
    'jeffrey': [-5.0, -1.0, 0.5, 2.0, 6.0],
    'jensen_shannon': [-5.0, -1.0, 0.3, 0.6],
    'gan': [-5.0, -1.0, -0.3, -0.01],
    'total_variation': [-0.4, -0.2, 0.1, 0.3],
}


def _numerical_conjugate(f, t):
  """sup_{u > 0} (u t - f(u)), maximised over s = log u (unimodal in s)."""
  res = optimize.minimize_scalar(lambda s: -(np.exp(s) * t - f(np.exp(s))),
                                 bounds=(-30.0, 30.0), method='bounded',
                                 options={'xatol': 1e-11})
  return -res.fun


@pytest.mark.parametrize('name', F_NAMES)
def test_generator_f_matches_table(name):
  u = np.array([0.1, 0.5, 1.0, 2.0, 7.0])
  np.testing.assert_allclose(losses.F_DIVERGENCES[name].f(jnp.asarray(u)), NP_F[name][0](u),
                             rtol=1e-5, atol=1e-6)
  if name != 'gan':   # Nowozin's GAN f has f(1) = -log 4 (D_f = 2 JSD - log 4).
    np.testing.assert_allclose(losses.F_DIVERGENCES[name].f(jnp.float32(1.0)), 0.0, atol=1e-7)


@pytest.mark.parametrize('name', F_NAMES)
def test_conjugate_matches_its_definition(name):
  div = losses.F_DIVERGENCES[name]
  f = NP_F[name][0]
  t = np.array(CONJ_POINTS[name])
  expected = np.array([_numerical_conjugate(f, t_i) for t_i in t])
  np.testing.assert_allclose(div.conjugate(jnp.asarray(t, jnp.float32)), expected, rtol=1e-4)


@pytest.mark.parametrize('name', F_NAMES)
def test_fused_conjugate_of_activation_matches_composition(name):
  div = losses.F_DIVERGENCES[name]
  v = np.linspace(-15.0, 15.0, 121)
  with jax.enable_x64(True):
    unfused = np.asarray(div.conjugate(div.activation(jnp.asarray(v, jnp.float64))))
  fused = np.asarray(div.conjugate_of_activation(jnp.asarray(v, jnp.float32)))
  assert np.all(np.isfinite(fused))
  ok = np.isfinite(unfused)
  assert ok.mean() > 0.5
  np.testing.assert_allclose(fused[ok], unfused[ok], rtol=1e-5, atol=1e-5)
  # The activation lands in the domain of f*, and agrees with Table 2.
  np.testing.assert_allclose(div.activation(jnp.asarray(v[40:81], jnp.float32)),
                             NP_F[name][1](v[40:81]), rtol=1e-5, atol=1e-6)


def test_fused_conjugates_finite_far_out():
  v = jnp.array([-1e4, -500.0, -89.0, 89.0, 500.0, 1e4])
  for name, div in losses.F_DIVERGENCES.items():
    out = np.asarray(div.conjugate_of_activation(v))
    chex.assert_tree_all_finite((out, div.activation(v)))
    if name != 'pearson':   # f* is monotone when f lives on u > 0, and so is f* o g_f.
      assert np.all(np.diff(out) >= 0) or np.all(np.diff(out) <= 0), (name, out)


# P and Q on four points, as batches with multiplicities p * 20 and q * 20.
P_COUNTS = np.array([2, 4, 6, 8])
Q_COUNTS = np.array([7, 2, 4, 7])


@pytest.mark.parametrize('name', [n for n in F_NAMES if n != 'total_variation'])
def test_f_gan_value_at_optimal_critic_is_the_divergence(name):
  f, _, _, f_prime, g_inv = NP_F[name]
  p, q = P_COUNTS / P_COUNTS.sum(), Q_COUNTS / Q_COUNTS.sum()
  v_star = g_inv(f_prime(p / q))    # T*(x) = f'(p / q), v* = g_f^{-1}(T*)
  divergence = np.sum(q * f(p / q))
  d_real = jnp.asarray(np.repeat(v_star, P_COUNTS), jnp.float32)
  d_fake = jnp.asarray(np.repeat(v_star, Q_COUNTS), jnp.float32)
  neg_d_loss = -losses.LOSSES[f'f_{name}'].d(d_real=d_real, d_fake=d_fake)
  np.testing.assert_allclose(neg_d_loss, divergence, rtol=1e-5, atol=1e-6)
  # Any other critic gives a lower bound.
  worse = -losses.LOSSES[f'f_{name}'].d(d_real=d_real + 0.1, d_fake=d_fake + 0.1)
  assert worse < divergence


def test_f_gan_total_variation_approaches_divergence_at_saturated_critic():
  p, q = P_COUNTS / P_COUNTS.sum(), Q_COUNTS / Q_COUNTS.sum()
  v = 20.0 * np.sign(p - q)       # T* = sign(p - q) / 2 is reached only as |v| -> inf
  d_real = jnp.asarray(np.repeat(v, P_COUNTS), jnp.float32)
  d_fake = jnp.asarray(np.repeat(v, Q_COUNTS), jnp.float32)
  np.testing.assert_allclose(
      -losses.LOSSES['f_total_variation'].d(d_real=d_real, d_fake=d_fake),
      0.5 * np.abs(p - q).sum(), rtol=1e-5)


# ----------------------------------------------------------------------------------------
# Lambert W.


def test_lambert_w_matches_scipy():
  x = np.logspace(-30, 30, 241)
  expected = np.real(special.lambertw(x))
  got = jax.jit(losses.lambert_w)(jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(got, expected, rtol=5e-6)
  # The defining identity W e^W = x, checked in log space.
  w = np.asarray(got, np.float64)
  np.testing.assert_allclose(w + np.log(w), np.log(x), rtol=1e-6, atol=1e-6)


def test_lambert_w_gradient_is_implicit_derivative():
  x = np.array([1e-6, 0.3, 1.0, np.e, 50.0, 1e8])
  w = np.real(special.lambertw(x))
  grads = jax.vmap(jax.grad(losses.lambert_w))(jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(grads, w / (x * (1.0 + w)), rtol=1e-5)


def test_log_lambert_w_far_outside_float32_range():
  log_x = np.array([-1e4, -200.0, 200.0, 1e4])
  y = np.asarray(losses.log_lambert_w(jnp.asarray(log_x, jnp.float32)), np.float64)
  # e^y + y = log x.
  np.testing.assert_allclose(np.exp(y) + y, log_x, rtol=1e-6)
