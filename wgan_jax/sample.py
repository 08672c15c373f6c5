"""python -m wgan_jax.sample --workdir=DIR [--step=N] --num_samples=N --seed=S --out=FILE

Writes samples of a checkpoint's generator (its EMA weights where the run kept them):
`.npy` is the raw float32 array [N, ...]; `.png` an image grid, or for 2-D data a scatter
plot. The same checkpoint, seed and count give byte-identical files.

Class-conditional runs take --labels: a class (`3`), a comma list (`0,3,7`: the samples
cycle through it), or `all` (--num_samples per class, an image grid with one row per class);
toy scatter plots colour the samples by requested class. Without --labels a conditional run
cycles through all classes.
"""
import os

from absl import app, flags, logging

from wgan_jax import cli

_WORKDIR = flags.DEFINE_string('workdir', None, 'A training run\'s workdir.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
_NUM_SAMPLES = flags.DEFINE_integer('num_samples', 64, 'How many samples.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the generator noise.')
_OUT = flags.DEFINE_string('out', None, 'Output file: .npy or .png.')
_LABELS = flags.DEFINE_string('labels', None, 'Conditional runs: a class, a comma list, or '
                              '`all` (--num_samples per class, one grid row per class).')

FORMATS = ('.npy', '.png')
BATCH = 500


def parse_labels(spec, *, num_classes: int, num_samples: int):
  """The class of each sample for --labels `spec` (None: unconditional / cycle all classes).

  Returns:
    int32 [n] labels (n = num_samples, or num_classes * num_samples for `all`), or None
    for an unconditional run without --labels.
  Raises:
    UserError (one line): labels on an unconditional run, or a bad class.
  """
  import numpy as np

  from wgan_jax.errors import UserError
  if not num_classes:
    if spec:
      raise UserError('--labels needs a class-conditional run (config.conditional.method); '
                       'this one is unconditional')
    return None
  if not spec:
    return np.arange(num_samples, dtype=np.int32) % num_classes
  if spec == 'all':
    return np.repeat(np.arange(num_classes, dtype=np.int32), num_samples)
  try:
    classes = [int(t) for t in spec.split(',')]
  except ValueError:
    raise UserError(f'--labels must be a class, a comma list of classes or all, got '
                     f'{spec!r}') from None
  bad = [k for k in classes if not 0 <= k < num_classes]
  if bad:
    raise UserError(f'--labels: class {bad[0]} is not in 0..{num_classes - 1}')
  return np.resize(np.array(classes, np.int32), num_samples)


def generate(run, state, *, num_samples: int, seed: int, labels=None):
  """[n, ...] float32 samples for z ~ N(0, I) drawn from PRNGKey(seed); conditional runs
  take labels int [n] (n = len(labels), else num_samples)."""
  import jax
  import numpy as np

  from wgan_jax import step as step_lib
  from wgan_jax.state import sampling_params

  n = num_samples if labels is None else len(labels)
  z = step_lib.sample_z(jax.random.PRNGKey(seed), n, run.models.z_dim)
  sample = run.sample_fn()
  params = sampling_params(state)
  extra = (lambda i: ()) if labels is None else (lambda i: (labels[i:i + BATCH],))
  return np.concatenate([np.asarray(sample(params, state.g_state, z[i:i + BATCH], *extra(i)))
                         for i in range(0, n, BATCH)])


def write_samples(path: str, samples, *, is_toy: bool, title: str = '', labels=None,
                  ncol=None) -> None:
  import numpy as np

  from wgan_jax import plots
  if path.endswith('.npy'):
    np.save(path, samples)
  elif is_toy:
    plots.plot_toy(path, real=np.zeros((0, 2)), fake=samples, title=title, fake_labels=labels)
  else:
    plots.save_image_grid(path, samples, ncol=ncol)


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
    labels = parse_labels(_LABELS.value, num_classes=run.num_classes,
                          num_samples=_NUM_SAMPLES.value)
    samples = generate(run, state, num_samples=_NUM_SAMPLES.value, seed=_SEED.value,
                       labels=labels)
    write_samples(_OUT.value, samples, is_toy=run.is_toy, labels=labels,
                  ncol=_NUM_SAMPLES.value if _LABELS.value == 'all' else None,
                  title=f'{run.config.data.name}, step {step}, seed {_SEED.value}')
    print(f'wrote {len(samples)} samples of step {step} to {_OUT.value}')

  cli.run_user_errors(sample)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
