"""WGAN, WGAN-GP, SNGAN and the non-saturating GAN on the 2-D toy distributions.

  python -m wgan_jax.experiments.toy_suite --out_dir=runs/toy_suite [--steps=4000 --hidden=512]

Every (method, dataset) pair is trained from its config file's toy recipe (configs/*.py:
<dataset>, gan_toy.py's MLPs and optimizers) with train.Run's jitted step, then evaluated
as the training loop does (wgan_jax.eval.toy: exact W1 between `--eval_samples` generated
and fresh real points, and on the mixtures the modes covered and the fraction of
high-quality samples, within 3 std of a mode):

  wgan     configs/wgan.py     Wasserstein loss, clipping 0.01, RMSProp 5e-5, batch 64
  wgan_gp  configs/wgan_gp.py  Wasserstein loss, gradient penalty (lambda 0.1 as in gan_toy.py),
                               Adam 1e-4 (0.5, 0.9) at gan_toy.py's constant rate, batch 256
  sngan    configs/sngan.py    hinge loss, spectral norm, Adam 2e-4 (0.5, 0.9), batch 256
  nsgan    configs/wgan_gp.py with loss=non_saturating, lipschitz.method=none, n_critic=1
           (Goodfellow et al. 2014's -log D generator loss, gan_toy.py's optimizer)

The WGAN-GP paper's toy figure (its Figure 1 (a) and the gan_toy.py plots: critic value
contours, real samples in orange, generated in green) is written per pair as
`<out_dir>/toy_<method>_<dataset>.png` and tiled into `<out_dir>/toy_suite.png`; the table
(W1, modes covered, high-quality fraction, wall time) as `toy_suite.json` and
`toy_suite.md`, and the JSON as one line on stdout.

The default (`--steps=1000 --hidden=128`) is a shortened run that fits 12 trainings into
10 minutes on 2 CPU cores; `--steps=4000 --hidden=512` is the configs' full toy recipe
(about 4000 / 5 steps/s per pair on an idle 2-core CPU).
"""
import os
import shutil
import tempfile
import time
from typing import NamedTuple, Sequence

from wgan_jax import config_lib, train
from wgan_jax.errors import ConfigError
from wgan_jax.eval import evaluators
from wgan_jax.experiments import common

DATASETS = ('gaussians8', 'gaussians25', 'swissroll')


class SuiteMethod(NamedTuple):
  """A method of the suite: its config file and the overrides that make it."""
  config: str
  label: str
  overrides: dict


METHODS: dict[str, SuiteMethod] = {
    'wgan': SuiteMethod('wgan', 'WGAN (clip)', {}),
    'wgan_gp': SuiteMethod('wgan_gp', 'WGAN-GP', common.GAN_TOY_SCHEDULE),
    'sngan': SuiteMethod('sngan', 'SNGAN', {}),
    'nsgan': SuiteMethod('wgan_gp', 'NS-GAN', {'loss': 'non_saturating',
                                               'lipschitz.method': 'none', 'n_critic': 1,
                                               **common.GAN_TOY_SCHEDULE}),
}


class Settings(NamedTuple):
  methods: Sequence[str] = tuple(METHODS)
  datasets: Sequence[str] = DATASETS
  steps: int = 1000          # generator updates per pair
  hidden: int = 128          # width of both MLPs (0: the configs' 512)
  seed: int = 0
  eval_samples: int = 2000


# The command's flags: one per Settings field named here, with its help text.
FLAG_HELP = {
    'methods': f'Comma-separated among {", ".join(METHODS)}, or all.',
    'datasets': f'Comma-separated among {", ".join(DATASETS)}, or all.',
    'steps': 'Generator updates per (method, dataset).',
    'hidden': 'Width of both toy MLPs (0: the configs\' 512).',
    'seed': 'Random seed.',
    'eval_samples': 'Generated samples for W1 and modes.',
}


def pair_config(method: str, dataset: str, settings: Settings):
  """The config of one (method, dataset) pair, shortened to `settings`."""
  spec = METHODS[method]
  overrides = dict(spec.overrides)
  overrides.update({'total_steps': settings.steps, 'seed': settings.seed,
                    'eval.num_samples': settings.eval_samples,
                    'log_every_steps': settings.steps, 'eval_every_steps': settings.steps,
                    'checkpoint_every_steps': settings.steps})
  if settings.hidden:
    overrides['model.mlp_hidden'] = settings.hidden
  return config_lib.load_config(spec.config, dataset, overrides)


def _check(settings: Settings) -> None:
  for name in ('steps', 'eval_samples'):
    if getattr(settings, name) < 1:
      raise ConfigError(f'--{name} must be >= 1, got {getattr(settings, name)}')
  if settings.hidden < 0:
    raise ConfigError(f'--hidden must be >= 0 (0: the configs\' 512), got {settings.hidden}')
  for m in settings.methods:
    if m not in METHODS:
      raise ConfigError(f'unknown method {m!r}; valid: {", ".join(METHODS)}')
  for d in settings.datasets:
    if d not in DATASETS:
      raise ConfigError(f'unknown dataset {d!r}; valid: {", ".join(DATASETS)}')


