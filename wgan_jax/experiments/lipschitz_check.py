"""Empirical Lipschitz constants of trained critics against the spectral-norm product bound.

  python -m wgan_jax.experiments.lipschitz_check --out_dir=runs/lipschitz_check

For each method of the toy suite (WGAN with clipping, WGAN-GP, SNGAN, the non-saturating
GAN; see wgan_jax.experiments.toy_suite) a GAN is trained on `--dataset` with its config
file's toy recipe (`--steps`, MLP width `--hidden`), and its critic f is probed on points of
four kinds: real samples, generated samples, real-generated interpolates and uniform points
on a box around both (`--points` of each):
  * max_pair_ratio  the largest |f(x) - f(y)| / |x - y| over random pairs of those points
                    (`--pairs` of them) and over close pairs y = x + 1e-3 u (u a random unit
                    vector, one per point);
  * max_grad_norm   the largest |grad f(x)| over the points;
  * bound           the product over layers of the largest singular value of each layer's
                    effective weight (wgan_jax.lipschitz.spectral_norm_bound): the raw
                    weight, or for spectrally normalised layers W / sigma with the sigma the
                    critic's forward pass uses (from its stored power-iteration vector).
Both empirical values are lower bounds on f's Lipschitz constant on the plane and the
product is an upper bound (ReLU is 1-Lipschitz and |W_L ... W_1 x| <= prod sigma_l |x|), so
empirical <= bound always; how far below it they sit shows how loose the bound is: SNGAN's
critic has bound ~1 (each normalised layer sigma ~1) yet a much smaller slope, clipping's
bound is set by the box, and an unconstrained GAN discriminator's bound is far above its
actual slope. (SNGAN's product is slightly above 1: one power iteration per update
underestimates sigma when the top singular values are close, so W / sigma can have a
spectral norm a few percent above 1; the bound uses the exact SVD of W / sigma.)

Outputs: `<out_dir>/lipschitz_check.json`, `<out_dir>/lipschitz_check.png` (log-scale
bars per method) and the JSON line on stdout.
"""
import time
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from wgan_jax import config_lib, lipschitz, train
from wgan_jax import step as step_lib
from wgan_jax.errors import ConfigError
from wgan_jax.experiments import common, toy_suite
from wgan_jax.rng import PROBE_STREAM

NEAR_DISTANCE = 1e-3


class Settings(NamedTuple):
  methods: Sequence[str] = tuple(toy_suite.METHODS)
  dataset: str = 'gaussians8'
  steps: int = 1000
  hidden: int = 128
  seed: int = 0
  points: int = 4096
  pairs: int = 200_000


# The command's flags: one per Settings field named here, with its help text.
FLAG_HELP = {
    'methods': toy_suite.FLAG_HELP['methods'],
    'dataset': f'One of {", ".join(toy_suite.DATASETS)}.',
    'steps': 'Generator updates per method.',
    'hidden': 'Width of the toy MLPs.',
    'seed': toy_suite.FLAG_HELP['seed'],
    'points': 'Probe points of each kind.',
    'pairs': 'Random point pairs.',
}


def effective_weights(d_params, d_state, *, spectral: bool):
  """The critic's parameters with every 'w' replaced by the weight its forward pass uses.

  For spectrally normalised critics that is W / sigma, sigma = |W u| with the stored u
  (lipschitz.spectral_normalize with n_iters=0, as the non-updating pass computes it).
  """
  if not spectral:
    return d_params
  out = {}
  for module, leaves in d_params.items():
    leaves = dict(leaves)
    if 'w' in leaves and module in d_state and 'u' in d_state[module]:
      leaves['w'] = lipschitz.spectral_normalize(leaves['w'], d_state[module]['u'],
                                                 n_iters=0).w_sn
    out[module] = leaves
  return out


def probe_points(run, state, n: int, seed: int) -> np.ndarray:
  """[4n, 2]: n real, n generated, n interpolates, n uniform on a box around both."""
  key = jax.random.fold_in(jax.random.PRNGKey(seed), PROBE_STREAM)
  k_z, k_a, k_u = jax.random.split(key, 3)
  real = np.asarray(run.source.eval_real(n, index=1), np.float32)
  z = step_lib.sample_z(k_z, n, run.models.z_dim)
  fake = np.asarray(run.sample_fn()(state.g.params, state.g.state, z), np.float32)
  alpha = np.asarray(jax.random.uniform(k_a, (n, 1)))
  inter = alpha * real + (1 - alpha) * fake
  both = np.concatenate([real, fake])
  both = both[np.isfinite(both).all(axis=1)]
  lo, hi = both.min(axis=0) - 0.5, both.max(axis=0) + 0.5
  uniform = np.asarray(jax.random.uniform(k_u, (n, 2), minval=lo, maxval=hi))
  return np.concatenate([real, fake, inter, uniform]).astype(np.float32)


