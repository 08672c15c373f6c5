"""The auto-encoder families on a 2-D toy: final scores over seeds, and one figure.

  python -m benchmarks.autoencoders_toy [--dataset=swissroll] [--steps=1500] [--seeds=0,1,2]
      [--out=/tmp/autoencoders_toy] [--figure=docs/autoencoders_toy.png]

Trains configs/wae.py:gan,DATASET, configs/wae.py:mmd,DATASET and configs/vae.py:DATASET
(their toy recipes, total_steps shortened to --steps, evaluated at the last step) for every
seed, prints one JSON line per run (eval/recon_mse, eval/latent_mmd, eval/w1) and one per
family with the mean and standard deviation over the seeds (ddof 0), and draws the first
seed's decoded prior samples G(z), z ~ N(0, I), of each family beside fresh real samples.
Not a speed figure: on CPU, the three families at 1500 steps and 3 seeds take a few minutes.
"""
import argparse
import json
import os

import jax
import numpy as np

from wgan_jax import config_lib, train
from wgan_jax.data import toy
from wgan_jax.state import sampling_params

FAMILIES = (('WAE-GAN', 'wae', 'gan,{}'), ('WAE-MMD', 'wae', 'mmd,{}'), ('VAE', 'vae', '{}'))
KEYS = ('eval/recon_mse', 'eval/latent_mmd', 'eval/w1')
NUM_POINTS = 2000


def train_one(file: str, arg: str, *, seed: int, steps: int, workdir: str) -> dict:
  """The last record of one shortened toy run (evaluated and saved at its last step)."""
  config = config_lib.load_config(file, arg, {
      'seed': seed, 'total_steps': steps, 'eval_every_steps': steps,
      'checkpoint_every_steps': steps, 'log_every_steps': steps})
  return train.train_and_evaluate(config, workdir)


def decoded_prior_samples(workdir: str, n: int) -> np.ndarray:
  """G(z) of n prior samples z ~ N(0, I) with the workdir's last checkpoint."""
  run, state, _ = train.load_for_inference(workdir)
  z = jax.random.normal(jax.random.PRNGKey(123), (n, run.models.z_dim))
  return np.asarray(run.sample_fn()(sampling_params(state), state.g.state, z))


def draw(path: str, dataset: str, panels: list) -> None:
  """Real samples, then each family's decoded prior samples, side by side."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  real = toy.toy_eval_samples(dataset, seed=0, n=NUM_POINTS, index=0)
  fig, axes = plt.subplots(1, len(panels) + 1, figsize=(4 * (len(panels) + 1), 4.2),
                           sharex=True, sharey=True)
  axes[0].scatter(real[:, 0], real[:, 1], s=2, c='tab:orange')
  axes[0].set_title(f'real ({dataset})')
  for ax, (title, fake, scores) in zip(axes[1:], panels):
    ax.scatter(real[:, 0], real[:, 1], s=2, c='tab:orange', alpha=0.15)
    ax.scatter(fake[:, 0], fake[:, 1], s=2, c='tab:green')
    ax.set_title(f'{title}: G(z), z ~ N(0, I)\nW1 {scores["eval/w1"]:.3f}, '
                 f'recon {scores["eval/recon_mse"]:.4f}', fontsize=10)
  lim = 1.6 * np.abs(real).max()
  axes[0].set_xlim(-lim, lim)
  axes[0].set_ylim(-lim, lim)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=90)
  plt.close(fig)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--dataset', default='swissroll', choices=('gaussians8', 'swissroll'))
  p.add_argument('--steps', type=int, default=1500)
  p.add_argument('--seeds', default='0,1,2')
  p.add_argument('--out', default='/tmp/autoencoders_toy')
  p.add_argument('--figure', default='docs/autoencoders_toy.png')
  args = p.parse_args()
  seeds = [int(s) for s in args.seeds.split(',')]
  panels = []
  for title, file, arg in FAMILIES:
    arg = arg.format(args.dataset)
    runs = []
    for seed in seeds:
      workdir = os.path.join(args.out, f'{file}_{arg.replace(",", "_")}_seed{seed}')
      last = train_one(file, arg, seed=seed, steps=args.steps, workdir=workdir)
      runs.append({k: float(last[k]) for k in KEYS})
      print(json.dumps({'config': f'configs/{file}.py:{arg}', 'seed': seed,
                        'steps': args.steps, **runs[-1]}), flush=True)
      if seed == seeds[0]:
        panels.append((title, decoded_prior_samples(workdir, NUM_POINTS), runs[-1]))
    summary = {k: {'mean': float(np.mean([r[k] for r in runs])),
                   'std': float(np.std([r[k] for r in runs]))} for k in KEYS}
    print(json.dumps({'config': f'configs/{file}.py:{arg}', 'seeds': seeds,
                      'steps': args.steps, **summary}), flush=True)
  draw(args.figure, args.dataset, panels)


if __name__ == '__main__':
  main()
