r"""Parallel lines (Arjovsky et al. 2017, Example 1) with the generator fixed.

  python -m wgan_jax.experiments.parallel_lines --method=spectral --out_dir=runs/lines

P0 = (0, U[0, 1]) is the real distribution and P_theta = (theta, U[0, 1]) the "generated"
one, sampled directly (there is no generator). For every theta in `--thetas` a toy MLP
critic (wgan_jax.models) is trained with the codebase's own critic update
(wgan_jax.step.make_critic_update: the loss from wgan_jax.losses, the Lipschitz method from
wgan_jax.lipschitz), all thetas at once (the update is vmapped over theta, one compile).
Then, on fresh samples (`--eval_samples` per line):

  spectral, gp, clip  (Wasserstein loss)  the dual estimate E_P0 f - E_Ptheta f;
  js                  (minimax GAN loss)  the Jensen-Shannon estimate of the discriminator
                      D = sigmoid(f): JS = log 2 + (E_P0 log D + E_Ptheta log(1 - D)) / 2,
                      exact for the optimal D = p0 / (p0 + p_theta).

What they should converge to (wgan_jax.experiments.lines_theory has the derivations):
  spectral  |theta| = W1: with spectral normalisation every layer has spectral norm 1 and
            ReLU is 1-Lipschitz, so f is 1-Lipschitz and E_P0 f - E_Ptheta f <= |theta|; the
            bound is reached by f(x, y) = -sign(theta) x, which the MLP represents exactly
            (one ReLU unit with a large enough bias is linear on the strip between the lines).
  gp        lambda = --gp_weight (10, the paper's). Interpolates x_hat = a x0 + (1 - a)
            x_theta have x-coordinate (1 - a) theta, uniform between the lines. For a critic
            of x alone with slope s between the lines, E_P0 f - E_Ptheta f = s |theta| and
            the penalty is lambda (s - 1)^2 at every interpolate; the objective separates
            over x into concave functions with one maximiser, so the optimal such critic is
            linear with s* = 1 + |theta| / (2 lambda), and
                E_P0 f - E_Ptheta f = |theta| + theta^2 / (2 lambda)   (gp_optimum),
            above W1 by theta^2 / (2 lambda): +5% at theta = 1, +10% at theta = 2.
            Critics that also use y do slightly better (the interpolates' height is not
            uniform given x, so the penalty is weaker near the strip's edges): the exact
            optimum, solved numerically, is 0.5-1% above the closed form for theta in
            [0.25, 2] (lines_theory.gp_optimum_2d); the check uses the closed form.
  clip      proportional to |theta|, not equal: with every weight and bias in [-c, c], the
            critic's slope along x is at most k = hidden^layers c^(layers + 1) (a sum over
            the paths from x to the output, |activation'| <= 1), and the critic that reaches
            it, every weight at a corner of the box with its units in their linear range on
            the strip, is linear in x: the estimate is k |theta| (`clip_slope_bound`; 2.6e-3
            for 3 x 64 units and c = 0.01). The default critic uses tanh, which clipping keeps
            in its linear range, so every theta's critic gets to that corner; with
            `--activation=relu` units left inactive on a line get no gradient and the
            critics stall in theta-dependent local optima (estimate / |theta| scattered by
            20-40% in our runs).
  js        log 2 for every theta != 0 (the supports are disjoint), 0 at theta = 0.

Outputs: the JSON line {"method", "thetas", "estimates", "expected", "relative_errors",
"max_relative_error", "check", ...} on stdout ("check": the accuracy this method must reach,
e.g. max_relative_error <= 2% over 0.25 <= |theta| <= 2, and whether it passed) and in `<out_dir>/parallel_lines_<method>.json`, and
`<out_dir>/parallel_lines.png`: the estimates against theta of every method whose JSON is
in out_dir (run the four methods into one out_dir for the full figure), with |theta|, the
gradient-penalty optimum and log 2 drawn.
"""
import glob
import json
import os
import time
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from wgan_jax.families import CriticView
from wgan_jax.state import PlayerState
from wgan_jax import cli, config_lib, lipschitz, losses, optim
from wgan_jax import step as step_lib
from wgan_jax.errors import ConfigError
from wgan_jax.experiments import common, lines_theory
from wgan_jax.registry import lookup
from wgan_jax.rng import LINES_EVAL_STREAM, LINES_INIT_STREAM

