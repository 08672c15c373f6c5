"""GAN objectives: pure functions of raw critic outputs, looked up by name in LOSSES.

Shape glossary:
  B       batch size
  d_real  raw critic outputs (logits / scores) on real samples, [B]
  d_fake  raw critic outputs on generated samples, [B]
  v       a raw critic output (the f-GAN "variational function" before its activation)
  t       an argument of a Fenchel conjugate f*(t), t = g_f(v)
  u       an argument of an f-divergence's generator f(u), the density ratio p / q
  out     every loss is a float32 scalar []

Conventions:
  * Each loss is a pair `d(*, d_real, d_fake)` (minimised by the critic) and
    `g(*, d_fake)` (minimised by the generator), bundled in a `GanLoss`.
  * Inputs are cast to float32 (losses are computed in float32 under mixed precision).
  * Every exponential that can overflow float32 is evaluated exactly up to an argument of
    EXP_LINEAR_ABOVE and continued linearly (value and slope matched) above it, so values
    and gradients stay finite and keep their direction for any critic output the critic
    can produce in practice (e.g. +-100), where the exact value is e^88 or beyond.
"""
import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from wgan_jax.registry import lookup

# exp(x) is exact for x <= EXP_LINEAR_ABOVE and continued as a tangent line above it
# (e^50 ~ 5e21; float32 overflows at e^88.7).
EXP_LINEAR_ABOVE = 50.0
# Newton steps of the Lambert W solver (quadratic convergence from the initial guess;
# 3 already reach float32 precision, ~1e-7 relative in log W, over log x in [-1e4, 1e4]).
LAMBERT_W_NEWTON_STEPS = 6
_LOG2 = math.log(2.0)


def _f32(x):
  return jnp.asarray(x).astype(jnp.float32)


# ----------------------------------------------------------------------------------------
# Numerically safe elementwise helpers.


def _safe_exp(x):
  """exp(x) for x <= EXP_LINEAR_ABOVE, its tangent line e^c (1 + x - c) above (C^1)."""
  c = EXP_LINEAR_ABOVE
  return jnp.where(x <= c, jnp.exp(jnp.minimum(x, c)), jnp.exp(c) * (1.0 + (x - c)))


def _safe_expm1(x):
  """expm1(x) with the same linear continuation as `_safe_exp` above EXP_LINEAR_ABOVE."""
  c = EXP_LINEAR_ABOVE
  return jnp.where(x <= c, jnp.expm1(jnp.minimum(x, c)),
                   jnp.expm1(c) + jnp.exp(c) * (x - c))


def _xlogx(u):
  """u log u with 0 log 0 = 0."""
  return jnp.where(u > 0, u * jnp.log(jnp.where(u > 0, u, 1.0)), 0.0)


# ----------------------------------------------------------------------------------------
# Lambert W (principal real branch), needed by the Jeffrey conjugate.


def _log_lambert_w_newton(log_x):
  """y = log W(x) from log x, by Newton's method on h(y) = e^y + y - log x."""
  ell = jnp.asarray(log_x)
  # Initial guess: W ~ x / (1 + x) for x <= e (log W = log_sigmoid(log x)), and
  # W ~ L - log L for L = log x > 1. Both lie left of the root; h is convex and
  # increasing, so Newton lands right of the root after one step, then decreases
  # monotonically (quadratically) onto it.
  big = ell > 1.0
  ell_big = jnp.where(big, ell, 2.0)
  y = jnp.where(big, jnp.log(ell_big - jnp.log(ell_big)), jax.nn.log_sigmoid(ell))
  for _ in range(LAMBERT_W_NEWTON_STEPS):
    e_y = jnp.exp(y)
    y = y - (e_y + y - ell) / (e_y + 1.0)
  return y


@jax.custom_jvp
def log_lambert_w(log_x):
  """log W(x) of the Lambert W function's principal branch, computed from log x.

  W(x) solves W e^W = x; for x > 0, y = log W solves e^y + y = log x, which stays well
  scaled for x anywhere in (0, inf) (x itself may be far outside float32). Solved with a
  fixed number of Newton steps (jittable); the derivative is implicit,
  d log W / d log x = 1 / (1 + W).

  Args:
    log_x: log of the argument, any shape, any finite value.
  Returns:
    log W(exp(log_x)), same shape.
  """
  return _log_lambert_w_newton(log_x)


