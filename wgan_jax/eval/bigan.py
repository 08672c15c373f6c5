"""Evaluation of the bigan family (BiGAN / ALI): how well the encoder inverts the generator.

Every eval_every_steps (and at the last step), on n = eval.num_samples real examples
x_1..n = run.source.eval_real(n, index=step) (2-D data: fresh points of the distribution,
held out from training by construction; images: a fixed random subset of the training split,
the only split a run opens; the papers report reconstructions on their test sets):

  eval/recon_mse  (1/n) sum_i ||x_i - G(E(x_i))||^2, the squared Euclidean norm over all of an
                  example's coordinates (pixels x channels for images); E's mean for the
                  Gaussian encoder; both networks in inference mode (batch-norm averages).
  eval/latent_w1  exact W1 (wgan_jax.eval.toy.exact_w1: the assignment problem, Euclidean
                  cost) between the encoded reals {z_i = E(x_i)} (Gaussian encoder: a draw
                  mean + exp(log_std) * eps, the aggregate posterior) and n prior samples
                  z ~ N(0, I); 0 when E maps the data onto the prior.

The generator's own metrics come from the default evaluators (`make_evaluators`): eval/w1 and
the mode statistics of G(z) on 2-D data (ToyEvaluator), the sample grid and FID / IS on images
(SampleGrid, wgan_jax.eval.image_eval). Samples and encodings use state.sampling_params (the
EMA weights of G and E together where configured).
"""
# pylint: disable=import-outside-toplevel  (wgan_jax.eval.evaluators imports this module)
import jax
import numpy as np

from wgan_jax import parallel, rng
from wgan_jax.eval import toy as toy_eval
from wgan_jax.families import bigan as bigan_family
from wgan_jax.families.base import sample_z
from wgan_jax.state import TrainState, sampling_params

LATENT_STREAM = rng.SAMPLES_STREAM + 2  # fixed prior samples and encoder noise of the W1


def make_encode_decode(run):
  """Jitted (params, state, x, eps) -> (z drawn from E(x) [b, Z], G(E's mean) [b, ...]),
  both networks in inference mode."""
  gaussian = bigan_family.read_settings(run.config).encoder == 'gaussian'
  e_apply, g_apply = run.models.e.apply, run.models.g.apply

  def fn(params, state, x, eps):
    h, _ = e_apply(params, state, None, x, is_training=False)
    mean = bigan_family.encode(h, gaussian=gaussian)
    x_rec, _ = g_apply(params, state, None, mean, is_training=False)
    return bigan_family.encode(h, gaussian=gaussian, eps=eps), x_rec

  return jax.jit(fn)


def recon_mse(x: np.ndarray, x_rec: np.ndarray) -> float:
  """(1/n) sum_i ||x_i - x_rec_i||^2 over [n, ...] arrays (float64 sums)."""
  diff = (np.asarray(x, np.float64) - np.asarray(x_rec, np.float64)).reshape(len(x), -1)
  return float(np.mean(np.sum(diff ** 2, axis=1)))


class LatentEvaluator:
  """eval/recon_mse and eval/latent_w1 of a bigan run (module docstring)."""
  every_process = False  # the chief alone

  def __init__(self, run, workdir: str, images=None):
    del workdir, images  # no files or figures of its own
    self.run = run
    self.n = run.config.eval.num_samples
    self.total_steps = run.config.total_steps
    self.every_steps = run.config.eval_every_steps
    self.fn = make_encode_decode(run)
    key = rng.stream_key(run.config.seed, LATENT_STREAM)
    prior_key, eps_key = jax.random.split(key)
    self.prior = np.asarray(sample_z(prior_key, self.n, run.models.z_dim))
    self.eps = np.asarray(sample_z(eps_key, self.n, run.models.z_dim))

  def due(self, step: int) -> bool:
    from wgan_jax.eval.evaluators import every
    return every(step, self.every_steps, self.total_steps)

  def __call__(self, state: TrainState, step: int) -> dict:
    state = parallel.local_copy(state)  # sharded leaves gathered whole
    params, model_state = sampling_params(state), state.g.state
    x = self.run.source.eval_real(self.n, index=step)
    from wgan_jax.eval.evaluators import BATCH
    zs, recs = [], []
    for start in range(0, self.n, BATCH):
      stop = min(start + BATCH, self.n)
      z, x_rec = self.fn(params, model_state, x[start:stop], self.eps[start:stop])
      zs.append(np.asarray(z))
      recs.append(np.asarray(x_rec))
    return {'eval/recon_mse': recon_mse(x, np.concatenate(recs)),
            'eval/latent_w1': toy_eval.exact_w1(np.concatenate(zs), self.prior)}


def make_evaluators(run, workdir: str, images=None) -> list:
  """The bigan run's sample evaluators: G(z)'s (ToyEvaluator on 2-D data, SampleGrid on
  images), then the LatentEvaluator. (wgan_jax.eval.evaluators imports this module: its
  names are imported here, when called.)"""
  from wgan_jax.eval.evaluators import SampleGrid, ToyEvaluator
  first = ToyEvaluator if run.is_toy else SampleGrid
  return [first(run, workdir, images=images), LatentEvaluator(run, workdir, images)]