# The checks apply to thetas with |theta| in this range.
CHECK_RANGE = (0.25, 2.0)
DEFAULT_THETAS = (-2.0, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 1.5, 2.0)


class MethodSpec(NamedTuple):
  """One way of training the critic on the lines, and its default recipe."""
  loss: str        # a wgan_jax.losses.LOSSES name
  lipschitz: str   # a wgan_jax.lipschitz.METHODS name
  d_norm: str      # the critic's normalisation (models)
  activation: str  # the critic's nonlinearity (models: relu | tanh)
  optimizer: str   # a wgan_jax.optim.OPTIMIZERS name
  lr: float
  b1: float
  b2: float
  eps: float
  steps: int       # critic updates


# Adam with a linear decay to 0 converges the smooth objectives precisely. Clipping: RMSProp
# as in WGAN (Arjovsky et al. 2017, Algorithm 1) but at 5e-4 (their 5e-5 does not reach the
# corner of the clipping box in 2000 updates), on a tanh critic: with ReLU, units that the
# tiny clipped weights leave inactive on a line get no gradient and each theta's critic
# stalls in its own local optimum (estimate / |theta| then scatters by 20-40%); tanh is
# nearly linear at the pre-activations clipping allows, so every critic converges to the
# box's corner, whose estimate is exactly k |theta| (`clip_slope_bound`).
METHODS: dict[str, MethodSpec] = {
    'spectral': MethodSpec(loss='wasserstein', lipschitz='spectral', d_norm='spectral',
                           activation='relu', optimizer='adam', lr=2e-3, b1=0.5, b2=0.9,
                           eps=1e-8, steps=2000),
    'gp': MethodSpec(loss='wasserstein', lipschitz='gp', d_norm='none', activation='relu',
                     optimizer='adam', lr=2e-3, b1=0.5, b2=0.9, eps=1e-8, steps=2000),
    'clip': MethodSpec(loss='wasserstein', lipschitz='clip', d_norm='none', activation='tanh',
                       optimizer='rmsprop', lr=5e-4, b1=0.0, b2=0.99, eps=1e-8, steps=2000),
    'js': MethodSpec(loss='minimax', lipschitz='none', d_norm='none', activation='relu',
                     optimizer='adam', lr=2e-3, b1=0.5, b2=0.9, eps=1e-8, steps=1000),
}


class Settings(NamedTuple):
  """Everything one run depends on (the command's flags)."""
  method: str = 'spectral'
  thetas: Sequence[float] = DEFAULT_THETAS
  steps: int = 0            # 0: the method's default
  seed: int = 0
  batch_size: int = 256
  hidden: int = 64
  layers: int = 3
  activation: str = ''      # '': the method's default
  lr: float = 0.0           # 0: the method's default
  gp_weight: float = 10.0
  clip_value: float = 0.01
  eval_samples: int = 65536


# The command's flags: one per Settings field named here, with its help text.
FLAG_HELP = {
    'method': f'One of {", ".join(METHODS)}, a comma-separated list, or all.',
    'thetas': 'Comma-separated offsets theta of the second line.',
    'steps': 'Critic updates (0: the method default: ' +
             ', '.join(f'{k} {v.steps}' for k, v in METHODS.items()) + ').',
    'seed': 'Random seed.',
    'batch_size': 'Samples per line per critic update.',
    'hidden': 'Width of the critic MLP.',
    'layers': 'Hidden layers of the critic MLP.',
    'activation': 'Critic nonlinearity, relu or tanh (empty: the method default: tanh for '
                  'clip, relu otherwise).',
    'lr': 'Critic learning rate (0: the method default).',
    'gp_weight': 'lambda of the gradient penalty.',
    'clip_value': 'c of the weight clipping.',
    'eval_samples': 'Fresh samples per line for estimates.',
}