@log_lambert_w.defjvp
def _log_lambert_w_jvp(primals, tangents):
  (log_x,), (d_log_x,) = primals, tangents
  y = log_lambert_w(log_x)
  return y, d_log_x / (1.0 + jnp.exp(y))


def lambert_w(x):
  """Principal real branch W_0(x) of the Lambert W function (W e^W = x) for x > 0.

  JAX has no lambertw; this solves in log space (`log_lambert_w`), accurate to float32
  precision over x in [1e-30, 1e30] and beyond.

  Args:
    x: positive argument, any shape.
  Returns:
    W_0(x), same shape.
  """
  return jnp.exp(log_lambert_w(jnp.log(x)))


# ----------------------------------------------------------------------------------------
# f-divergences (Nowozin, Cseke & Tomioka 2016, "f-GAN", Table 2).


class FDivergence(NamedTuple):
  """One f-divergence D_f(P||Q) = E_Q[f(p/q)] in the f-GAN parametrisation.

  f:                        generator f(u), u = p / q (used by tests and diagnostics).
  activation:               output activation g_f(v), mapping R into the domain of f*.
  conjugate:                Fenchel conjugate f*(t) = sup_u (u t - f(u)) on its domain.
  conjugate_of_activation:  f*(g_f(v)) simplified analytically: finite for every finite v.
  """
  f: Callable
  activation: Callable
  conjugate: Callable
  conjugate_of_activation: Callable


# Kullback-Leibler: f = u log u, g = v, f*(t) = exp(t - 1).
_KL = FDivergence(
    f=_xlogx,
    activation=lambda v: v,
    conjugate=lambda t: jnp.exp(t - 1.0),
    conjugate_of_activation=lambda v: _safe_exp(v - 1.0),
)

# Reverse KL: f = -log u, g = -exp(-v), f*(t) = -1 - log(-t); f*(g(v)) = v - 1.
_REVERSE_KL = FDivergence(
    f=lambda u: -jnp.log(u),
    activation=lambda v: -_safe_exp(-v),
    conjugate=lambda t: -1.0 - jnp.log(-t),
    conjugate_of_activation=lambda v: v - 1.0,
)

# Pearson chi^2: f = (u - 1)^2, g = v, f*(t) = t^2 / 4 + t.
_PEARSON = FDivergence(
    f=lambda u: jnp.square(u - 1.0),
    activation=lambda v: v,
    conjugate=lambda t: 0.25 * jnp.square(t) + t,
    conjugate_of_activation=lambda v: 0.25 * jnp.square(v) + v,
)

# Neyman chi^2: f = (1 - u)^2 / u, g = 1 - exp(v), f*(t) = 2 - 2 sqrt(1 - t);
# 1 - g(v) = e^v, so f*(g(v)) = 2 - 2 e^{v/2} = -2 expm1(v / 2).
_NEYMAN = FDivergence(
    f=lambda u: jnp.square(1.0 - u) / u,
    activation=lambda v: -_safe_expm1(v),
    conjugate=lambda t: 2.0 - 2.0 * jnp.sqrt(1.0 - t),
    conjugate_of_activation=lambda v: -2.0 * _safe_expm1(0.5 * v),
)

# Squared Hellinger: f = (sqrt(u) - 1)^2, g = 1 - exp(-v), f*(t) = t / (1 - t);
# 1 - g(v) = e^{-v}, so f*(g(v)) = (1 - e^{-v}) e^v = expm1(v).
_HELLINGER = FDivergence(
    f=lambda u: jnp.square(jnp.sqrt(u) - 1.0),
    activation=lambda v: -_safe_expm1(-v),
    conjugate=lambda t: t / (1.0 - t),
    conjugate_of_activation=_safe_expm1,
)


def _jeffrey_conjugate(t):
  """f*(t) = W(e^{1-t}) + 1 / W(e^{1-t}) + t - 2 for Jeffrey, in a stable form.

  With y = log W(e^{1-t}): W = (1 - t) - y (from W + log W = 1 - t) and 1 / W = e^{-y},
  so f*(t) = e^{-y} - y - 1 = expm1(-y) - y, free of the cancellation between W and t.
  """
  y = log_lambert_w(1.0 - t)
  return _safe_expm1(-y) - y


