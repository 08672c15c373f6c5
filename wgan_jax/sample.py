"""python -m wgan_jax.sample --workdir=DIR [--step=N] --num_samples=N --seed=S --out=FILE
                           [--labels=...] [--truncation=T]

Writes samples of a checkpoint's generator (its EMA weights where the run kept them):
`.npy` is the raw float32 array [N, ...], generated in chunks of BATCH and streamed to disk
(any N that fits on the disk); `.png` an image grid, or for 2-D data a scatter plot (held
in memory). The same checkpoint, seed and count give byte-identical files; sample i has the
same noise for every N > i (chunk c draws its noise from fold_in(PRNGKey(seed), c)). The output
path and the size are checked before the model is loaded.

--truncation=T (the truncation trick, Brock et al. 2019, Section 3.1): z ~ N(0, I)
truncated to [-T, T] (values outside are resampled, `truncated_z`), drawn from the same
chunk keys; T = 0 (default) is the plain normal. Runs whose config sets
eval.standing_stats sample with standing batch-norm statistics (wgan_jax.eval.standing).

Class-conditional runs take --labels: a class (`3`), a comma list (`0,3,7`: the samples
cycle through it), or `all` (--num_samples per class, an image grid with one row per class);
toy scatter plots colour the samples by requested class. Without --labels a conditional run
cycles through all classes.

Translation runs (family cyclegan) translate instead of sampling: --input=PATH (a .npy of
float32 examples [n, ...] in the data's range, images in [-1, 1] (uint8 images are scaled),
or a folder of images, read like data.name folder:PATH at the run's image size) and
--direction=a2b (G: A -> B, default) or b2a (F: B -> A). --out: .npy (the translations,
float32 [n, ...]), .png (2-D data: a scatter of input and translation; images: a grid of
rows input | translation), or a folder (images: one PNG per input, named as the input file
or NNNNNN.png for a .npy). --num_samples, --seed, --labels and --truncation do not apply.
"""
import os
import shutil
from typing import Optional

import ml_collections
import numpy as np
from absl import flags

from wgan_jax import cli, config_lib, data, plots
from wgan_jax.errors import UserError

# jax, and the modules that import it (checkpoint, step, state, train), are imported
# inside the functions that need them: the flags and the output path are checked first, in
# well under a second.