# ----------------------------------------------------------------------------- data
def sample_lines(key, theta, n: int):
  """(real [n, 2] ~ P0 = (0, U[0, 1]), fake [n, 2] ~ P_theta = (theta, U[0, 1]))."""
  k_real, k_fake = jax.random.split(key)
  zeros = jnp.zeros((n,), jnp.float32)
  real = jnp.stack([zeros, jax.random.uniform(k_real, (n,))], axis=-1)
  fake = jnp.stack([zeros + theta, jax.random.uniform(k_fake, (n,))], axis=-1)
  return real, fake


# ----------------------------------------------------------------------------- estimates
def wasserstein_estimate(d_real, d_fake):
  """E_P0 f - E_Ptheta f (losses.critic_gap)."""
  return losses.critic_gap(d_real=d_real, d_fake=d_fake)


def js_estimate(d_real, d_fake):
  """log 2 + (E_P log D + E_Q log(1 - D)) / 2 with D = sigmoid(logits).

  Goodfellow et al. 2014, Theorem 1: the minimax critic objective at D is
  -2 log 2 + 2 JS for the optimal D, so JS >= log 2 - minimax_d_loss / 2 for every D.
  """
  return jnp.log(2.0) - 0.5 * losses.minimax_d_loss(d_real=d_real, d_fake=d_fake)


def expected_value(method: str, theta: float, gp_weight: float) -> Optional[float]:
  """What a converged critic of `method` estimates; None for clip (only proportional)."""
  if method == 'gp':
    return lines_theory.gp_optimum(theta, gp_weight)
  if method == 'js':
    return lines_theory.js(theta)
  if method == 'spectral':
    return lines_theory.w1(theta)
  return None


# ----------------------------------------------------------------------------- training
def _resolve(settings: Settings) -> tuple[MethodSpec, int, float]:
  spec = lookup(METHODS, settings.method, 'method')
  steps = settings.steps or spec.steps
  lr = settings.lr or spec.lr
  if settings.activation not in ('', 'relu', 'tanh'):
    raise ConfigError(f'--activation must be relu or tanh (empty: the method default), got '
                      f'{settings.activation!r}')
  for name in ('batch_size', 'hidden', 'layers', 'eval_samples'):
    if getattr(settings, name) < 1:
      raise ConfigError(f'--{name} must be >= 1, got {getattr(settings, name)}')
  if steps < 1:
    raise ConfigError(f'--steps must be >= 1 (0: the method default), got {steps}')
  common.check_positive({'gp_weight': settings.gp_weight, 'clip_value': settings.clip_value,
                         'lr': lr})
  if not settings.thetas:
    raise ConfigError('--thetas must list at least one theta')
  return spec, steps, lr