# Jeffrey: f = (u - 1) log u, g = v, f*(t) = W(e^{1-t}) + 1/W(e^{1-t}) + t - 2.
_JEFFREY = FDivergence(
    f=lambda u: (u - 1.0) * jnp.log(u),
    activation=lambda v: v,
    conjugate=_jeffrey_conjugate,
    conjugate_of_activation=_jeffrey_conjugate,
)

# Jensen-Shannon: f = -(u + 1) log((1 + u) / 2) + u log u, g = log 2 - log(1 + e^{-v}),
# f*(t) = -log(2 - e^t); e^{g(v)} = 2 sigmoid(v), so f*(g(v)) = softplus(v) - log 2.
_JENSEN_SHANNON = FDivergence(
    f=lambda u: -(u + 1.0) * jnp.log((1.0 + u) / 2.0) + _xlogx(u),
    activation=lambda v: _LOG2 - jax.nn.softplus(-v),
    conjugate=lambda t: -_LOG2 - jnp.log(-jnp.expm1(t - _LOG2)),
    conjugate_of_activation=lambda v: jax.nn.softplus(v) - _LOG2,
)

# GAN: f = u log u - (u + 1) log(u + 1), g = -log(1 + e^{-v}) = log sigmoid(v),
# f*(t) = -log(1 - e^t); 1 - e^{g(v)} = sigmoid(-v), so f*(g(v)) = softplus(v).
_GAN = FDivergence(
    f=lambda u: _xlogx(u) - (u + 1.0) * jnp.log(u + 1.0),
    activation=lambda v: -jax.nn.softplus(-v),
    conjugate=lambda t: -jnp.log(-jnp.expm1(t)),
    conjugate_of_activation=jax.nn.softplus,
)

# Total variation: f = |u - 1| / 2, g = tanh(v) / 2, f*(t) = t on |t| <= 1/2.
_TOTAL_VARIATION = FDivergence(
    f=lambda u: 0.5 * jnp.abs(u - 1.0),
    activation=lambda v: 0.5 * jnp.tanh(v),
    conjugate=lambda t: t,
    conjugate_of_activation=lambda v: 0.5 * jnp.tanh(v),
)

F_DIVERGENCES: dict[str, FDivergence] = {
    'kl': _KL,
    'reverse_kl': _REVERSE_KL,
    'pearson': _PEARSON,
    'neyman': _NEYMAN,
    'hellinger': _HELLINGER,
    'jeffrey': _JEFFREY,
    'jensen_shannon': _JENSEN_SHANNON,
    'gan': _GAN,
    'total_variation': _TOTAL_VARIATION,
}


# ----------------------------------------------------------------------------------------
# The losses.


def minimax_d_loss(*, d_real, d_fake):
  """Critic loss of the original GAN: binary cross-entropy on logits.

  Goodfellow et al. 2014, eq. 1: the discriminator maximises
  E[log sigmoid(d_real)] + E[log(1 - sigmoid(d_fake))]; with log sigmoid(x) = -softplus(-x)
  and log(1 - sigmoid(x)) = -softplus(x) the loss is
  mean softplus(-d_real) + mean softplus(d_fake) (2 log 2 at the optimum d = 0).

  Args:
    d_real: [B] logits on real samples.
    d_fake: [B] logits on generated samples.
  Returns:
    float32 scalar.
  """
  d_real, d_fake = _f32(d_real), _f32(d_fake)
  return jnp.mean(jax.nn.softplus(-d_real)) + jnp.mean(jax.nn.softplus(d_fake))


def minimax_g_loss(*, d_fake):
  """Generator loss of the original (saturating) minimax GAN.

  Goodfellow et al. 2014, eq. 1: the generator minimises E[log(1 - sigmoid(d_fake))]
  = -mean softplus(d_fake).

  Args:
    d_fake: [B] logits on generated samples.
  Returns:
    float32 scalar.
  """
  return -jnp.mean(jax.nn.softplus(_f32(d_fake)))


