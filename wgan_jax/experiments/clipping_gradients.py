"""Per-layer critic gradient norms with weight clipping vs the gradient penalty.

  python -m wgan_jax.experiments.clipping_gradients --out_dir=runs/clipping_gradients

The WGAN-GP paper's Figure 1 (b) (Gulrajani et al. 2017): "Gradient norms of deep WGAN
critics during training on the Swiss Roll dataset either explode or vanish when using weight
clipping, but not when using a gradient penalty." A deep ReLU MLP critic (`--depth` hidden
layers, 12 as in the paper, `--hidden` units (256; gan_toy.py's width is 512, 4x slower
here); the generator keeps gan_toy.py's 3 layers) is
trained on swissroll as a full WGAN, once per clipping threshold c in `--clip_values` (with
configs/wgan.py's recipe: RMSProp 5e-5, batch 64, n_critic 5) and once with the gradient
penalty (configs/wgan_gp.py's recipe: Adam 1e-4 (0.5, 0.9), batch 256, n_critic 5, lambda =
`--gp_weight`, 10 as in the paper's text; gan_toy.py itself used 0.1).

Every `--log_every` generator steps we take the gradient of the critic's Wasserstein
objective mean f(fake) - mean f(real) (without the penalty term, so every variant is
measured on the same quantity) on fresh real and generated batches, and record for every
layer l (1 = the input layer, depth + 1 = the output layer):
  * the norm of its gradient with respect to the layer's weight matrix W_l (the figure), and
  * the norm of its gradient with respect to the layer's bias b_l, which is the batch sum of
    the gradient backpropagated to that layer's pre-activations (the "backpropagated
    gradient" view; in the JSON).
Clipping at c puts most entries of W_l at +-c, so the backpropagated gradient changes by a
factor of order c x width per layer: it grows towards the input for large c (explodes) and
shrinks for small c (vanishes; at c = 0.001 the 12-layer critic even collapses to a constant
function, every unit of some layer inactive, and the lower layers' gradients are exactly 0);
with the penalty the norms stay within an order of magnitude across the layers.

Outputs: `<out_dir>/clipping_gradients.png` (left: log10 of the mean weight-gradient norm
per layer, averaged over the logged steps in log space, one line per variant, as in the
paper; right: the input layer's norm over training), `clipping_gradients.json` and the JSON
line on stdout (per variant: the per-layer norms at every logged step and the ratio of the
input layer's norm to the output layer's).
"""
import re
import time
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from wgan_jax import config_lib, losses, train
from wgan_jax import step as step_lib
from wgan_jax.errors import ConfigError
from wgan_jax.experiments import common
from wgan_jax.rng import GRAD_STREAM


class Settings(NamedTuple):
  clip_values: Sequence[float] = (0.1, 0.01, 0.001)
  gp: bool = True                 # also train the gradient-penalty critic
  gp_weight: float = 10.0
  depth: int = 12                 # hidden layers of the critic (the paper: 12)
  hidden: int = 256               # units per hidden layer (gan_toy.py: 512)
  steps: int = 300                # generator updates per variant
  log_every: int = 20
  dataset: str = 'swissroll'
  seed: int = 0
  measure_batch: int = 256


# The command's flags: one per Settings field named here, with its help text.
FLAG_HELP = {
    'clip_values': 'Comma-separated clipping thresholds c (empty: none).',
    'gp': 'Also train the gradient-penalty critic.',
    'gp_weight': 'lambda of the gradient penalty.',
    'depth': 'Hidden layers of the critic (the paper: 12).',
    'hidden': 'Units per hidden layer (gan_toy.py: 512).',
    'steps': 'Generator updates per variant.',
    'log_every': 'Generator steps between measurements.',
    'dataset': 'Toy dataset (the paper: swissroll).',
    'seed': 'Random seed.',
}