def make_trainer(settings: Settings):
  """The vmapped-over-theta critic training, jitted (one compile for all thetas).

  Returns:
    (init, train, critic, steps, lr): init(keys [T]) -> the critic's PlayerState with a leading theta
    axis; train(carry, thetas [T]) -> (carry, d_loss [steps, T]), all `steps` critic
    updates in one lax.scan; critic the haiku transform; steps and lr resolved.
  """
  spec, steps, lr = _resolve(settings)
  critic = common.toy_critic(hidden=settings.hidden, layers=settings.layers, d_norm=spec.d_norm,
                             activation=settings.activation or spec.activation)
  plan = lipschitz.make_plan(common.lipschitz_config(
      spec.lipschitz, gp_weight=settings.gp_weight, clip_value=settings.clip_value))
  d_tx = optim.make_optimizer(
      config_lib.optimizer_config(name=spec.optimizer, lr=lr, b1=spec.b1, b2=spec.b2,
                                  eps=spec.eps, schedule='linear'),
      total_updates=steps, player='d')
  critic_update = step_lib.make_critic_update(
      d_apply=critic.apply, loss=losses.get_loss(spec.loss), plan=plan, d_tx=d_tx)
  base_key = jax.random.PRNGKey(settings.seed)
  batch = settings.batch_size

  def init_one(key):
    params, state = critic.init(key, jnp.zeros((batch, 2), jnp.float32), update_stats=True)
    return PlayerState(params, state, d_tx.init(params))

  def update_one(carry, theta, key):
    data_key, penalty_key = jax.random.split(key)
    real, fake = sample_lines(data_key, theta, batch)
    return critic_update(carry, CriticView(real=real, fake=fake), key=penalty_key)

  def train(carry, thetas):
    index = jnp.arange(thetas.shape[0])

    def body(carry, i):
      # Update i of theta number t draws from fold_in(fold_in(seed, t), i).
      keys = jax.vmap(lambda t: jax.random.fold_in(jax.random.fold_in(base_key, t), i))(index)
      carry, metrics = jax.vmap(update_one)(carry, thetas, keys)
      return carry, metrics['d_loss']

    return jax.lax.scan(body, carry, jnp.arange(steps))

  init = jax.jit(jax.vmap(init_one))
  return init, jax.jit(train, donate_argnums=0), critic, steps, lr


def evaluate(critic, carry, thetas, *, method: str, n: int, seed: int) -> list[float]:
  """The estimate of each theta's critic on n fresh samples per line."""
  estimate = js_estimate if method == 'js' else wasserstein_estimate

  @jax.jit
  def one(params, state, theta, key):
    real, fake = sample_lines(key, theta, n)
    scores, _ = critic.apply(params, state, None, jnp.concatenate([real, fake]),
                             update_stats=False)
    return estimate(scores[:n], scores[n:])

  key = jax.random.fold_in(jax.random.PRNGKey(seed), LINES_EVAL_STREAM)
  out = []
  for i, theta in enumerate(thetas):
    params, state = jax.tree.map(lambda a: a[i], (carry.params, carry.state))
    out.append(float(one(params, state, jnp.float32(theta), jax.random.fold_in(key, i))))
  return out


def run(settings: Settings = Settings()) -> dict:
  """Trains one critic per theta and returns the result dict (see the module docstring)."""
  start_time = time.time()
  spec = lookup(METHODS, settings.method, 'method')
  init, train, critic, steps, lr = make_trainer(settings)
  thetas = jnp.asarray(settings.thetas, jnp.float32)
  # Every theta's critic starts from the same weights: the estimates differ only by theta.
  init_key = jax.random.fold_in(jax.random.PRNGKey(settings.seed), LINES_INIT_STREAM)
  init_keys = jnp.stack([init_key] * len(settings.thetas))
  carry, d_loss = train(init(init_keys), thetas)
  estimates = evaluate(critic, carry, settings.thetas, method=settings.method,
                       n=settings.eval_samples, seed=settings.seed)
  result = summarise(settings, estimates)
  result.update(steps=steps, lr=lr, batch_size=settings.batch_size, hidden=settings.hidden,
                layers=settings.layers, activation=settings.activation or spec.activation,
                seed=settings.seed, eval_samples=settings.eval_samples,
                final_d_loss=np.asarray(d_loss[-1]).tolist(),
                wall_time_s=round(time.time() - start_time, 1))
  return result


def clip_slope_bound(settings: Settings) -> float:
  """hidden^layers c^(layers + 1): the largest slope along x of a critic clipped to [-c, c].

  d f / d x is a sum over the hidden^layers paths from the input x to the output of products
  of layers + 1 weights (each |w| <= c) and activation slopes (<= 1 for relu and tanh).
  """
  return float(settings.hidden) ** settings.layers * settings.clip_value ** (settings.layers + 1)


