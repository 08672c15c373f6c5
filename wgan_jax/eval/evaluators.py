"""The evaluator interface of the train loop, the sample evaluators, and batched sampling.

An evaluator is built once from a train.Run (train.make_evaluators: a list the loop
iterates, in the order their scalars are logged) and has

  due(step) -> bool               whether it runs after generator step `step`
  __call__(state, step) -> dict   its scalars {'eval/...': value} of a TrainState
  every_process: bool             True: every process calls it (its passes run on every
                                  device; the chief's call returns the scalars, the others
                                  {}); False: the chief alone

It writes its own files into the workdir and its figures into TensorBoard (`images`: a
wgan_jax.metrics_writer.MetricWriter, or None); the loop logs the scalars. The evaluators:

  SampleGrid                 image data: eval.num_images samples as one grid,
                             samples/step_NNNNNNN.png, every eval_every_steps and with
                             every image-metrics evaluation
  ToyEvaluator               2-D data: eval/w1 and the mode statistics of eval.num_samples
                             points (wgan_jax.eval.toy) and the critic-contour figure
                             samples/step_NNNNNNN.png, every eval_every_steps
  image_eval.ImageEvaluator  FID / IS / KID / SWD / intra-FID, every eval.metrics_every_steps

Samples come from the EMA generator where configured (state.sampling_params) with noise
drawn once (wgan_jax.rng.SAMPLES_STREAM: the same z at every evaluation); a conditional
generator gets balanced labels arange(n) % C.
"""
from typing import Callable, Iterator, Optional, Union

import numpy as np
from etils import epath

from wgan_jax import parallel, plots, rng
from wgan_jax import workdir as workdir_lib
from wgan_jax.eval import autoencoders as autoencoder_eval, bigan as bigan_eval
from wgan_jax.eval import cyclegan as cyclegan_eval, toy as toy_eval
from wgan_jax.state import TrainState, sampling_params

IMAGE_TAG = 'samples'  # TensorBoard tag of the sample grids and toy figures
BATCH = 1024  # rows per call of the sample evaluators' generator and critic


def sample_evaluators(run, workdir: str, images=None) -> list:
  """The run's sample evaluators: its family's (FAMILY_EVALUATORS) or, by default, the toy
  evaluation (2-D data) or the sample grid (images)."""
  make = FAMILY_EVALUATORS.get(run.family.name)
  if make is not None:
    return make(run, workdir, images)
  first = ToyEvaluator if run.is_toy else SampleGrid
  return [first(run, workdir, images=images)]


def every(step: int, every_steps: int, total_steps: int) -> bool:
  """Whether `step` is due: every `every_steps` steps and the last step; every_steps 0: never."""
  return every_steps > 0 and (step % every_steps == 0 or step == total_steps)


Inputs = Union[np.ndarray, Callable[[int, int, int], np.ndarray]]


def in_batches(fn, params, model_state, inputs: Inputs, *, batch_size: int,
               labels=None, n: Optional[int] = None) -> Iterator[np.ndarray]:
  """Yields np.asarray(fn(params, model_state, x[, labels])) over rows [start, stop).

  Args:
    fn: a jitted model function, e.g. train.Run.sample_fn() or critic_fn().
    params, model_state: its parameters and state.
    inputs: [n, ...] rows (sliced batch by batch), or a function (chunk c, start, stop) ->
      the rows start:stop of chunk c (noise drawn chunk by chunk).
    batch_size: rows per call; the last call may have fewer.
    labels: int [n] classes of a conditional generator, else None.
    n: the number of rows (default len(inputs)).
  """
  n = len(inputs) if n is None else n
  for c, start in enumerate(range(0, n, batch_size)):
    stop = min(start + batch_size, n)
    x = inputs(c, start, stop) if callable(inputs) else inputs[start:stop]
    extra = () if labels is None else (labels[start:stop],)
    yield np.asarray(fn(params, model_state, x, *extra))


def generate(sample, state: TrainState, z: Inputs, *, batch_size: int, labels=None,
             n: Optional[int] = None) -> Iterator[np.ndarray]:
  """The generator's samples of noise z in batches (`in_batches`), from the EMA weights
  where configured; `sample` is train.Run.sample_fn()."""
  return in_batches(sample, sampling_params(state), state.g.state, z, batch_size=batch_size,
                    labels=labels, n=n)