def empirical_lipschitz(critic, points: np.ndarray, *, pairs: int, seed: int) -> dict:
  """max |f(x) - f(y)| / |x - y| over random and close pairs, and max |grad f| over points."""
  rng = np.random.default_rng([seed, PROBE_STREAM])
  n = len(points)
  i, j = rng.integers(0, n, pairs), rng.integers(0, n, pairs)
  keep = np.linalg.norm(points[i] - points[j], axis=1) > 1e-6
  x_far, y_far = points[i[keep]], points[j[keep]]
  u = rng.standard_normal(points.shape)
  u /= np.linalg.norm(u, axis=1, keepdims=True)
  x_near, y_near = points, (points + NEAR_DISTANCE * u).astype(np.float32)
  # One critic evaluation of every point involved (one compile), and one gradient pass.
  xs = np.concatenate([x_far, y_far, x_near, y_near])
  values = np.asarray(jax.jit(critic)(jnp.asarray(xs)), np.float64)
  fx_far, fy_far, fx_near, fy_near = np.split(
      values, np.cumsum([len(x_far), len(y_far), len(x_near)]))
  dist = lambda x, y: np.linalg.norm(np.float64(x) - np.float64(y), axis=1)
  far = np.abs(fx_far - fy_far) / dist(x_far, y_far)
  near = np.abs(fx_near - fy_near) / dist(x_near, y_near)
  grad_norm = jax.jit(lambda x: jnp.linalg.norm(jax.grad(lambda x_: jnp.sum(critic(x_)))(x),
                                                axis=-1))
  grads = np.asarray(grad_norm(jnp.asarray(points)))
  return {'max_pair_ratio': float(max(far.max(initial=0.0), near.max(initial=0.0))),
          'max_far_pair_ratio': float(far.max(initial=0.0)),
          'max_near_pair_ratio': float(near.max(initial=0.0)),
          'max_grad_norm': float(grads.max()), 'mean_grad_norm': float(grads.mean())}


def check_method(method: str, settings: Settings) -> dict:
  """Trains `method` and compares its critic's empirical Lipschitz constants with the bound."""
  start = time.time()
  config = toy_suite.pair_config(method, settings.dataset, toy_suite.Settings(
      steps=settings.steps, hidden=settings.hidden, seed=settings.seed))
  run = train.Run(config)
  state, train_s = common.train_gan(run)
  d_params, d_state = jax.device_get((state.d.params, state.d.state))
  critic = lambda x: run.models.d.apply(d_params, d_state, None, x, update_stats=False)[0]
  points = probe_points(run, state, settings.points, settings.seed)
  emp = empirical_lipschitz(critic, points, pairs=settings.pairs, seed=settings.seed)
  spectral = config_lib.critic_norm(config) == 'spectral'
  if config_lib.critic_norm(config) == 'layer':
    raise ConfigError('the spectral-norm product bound needs a critic without layer norm')
  bound, sigmas = lipschitz.spectral_norm_bound(
      effective_weights(d_params, d_state, spectral=spectral))
  bound = float(bound)
  return {'method': method, 'label': toy_suite.METHODS[method].label,
          'lipschitz_method': config.lipschitz.method, 'bound': bound,
          'layer_sigmas': {k: float(v) for k, v in sigmas.items()}, **emp,
          'bound_holds': bound >= max(emp['max_pair_ratio'], emp['max_grad_norm']),
          'tightness': max(emp['max_pair_ratio'], emp['max_grad_norm']) / bound,
          'steps': settings.steps, 'train_s': round(train_s, 1),
          'wall_time_s': round(time.time() - start, 1)}


def _check(settings: Settings) -> None:
  for name in ('steps', 'hidden', 'points', 'pairs'):
    if getattr(settings, name) < 1:
      raise ConfigError(f'--{name} must be >= 1, got {getattr(settings, name)}')
  for m in settings.methods:
    if m not in toy_suite.METHODS:
      raise ConfigError(f'unknown method {m!r}; valid: {", ".join(toy_suite.METHODS)}')
  if settings.dataset not in toy_suite.DATASETS:
    raise ConfigError(f'unknown dataset {settings.dataset!r}; valid: '
                      f'{", ".join(toy_suite.DATASETS)}')


def run(settings: Settings = Settings()) -> dict:
  _check(settings)
  start = time.time()
  rows = [check_method(m, settings) for m in settings.methods]
  return {'experiment': 'lipschitz_check', 'dataset': settings.dataset,
          'steps': settings.steps, 'hidden': settings.hidden, 'points_per_kind': settings.points,
          'pairs': settings.pairs, 'rows': rows,
          'all_bounds_hold': all(r['bound_holds'] for r in rows),
          'wall_time_s': round(time.time() - start, 1)}


def plot(path: str, result: dict) -> None:
  rows = result['rows']
  with common.figure(path, figsize=(8, 5)) as (_, ax):
    x = np.arange(len(rows))
    for k, (key, label) in enumerate((('bound', 'product of layer spectral norms'),
                                      ('max_grad_norm', 'max |grad f| over points'),
                                      ('max_pair_ratio', 'max |f(x)-f(y)| / |x-y| over pairs'))):
      ax.bar(x + (k - 1) * 0.27, [r[key] for r in rows], width=0.27, label=label)
    ax.set_yscale('log')
    ax.set_xticks(x, [r['label'] for r in rows])
    ax.set(ylabel='Lipschitz constant (log scale)',
           title=f'Trained critics on {result["dataset"]}, {result["steps"]} steps')
    ax.grid(alpha=0.3, axis='y')
    ax.legend(fontsize=8, loc='upper center', bbox_to_anchor=(0.5, -0.08), ncol=3)


def write_outputs(result: dict, out_dir: str) -> dict:
  return common.write_json_and_figure(result, out_dir, 'lipschitz_check', plot)


# ----------------------------------------------------------------------------- command
if __name__ == '__main__':
  common.entry(Settings, FLAG_HELP, out_dir='runs/lipschitz_check', check=_check,
               run=lambda settings, _: run(settings), write=write_outputs,
               names={'methods': toy_suite.METHODS})