def summarise(settings: Settings, estimates: Sequence[float]) -> dict:
  """The result dict: estimates against their expected values, and the checks."""
  method, thetas = settings.method, [float(t) for t in settings.thetas]
  expected = [expected_value(method, t, settings.gp_weight) for t in thetas]
  in_range = [CHECK_RANGE[0] <= abs(t) <= CHECK_RANGE[1] for t in thetas]
  result = {'method': method, 'thetas': thetas, 'estimates': list(estimates),
            'expected': expected, 'w1': [abs(t) for t in thetas]}
  if method == 'clip':
    # Proportionality: the least-squares slope through the origin and the deviations from it.
    t_abs = np.abs(thetas)
    est = np.asarray(estimates)
    slope = float(est @ t_abs / max(t_abs @ t_abs, 1e-12))
    result['clip_slope'] = slope
    result['clip_slope_bound'] = clip_slope_bound(settings)
    result['expected'] = expected = [slope * a for a in t_abs.tolist()]
    result['clip_value'] = settings.clip_value
  if method == 'gp':
    result['gp_weight'] = settings.gp_weight
  if method == 'js':
    # |estimate - log 2| (absolute) for theta != 0: the tolerance is 0.05.
    errors = [abs(e - x) if t != 0 else None for e, x, t in zip(estimates, expected, thetas)]
    result['absolute_errors'] = errors
    result['max_absolute_error'] = max((e for e, ok, t in zip(errors, in_range, thetas)
                                        if ok and e is not None), default=None)
    return _with_check(result, 'max_absolute_error')
  errors = [abs(e - x) / x if x else None for e, x in zip(estimates, expected)]
  result['relative_errors'] = errors
  result['max_relative_error'] = max((e for e, ok in zip(errors, in_range) if ok and e is not None),
                                     default=None)
  return _with_check(result, 'max_relative_error')


# The accuracy each method must reach, for |theta| in CHECK_RANGE: spectral within 2% of |theta|, gp within
# 2% of gp_optimum, clip within 2% of its fitted line k |theta| (proportional), js within
# 0.05 of log 2.
TOLERANCES = {'spectral': 0.02, 'gp': 0.02, 'clip': 0.02, 'js': 0.05}


def _with_check(result: dict, error_key: str) -> dict:
  """Adds result['check'] = {what, tolerance, passed} (passed None without a theta to check)."""
  error, tol = result[error_key], TOLERANCES[result['method']]
  result['check'] = {'what': f'{error_key} over {CHECK_RANGE[0]:g} <= |theta| <= '
                             f'{CHECK_RANGE[1]:g}', 'tolerance': tol,
                     'passed': None if error is None else bool(error <= tol)}
  return result


# ----------------------------------------------------------------------------- outputs
def result_path(out_dir: str, method: str) -> str:
  return os.path.join(out_dir, f'parallel_lines_{method}.json')


def load_results(out_dir: str) -> dict:
  """{method: result} of every parallel_lines_<method>.json in out_dir."""
  results = {}
  for path in sorted(glob.glob(os.path.join(out_dir, 'parallel_lines_*.json'))):
    try:
      with open(path) as f:
        r = json.load(f)
    except (OSError, ValueError):
      continue
    if isinstance(r, dict) and r.get('method') in METHODS:
      results[r['method']] = r
  return results


STYLE = {'spectral': ('tab:blue', 'o'), 'gp': ('tab:red', 's'), 'clip': ('tab:green', '^'),
         'js': ('tab:purple', 'D')}


