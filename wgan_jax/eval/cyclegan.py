"""CycleGAN's evaluator (family cyclegan): cycle error, W1 of the translations, a figure.

Every eval_every_steps, on n held-out examples of each domain (2-D data: eval.num_samples
fresh samples of the evaluation stream; images: eval.num_images examples of the test
splits of a tfds:cycle_gan pair (testA / testB), else of the training splits):

  eval/cycle_error    1/2 (mean |F(G(a)) - a| + mean |G(F(b)) - b|), per entry
  eval/cycle_error_a  mean |F(G(a)) - a|;  eval/cycle_error_b  mean |G(F(b)) - b|
  2-D data also:
  eval/w1             exact W1 (wgan_jax.eval.toy) of G(a) against as many fresh points of
                      domain B, with domain B's mode statistics (eval/modes_covered,
                      eval/high_quality_frac) where it has modes
  eval/w1_inverse     exact W1 of F(b) against fresh points of domain A

and the figure samples/step_NNNNNNN.png: 2-D data a scatter of a, b, G(a) and F(b) with a
segment from each of 64 points a to G(a); images a grid whose rows are a | G(a) | F(G(a))
then b | F(b) | G(F(b)). The maps run in inference mode from the sampling weights (EMA
where configured).
"""
import jax
import numpy as np

from wgan_jax import data as data_lib
from wgan_jax import parallel, plots
from wgan_jax.data import pair
from wgan_jax.eval import toy as toy_eval
from wgan_jax import workdir as workdir_lib
from wgan_jax.state import TrainState, sampling_params

ARROWS = 64  # points of the toy figure drawn with their translation segment


def cycle_errors(a, b, *, g, f) -> dict:
  """{'eval/cycle_error', '_a', '_b'} of float arrays a, b [n, ...] and maps g, f (arrays ->
  arrays), as in the module docstring; also returns the translations (fake_b, fake_a)."""
  fake_b, fake_a = g(a), f(b)
  err_a = float(np.mean(np.abs(f(fake_b) - a)))
  err_b = float(np.mean(np.abs(g(fake_a) - b)))
  return {'eval/cycle_error': 0.5 * (err_a + err_b), 'eval/cycle_error_a': err_a,
          'eval/cycle_error_b': err_b}, fake_b, fake_a


def heldout_source(run):
  """The source of the held-out examples: for tfds:cycle_gan pairs their test splits
  (testA / testB), else the run's own source."""
  names = pair.domain_names(run.config.data) or ()
  if names and all(n.startswith(pair.TFDS_PAIRS) for n in names):
    test = dict(run.config.data.to_dict(), split='test', placement='host')
    return data_lib.make_source(pair.as_config(test), seed=run.config.seed)
  return run.source


def plot_translation(path, *, a, b, fake_b, fake_a, title: str = '') -> None:
  """The toy translation figure (module docstring) as a PNG."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, ax = plt.subplots(figsize=plots.TOY_FIGSIZE, dpi=plots.TOY_DPI)
  try:
    k = min(ARROWS, len(a))
    ax.plot(np.stack([a[:k, 0], fake_b[:k, 0]]), np.stack([a[:k, 1], fake_b[:k, 1]]),
            c='grey', lw=0.4)
    for pts, colour, label in ((a, 'tab:blue', 'a (domain A)'), (b, 'orange', 'b (domain B)'),
                               (fake_b, 'green', 'G(a)'), (fake_a, 'purple', 'F(b)')):
      ax.scatter(pts[:, 0], pts[:, 1], c=colour, marker='+', linewidths=0.8, label=label)
    ax.legend(loc='upper right', fontsize=7)
    ax.set_aspect('equal')
    ax.set_title(title)
    fig.savefig(path)
  finally:
    plt.close(fig)


class CycleEvaluator:
  """Cycle error, translation W1 (2-D data) and the translation figure (module docstring)."""
  every_process = False  # the chief alone computes and writes them

  def __init__(self, run, workdir: str, images=None):
    self.run, self.images = run, images
    config = run.config
    self.total_steps, self.every_steps = config.total_steps, config.eval_every_steps
    self.n = config.eval.num_samples if run.is_toy else config.eval.num_images
    self.sample_dir = workdir_lib.path(workdir, 'samples')
    g_apply, f_apply = run.models.g.apply, run.models.e.apply
    self.g = jax.jit(lambda p, s, x: g_apply(p, s, None, x, is_training=False)[0])
    self.f = jax.jit(lambda p, s, x: f_apply(p, s, None, x, is_training=False)[0])
    self.source = None  # opened on first use (the test splits of a tfds pair)
    # evaluators imports this module for its registry: imported here, not at the top.
    from wgan_jax.eval import evaluators  # pylint: disable=import-outside-toplevel
    self.ev = evaluators

  def due(self, step: int) -> bool:
    return self.ev.every(step, self.every_steps, self.total_steps)

  def _map(self, fn, state: TrainState):
    params = sampling_params(state)
    return lambda x: np.concatenate(list(self.ev.in_batches(fn, params, state.g.state, x,
                                                            batch_size=self.ev.BATCH)))

  def __call__(self, state: TrainState, step: int) -> dict:
    state = parallel.local_copy(state)  # sharded leaves gathered whole
    if self.source is None:
      self.source = heldout_source(self.run)
    a, b = self.source.eval_pair(self.n, index=step)
    scores, fake_b, fake_a = cycle_errors(a, b, g=self._map(self.g, state),
                                          f=self._map(self.f, state))
    self.sample_dir.mkdir(parents=True, exist_ok=True)
    path = self.sample_dir / f'step_{step:07d}.png'
    if self.run.is_toy:
      # Fresh points of each domain (the next evaluation index), not the translated ones.
      real_a, real_b = self.source.eval_pair(self.n, index=step + 1)
      spec = self.source.b.spec
      scores.update(toy_eval.evaluate_toy(fake_b, real_b, spec=spec))
      scores['eval/w1_inverse'] = toy_eval.exact_w1(fake_a, real_a)
      plot_translation(path, a=a, b=b, fake_b=fake_b, fake_a=fake_a,
                       title=f'{self.run.config.data.domain_a} -> '
                             f'{self.run.config.data.domain_b}, step {step}')
      grid = self.ev.read_png(path)
    else:
      g, f = self._map(self.g, state), self._map(self.f, state)
      rows = [a, fake_b, f(fake_b), b, fake_a, g(fake_a)]
      n = len(a)
      images = np.stack(rows, axis=1).reshape((6 * n,) + a.shape[1:])  # example-major
      grid = plots.save_image_grid(path, images, ncol=3)
    if self.images is not None:
      self.images.image(step, self.ev.IMAGE_TAG, grid)
    return scores


def make_evaluators(run, workdir: str, images=None) -> list:
  """The cyclegan family's sample evaluators (FAMILY_EVALUATORS)."""
  return [CycleEvaluator(run, workdir, images)]
