"""FID, IS, KID and SWD of a generator on image data, with the protocol of every score.

Configured by `config.eval` (wgan_jax.config_lib.base_config):
  metrics_every_steps  evaluate every this many generator steps and at the last step (0: off)
  metrics            comma-separated subset of fid, is, kid, swd, intra_fid
  fid_num_samples    generated images for FID, KID (5000, SNGAN: 5k fake vs 10k real)
  intra_fid_num_samples  generated images per class for intra-class FID (conditional runs)
  is_num_samples     generated images for IS, in 10 splits (50000 = SNGAN's 10 x 5000)
  swd_num_images     generated and real images for SWD (real: the training split)
  batch_size         images per device per generator + Inception pass (wgan_jax.eval.sharded)
  reference_stats    .npz of python -m wgan_jax.eval.reference_stats (fid, kid)
  inception_weights  .npz of python -m wgan_jax.eval.convert_inception (fid, is, kid)

Samples come from the EMA generator where configured (state.sampling_params) with fixed noise
(wgan_jax.rng.METRICS_STREAM: the same z at every evaluation); a conditional generator gets
balanced labels (arange(n) % C). Every generated image is quantised to uint8 before any
metric sees it (`quantize`), as the papers' evaluation code and image files hold them, and
read back as the real images are (v / 127.5 - 1), so generated and real images reach
Inception (and SWD) on the same 256 grey levels. The Inception Score's logits are pool3 @ W without the bias
(eval/metrics.py). Intra-class FID (Miyato & Koyama 2018) is the mean over the reference's C
classes of the FID between intra_fid_num_samples images generated for class c (the same z
for every class) and the real images of class c (reference statistics made with
--per_class). Scores: eval/fid, eval/is, eval/is_std, eval/kid, eval/kid_std, eval/swd (and
eval/swd_<res> per pyramid level), eval/intra_fid and eval/intra_fid_max (the worst class),
each written together with
eval/protocol/* (sample counts, reference dataset / split / count, Inception weights checksum,
resize method, ...) into metrics.jsonl and TensorBoard by the trainer, and into
`<workdir>/scores.json` ({step: {scores..., 'protocol': {...}}}) here.
"""
from typing import Optional

import jax
import numpy as np

from wgan_jax import parallel, registry, rng
from wgan_jax.errors import ConfigError, DataError
from wgan_jax.data.source import to_float
from wgan_jax.eval import fid, metrics as metrics_lib, sharded, swd as swd_lib
from wgan_jax.eval.evaluators import every

SCORES_FILE = 'scores.json'
# Recorded with every score (protocol): how generated images and IS logits are formed.
FAKE_QUANTIZATION = 'uint8 floor(clip(127.5 x + 127.5, 0, 255))'
IS_LOGITS = 'pool3 @ fc.w (no bias)'
METRICS = {  # name -> (needs Inception weights, needs reference statistics)
    'fid': (True, True),
    'is': (True, False),
    'kid': (True, True),
    'swd': (False, False),
    'intra_fid': (True, True),
}


def quantize(images: np.ndarray) -> np.ndarray:
  """Generated images in [-1, 1] on the uint8 levels of the real images, float32 [...].

  v = uint8(clip(127.5 x + 127.5, 0, 255)) (truncated, in float32: sngan_projection's
  evaluation.py, gen_images, line 31; WGAN-GP's gan_cifar_resnet.py, line 330, truncates
  127.995 (x + 1), at most one grey level away), then v / 127.5 - 1 as the real images
  (wgan_jax.data.source.to_float). Idempotent: an image already on the levels is unchanged.
  """
  return to_float(sharded.quantize_uint8(images))


def parse_metrics(spec: str) -> tuple[str, ...]:
  """'fid,is' -> ('fid', 'is'); ConfigError naming an unknown metric and the valid ones."""
  names = tuple(dict.fromkeys(t.strip() for t in str(spec).split(',') if t.strip()))
  for name in names:
    registry.lookup(METRICS, name, 'eval.metrics entry')
  if not names:
    raise ConfigError(f'eval.metrics is empty; valid: {", ".join(METRICS)}')
  return names


def _needs(names) -> tuple[bool, bool]:
  return any(METRICS[n][0] for n in names), any(METRICS[n][1] for n in names)