def plot(path: str, results: dict) -> None:
  """Estimates vs theta: spectral and gp critics, clipped critics, the JS estimate.

  Three panels: E_P0 f - E_Ptheta f of the spectral and gp critics with |theta| and the
  gp optimum; the clipped critic's estimates (k |theta| with k << 1) with its fitted line
  and the box's bound; the discriminator's JS estimate with log 2.
  """
  with common.figure(path, 1, 3, figsize=(15, 4.5)) as (fig, (ax_w, ax_c, ax_js)):
    all_thetas = [t for r in results.values() for t in r['thetas']] or [-2.0, 2.0]
    grid = np.linspace(min(all_thetas + [-0.1]), max(all_thetas + [0.1]), 401)
    ax_w.plot(grid, np.abs(grid), 'k-', lw=1, label='|theta| = W1')
    if 'gp' in results:
      lam = results['gp'].get('gp_weight', 10.0)
      ax_w.plot(grid, [lines_theory.gp_optimum(t, lam) for t in grid], 'r:', lw=1,
                label=f'|theta| + theta^2 / (2 lambda), lambda = {lam:g}')
    for method in ('gp', 'spectral'):
      if method in results:
        color, marker = STYLE[method]
        ax_w.plot(results[method]['thetas'], results[method]['estimates'], marker,
                  color=color, ms=8 if method == 'gp' else 5, label=method)
    if 'clip' in results:
      r = results['clip']
      color, marker = STYLE['clip']
      ax_c.plot(grid, r['clip_slope'] * np.abs(grid), '-', color=color, lw=1,
                label=f'k |theta|, fitted k = {r["clip_slope"]:.4g}')
      if r.get('clip_slope_bound'):
        ax_c.plot(grid, r['clip_slope_bound'] * np.abs(grid), 'k:', lw=1,
                  label=f'box bound {r["clip_slope_bound"]:.4g} |theta|')
      ax_c.plot(r['thetas'], r['estimates'], marker, color=color,
                label=f'clip c = {r.get("clip_value", 0.01):g}')
    if 'js' in results:
      color, marker = STYLE['js']
      ax_js.plot(results['js']['thetas'], results['js']['estimates'], marker, color=color,
                 label='js (minimax GAN discriminator)')
    ax_js.axhline(np.log(2.0), color='k', lw=1, label='log 2')
    ax_js.plot([0.0], [0.0], 'k.', label='JS = 0 at theta = 0')
    ax_w.set(xlabel='theta', ylabel='E_P0 f - E_Ptheta f', title='Spectral norm, gradient penalty')
    ax_c.set(xlabel='theta', ylabel='E_P0 f - E_Ptheta f', title='Weight clipping')
    ax_js.set(xlabel='theta', ylabel='JS estimate', title='Minimax GAN (JS)', ylim=(-0.05, 0.8))
    for ax in (ax_w, ax_c, ax_js):
      ax.grid(alpha=0.3)
      ax.set_xlim(grid[0] - 0.1, grid[-1] + 0.1)
    for ax, method, loc in ((ax_w, 'spectral', 'upper center'), (ax_c, 'clip', 'upper center'),
                            (ax_js, 'js', 'center right')):
      if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc=loc)
      if method not in results and not (method == 'spectral' and 'gp' in results):
        ax.text(0.5, 0.3, f'(no --method={method} result in this out_dir)', ha='center',
                transform=ax.transAxes, fontsize=8, color='gray')
    fig.suptitle('Parallel lines: P0 = (0, U[0,1]) vs P_theta = (theta, U[0,1]), '
                 'a critic trained per theta')


def write_outputs(result: dict, out_dir: str) -> dict:
  """Writes the result JSON and redraws parallel_lines.png; returns {name: path}."""
  common.prepare_out_dir(out_dir)
  json_path = result_path(out_dir, result['method'])
  common.write_json(json_path, result)
  fig_path = os.path.join(out_dir, 'parallel_lines.png')
  plot(fig_path, load_results(out_dir))
  return {'json': json_path, 'figure': fig_path}


# ----------------------------------------------------------------------------- command
def define_flags() -> None:
  common.define_flags(Settings(), FLAG_HELP, out_dir='runs/parallel_lines')


def main(argv) -> None:
  del argv
  methods = common.parse_names(flags.FLAGS.method, METHODS, 'method')
  out_dir = common.prepare_out_dir(flags.FLAGS.out_dir)
  all_settings = [common.settings_from_flags(Settings, FLAG_HELP, method=m) for m in methods]
  for s in all_settings:
    _resolve(s)  # every flag checked before any training
  for s in all_settings:
    result = run(s)
    write_outputs(result, out_dir)
    common.emit(result)


if __name__ == '__main__':
  cli.entry(main, define_flags=define_flags)