def read_png(path) -> np.ndarray:
  """The pixels of a PNG file (local or gs://), uint8 [H, W, 3]."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  with epath.Path(path).open('rb') as f:
    return np.asarray(Image.open(f).convert('RGB'))


class _Samples:
  """Fixed evaluation noise of n samples, the workdir's samples/ folder and the image sink."""
  every_process = False  # the chief alone computes and writes them

  def __init__(self, run, workdir: str, n: int, images=None):
    from wgan_jax import step as step_lib  # pylint: disable=import-outside-toplevel
    self.run = run
    self.total_steps = run.config.total_steps
    self.every_steps = run.config.eval_every_steps
    self.sample_dir = workdir_lib.path(workdir, 'samples')
    self.images = images
    self.sample = run.sample_fn()
    self.z = step_lib.sample_z(rng.stream_key(run.config.seed, rng.SAMPLES_STREAM), n,
                               run.models.z_dim)
    self.labels = run.eval_labels(n)  # balanced classes (conditional runs), else None

  def fakes(self, state: TrainState) -> np.ndarray:
    state = self.run.sampling_state(state)  # standing statistics where configured
    return np.concatenate(list(generate(self.sample, state, self.z, batch_size=BATCH,
                                        labels=self.labels)))

  def figure_path(self, step: int):
    self.sample_dir.mkdir(parents=True, exist_ok=True)
    return self.sample_dir / f'step_{step:07d}.png'

  def to_tensorboard(self, step: int, pixels: np.ndarray) -> None:
    if self.images is not None:
      self.images.image(step, IMAGE_TAG, pixels)


class SampleGrid(_Samples):
  """Image data: a grid of eval.num_images samples (see the module docstring)."""

  def __init__(self, run, workdir: str, images=None):
    super().__init__(run, workdir, run.config.eval.num_images, images)
    self.metrics_every_steps = run.config.eval.metrics_every_steps

  def due(self, step: int) -> bool:
    return (every(step, self.every_steps, self.total_steps)
            or every(step, self.metrics_every_steps, self.total_steps))

  def __call__(self, state: TrainState, step: int) -> dict:
    state = parallel.local_copy(state)  # sharded leaves gathered whole
    grid = plots.save_image_grid(self.figure_path(step), self.fakes(state))
    self.to_tensorboard(step, grid)
    return {}


class ToyEvaluator(_Samples):
  """2-D data: W1, mode statistics and the critic-contour figure (module docstring)."""

  def __init__(self, run, workdir: str, images=None):
    super().__init__(run, workdir, run.config.eval.num_samples, images)
    # The contours where the critic scores data points (gan); the other families' critics
    # see pairs or latents, or there is none.
    self.critic = run.critic_fn() if run.family.name == 'gan' else None

  def due(self, step: int) -> bool:
    return every(step, self.every_steps, self.total_steps)

  def __call__(self, state: TrainState, step: int) -> dict:
    state = parallel.local_copy(state)  # sharded leaves gathered whole
    fake = self.fakes(state)
    source = self.run.source
    real = source.eval_real(len(fake), index=step)
    scores = toy_eval.evaluate_toy(fake, real, spec=source.spec)
    if self.labels is not None and source.spec.centers is not None:
      scores.update(toy_eval.mode_accuracy(fake, self.labels, centers=source.spec.centers,
                                           std=source.spec.std))
    contours = None
    if self.critic is not None:
      xs, ys, grid = plots.toy_grid(real, fake)
      values = np.concatenate(list(in_batches(self.critic, state.d.params, state.d.state,
                                              grid, batch_size=BATCH)))
      contours = (xs, ys, values.reshape(len(ys), len(xs)))
    path = self.figure_path(step)
    plots.plot_toy(path, real=real, fake=fake, critic_grid=contours,
                   fake_labels=self.labels, title=f'{self.run.config.data.name}, step {step}')
    if self.images is not None:  # the figure as written, without decoding it otherwise
      self.to_tensorboard(step, read_png(path))
    return scores


# family name -> (run, workdir, images) -> its sample evaluators, where they are not the
# default ToyEvaluator / SampleGrid of G(z) (e.g. latent metrics, translations).
FAMILY_EVALUATORS: dict[str, Callable[..., list]] = {
    'bigan': bigan_eval.make_evaluators,
    'wae_gan': autoencoder_eval.make_evaluators,
    'wae_mmd': autoencoder_eval.make_evaluators,
    'vae': autoencoder_eval.make_evaluators,
    'cyclegan': cyclegan_eval.make_evaluators,
}