def validate(config, *, is_toy: bool) -> None:
  """Raises ConfigError / DataError (one line) before anything is written, when the image
  metrics are on (eval.metrics_every_steps > 0).

  Checks the metric settings of config.eval, and that the Inception weights and reference
  statistics the requested metrics need exist, are the right kind of file, agree on the
  Inception weights and were computed on config.data.name.
  """
  settings = config.eval
  if settings.metrics_every_steps < 0:
    raise ConfigError(f'eval.metrics_every_steps must be >= 0 (0: off), got '
                      f'{settings.metrics_every_steps}')
  if settings.metrics_every_steps == 0:
    return
  if is_toy:
    raise ConfigError('image metrics (FID / IS / KID / SWD) are for image data; built-in 2-D '
                      'data is evaluated by eval/w1 every eval_every_steps: set '
                      'eval.metrics_every_steps=0')
  names = parse_metrics(settings.metrics)
  for key, low in (('fid_num_samples', 2), ('batch_size', 1)):
    if settings[key] < low:
      raise ConfigError(f'eval.{key} must be >= {low}, got {settings[key]}')
  if 'is' in names and settings.is_num_samples < metrics_lib.IS_SPLITS:
    raise ConfigError(f'eval.is_num_samples must be >= {metrics_lib.IS_SPLITS} (IS splits), '
                      f'got {settings.is_num_samples}')
  if 'swd' in names and settings.swd_num_images < 2:
    raise ConfigError(f'eval.swd_num_images must be >= 2, got {settings.swd_num_images}')
  if 'intra_fid' in names:
    conditional = config.get('conditional')
    if conditional is None or conditional.method == 'none':
      raise ConfigError('eval.metrics intra_fid scores a class-conditional generator; set '
                        'conditional.method (e.g. the config argument conditional or acgan) '
                        'or drop intra_fid')
    if settings.intra_fid_num_samples < 2:
      raise ConfigError('eval.intra_fid_num_samples (per class) must be >= 2, got '
                        f'{settings.intra_fid_num_samples}')
  check_files(settings, names, dataset=config.data.name, split=config.data.split)


def check_files(settings, names, *, dataset: str, split: str = 'train') -> Optional[dict]:
  """Checks the weights / reference files `names` need; returns the reference protocol."""
  from wgan_jax.eval import inception, reference_stats  # pylint: disable=import-outside-toplevel
  needs_weights, needs_reference = _needs(names)
  sha = None
  if needs_weights:
    if not settings.inception_weights:
      raise DataError(f'eval.metrics={",".join(names)} needs the FID Inception weights: '
                      f'download {inception.WEIGHTS_FILE} ({inception.WEIGHTS_URL}), convert it '
                      f'with python -m wgan_jax.eval.convert_inception --torch_weights='
                      f'{inception.WEIGHTS_FILE} --out=inception_fid.npz and pass '
                      '--config.eval.inception_weights=inception_fid.npz')
    sha = inception.check_weights_file(settings.inception_weights)
  if not needs_reference:
    return None
  if not settings.reference_stats:
    raise DataError(f'eval.metrics={",".join(names)} needs reference statistics: '
                    f'python -m wgan_jax.eval.reference_stats --dataset={dataset} --split=train '
                    f'--weights={settings.inception_weights or "inception_fid.npz"} '
                    '--out=FILE.npz, '
                    'then --config.eval.reference_stats=FILE.npz')
  protocol = reference_stats.read_protocol(settings.reference_stats, dataset=dataset)
  if protocol.get('dataset') != dataset:
    raise DataError(f'reference statistics {settings.reference_stats!r} are of dataset '
                    f'{protocol.get("dataset")!r}, but this run trains on {dataset!r}')
  if protocol.get('weights_sha256') != sha:
    raise DataError(f'reference statistics {settings.reference_stats!r} were computed with other '
                    f'Inception weights (sha256 {str(protocol.get("weights_sha256"))[:12]}...) '
                    f'than {settings.inception_weights!r} ({sha[:12]}...); recompute them')
  if 'kid' in names and not protocol.get('num_kid_features'):
    raise DataError(f'reference statistics {settings.reference_stats!r} hold no KID features; '
                    'recompute them with --num_kid_features > 0')
  if 'intra_fid' in names and not protocol.get('per_class'):
    raise DataError(f'reference statistics {settings.reference_stats!r} hold no per-class '
                    'statistics (intra_fid); recompute them with python -m '
                    f'wgan_jax.eval.reference_stats --dataset={dataset} --per_class '
                    '--num_samples=0 ...')
  return protocol


# ----------------------------------------------------------------------------- scores.json


def write_scores(workdir: str, step: int, scores: dict) -> None:
  """Merges {step: scores} into <workdir>/scores.json (rewritten whole; gs:// works too)."""
  from wgan_jax import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
  file = workdir_lib.path(workdir, SCORES_FILE)
  try:
    table = workdir_lib.read_json(file) or {}
  except ValueError:  # a file cut off by a kill
    table = {}
  table[str(int(step))] = scores
  workdir_lib.write_json(file, table)


