"""Ways of making the critic Lipschitz: weight clipping, gradient penalties, spectral norm.

Shape glossary:
  B      batch size
  x      critic input, [B, ...] (2-D points [B, 2] or images [B, H, W, C])
  w      a weight, [..., n_out]; reshaped to the matrix [m, n_out] (conv kernels:
         m = kh * kw * c_in, as in Miyato et al. 2018)
  u      the power-iteration vector of a weight, [n_out]

The critic is a function `d_fn(x) -> scores [B]` closed over its parameters and state;
x may also be a pair (a pytree of [B, ...] leaves, BiGAN's (x, z)): the penalties then
interpolate each leaf with the same weight and take the gradient norm over the whole pair.
the penalties differentiate it with respect to its input. They never update the
critic's state: `d_fn` must be the critic's non-updating forward pass.
"""
import functools
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from wgan_jax.registry import lookup

# Inside the square root of a gradient norm: the penalty stays finite (and differentiable)
# where the critic's input gradient is exactly zero, e.g. a freshly zero-initialised layer.
NORM_EPS = 1e-12
# Added to vector norms in the power iteration (Miyato et al. use 1e-12).
SN_EPS = 1e-12


def clip_weights(params, *, clip_value: float):
  """WGAN weight clipping: the projection of every parameter onto [-c, c].

  Arjovsky et al. 2017, Algorithm 1 line 7: applied after each critic update. This is a
  projection of the parameters, not of the updates (`optax.clip` would clip updates).

  Args:
    params: the critic's parameter pytree.
    clip_value: c > 0.
  Returns:
    The pytree with every leaf clipped to [-c, c].
  """
  return jax.tree.map(lambda p: jnp.clip(p, -clip_value, clip_value), params)


def _input_gradients(d_fn: Callable, x):
  """Per-example gradients d d_fn(x)_i / d x_i, [B, ...]. Examples are independent."""
  return jax.grad(lambda x_: jnp.sum(d_fn(x_)))(x)


def _per_example_square_norm(g):
  """Sum over non-batch axes (and over the leaves of a pair input) of g^2, [B]."""
  leaves = [jnp.sum(jnp.square(x.reshape(x.shape[0], -1)), axis=-1) for x in jax.tree.leaves(g)]
  total = leaves[0]
  for leaf in leaves[1:]:
    total = total + leaf
  return total


def _per_example_norm(g):
  """sqrt(sum over non-batch axes of g^2 + eps), [B]."""
  return jnp.sqrt(_per_example_square_norm(g) + NORM_EPS)


def interpolate(*, real, fake, alpha):
  """x_hat = alpha * real + (1 - alpha) * fake with alpha [B] broadcast per example (leaf by
  leaf for pair inputs, one alpha per example)."""
  def mix(r, f):
    a = alpha.reshape((-1,) + (1,) * (r.ndim - 1))
    return a * r + (1.0 - a) * f
  return jax.tree.map(mix, real, fake)


def gradient_penalty(d_fn: Callable, *, real, fake, alpha, target: float = 1.0,
                     one_sided: bool = False):
  """WGAN-GP penalty E[(||grad_x D(x_hat)|| - target)^2] on random interpolates.

  Gulrajani et al. 2017, Algorithm 1: x_hat = a * real + (1 - a) * fake, a ~ U[0, 1] drawn
  per example. The one-sided variant penalises only norms above the target,
  E[max(0, ||grad|| - target)^2] (their Appendix / Petzka et al. 2018).

  Args:
    d_fn: the critic's non-updating forward pass, [B, ...] -> [B].
    real, fake: [B, ...] batches.
    alpha: [B] interpolation weights, U[0, 1] (drawn by the caller, so that a data-parallel
      step can draw them for the global batch).
    target: the norm the gradient is pulled towards (1 for a 1-Lipschitz critic).
    one_sided: penalise only norms above target.
  Returns:
    (penalty scalar, gradient norms [B]).
  """
  x_hat = interpolate(real=real, fake=jax.lax.stop_gradient(fake), alpha=alpha)
  norms = _per_example_norm(_input_gradients(d_fn, x_hat))
  excess = norms - target
  if one_sided:
    excess = jax.nn.relu(excess)
  return jnp.mean(jnp.square(excess)), norms


def r1_penalty(d_fn: Callable, *, real):
  """R1 regulariser E_real[||grad_x D(x)||^2] (Mescheder et al. 2018, eq. 9, without gamma/2).

  Args:
    d_fn: the critic's non-updating forward pass, [B, ...] -> [B].
    real: [B, ...] real batch.
  Returns:
    (penalty scalar, gradient norms [B]).
  """
  sq = _per_example_square_norm(_input_gradients(d_fn, real))
  return jnp.mean(sq), jnp.sqrt(sq + NORM_EPS)


class SpectralNormOutput(NamedTuple):
  w_sn: jax.Array      # w / sigma, same shape as w
  u: jax.Array         # the updated power-iteration vector, [n_out]
  sigma: jax.Array     # the spectral-norm estimate, scalar


def _l2_normalize(x):
  return x / (jnp.linalg.norm(x) + SN_EPS)