_WORKDIR = flags.DEFINE_string('workdir', None, 'A training run\'s workdir.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
_NUM_SAMPLES = flags.DEFINE_integer('num_samples', 64, 'How many samples.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the generator noise.')
_OUT = flags.DEFINE_string('out', None, 'Output file: .npy or .png.')
_LABELS = flags.DEFINE_string('labels', None, 'Conditional runs: a class, a comma list, or '
                              '`all` (--num_samples per class, one grid row per class).')

_TRUNCATION = flags.DEFINE_float('truncation', 0.0, 'Truncation trick: resample |z| > T '
                                  '(0: no truncation).')

_INPUT = flags.DEFINE_string('input', None, 'Translation runs (cyclegan): a .npy of examples or '
                             'a folder of images to translate.')
_DIRECTION = flags.DEFINE_enum('direction', 'a2b', ['a2b', 'b2a'],
                               'Translation runs: a2b (G: A -> B) or b2a (F: B -> A).')

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


def truncated_z(key, n: int, z_dim: int, threshold: float):
  """z [n, z_dim] ~ N(0, I) truncated to [-threshold, threshold] per entry: the truncation
  trick (Brock et al. 2019, Section 3.1: values above the threshold are resampled), exactly
  by inverse-CDF sampling (jax.random.truncated_normal)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  return jax.random.truncated_normal(key, -threshold, threshold, (n, z_dim), jnp.float32)


def generate_chunks(run, state, *, num_samples: int, seed: int, labels=None,
                    truncation: float = 0.0):
  """Float32 sample chunks [<= BATCH, ...] (n in all: len(labels), else num_samples):
  chunk c from z ~ N(0, I) drawn from fold_in(PRNGKey(seed), c) (wgan_jax.rng.sample_key),
  truncated to [-truncation, truncation] when truncation > 0 (`truncated_z`); conditional
  runs take labels int [n]. With eval.standing_stats, G's batch-norm statistics are
  standing statistics (train.Run.sampling_state)."""
  from wgan_jax import rng
  from wgan_jax import step as step_lib
  from wgan_jax.eval.evaluators import generate as generate_batches

  def noise(c: int, start: int, stop: int):
    key = rng.sample_key(seed, c)
    z = (truncated_z(key, BATCH, run.models.z_dim, truncation) if truncation > 0
         else step_lib.sample_z(key, BATCH, run.models.z_dim))
    return z[:stop - start]

  state = run.sampling_state(state)

  n = num_samples if labels is None else len(labels)
  return generate_batches(run.sample_fn(), state, noise, batch_size=BATCH, labels=labels, n=n)


def generate(run, state, *, num_samples: int, seed: int, labels=None,
             truncation: float = 0.0):
  """[n, ...] float32 samples of `generate_chunks`, in memory."""
  return np.concatenate(list(generate_chunks(run, state, num_samples=num_samples, seed=seed,
                                             labels=labels, truncation=truncation)))


def stream_npy(path: str, chunks, *, shape: tuple) -> None:
  """Writes the float32 chunks (shape[0] rows in all) to `path` as one .npy, chunk by chunk
  (through `path`.tmp, renamed when complete)."""
  tmp = path + '.tmp'
  out = np.lib.format.open_memmap(tmp, mode='w+', dtype=np.float32, shape=shape)
  try:
    i = 0
    for chunk in chunks:
      out[i:i + len(chunk)] = chunk
      i += len(chunk)
    out.flush()
  except BaseException:
    del out
    os.remove(tmp)
    raise
  del out
  os.replace(tmp, path)


def check_out_path(path: str) -> None:
  """UserError (one line) when --out cannot be written: a folder, a missing or read-only
  parent folder."""
  parent = os.path.dirname(os.path.abspath(path))
  if os.path.isdir(path):
    raise UserError(f'--out={path!r} is an existing folder; pass a file path ending in '
                    f'{" or ".join(FORMATS)}')
  if not os.path.isdir(parent):
    raise UserError(f'--out={path!r}: folder {parent!r} does not exist; create it first or '
                    f'pass another --out')
  if not os.access(parent, os.W_OK):
    raise UserError(f'--out={path!r}: folder {parent!r} is not writable; pass another --out')


def available_memory() -> int:
  """Bytes of memory free now (physical pages available)."""
  return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')


def check_size(path: str, *, count: int, example_shape: tuple) -> None:
  """UserError (one line) when `count` float32 examples of `example_shape` do not fit: on
  the disk for .npy (streamed), in memory for .png (a plot of all of them)."""
  from wgan_jax.checkpoint import format_bytes as _format_bytes  # jax: see the top
  needed = count * int(np.prod(example_shape)) * 4
  if path.endswith('.npy'):
    free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
    if needed > free:
      raise UserError(f'--num_samples: {count} samples need {_format_bytes(needed)} in '
                      f'{path!r} but only {_format_bytes(free)} is free there; ask for fewer')
  elif 4 * needed > available_memory():  # the samples, the grid / plot, copies
    raise UserError(f'--num_samples: a .png of {count} samples needs about '
                    f'{_format_bytes(4 * needed)} of memory, {_format_bytes(available_memory())} '
                    f'is available; ask for fewer or write a .npy (streamed to disk)')


def planned_count(workdir: str, *, num_samples: int, labels_spec) -> Optional[tuple]:
  """(count, example_shape) of a sample run, from the config stored in the workdir (None
  when there is none: loading reports that)."""
  from wgan_jax import checkpoint  # pylint: disable=import-outside-toplevel
  saved = checkpoint.saved_config(workdir)
  if saved is None:
    return None
  config = ml_collections.ConfigDict(saved)
  shape, dataset_classes = data.describe(config.data)
  classes = config_lib.num_classes(config, dataset_classes)
  count = num_samples * classes if (labels_spec == 'all' and classes) else num_samples
  return count, tuple(shape)


def write_samples(path: str, samples, *, is_toy: bool, title: str = '', labels=None,
                  ncol=None) -> None:
  if path.endswith('.npy'):
    np.save(path, samples)
  elif is_toy:
    plots.plot_toy(path, real=np.zeros((0, 2)), fake=samples, title=title, fake_labels=labels)
  else:
    plots.save_image_grid(path, samples, ncol=ncol)


def read_inputs(path: str, run) -> tuple[np.ndarray, list]:
  """(float32 [n, *data_shape] examples, names) of --input: a .npy (uint8 images scaled to
  [-1, 1]; names NNNNNN) or a folder of images at the run's image shape (names: the files'
  stems). UserError (one line) for a missing path or examples of another shape."""
  from wgan_jax.data import folder, source  # pylint: disable=import-outside-toplevel
  shape = tuple(run.data_shape)
  if path.endswith('.npy'):
    if not os.path.isfile(path):
      raise UserError(f'--input={path!r} does not exist; pass a .npy file or a folder of images')
    x = np.load(path)
    if x.dtype == np.uint8:
      x = source.to_float(x)
    x = np.asarray(x, np.float32)
    if x.ndim < 1 or tuple(x.shape[1:]) != shape:
      raise UserError(f'--input={path!r} holds an array of shape {x.shape}; this run '
                      f'translates examples of shape {shape}: pass [n, *{shape}]')
    return x, [f'{i:06d}' for i in range(len(x))]
  if not os.path.isdir(path):
    raise UserError(f'--input={path!r} is neither a .npy file nor a folder of images')
  if len(shape) != 3:
    raise UserError(f'--input={path!r}: a folder of images, but this run translates 2-D '
                    f'points; pass a .npy of shape [n, 2]')
  store = folder.FolderStore(path, {'name': f'folder:{path}', 'image_size': shape[0],
                                    'channels': shape[2]})
  images, _ = store.read(np.arange(store.num_examples))
  names = [os.path.splitext(f.replace('/', '_'))[0] for f in store.files]
  return source.to_float(images), names


def translate(run, state, x: np.ndarray, *, direction: str) -> np.ndarray:
  """x [n, ...] translated by G (a2b) or F (b2a) in inference mode, from the sampling
  weights (EMA where configured), in chunks of BATCH."""
  import jax  # pylint: disable=import-outside-toplevel
  from wgan_jax.eval.evaluators import in_batches  # pylint: disable=import-outside-toplevel
  from wgan_jax.state import sampling_params  # pylint: disable=import-outside-toplevel
  net = run.models.g if direction == 'a2b' else run.models.e
  fn = jax.jit(lambda p, s, v: net.apply(p, s, None, v, is_training=False)[0])
  return np.concatenate(list(in_batches(fn, sampling_params(state), state.g.state, x,
                                        batch_size=BATCH)))


def write_translations(out: str, x: np.ndarray, y: np.ndarray, names: list, *, is_toy: bool,
                       title: str = '') -> None:
  """The translations y of inputs x to --out (.npy, .png or a folder; module docstring)."""
  if out.endswith('.npy'):
    np.save(out, y)
  elif out.endswith('.png') and is_toy:
    plots.plot_toy(out, real=x, fake=y, title=title)
  elif out.endswith('.png'):
    plots.save_image_grid(out, np.stack([x, y], axis=1).reshape((-1,) + x.shape[1:]), ncol=2)
  else:
    os.makedirs(out, exist_ok=True)
    for name, image in zip(names, y):
      plots.save_image_grid(os.path.join(out, f'{name}.png'), image[None], ncol=1)


def translate_main(out: str) -> None:
  """`main` for translation runs (family cyclegan): --input, --direction, --out."""
  from wgan_jax import train  # pylint: disable=import-outside-toplevel
  run, state, step = train.load_for_inference(_WORKDIR.value, _STEP.value)
  if run.family.name != 'cyclegan':
    raise UserError(f'--input translates with family cyclegan runs; {_WORKDIR.value!r} is a '
                    f'{run.family.name} run (drop --input to sample)')
  if run.is_toy and not (out.endswith('.npy') or out.endswith('.png')):
    raise UserError(f'--out={out!r}: 2-D translations are written to a .npy or .png')
  x, names = read_inputs(_INPUT.value, run)
  y = translate(run, state, x, direction=_DIRECTION.value)
  write_translations(out, x, y, names, is_toy=run.is_toy,
                     title=f'{_DIRECTION.value}, step {step}')
  print(f'wrote {len(y)} translations ({_DIRECTION.value}) of step {step} to {out}')


def main(argv):
  del argv
  if _INPUT.value is not None:
    if not _WORKDIR.value or not _OUT.value:
      cli.fail('--workdir and --out are required, e.g. --workdir=runs/h2z --input=a.npy '
               '--out=b.npy')
    if os.path.isfile(_OUT.value) and not _OUT.value.endswith(FORMATS):
      cli.fail(f'--out={_OUT.value!r} is a file; pass a .npy, a .png or a folder')
    translate_main(_OUT.value)
    return
  if not _WORKDIR.value or not _OUT.value:
    cli.fail('--workdir and --out are required, e.g. --workdir=runs/quickstart --out=s.png')
  if os.path.splitext(_OUT.value)[1] not in FORMATS:
    cli.fail(f'--out must end in {" or ".join(FORMATS)}, got {_OUT.value!r}')
  if _NUM_SAMPLES.value < 1:
    cli.fail(f'--num_samples must be >= 1, got {_NUM_SAMPLES.value}')
  if not 0 <= _SEED.value < 2**32:
    cli.fail(f'--seed must be in [0, 2**32), got {_SEED.value}')
  if not (np.isfinite(_TRUNCATION.value) and _TRUNCATION.value >= 0):
    cli.fail(f'--truncation must be >= 0 and finite (0: none), got {_TRUNCATION.value}')
  out = _OUT.value

  check_out_path(out)  # before anything is loaded
  plan = planned_count(_WORKDIR.value, num_samples=_NUM_SAMPLES.value,
                       labels_spec=_LABELS.value)
  if plan is not None:
    check_size(out, count=plan[0], example_shape=plan[1])
  from wgan_jax import train  # pylint: disable=import-outside-toplevel
  run, state, step = train.load_for_inference(_WORKDIR.value, _STEP.value)
  if run.family.name == 'cyclegan':
    raise UserError(f'{_WORKDIR.value!r} is a cyclegan run, which translates: pass '
                    f'--input=PATH (.npy or a folder of images) and --direction=a2b|b2a')
  labels = parse_labels(_LABELS.value, num_classes=run.num_classes,
                        num_samples=_NUM_SAMPLES.value)
  n = _NUM_SAMPLES.value if labels is None else len(labels)
  if out.endswith('.npy'):
    stream_npy(out, generate_chunks(run, state, num_samples=n, seed=_SEED.value,
                                    labels=labels, truncation=_TRUNCATION.value),
               shape=(n,) + tuple(run.data_shape))
  else:
    samples = generate(run, state, num_samples=n, seed=_SEED.value, labels=labels,
                       truncation=_TRUNCATION.value)
    write_samples(out, samples, is_toy=run.is_toy, labels=labels,
                  ncol=_NUM_SAMPLES.value if _LABELS.value == 'all' else None,
                  title=f'{run.config.data.name}, step {step}, seed {_SEED.value}')
  print(f'wrote {n} samples of step {step} to {out}')


if __name__ == '__main__':
  cli.entry(main)