def variants(settings: Settings) -> list[tuple[str, str, dict]]:
  """(name, config file, overrides) of every variant."""
  out = [(f'clip {c:g}', 'wgan', {'lipschitz.clip_value': float(c)})
         for c in settings.clip_values]
  if settings.gp:
    out.append(('gradient penalty', 'wgan_gp', {'lipschitz.gp_weight': settings.gp_weight,
                                                **common.GAN_TOY_SCHEDULE}))
  return out


def variant_config(file: str, overrides: dict, settings: Settings):
  o = dict(overrides)
  o.update({'total_steps': settings.steps, 'seed': settings.seed,
            'model.mlp_layers': settings.depth, 'model.g_mlp_layers': 3,
            'model.mlp_hidden': settings.hidden, 'log_every_steps': settings.log_every,
            'eval_every_steps': settings.steps, 'checkpoint_every_steps': settings.steps})
  return config_lib.load_config(file, settings.dataset, o)


def layer_order(names: Sequence[str]) -> list[str]:
  """Critic modules from the input layer (dense_0) to the output layer (dense_out)."""
  def key(name):
    m = re.search(r'dense_(\d+)$', name)
    return (0, int(m.group(1))) if m else (1, 0)
  return sorted(names, key=key)


def make_measure(run):
  """Jitted (state, real, z) -> ({layer: |dL/dW|}, {layer: |dL/db|}) of the critic objective."""
  d_apply, g_apply = run.models.d.apply, run.models.g.apply
  objective = losses.get_loss('wasserstein').d

  @jax.jit
  def measure(state, real, z):
    fake, _ = g_apply(state.g.params, state.g.state, None, z, is_training=False)

    def loss_fn(d_params):
      scores, _ = d_apply(d_params, state.d.state, None, jnp.concatenate([real, fake]),
                          update_stats=False)
      n = real.shape[0]
      return objective(d_real=scores[:n], d_fake=scores[n:])

    grads = jax.grad(loss_fn)(state.d.params)
    w = {m: jnp.linalg.norm(g['w']) for m, g in grads.items() if 'w' in g}
    b = {m: jnp.linalg.norm(g['b']) for m, g in grads.items() if 'b' in g}
    return w, b

  return measure


def run_variant(name: str, file: str, overrides: dict, settings: Settings) -> dict:
  """Trains one variant and records its per-layer gradient norms every log_every steps."""
  start = time.time()
  run = train.Run(variant_config(file, overrides, settings))
  measure = make_measure(run)
  base_key = jax.random.fold_in(jax.random.PRNGKey(settings.seed), GRAD_STREAM)
  records = {'steps': [], 'w': [], 'b': []}

  def hook(step, state, metrics):
    del metrics
    real = jnp.asarray(run.source.eval_real(settings.measure_batch, index=step))
    z = step_lib.sample_z(jax.random.fold_in(base_key, step), settings.measure_batch,
                          run.models.z_dim)
    w, b = jax.device_get(measure(state, real, z))
    records['layers'] = layer_order(list(w))
    records['steps'].append(step)
    records['w'].append([float(w[m]) for m in records['layers']])
    records['b'].append([float(b[m]) for m in records['layers']])

  _, train_s = common.train_gan(run, hook=hook, hook_every=settings.log_every)
  mean_log10, zero_frac = mean_log10_norms(np.asarray(records['w']))
  return {'name': name, 'config': f'configs/{file}.py:{settings.dataset}',
          'overrides': overrides, 'layers': records['layers'], 'steps': records['steps'],
          'weight_grad_norms': records['w'], 'bias_grad_norms': records['b'],
          'mean_log10_weight_grad_norm': mean_log10, 'zero_fraction': zero_frac,
          'input_to_output_ratio': (10 ** (mean_log10[0] - mean_log10[-1])
                                    if None not in (mean_log10[0], mean_log10[-1]) else 0.0),
          'train_s': round(train_s, 1), 'wall_time_s': round(time.time() - start, 1)}