def power_iteration(w_mat, u, *, n_iters: int = 1):
  """n_iters steps of u <- normalize(W^T normalize(W u)) for W [m, n], u [n].

  n_iters is small and static (1 per training update), so the loop is unrolled.
  """
  for _ in range(n_iters):
    u = _l2_normalize(w_mat.T @ _l2_normalize(w_mat @ u))
  return u


def spectral_normalize(w, u, *, n_iters: int = 1):
  """Spectral normalisation W / sigma(W) with a persistent power-iteration vector.

  Miyato et al. 2018, Algorithm 1: u is kept across training steps, so one iteration per
  update suffices. With W the weight reshaped to [m, n_out] and u' = power_iteration(u),
  sigma = ||W u'|| (= v^T W u' with v = W u' / ||W u'||). u' is a constant for
  differentiation (stop_gradient), so d sigma / d W = v u'^T as in the paper.

  The estimate is half a power iteration past the paper's. The paper keeps its vector on
  the output side, u~ = normalize(W v) formed with the previous update's W, and per update
  computes v = normalize(W^T u~), u~ <- normalize(W v), sigma = u~^T W v = ||W v||: two
  products. Here the kept vector is the input-side v itself (R^n_out), and an update
  redoes the half-step W v with the current W before W^T (three products: W u, W^T, W u').
  With W unchanged between updates both give the same sigma; while W moves, this one has
  taken one more half-iteration, with the current weights.
  With n_iters = 0 the stored u is used as it is: the critic's non-updating passes (the
  penalty's and the generator's) then see exactly the sigma of the last updating pass.

  Args:
    w: weight [..., n_out] (a dense [m, n] or conv kernel [kh, kw, c_in, c_out]).
    u: the power-iteration vector [n_out].
    n_iters: power iterations to run (1 in training updates, 0 otherwise).
  Returns:
    SpectralNormOutput(w_sn, u, sigma).
  """
  w_mat = w.reshape(-1, w.shape[-1])
  u_new = jax.lax.stop_gradient(
      power_iteration(w_mat.astype(jnp.float32), u, n_iters=n_iters))
  sigma = jnp.linalg.norm(w_mat.astype(jnp.float32) @ u_new)
  return SpectralNormOutput((w / sigma).astype(w.dtype), u_new, sigma)


def spectral_norm_bound(params, layer_names=None):
  """Product over layers of the exact largest singular value (SVD) of each reshaped weight.

  An upper bound on the Lipschitz constant of a critic whose activations are 1-Lipschitz.
  Args:
    params: haiku params {module: {'w': ..., ...}}.
    layer_names: modules to include (default: every module with a 'w').
  Returns:
    (bound, {module: sigma}).
  """
  sigmas = {}
  for name, leaves in params.items():
    if 'w' in leaves and (layer_names is None or name in layer_names):
      w = leaves['w']
      sigmas[name] = jnp.linalg.norm(w.reshape(-1, w.shape[-1]), ord=2)
  bound = jnp.prod(jnp.stack(list(sigmas.values()))) if sigmas else jnp.asarray(1.0)
  return bound, sigmas


class LipschitzPlan(NamedTuple):
  """How the train step keeps the critic Lipschitz, from `config.lipschitz`.

  penalty:    None, or (d_fn, *, real, fake, alpha) -> (penalty, gradient norms [B]);
              alpha [B] ~ U[0, 1] are the interpolation weights (used by gp only).
  weight:     the penalty's coefficient in the critic loss.
  clip_value: None, or c for the projection onto [-c, c] after each critic update.
  (Spectral normalisation is a model option, model.d_norm='spectral': nothing in the step.)
  """
  penalty: Optional[Callable]
  weight: float
  clip_value: Optional[float]


def _gp_plan(cfg) -> LipschitzPlan:
  penalty = functools.partial(gradient_penalty, target=cfg.gp_target,
                              one_sided=cfg.gp_one_sided)
  return LipschitzPlan(penalty, cfg.gp_weight, None)


def _r1_plan(cfg) -> LipschitzPlan:
  penalty = lambda d_fn, *, real, fake, alpha: r1_penalty(d_fn, real=real)
  # Mescheder et al.: gamma / 2 * E ||grad D(real)||^2.
  return LipschitzPlan(penalty, cfg.r1_gamma / 2.0, None)


def _nothing_in_the_step(cfg) -> LipschitzPlan:
  del cfg
  return LipschitzPlan(None, 0.0, None)


# lipschitz.method -> the LipschitzPlan of config.lipschitz.
METHODS = {
    'none': _nothing_in_the_step,
    'clip': lambda cfg: LipschitzPlan(None, 0.0, cfg.clip_value),
    'gp': _gp_plan,
    'r1': _r1_plan,
    'spectral': _nothing_in_the_step,  # the critic's layers normalise themselves
}


def make_plan(cfg) -> LipschitzPlan:
  """The LipschitzPlan of `config.lipschitz` (method: a METHODS name)."""
  return lookup(METHODS, cfg.method, 'lipschitz.method')(cfg)
