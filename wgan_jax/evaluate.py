"""python -m wgan_jax.evaluate --workdir=DIR [--step=N] [--metrics=fid,is,kid,swd] ...

Evaluates a checkpoint of a training run (the latest, or --step) with the image metrics of
wgan_jax.eval.image_eval, on its EMA generator where the run kept one. The settings are the
run's `config.eval` with these flags overriding them: --metrics, --num_samples
(eval.fid_num_samples), --is_num_samples, --swd_num_images, --intra_fid_num_samples,
--batch_size, --reference_stats, --inception_weights (and --data_dir for SWD's real images).
The scores and their protocol are printed as one JSON line and written to <workdir>/scores.json,
metrics.jsonl and TensorBoard.
"""
import json
from typing import Optional

import ml_collections
from absl import flags

from wgan_jax import cli

# Flag -> config.eval key of the settings the flags override.
OVERRIDES = {'metrics': 'metrics', 'num_samples': 'fid_num_samples',
             'is_num_samples': 'is_num_samples', 'swd_num_images': 'swd_num_images',
             'batch_size': 'batch_size', 'intra_fid_num_samples': 'intra_fid_num_samples',
             'reference_stats': 'reference_stats', 'inception_weights': 'inception_weights'}


def eval_settings(config, **overrides) -> ml_collections.ConfigDict:
  """A copy of config.eval with the flags' `overrides` (keyed by flag name, None: unset)."""
  settings = ml_collections.ConfigDict(config.eval.to_dict())
  settings.update({OVERRIDES[k]: v for k, v in overrides.items() if v is not None})
  settings.metrics_every_steps = 1  # evaluate now (the trainer's schedule does not apply)
  return settings


def _append_metrics(workdir: str, step: int, record: dict) -> None:
  """Appends one record to metrics.jsonl and writes it to TensorBoard."""
  from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
  from wgan_jax import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
  from wgan_jax.metrics_writer import METRICS_FILE  # pylint: disable=import-outside-toplevel
  file = workdir_lib.path(workdir, METRICS_FILE)
  lines = workdir_lib.LineFile(file, [file.read_text()] if file.exists() else [])
  lines.append(json.dumps({'step': int(step), **record}) + '\n')
  lines.close()
  writer = SummaryWriter(logdir=workdir)
  try:
    for key, value in record.items():
      if isinstance(value, str):
        writer.add_text(key, value, step)
      else:
        writer.add_scalar(key, value, step)
  finally:
    writer.close()


def evaluate_state(run, state, step: int, workdir: Optional[str], *, settings=None,
                   real_source=None) -> dict:
  """Scores of `state` (a TrainState of `run`) with their protocol; written into `workdir`.

  Args:
    run: a wgan_jax.train.Run (data source optional: SWD uses `real_source` or run.source).
    state: the TrainState to evaluate.
    step: its generator step (the key in scores.json).
    workdir: where scores.json, metrics.jsonl and TensorBoard events go (None: nowhere).
    settings: the evaluation settings (default `eval_settings(run.config)`).
    real_source: image source of SWD's real images (default run.source, else opened from
      run.config.data).

  Returns:
    {'eval/<metric>': value, ..., 'protocol': {...}} (protocol includes checkpoint_step).
  """
  from wgan_jax import data  # pylint: disable=import-outside-toplevel
  from wgan_jax.eval import image_eval  # pylint: disable=import-outside-toplevel
  settings = settings if settings is not None else eval_settings(run.config)
  if run.is_toy:
    from wgan_jax.errors import ConfigError  # pylint: disable=import-outside-toplevel
    raise ConfigError('wgan_jax.evaluate computes image metrics; this run trains on 2-D data '
                      '(its eval/w1 is in metrics.jsonl)')
  names = image_eval.parse_metrics(settings.metrics)
  if 'swd' in names and real_source is None and getattr(run, 'source', None) is None:
    real_source = data.make_source(run.config.data, seed=run.config.seed)
  evaluator = image_eval.ImageEvaluator(run=run, settings=settings, workdir=None,
                                        real_source=real_source)
  scores = evaluator.scores(state, step)
  scores['protocol']['checkpoint_step'] = int(step)
  if workdir:
    image_eval.write_scores(workdir, step, scores)
    _append_metrics(workdir, step, image_eval.flat_record(scores))
  return scores


def evaluate_workdir(workdir: str, step: Optional[int] = None, *, data_dir: str = '',
                     **overrides) -> dict:
  """Loads a checkpoint of `workdir` and evaluates it (see `evaluate_state`)."""
  from wgan_jax import train  # pylint: disable=import-outside-toplevel
  run, state, step = train.load_for_inference(workdir, step=step)
  settings = eval_settings(run.config, **overrides)
  if data_dir:
    with run.config.unlocked():
      run.config.data.data_dir = data_dir
  return evaluate_state(run, state, step, workdir, settings=settings)


def main(argv) -> None:
  del argv
  f = flags.FLAGS
  if not f.workdir:
    cli.fail('--workdir is required, e.g. --workdir=runs/sngan_cifar10')
  overrides = {k: f[k].value for k in OVERRIDES if f[k].present}
  scores = evaluate_workdir(f.workdir, f.step, data_dir=f.data_dir, **overrides)
  print(json.dumps(scores, sort_keys=True))


def define_flags() -> None:
  flags.DEFINE_string('workdir', None, 'A training run\'s workdir.')
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
  flags.DEFINE_string('metrics', 'fid,is', 'Comma-separated: fid, is, kid, swd, intra_fid.')
  flags.DEFINE_integer('num_samples', 5000, 'Generated images for FID and KID.')
  flags.DEFINE_integer('is_num_samples', 50000, 'Generated images for IS (10 splits).')
  flags.DEFINE_integer('swd_num_images', 2048, 'Generated and real images for SWD.')
  flags.DEFINE_integer('intra_fid_num_samples', 1000,
                       'Generated images per class for intra-class FID.')
  flags.DEFINE_integer('batch_size', 100, 'Images per device per generator + Inception pass.')
  flags.DEFINE_string('reference_stats', '', 'Reference statistics .npz (fid, kid).')
  flags.DEFINE_string('inception_weights', '', 'Converted Inception weights .npz.')
  flags.DEFINE_string('data_dir', '', 'tfds data_dir for SWD\'s real images.')


if __name__ == '__main__':
  cli.entry(main, define_flags=define_flags, workdir_flag='workdir')
