"""Reference statistics of a real dataset, computed once: Inception mu, sigma and KID features.

  python -m wgan_jax.eval.reference_stats --dataset=cifar10 --split=train --out=FILE.npz \
      [--weights=inception_fid.npz] [--num_samples=10000] [--data_dir=DIR] [--per_class] \
      [--image_size=S] [--channels=C]

--dataset is any data.name training reads (wgan_jax.data.store): a named dataset (cifar10,
...), tfds:NAME, npz:PATH or folder:PATH; --image_size and --channels are data.image_size and
data.channels (0: the data's own), to be set as in the training config. The images are the
first N of the dataset's seed-0 training-order permutation (all of the split when N is 0 or
larger than the split; 10000 by default, the SNGAN protocol's real count), preprocessed
exactly as for training (wgan_jax.data), then resized for Inception as in
wgan_jax.eval.inception. The file stores:

  mu            float64 [2048]        mean of the pool3 features
  sigma         float64 [2048, 2048]  their covariance (ddof 1)
  sqrt_sigma    float64 [2048, 2048]  its PSD square root (fid.psd_sqrt), so that each FID
                                      during training needs no eigendecomposition of sigma
  kid_features  float32 [K, 2048]     the first K = min(N, --num_kid_features) features (KID)
  protocol      JSON: dataset, split, num_samples, selection, image_shape, weights_sha256
                (of the source .pth), resize, num_kid_features, per_class, format; and
                image_size, channels when they are not 0
With --per_class (intra-class FID of conditional GANs, Miyato & Koyama 2018), also the
statistics of each class c among the same N images:
  class_mu      float64 [C, 2048]
  class_sigma   float32 [C, 2048, 2048]  (float32 to keep the file at C x 16 MB; each
                                          sigma is symmetrised and rooted in float64)
  class_counts  int64 [C]                images per class (each >= 2)
and protocol.num_classes = C; use --num_samples=0 for the whole split (CIFAR-10: 5000 per
class, the count of intra-class FID in the literature; check the paper you compare with).
"""
import json
import os
from typing import Callable, NamedTuple

import numpy as np
from absl import flags

from wgan_jax import cli
from wgan_jax.errors import ConfigError, DataError
from wgan_jax.eval import fid, inception

FORMAT = 'wgan_jax.reference_stats.v1'
SELECTION_SEED = 0
SELECTION = (f'first num_samples of the split in wgan_jax.data.images order '
             f'(permutation seed {SELECTION_SEED}, epoch 0)')
DEFAULT_NUM_SAMPLES = 10_000
DEFAULT_NUM_KID_FEATURES = 5_000


class ReferenceStats(NamedTuple):
  """A loaded reference-statistics file."""
  mu: np.ndarray
  sigma: np.ndarray
  sqrt_sigma: np.ndarray
  kid_features: np.ndarray
  protocol: dict
  class_mu: np.ndarray | None = None       # [C, D] (files written with --per_class)
  class_sigma: np.ndarray | None = None    # [C, D, D]
  class_counts: np.ndarray | None = None   # [C]


def read_real_images(dataset: str, *, split: str, data_dir: str | None, num_samples: int,
                     batch_size: int, with_labels: bool = False, image_size: int = 0,
                     channels: int = 0):
  """(count, generator of float32 [b, H, W, C] batches in [-1, 1]) of the selected images of
  data.name `dataset` (any name wgan_jax.data reads); with_labels: batches are (images,
  int32 labels [b]) and the count is (n, num_classes)."""
  from wgan_jax.data import source, store  # pylint: disable=import-outside-toplevel

  split_store = store.open_store(dict(name=dataset, split=split, data_dir=data_dir or '',
                                      image_size=image_size, channels=channels))
  store.check_size(split_store)
  total = split_store.num_examples
  n = total if num_samples <= 0 else min(num_samples, total)
  order = source.permutation(SELECTION_SEED, 0, total)[:n]

  def batches():
    try:
      for begin in range(0, n, batch_size):
        x, y = split_store.read(order[begin:begin + batch_size])
        x = source.to_float(x)
        yield (x, y) if with_labels else x
    finally:
      split_store.close()

  return ((n, split_store.num_classes) if with_labels else n), batches()