def flat_record(scores: dict) -> dict:
  """{'eval/fid': .., 'protocol': {k: v}} -> {'eval/fid': .., 'eval/protocol/k': v}."""
  out = {k: v for k, v in scores.items() if k != 'protocol'}
  out.update({f'eval/protocol/{k}': v for k, v in scores.get('protocol', {}).items()})
  return out


# ----------------------------------------------------------------------------- the evaluator


class ImageEvaluator:
  """Computes the configured image metrics of a TrainState (see the module docstring)."""

  every_process = True  # its passes run on every device of every process (train loop)

  def __init__(self, *, run, settings, workdir: Optional[str], real_source=None,
               is_chief: bool = True, devices=None):
    """Loads the weights / statistics the metrics need (the reference statistics and SWD's
    real images in the chief only: the other processes only compute images and features).

    Args:
      run: a wgan_jax.train.Run (models, config).
      settings: the config.eval block (metrics, fid_num_samples, batch_size, ...).
      workdir: where scores.json is written (None: not written).
      real_source: an image source for SWD's real images (default run.source).
      is_chief: whether this process scores (the others return no scores).
      devices: the devices of the passes (default: all devices of all processes).
    """
    from wgan_jax import step as step_lib  # pylint: disable=import-outside-toplevel
    from wgan_jax.eval import inception, reference_stats  # pylint: disable=import-outside-toplevel
    config = run.config
    self.names = parse_metrics(settings.metrics)
    self.every_steps = int(settings.metrics_every_steps)
    self.total_steps = int(config.total_steps)
    self.workdir = workdir
    self.is_chief = is_chief
    self.sampling_state = run.sampling_state  # standing statistics where configured
    needs_weights, needs_reference = _needs(self.names)
    # Every process checks the files (metadata only); the chief alone loads the statistics.
    ref_protocol = check_files(settings, self.names, dataset=config.data.name,
                               split=config.data.split)
    self.num_fid = int(settings.fid_num_samples) if {'fid', 'kid'} & set(self.names) else 0
    self.num_is = int(settings.is_num_samples) if 'is' in self.names else 0
    self.num_swd = int(settings.swd_num_images) if 'swd' in self.names else 0
    n = max(self.num_fid, self.num_is, self.num_swd)
    key = rng.stream_key(config.seed, rng.METRICS_STREAM)
    self.z = step_lib.sample_z(key, n, run.models.z_dim)
    self.labels = run.eval_labels(n)  # balanced classes when conditional, else None
    self.num_intra = int(settings.intra_fid_num_samples) if 'intra_fid' in self.names else 0
    self.z_intra = step_lib.sample_z(jax.random.fold_in(key, 1), self.num_intra,
                                     run.models.z_dim)
    protocol = {'generator': 'ema' if config.ema_decay > 0 else 'raw',
                'seed': int(config.seed), 'fake_quantization': FAKE_QUANTIZATION}
    if settings.get('standing_stats', 0):  # G's batch-norm statistics: N standing passes
      protocol['standing_stats'] = int(settings.standing_stats)
    weights = inception.load_params(settings.inception_weights) if needs_weights else None
    self.fakes = sharded.FakePass(run.models.g.apply, conditional=run.num_classes > 0,
                                  per_device_batch=int(settings.batch_size), devices=devices,
                                  inception_params=weights and weights.params)
    if needs_weights:
      self.is_weight = np.asarray(weights.params['fc']['w'])
      protocol.update(weights_sha256=weights.source_sha256, weights_file=inception.WEIGHTS_FILE,
                      resize=inception.RESIZE_METHOD)
    self.reference = None
    if needs_reference:
      self.reference = reference_stats.load(settings.reference_stats) if is_chief else None
      protocol.update(num_fake=self.num_fid, num_real=int(ref_protocol['num_samples']),
                      reference_dataset=ref_protocol['dataset'],
                      reference_split=ref_protocol['split'],
                      reference_resize=ref_protocol['resize'])
    if 'kid' in self.names and is_chief:
      protocol.update(kid_subsets=metrics_lib.KID_SUBSETS,
                      kid_subset_size=min(metrics_lib.KID_SUBSET_SIZE, self.num_fid,
                                          len(self.reference.kid_features)),
                      kid_num_real=len(self.reference.kid_features))
    if 'is' in self.names:
      protocol.update(is_num_samples=self.num_is, is_splits=metrics_lib.IS_SPLITS,
                      is_logits=IS_LOGITS)
    self.class_sqrt_sigma = None
    self.intra_classes = 0
    if 'intra_fid' in self.names:
      self.intra_classes = int(ref_protocol['num_classes'])
    if 'intra_fid' in self.names and is_chief:
      ref = self.reference
      if run.num_classes < len(ref.class_mu):
        raise DataError(f'reference statistics {settings.reference_stats!r} have '
                        f'{len(ref.class_mu)} classes, the generator {run.num_classes}')
      self.class_sqrt_sigma = [fid.psd_sqrt(s) for s in ref.class_sigma]
      protocol.update(intra_fid_num_classes=len(ref.class_mu),
                      intra_fid_num_fake_per_class=self.num_intra,
                      intra_fid_num_real_min=int(ref.class_counts.min()),
                      intra_fid_num_real_max=int(ref.class_counts.max()))
    self.swd_real = None
    if 'swd' in self.names and is_chief:
      source = real_source if real_source is not None else run.source
      if source is None:
        raise DataError('swd needs real images but the run has no data source')
      self.swd_real = source.eval_real(self.num_swd, index=0)
      protocol.update(swd_num_images=self.num_swd, swd_real_split=config.data.split,
                      swd_nhoods_per_image=swd_lib.NHOODS_PER_IMAGE,
                      swd_directions=swd_lib.DIR_REPEATS * swd_lib.DIRS_PER_REPEAT)
    self.protocol = protocol

  def due(self, step: int) -> bool:
    """Whether `step` is an evaluation step (every `every_steps` and the last step)."""
    return every(step, self.every_steps, self.total_steps)

  def _class_features(self, state, c: int) -> np.ndarray:
    """Inception features [intra_fid_num_samples, D] of images generated for class c."""
    labels = np.full(self.num_intra, c, np.int32)
    return self.fakes(state, self.z_intra, labels, num_features=self.num_intra).features

  def _generate(self, state):
    """(pool3 features of the FID / IS images, the SWD images in [-1, 1]): every process
    computes its share and holds the whole result."""
    n_features = max(self.num_fid, self.num_is) if 'is_weight' in vars(self) else 0
    fakes = self.fakes(state, self.z, self.labels, num_images=self.num_swd,
                       num_features=n_features)
    images = None if fakes.images is None else to_float(fakes.images)
    return fakes.features, images

  def scores(self, state, step: int) -> dict:
    """The scores of `state`: {'eval/<metric>': value, 'protocol': {...}}; written into
    <workdir>/scores.json when a workdir was given."""
    state = self.sampling_state(state)
    feats, images = self._generate(state)
    if not self.is_chief:  # the same passes as the chief, which scores them
      for c in range(self.intra_classes):
        self._class_features(state, c)
      return {}
    scores = {}
    if 'fid' in self.names:
      scores['eval/fid'] = fid.frechet_distance_to(
          feats[:self.num_fid], self.reference.mu, self.reference.sigma,
          sqrt_sigma2=self.reference.sqrt_sigma)
    if 'is' in self.names:
      is_logits = metrics_lib.inception_logits(feats[:self.num_is], self.is_weight)
      mean, std = metrics_lib.inception_score(metrics_lib.softmax(is_logits))
      scores.update({'eval/is': mean, 'eval/is_std': std})
    if 'kid' in self.names:
      mean, std, _ = metrics_lib.kid(feats[:self.num_fid], self.reference.kid_features)
      scores.update({'eval/kid': mean, 'eval/kid_std': std})
    if 'swd' in self.names:
      scores.update({f'eval/{k}': v for k, v in swd_lib.swd(self.swd_real, images).items()})
    if 'intra_fid' in self.names:
      per_class = [fid.frechet_distance_to(self._class_features(state, c),
                                           self.reference.class_mu[c],
                                           self.reference.class_sigma[c], sqrt_sigma2=root)
                   for c, root in enumerate(self.class_sqrt_sigma)]
      scores.update({'eval/intra_fid': float(np.mean(per_class)),
                     'eval/intra_fid_max': float(np.max(per_class))})
    scores['protocol'] = dict(self.protocol)
    if self.workdir:
      write_scores(self.workdir, step, scores)
    return scores

  def __call__(self, state, step: int) -> dict:
    """The trainer's record of `scores`: {'eval/<metric>': value, 'eval/protocol/<key>': ..}."""
    return flat_record(self.scores(parallel.local_copy(state), step))


def make_image_evaluator(run, workdir: Optional[str] = None,
                         is_chief: bool = True) -> Optional[ImageEvaluator]:
  """The evaluator of run.config.eval, or None when the image metrics are off
  (eval.metrics_every_steps 0) or the data is 2-D.

  Args:
    run: a wgan_jax.train.Run.
    workdir: where scores.json is written (by the chief).
    is_chief: whether this process scores (see ImageEvaluator).
  """
  settings = run.config.eval
  if settings.metrics_every_steps <= 0 or run.is_toy:
    return None
  return ImageEvaluator(run=run, settings=settings, workdir=workdir, is_chief=is_chief)
