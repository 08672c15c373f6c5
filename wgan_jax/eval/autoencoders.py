"""The auto-encoder families' evaluation (wae_gan, wae_mmd, vae; host side, NumPy).

Beside the default sample evaluator of G(z) on prior samples z ~ N(0, I) (ToyEvaluator:
eval/w1 and the mode statistics of decoded prior samples on 2-D data; SampleGrid on images,
and the image metrics (FID, ...) of wgan_jax.eval.image_eval, which decode prior samples the
same way), `LatentEvaluator` scores the encoder, every eval_every_steps:

  eval/recon_mse   E ||x - G(Q(x))||^2 (summed over an example's values, averaged over
                   examples) on n = eval.num_samples real examples of
                   run.source.eval_real (2-D data: fresh samples of the distribution;
                   images: distinct images of the training split data.split, a permutation
                   drawn per step; at most the split's size), Q and G in inference mode
                   (the VAE's Q(x) is its mean)
  eval/latent_mmd  the IMQ MMD^2 U-statistic (wgan_jax.families.autoencoders.imq_mmd, the
                   official scales) between those n codes Q(x) and n fixed prior samples
"""
import jax
import numpy as np

from wgan_jax import parallel, rng
from wgan_jax.families.autoencoders import IMQ_SCALES
from wgan_jax.state import TrainState, sampling_params

BATCH = 1024  # rows per call of the encoder and decoder


def imq_mmd_numpy(qz: np.ndarray, pz: np.ndarray, *, scale: float = 1.0,
                  scales=IMQ_SCALES) -> float:
  """The unbiased IMQ MMD^2 of `families.autoencoders.imq_mmd` in float64 NumPy (host)."""
  qz, pz = np.asarray(qz, np.float64), np.asarray(pz, np.float64)
  n, z_dim = qz.shape

  def sq(a, b):
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2.0 * a @ b.T, 0.0)

  d_qq, d_pp, d_qp = sq(qz, qz), sq(pz, pz), sq(qz, pz)
  off = 1.0 - np.eye(n)
  stat = 0.0
  for s in scales:
    c = 2.0 * z_dim * scale ** 2 * s
    same = ((c / (c + d_qq) + c / (c + d_pp)) * off).sum() / (n * n - n)
    stat += same - 2.0 * (c / (c + d_qp)).sum() / (n * n)
  return float(stat)


class LatentEvaluator:
  """eval/recon_mse and eval/latent_mmd of the run's encoder and decoder (module docstring)."""

  every_process = False  # the chief alone

  def __init__(self, run, workdir: str = '', images=None):
    del workdir, images  # no files: scalars only
    config = run.config
    self.run = run
    self.every_steps, self.total_steps = config.eval_every_steps, config.total_steps
    self.n = int(config.eval.num_samples)
    if getattr(run.source, 'num_examples', None):
      self.n = min(self.n, int(run.source.num_examples))
    encoder, decoder = run.models.e.apply, run.models.g.apply
    gaussian = run.family.name == 'vae'

    def encode(params, state, x):
      code = encoder(params, state, None, x, is_training=False)[0]
      return code[0] if gaussian else code  # the VAE's mean

    self.encode = jax.jit(encode)
    self.decode = jax.jit(lambda p, s, z: decoder(p, s, None, z, is_training=False)[0])
    key = jax.random.fold_in(rng.stream_key(config.seed, rng.SAMPLES_STREAM), 1)
    self.prior = np.asarray(jax.random.normal(key, (self.n, run.models.z_dim)))

  def due(self, step: int) -> bool:
    from wgan_jax.eval.evaluators import every  # pylint: disable=import-outside-toplevel
    return every(step, self.every_steps, self.total_steps)

  def scores(self, state: TrainState, real: np.ndarray) -> dict:
    """The scalars of `state` on the real examples `real` [n, ...]."""
    params, model_state = sampling_params(state), state.g.state
    codes, errors = [], []
    for start in range(0, len(real), BATCH):
      x = real[start:start + BATCH]
      code = self.encode(params, model_state, x)
      recon = np.asarray(self.decode(params, model_state, code), np.float64)
      errors.append(((np.asarray(x, np.float64) - recon) ** 2).reshape(len(x), -1).sum(1))
      codes.append(np.asarray(code))
    codes = np.concatenate(codes)
    return {'eval/recon_mse': float(np.concatenate(errors).mean()),
            'eval/latent_mmd': imq_mmd_numpy(codes, self.prior[:len(codes)])}

  def __call__(self, state: TrainState, step: int) -> dict:
    state = parallel.local_copy(state)  # sharded leaves gathered whole
    return self.scores(state, self.run.source.eval_real(self.n, index=step))


def make_evaluators(run, workdir: str, images=None) -> list:
  """The default sample evaluator of decoded prior samples (ToyEvaluator / SampleGrid),
  then the LatentEvaluator."""
  from wgan_jax.eval import evaluators  # pylint: disable=import-outside-toplevel
  first = evaluators.ToyEvaluator if run.is_toy else evaluators.SampleGrid
  return [first(run, workdir, images=images), LatentEvaluator(run, workdir, images)]