def compute(batches, features_fn: Callable, *, num_kid_features: int,
            num_classes: int = 0) -> dict:
  """mu, sigma, sqrt_sigma, kid_features of the Inception features of image batches; with
  num_classes C > 0 the batches are (images, labels) and class_mu / class_sigma /
  class_counts are added (DataError when a class has fewer than 2 images)."""
  feats, labels = [], []
  for batch in batches:
    x, y = batch if num_classes else (batch, None)
    feats.append(features_fn(x)[0])
    labels.append(y)
  feats = np.concatenate(feats)
  mu, sigma = fid.statistics(feats)
  out = dict(mu=mu, sigma=sigma, sqrt_sigma=fid.psd_sqrt_from_features(feats),
             kid_features=feats[:num_kid_features].astype(np.float32))
  if num_classes:
    out.update(class_statistics(feats, np.concatenate(labels), num_classes))
  return out


def class_statistics(features: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
  """Per-class mu [C, D] float64, sigma [C, D, D] float32 and counts [C] of features [N, D]."""
  counts = np.bincount(labels, minlength=num_classes)
  if counts.min() < 2:
    raise DataError(f'per-class statistics need >= 2 images of every class; class '
                    f'{int(counts.argmin())} has {int(counts.min())} among the selected '
                    f'{len(labels)}: use more images (--num_samples=0: the whole split)')
  stats = [fid.statistics(features[labels == c]) for c in range(num_classes)]
  return dict(class_mu=np.stack([m for m, _ in stats]),
              class_sigma=np.stack([s for _, s in stats]).astype(np.float32),
              class_counts=counts.astype(np.int64))


def save(path: str, *, mu, sigma, sqrt_sigma, kid_features, protocol: dict,
         **class_stats) -> None:
  """Writes a reference-statistics .npz (class_stats: those of `class_statistics`, if any)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'wb') as f:
    np.savez(f, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64),
             sqrt_sigma=np.asarray(sqrt_sigma, np.float64),
             kid_features=np.asarray(kid_features, np.float32),
             protocol=np.array(json.dumps(dict(protocol, format=FORMAT), sort_keys=True)),
             **class_stats)


def missing_message(path: str, dataset: str = 'cifar10', split: str = 'train') -> str:
  return (f'reference statistics {path!r} not found: compute them once with python -m '
          f'wgan_jax.eval.reference_stats --dataset={dataset} --split={split} '
          f'--weights=inception_fid.npz --out={path or "FILE.npz"}')


def read_protocol(path: str, *, dataset: str = 'cifar10', split: str = 'train') -> dict:
  """The protocol of a reference-statistics file (reads only that entry).

  Raises:
    DataError: missing or unreadable file, or not a reference-statistics file.
  """
  protocol = inception.read_npz(
      path, lambda f: json.loads(str(f['protocol'])) if 'protocol' in f.files else {},
      missing=missing_message(path, dataset, split),
      unreadable='reference statistics {path!r} ({error}); re-create them with python -m '
                 'wgan_jax.eval.reference_stats',
      format_key='format', expected=FORMAT,
      not_format='{path!r} is not a reference-statistics file (format {format!r}); create it '
                 'with python -m wgan_jax.eval.reference_stats')
  return protocol


def load(path: str) -> ReferenceStats:
  """Loads a reference-statistics file (see `read_protocol` for the errors)."""
  protocol = read_protocol(path)
  with np.load(path, allow_pickle=False) as f:
    per_class = {k: f[k] for k in ('class_mu', 'class_sigma', 'class_counts') if k in f.files}
    return ReferenceStats(f['mu'], f['sigma'], f['sqrt_sigma'], f['kid_features'], protocol,
                          **per_class)


def compute_reference_stats(*, dataset: str, split: str, out: str, weights: str,
                            num_samples: int = DEFAULT_NUM_SAMPLES, data_dir: str = '',
                            batch_size: int = 100,
                            num_kid_features: int = DEFAULT_NUM_KID_FEATURES,
                            input_size: int = inception.INPUT_SIZE,
                            per_class: bool = False, image_size: int = 0,
                            channels: int = 0) -> dict:
  """Computes and writes the reference statistics of (dataset, split); returns the protocol.

  Args:
    dataset: a data.name of images: a named dataset, tfds:NAME, npz:PATH or folder:PATH.
    split: the split (data.split).
    out: .npz to write.
    weights: converted Inception weights (inception.load_params).
    num_samples: N real images (0: the whole split).
    data_dir: tfds data_dir ('' : the default).
    batch_size: images per Inception forward pass.
    num_kid_features: features kept for KID.
    input_size: Inception input size; 299 is the protocol (tests use less for speed).
    per_class: also the statistics of every class (intra-class FID).
    image_size, channels: data.image_size and data.channels (0: the data's own).

  Raises:
    DataError / ConfigError: missing weights, unknown or unprepared dataset, image_size < 0,
      channels other than 0, 1 or 3.
  """
  if image_size < 0 or channels not in (0, 1, 3):
    raise ConfigError(f'--image_size={image_size} --channels={channels}: image_size is >= 0 and '
                      'channels 0, 1 or 3 (0: the data\'s own)')
  loaded = inception.load_params(weights)  # fail on missing weights before reading data
  n, batches = read_real_images(dataset, split=split, data_dir=data_dir,
                                num_samples=num_samples, batch_size=batch_size,
                                with_labels=per_class, image_size=image_size,
                                channels=channels)
  num_classes = 0
  if per_class:
    n, num_classes = n
    if num_classes < 2:
      raise DataError(f'--per_class needs a labelled dataset; {dataset!r} split {split!r} '
                      'has no classes')
  features_fn = inception.make_feature_fn(loaded.params, batch_size=batch_size, size=input_size)
  stats = compute(batches, features_fn, num_kid_features=num_kid_features,
                  num_classes=num_classes)
  resize = (inception.RESIZE_METHOD if input_size == inception.INPUT_SIZE
            else f'{inception.RESIZE_METHOD} (input {input_size})')
  protocol = {'dataset': dataset, 'split': split, 'num_samples': n, 'selection': SELECTION,
              'weights_sha256': loaded.source_sha256, 'resize': resize,
              'num_kid_features': len(stats['kid_features']), 'per_class': per_class}
  protocol.update({k: v for k, v in (('image_size', image_size), ('channels', channels)) if v})
  if per_class:
    protocol.update(num_classes=num_classes, class_counts=stats['class_counts'].tolist())
  save(out, **stats, protocol=protocol)
  return protocol


def main(argv) -> None:
  del argv
  f = flags.FLAGS
  if not f.dataset or not f.out:
    cli.fail('--dataset and --out are required, e.g. --dataset=cifar10 --split=train '
             '--out=cifar10_train_stats.npz')
  protocol = compute_reference_stats(
      dataset=f.dataset, split=f.split, out=f.out, weights=f.weights,
      num_samples=f.num_samples, data_dir=f.data_dir, batch_size=f.batch_size,
      num_kid_features=f.num_kid_features, per_class=f.per_class, image_size=f.image_size,
      channels=f.channels)
  print(json.dumps({'out': f.out, **protocol}, sort_keys=True))


def define_flags() -> None:
  flags.DEFINE_string('dataset', None, 'data.name of the images: cifar10, ..., tfds:NAME, '
                      'npz:PATH or folder:PATH.')
  flags.DEFINE_string('split', 'train', 'Split (data.split).')
  flags.DEFINE_string('out', None, 'Reference statistics .npz to write.')
  flags.DEFINE_string('weights', 'inception_fid.npz', 'Converted Inception weights.')
  flags.DEFINE_integer('num_samples', DEFAULT_NUM_SAMPLES, 'Real images (0: the whole split).')
  flags.DEFINE_string('data_dir', '', 'data.data_dir: prepared files and tfds data_dir '
                      '(default: $TFDS_DATA_DIR or ~/tensorflow_datasets).')
  flags.DEFINE_integer('batch_size', 100, 'Images per Inception forward pass.')
  flags.DEFINE_integer('num_kid_features', DEFAULT_NUM_KID_FEATURES, 'Features kept for KID.')
  flags.DEFINE_bool('per_class', False, 'Also per-class statistics (intra-class FID).')
  flags.DEFINE_integer('image_size', 0, 'data.image_size: resize the short side and centre-crop '
                       '(0: the images\' own size).')
  flags.DEFINE_integer('channels', 0, 'data.channels: 1 or 3 (0: the data\'s own).')


if __name__ == '__main__':
  cli.entry(main, define_flags=define_flags)
