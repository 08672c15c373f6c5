"""python -m wgan_jax.sample --workdir=DIR [--step=N] --num_samples=N --seed=S --out=FILE

Writes samples of a checkpoint's generator (its EMA weights where the run kept them):
`.npy` is the raw float32 array [N, ...]; `.png` an image grid, or for 2-D data a scatter
plot. The same checkpoint, seed and count give byte-identical files.
"""
import os

from absl import app, flags, logging

from wgan_jax import cli

_WORKDIR = flags.DEFINE_string('workdir', None, 'A training run\'s workdir.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
_NUM_SAMPLES = flags.DEFINE_integer('num_samples', 64, 'How many samples.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the generator noise.')
_OUT = flags.DEFINE_string('out', None, 'Output file: .npy or .png.')

FORMATS = ('.npy', '.png')
BATCH = 500


def generate(run, state, *, num_samples: int, seed: int):
  """[num_samples, ...] float32 samples for z ~ N(0, I) drawn from PRNGKey(seed)."""
  import jax
  import numpy as np

  from wgan_jax import step as step_lib
  from wgan_jax.state import sampling_params

  z = step_lib.sample_z(jax.random.PRNGKey(seed), num_samples, run.models.z_dim)
  sample = run.sample_fn()
  params = sampling_params(state)
  return np.concatenate([np.asarray(sample(params, state.g_state, z[i:i + BATCH]))
                         for i in range(0, num_samples, BATCH)])


def write_samples(path: str, samples, *, is_toy: bool, title: str = '') -> None:
  import numpy as np

  from wgan_jax import plots
  if path.endswith('.npy'):
    np.save(path, samples)
  elif is_toy:
    plots.plot_toy(path, real=np.zeros((0, 2)), fake=samples, title=title)
  else:
    plots.save_image_grid(path, samples)


def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.ERROR)
  if not _WORKDIR.value or not _OUT.value:
    cli.fail('--workdir and --out are required, e.g. --workdir=runs/quickstart --out=s.png')
  if os.path.splitext(_OUT.value)[1] not in FORMATS:
    cli.fail(f'--out must end in {" or ".join(FORMATS)}, got {_OUT.value!r}')
  if _NUM_SAMPLES.value < 1:
    cli.fail(f'--num_samples must be >= 1, got {_NUM_SAMPLES.value}')
  from wgan_jax import train

  def sample():
    run, state, step = train.load_for_inference(_WORKDIR.value, _STEP.value)
    samples = generate(run, state, num_samples=_NUM_SAMPLES.value, seed=_SEED.value)
    write_samples(_OUT.value, samples, is_toy=run.is_toy,
                  title=f'{run.config.data.name}, step {step}, seed {_SEED.value}')
    print(f'wrote {len(samples)} samples of step {step} to {_OUT.value}')

  cli.run_user_errors(sample)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