def non_saturating_g_loss(*, d_fake):
  """Non-saturating generator loss -E[log sigmoid(d_fake)] = mean softplus(-d_fake).

  Goodfellow et al. 2014, section 3 (maximise log D(G(z)) instead of minimising
  log(1 - D(G(z)))); the critic loss is `minimax_d_loss`.

  Args:
    d_fake: [B] logits on generated samples.
  Returns:
    float32 scalar.
  """
  return jnp.mean(jax.nn.softplus(-_f32(d_fake)))


def wasserstein_d_loss(*, d_real, d_fake):
  """WGAN critic loss mean(d_fake) - mean(d_real).

  Arjovsky et al. 2017, eq. 3 / Algorithm 1: the critic maximises
  E[f(real)] - E[f(fake)], an estimate of W1 when f is 1-Lipschitz.

  Args:
    d_real: [B] critic scores on real samples.
    d_fake: [B] critic scores on generated samples.
  Returns:
    float32 scalar (minus the critic gap).
  """
  return jnp.mean(_f32(d_fake)) - jnp.mean(_f32(d_real))


def wasserstein_g_loss(*, d_fake):
  """WGAN (and hinge) generator loss -mean(d_fake).

  Arjovsky et al. 2017, Algorithm 1 line 10; Miyato et al. 2018, eq. 17 for hinge.

  Args:
    d_fake: [B] critic scores on generated samples.
  Returns:
    float32 scalar.
  """
  return -jnp.mean(_f32(d_fake))


def hinge_d_loss(*, d_real, d_fake):
  """Hinge critic loss mean relu(1 - d_real) + mean relu(1 + d_fake).

  Lim & Ye 2017 (Geometric GAN); Miyato et al. 2018, eq. 16. The generator uses
  `wasserstein_g_loss`.

  Args:
    d_real: [B] critic scores on real samples.
    d_fake: [B] critic scores on generated samples.
  Returns:
    float32 scalar.
  """
  d_real, d_fake = _f32(d_real), _f32(d_fake)
  return jnp.mean(jax.nn.relu(1.0 - d_real)) + jnp.mean(jax.nn.relu(1.0 + d_fake))


def least_squares_d_loss(*, d_real, d_fake):
  """LSGAN critic loss 0.5 mean (d_real - b)^2 + 0.5 mean (d_fake - a)^2, a = 0, b = 1.

  Mao et al. 2017, eq. 2 with the 0-1 coding a = 0, b = c = 1.

  Args:
    d_real: [B] raw critic outputs on real samples.
    d_fake: [B] raw critic outputs on generated samples.
  Returns:
    float32 scalar.
  """
  d_real, d_fake = _f32(d_real), _f32(d_fake)
  return 0.5 * jnp.mean(jnp.square(d_real - 1.0)) + 0.5 * jnp.mean(jnp.square(d_fake))


def least_squares_g_loss(*, d_fake):
  """LSGAN generator loss 0.5 mean (d_fake - c)^2, c = 1 (Mao et al. 2017, eq. 2).

  Args:
    d_fake: [B] raw critic outputs on generated samples.
  Returns:
    float32 scalar.
  """
  return 0.5 * jnp.mean(jnp.square(_f32(d_fake) - 1.0))


def f_gan_d_loss(*, d_real, d_fake, divergence: FDivergence):
  """f-GAN critic loss -V(T), V(T) = E_P[g_f(v_real)] - E_Q[f*(g_f(v_fake))].

  Nowozin et al. 2016, eq. 6 and Table 2: sup_T V(T) = D_f(P||Q), reached at
  T*(x) = f'(p(x) / q(x)). The conjugate of the activation is the fused, stable form.

  Args:
    d_real: [B] raw critic outputs v on real samples (P).
    d_fake: [B] raw critic outputs v on generated samples (Q).
    divergence: the FDivergence (activation g_f and conjugate f*).
  Returns:
    float32 scalar, -V(T).
  """
  d_real, d_fake = _f32(d_real), _f32(d_fake)
  value = (jnp.mean(divergence.activation(d_real))
           - jnp.mean(divergence.conjugate_of_activation(d_fake)))
  return -value