def mean_log10_norms(norms: np.ndarray) -> tuple[list, list]:
  """Per layer: the mean of log10 of the nonzero norms over the logged steps (None when
  every one is exactly 0), and the fraction of logged steps at which it was exactly 0.

  Exact zeros are real: with a tiny clipping box a deep ReLU critic can end up with every
  unit of some layer inactive on the data, a constant function below which nothing flows.
  """
  means, zeros = [], []
  for column in norms.T:
    nonzero = column[column > 0]
    means.append(float(np.mean(np.log10(nonzero))) if len(nonzero) else None)
    zeros.append(float(np.mean(column == 0)))
  return means, zeros


def _check(settings: Settings) -> None:
  for name in ('depth', 'hidden', 'steps', 'log_every', 'measure_batch'):
    if getattr(settings, name) < 1:
      raise ConfigError(f'--{name} must be >= 1, got {getattr(settings, name)}')
  if not settings.clip_values and not settings.gp:
    raise ConfigError('nothing to run: give --clip_values or --gp')
  common.check_positive({'gp_weight': settings.gp_weight,
                         **{'clip_values': c for c in settings.clip_values}})


def run(settings: Settings = Settings()) -> dict:
  _check(settings)
  start = time.time()
  results = [run_variant(n, f, o, settings) for n, f, o in variants(settings)]
  return {'experiment': 'clipping_gradients', 'dataset': settings.dataset,
          'depth': settings.depth, 'hidden': settings.hidden, 'steps': settings.steps,
          'log_every': settings.log_every, 'gp_weight': settings.gp_weight,
          'gradient': 'norm of d(mean f(fake) - mean f(real)) / dW per layer '
                      '(bias_grad_norms: / db, the batch-summed backpropagated gradient)',
          'variants': results, 'wall_time_s': round(time.time() - start, 1)}


def plot(path: str, result: dict) -> None:
  with common.figure(path, 1, 2, figsize=(11, 4.5)) as (_, (ax_l, ax_t)):
    finite = [m for v in result['variants'] for m in v['mean_log10_weight_grad_norm']
              if m is not None]
    floor = min(finite, default=0.0) - 2.0
    for v in result['variants']:
      layers = np.arange(1, len(v['layers']) + 1)
      means = np.array([np.nan if m is None else m for m in v['mean_log10_weight_grad_norm']])
      line, = ax_l.plot(layers, means, marker='o', label=v['name'])
      if np.isnan(means).any():  # exactly zero at every logged step: drawn on the floor
        ax_l.plot(layers[np.isnan(means)], np.full(np.isnan(means).sum(), floor), 'x',
                  color=line.get_color(), label=f'{v["name"]}: exactly 0')
      first = np.array([w[0] for w in v['weight_grad_norms']])
      ax_t.semilogy(np.asarray(v['steps'])[first > 0], first[first > 0], label=v['name'])
    ax_l.set(xlabel='critic layer (1 = input, last = output)',
             ylabel='log10 gradient norm (w.r.t. the layer\'s weights)',
             title=f'{result["depth"]}-layer critic on {result["dataset"]}')
    ax_t.set(xlabel='generator step', ylabel='input-layer gradient norm',
             title='during training')
    for ax in (ax_l, ax_t):
      ax.grid(alpha=0.3)
      ax.legend(fontsize=8)


def write_outputs(result: dict, out_dir: str) -> dict:
  return common.write_json_and_figure(result, out_dir, 'clipping_gradients', plot)


def summary(result: dict) -> dict:
  """The stdout line: per variant the mean log10 norms per layer and the input/output ratio."""
  return {k: v for k, v in result.items() if k != 'variants'} | {'variants': [
      {k: v[k] for k in ('name', 'mean_log10_weight_grad_norm', 'input_to_output_ratio',
                         'wall_time_s')} for v in result['variants']]}


# ----------------------------------------------------------------------------- command
if __name__ == '__main__':
  common.entry(Settings, FLAG_HELP, out_dir='runs/clipping_gradients', check=_check,
               run=lambda settings, _: run(settings), write=write_outputs, summary=summary,
               empty_ok=('clip_values',))