def run_pair(method: str, dataset: str, settings: Settings, out_dir: str) -> dict:
  """Trains and evaluates one pair; writes its figure; returns its table row.

  The evaluation and the figure are the training loop's own (ToyEvaluator at the last
  step: W1 / modes on eval.num_samples points, the critic-contour plot), written to a
  scratch directory and moved to `<out_dir>/toy_<method>_<dataset>.png`.
  """
  config = pair_config(method, dataset, settings)
  start = time.time()
  run = train.Run(config)
  state, train_s = common.train_gan(run)
  steps = config.total_steps
  figure = os.path.join(out_dir, f'toy_{method}_{dataset}.png')
  with tempfile.TemporaryDirectory() as scratch:
    scores = evaluators.ToyEvaluator(run, scratch)(state, steps)
    shutil.move(os.path.join(scratch, 'samples', f'step_{steps:07d}.png'), figure)
  spec = run.source.spec
  row = {'method': method, 'dataset': dataset, 'w1': scores['eval/w1'],
         'modes_covered': scores.get('eval/modes_covered'),
         'num_modes': spec.num_classes if spec.centers is not None else None,
         'high_quality_frac': scores.get('eval/high_quality_frac'),
         'steps': steps, 'train_s': round(train_s, 1),
         'wall_time_s': round(time.time() - start, 1),
         'steps_per_s': round(steps / max(train_s, 1e-9), 1),
         'figure': os.path.basename(figure)}
  if row['modes_covered'] is not None:
    row['modes_covered'] = int(row['modes_covered'])
  return row


def run(settings: Settings = Settings(), out_dir: str = 'runs/toy_suite') -> dict:
  """Every (method, dataset) pair of `settings`: the result dict with the table rows."""
  _check(settings)
  common.prepare_out_dir(out_dir)
  start = time.time()
  rows = [run_pair(m, d, settings, out_dir) for m in settings.methods for d in settings.datasets]
  return {'experiment': 'toy_suite', 'steps': settings.steps,
          'hidden': settings.hidden or 512, 'seed': settings.seed,
          'eval_samples': settings.eval_samples, 'rows': rows,
          'wall_time_s': round(time.time() - start, 1)}


def markdown_table(result: dict) -> str:
  """The rows as a markdown table."""
  lines = [f'Toy suite: {result["steps"]} generator steps, MLP width {result["hidden"]}, '
           f'W1 from {result["eval_samples"]} generated vs fresh real points.', '',
           '| method | dataset | W1 | modes covered | high-quality fraction | steps/s '
           '| wall time (s) |',
           '|---|---|---|---|---|---|---|']
  for r in result['rows']:
    modes = '-' if r['modes_covered'] is None else f'{r["modes_covered"]} / {r["num_modes"]}'
    hq = '-' if r['high_quality_frac'] is None else f'{r["high_quality_frac"]:.3f}'
    lines.append(f'| {METHODS[r["method"]].label} | {r["dataset"]} | {r["w1"]:.3f} | {modes} '
                 f'| {hq} | {r["steps_per_s"]:.1f} | {r["wall_time_s"]:.0f} |')
  return '\n'.join(lines) + '\n'


def tile_figures(path: str, result: dict, out_dir: str) -> None:
  """toy_suite.png: the pairs' figures, one row per method, one column per dataset."""
  plt = common.pyplot()
  methods = list(dict.fromkeys(r['method'] for r in result['rows']))
  datasets = list(dict.fromkeys(r['dataset'] for r in result['rows']))
  with common.figure(path, len(methods), len(datasets), squeeze=False,
                     figsize=(3.2 * len(datasets), 3.2 * len(methods))) as (_, axes):
    for r in result['rows']:
      ax = axes[methods.index(r['method'])][datasets.index(r['dataset'])]
      ax.imshow(plt.imread(os.path.join(out_dir, r['figure'])))
      ax.set_title(f'{METHODS[r["method"]].label}: W1 {r["w1"]:.3f}', fontsize=9)
    for ax in axes.ravel():
      ax.axis('off')


def write_outputs(result: dict, out_dir: str) -> dict:
  paths = {'json': os.path.join(out_dir, 'toy_suite.json'),
           'markdown': os.path.join(out_dir, 'toy_suite.md'),
           'figure': os.path.join(out_dir, 'toy_suite.png')}
  common.write_json(paths['json'], result)
  with open(paths['markdown'], 'w') as f:
    f.write(markdown_table(result))
  tile_figures(paths['figure'], result, out_dir)
  return paths


# ----------------------------------------------------------------------------- command
if __name__ == '__main__':
  common.entry(Settings, FLAG_HELP, out_dir='runs/toy_suite', check=_check, run=run,
               write=write_outputs, names={'methods': METHODS, 'datasets': DATASETS})