def f_gan_g_loss(*, d_fake, divergence: FDivergence):
  """f-GAN generator loss -E_Q[g_f(v_fake)], the practical heuristic of the paper.

  Nowozin et al. 2016, section 3.2: instead of minimising V, i.e. -E_Q[f*(g_f(v))], the
  generator maximises E_Q[g_f(v_fake)] (the same fixed point, stronger gradients early;
  for the GAN divergence this is the non-saturating -log D trick).

  Args:
    d_fake: [B] raw critic outputs v on generated samples.
    divergence: the FDivergence (activation g_f).
  Returns:
    float32 scalar, -mean g_f(d_fake).
  """
  return -jnp.mean(divergence.activation(_f32(d_fake)))


def critic_gap(*, d_real, d_fake):
  """mean(d_real) - mean(d_fake): the W1 estimate of a 1-Lipschitz critic (WGAN, hinge).

  Args:
    d_real: [B] critic scores on real samples.
    d_fake: [B] critic scores on generated samples.
  Returns:
    float32 scalar.
  """
  return jnp.mean(_f32(d_real)) - jnp.mean(_f32(d_fake))


class GanLoss(NamedTuple):
  """A named GAN objective: both players minimise their own function."""
  d: Callable             # (*, d_real, d_fake) -> scalar, minimised by the critic
  g: Callable             # (*, d_fake) -> scalar, minimised by the generator


def _f_gan_loss(divergence: FDivergence) -> GanLoss:
  return GanLoss(d=functools.partial(f_gan_d_loss, divergence=divergence),
                 g=functools.partial(f_gan_g_loss, divergence=divergence))


LOSSES: dict[str, GanLoss] = {
    'minimax': GanLoss(minimax_d_loss, minimax_g_loss),
    'non_saturating': GanLoss(minimax_d_loss, non_saturating_g_loss),
    'wasserstein': GanLoss(wasserstein_d_loss, wasserstein_g_loss),
    'hinge': GanLoss(hinge_d_loss, wasserstein_g_loss),
    'least_squares': GanLoss(least_squares_d_loss, least_squares_g_loss),
    **{f'f_{name}': _f_gan_loss(div) for name, div in F_DIVERGENCES.items()},
}


def get_loss(name: str) -> GanLoss:
  """LOSSES[name]; a ConfigError listing the valid names otherwise."""
  return lookup(LOSSES, name, 'loss')


# ----------------------------------------------------------------------------- weight penalties
# Parameter names that `ortho_penalty` leaves out: class-embedding tables (the shared
# embedding and projection embeddings, 'embeddings'; conditional batch norm's per-class
# 'gamma' / 'beta'). BigGAN-PyTorch excludes G.shared ("Don't ortho reg shared, it makes
# no sense. Really we should blacklist any embeddings", train_fns.py).
ORTHO_EXCLUDED = ('embeddings', 'gamma', 'beta')


def ortho_penalty(params) -> jax.Array:
  """BigGAN's modified orthogonal regularisation (Brock et al. 2019, Section 3.1), no beta:

    R(W) = ||W^T W (.) (1 - I)||_F^2,   summed over every weight W of `params`,

  W a weight of 2 or more axes reshaped to [m, c_out] (a dense [c_in, c_out], a kernel
  [kh * kw * c_in, c_out]), so W^T W [c_out, c_out] is the Gram matrix of the output
  filters, as BigGAN-PyTorch's utils.ortho (w = param.view(c_out, -1), w w^T). Vectors,
  scalars and ORTHO_EXCLUDED names are left out. Computed in float32.

  The objective adds beta * R. BigGAN-PyTorch adds the gradient 2 beta (w w^T (.) (1 - I)) w
  directly, which is the gradient of (beta / 2) R: its G_ortho = b equals beta = b / 2 here.

  Args:
    params: a parameter tree (haiku: {module: {name: array}}).
  Returns:
    float32 scalar [].
  """
  total = jnp.zeros((), jnp.float32)
  for path, w in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = getattr(path[-1], 'key', getattr(path[-1], 'name', None))
    if w.ndim < 2 or name in ORTHO_EXCLUDED:
      continue
    w = w.reshape(-1, w.shape[-1]).astype(jnp.float32)
    gram = w.T @ w
    total = total + jnp.sum(jnp.square(gram * (1.0 - jnp.eye(gram.shape[0], dtype=gram.dtype))))
  return total
