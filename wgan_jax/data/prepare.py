"""Named datasets prepared without TensorFlow, from their official distribution archives.

  python -m wgan_jax.data.prepare --dataset=cifar10|mnist|fashion_mnist --out=DIR \
      [--archive=PATH]

writes DIR/<dataset>/train.npz and DIR/<dataset>/test.npz, each x uint8 [N, H, W, C] (the
images as distributed, not preprocessed: cifar10 32x32x3, mnist and fashion_mnist 28x28x1)
and y int64 [N]. Train with --config.data.data_dir=DIR: wgan_jax.data.images then reads these
files instead of tfds, with the same preprocessing.

Archives, read from --archive or else downloaded into DIR/downloads (kept for later runs)
and checked against their published sha256:

  cifar10        cifar-10-python.tar.gz (--archive: the tarball, or the cifar-10-batches-py
                 directory it unpacks to): data_batch_1 .. 5 -> train (50000, in that
                 order), test_batch -> test (10000). The batches are pickles; only numpy
                 arrays, lists and strings are unpickled from them.
  mnist          --archive: a directory holding the four idx files train-images-idx3-ubyte.gz,
  fashion_mnist  train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and
                 t10k-labels-idx1-ubyte.gz (each may also be unzipped, without .gz):
                 train (60000) and test (10000).

An --archive is checked by its structure (magic numbers, shapes, counts, labels), not its
checksum, so a re-packed copy is accepted; the JSON line printed at the end says whether every
archive file has the official sha256 (`official`). The images and labels are those tfds gives
for the dataset; the index order is the archive's, not tfds'. Everything is read and checked
before anything is written, and each .npz is written to a temporary file then renamed: a
failed or interrupted run leaves complete files or none.
"""
import codecs
import gzip
import hashlib
import http.client
import io
import json
import os
import pickle
import shutil
import sys
import tarfile
import urllib.request
import zlib
from typing import Callable, NamedTuple

import numpy as np
from absl import flags

from wgan_jax import cli, registry
from wgan_jax.data import npz
from wgan_jax.errors import DataError, is_disk_full

try:  # numpy >= 2
  from numpy._core.multiarray import _reconstruct  # pylint: disable=no-name-in-module
except ImportError:  # pragma: no cover
  from numpy.core.multiarray import _reconstruct  # pylint: disable=no-name-in-module


class ArchiveFile(NamedTuple):
  """One file of a dataset's official distribution."""
  name: str
  url: str
  sha256: str
  size: int


class Distribution(NamedTuple):
  """A dataset's official archive files and how to read them.

  Attributes:
    files: the archive files.
    image_shape: (H, W, C) of the raw images.
    read: {file name: local path} -> {split: (x uint8 [N, H, W, C], y int64 [N])}.
    archive_help: what --archive names, for messages (--archive=...).
  """
  files: tuple[ArchiveFile, ...]
  image_shape: tuple[int, int, int]
  read: Callable[[dict], dict]
  archive_help: str


_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, tarfile.TarError, pickle.PickleError,
                KeyError, TypeError, AttributeError, IndexError)

# ----------------------------------------------------------------------------- CIFAR-10

CIFAR10_TRAIN = tuple(f'data_batch_{i}' for i in range(1, 6))
CIFAR10_TEST = 'test_batch'
_CIFAR10_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'

# The globals a CIFAR-10 python batch refers to (pickled by numpy 1 or 2, Python 2 or 3).
_PICKLE_GLOBALS = {
    ('numpy.core.multiarray', '_reconstruct'): _reconstruct,
    ('numpy._core.multiarray', '_reconstruct'): _reconstruct,
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): np.dtype,
    ('_codecs', 'encode'): codecs.encode,
}


class _BatchUnpickler(pickle.Unpickler):
  """Unpickles dicts of numpy arrays, lists and strings; nothing that runs other code."""

  def find_class(self, module, name):
    found = _PICKLE_GLOBALS.get((module, name))
    if found is None:
      raise pickle.UnpicklingError(f'{module}.{name} is not part of a CIFAR-10 batch')
    return found


def _cifar10_members(path: str) -> dict[str, bytes]:
  """{batch name: pickled bytes} of the CIFAR-10 tarball or unpacked directory `path`."""
  wanted = set(CIFAR10_TRAIN) | {CIFAR10_TEST}
  found = {}
  if os.path.isdir(path):
    folder = os.path.join(path, 'cifar-10-batches-py')
    folder = folder if os.path.isdir(folder) else path
    for name in wanted:
      if os.path.isfile(os.path.join(folder, name)):
        with open(os.path.join(folder, name), 'rb') as f:
          found[name] = f.read()
  else:
    try:
      tar = tarfile.open(path, 'r:*')
    except tarfile.ReadError:
      raise ValueError('not a tar archive') from None
    with tar:
      for member in tar.getmembers():
        name = os.path.basename(member.name)
        if member.isfile() and name in wanted:
          found[name] = tar.extractfile(member).read()
  missing = sorted(wanted - set(found))
  if missing:
    raise DataError(f'{path!r} is not the CIFAR-10 python archive: no {", ".join(missing)} in '
                    f'it; pass cifar-10-python.tar.gz from {_CIFAR10_URL} (or omit --archive)')
  return found


def read_cifar10_batch(data: bytes, name: str = 'batch') -> tuple[np.ndarray, np.ndarray]:
  """(x uint8 [n, 32, 32, 3], y int64 [n]) of one pickled batch: b'data' uint8 [n, 3072]
  holds each image's red, green, blue planes row by row (CHW), b'labels' n ints 0 .. 9."""
  batch = _BatchUnpickler(io.BytesIO(data), encoding='bytes').load()
  x, y = np.asarray(batch[b'data']), np.asarray(batch[b'labels'])
  if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or y.shape != (len(x),):
    raise ValueError(f'{name}: data {x.dtype} {x.shape} and labels {y.shape}, expected uint8 '
                     '[n, 3072] and [n]')
  if len(y) and not 0 <= y.min() <= y.max() <= 9:
    raise ValueError(f'{name}: labels outside 0 .. 9')
  return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), y.astype(np.int64)


def read_cifar10(paths: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{'train': (x, y), 'test': (x, y)} of the CIFAR-10 python archive (tarball or directory)."""
  path = paths['cifar-10-python.tar.gz']
  try:
    members = _cifar10_members(path)
    train = [read_cifar10_batch(members[name], name) for name in CIFAR10_TRAIN]
    test = read_cifar10_batch(members[CIFAR10_TEST], CIFAR10_TEST)
  except _READ_ERRORS as e:
    raise DataError(f'cannot read the CIFAR-10 python archive {path!r} ({npz.error_text(e)}); '
                    f'download cifar-10-python.tar.gz again from {_CIFAR10_URL}') from None
  return {'train': (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])),
          'test': test}


# ----------------------------------------------------------------------------- MNIST (idx)

MNIST_FILES = {'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
               'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')}


def read_idx(path: str, ndim: int) -> np.ndarray:
  """The uint8 array of idx file `path` (gzipped or not) of `ndim` dimensions: big-endian
  magic 0x0000_08_<ndim> (unsigned bytes), ndim int32 sizes, then the values."""
  with open(path, 'rb') as f:
    data = f.read()
  if data[:2] == b'\x1f\x8b':
    data = gzip.decompress(data)
  magic = int.from_bytes(data[:4], 'big')
  if magic != 0x0800 + ndim:
    raise ValueError(f'{os.path.basename(path)}: magic number {magic:#x}, expected '
                     f'{0x0800 + ndim:#x} (an idx file of {ndim}-d unsigned bytes)')
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim))
  body = data[4 + 4 * ndim:]
  if len(body) != int(np.prod(shape)):
    raise ValueError(f'{os.path.basename(path)}: {len(body)} bytes of values for shape {shape}')
  return np.frombuffer(body, np.uint8).reshape(shape)


def read_mnist(paths: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{'train': (x, y), 'test': (x, y)} of the four idx files of MNIST or Fashion-MNIST."""
  out = {}
  for split, (images_file, labels_file) in MNIST_FILES.items():
    try:
      x, y = read_idx(paths[images_file], 3), read_idx(paths[labels_file], 1)
      if len(x) != len(y) or x.shape[1:] != (28, 28):
        raise ValueError(f'{images_file} holds {x.shape}, {labels_file} {y.shape}; expected '
                         '[n, 28, 28] and [n]')
      if len(y) and y.max() > 9:
        raise ValueError(f'{labels_file}: labels outside 0 .. 9')
    except _READ_ERRORS as e:
      raise DataError(f'cannot read the idx files of {os.path.dirname(paths[images_file])!r} '
                      f'({npz.error_text(e)}); download them again') from None
    out[split] = x[..., None], y.astype(np.int64)
  return out


# ----------------------------------------------------------------------------- registry


def _idx_files(base: str, digests: dict) -> tuple[ArchiveFile, ...]:
  return tuple(ArchiveFile(name, base + name, *digests[name])
               for pair in MNIST_FILES.values() for name in pair)


_MNIST_HELP = 'DIR (the directory holding the four idx files)'

# Digests as published with the archives (tensorflow-datasets' url checksums for the idx
# files; the CIFAR-10 python tarball's as Keras checks it, md5 c58f30108f718f92721af3b95e74349a
# on the CIFAR page).
DATASETS: dict[str, Distribution] = {
    'cifar10': Distribution(
        (ArchiveFile('cifar-10-python.tar.gz', _CIFAR10_URL,
                     '6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce',
                     170498071),),
        (32, 32, 3), read_cifar10, 'cifar-10-python.tar.gz'),
    'mnist': Distribution(_idx_files('https://storage.googleapis.com/cvdf-datasets/mnist/', {
        'train-images-idx3-ubyte.gz':
            ('440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609', 9912422),
        'train-labels-idx1-ubyte.gz':
            ('3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c', 28881),
        't10k-images-idx3-ubyte.gz':
            ('8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6', 1648877),
        't10k-labels-idx1-ubyte.gz':
            ('f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6', 4542)}),
        (28, 28, 1), read_mnist, _MNIST_HELP),
    'fashion_mnist': Distribution(_idx_files(
        'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/', {
            'train-images-idx3-ubyte.gz':
                ('3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84', 26421880),
            'train-labels-idx1-ubyte.gz':
                ('a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845', 29515),
            't10k-images-idx3-ubyte.gz':
                ('346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073', 4422102),
            't10k-labels-idx1-ubyte.gz':
                ('67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5', 5148)}),
        (28, 28, 1), read_mnist, _MNIST_HELP),
}


# ----------------------------------------------------------------------------- files


def sha256_of(path: str) -> str:
  """Hex sha256 of a file."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def download(file: ArchiveFile, folder: str, *, archive_help: str = '') -> str:
  """`folder`/file.name, downloaded from file.url unless a copy with the right sha256 is
  there; the download goes to a .part file, renamed once its sha256 checks out.

  Raises:
    DataError: no connection (one line: the URL and --archive as the way round it), or a
      download whose sha256 differs.
  """
  path = os.path.join(folder, file.name)
  if os.path.isfile(path) and sha256_of(path) == file.sha256:
    return path
  os.makedirs(folder, exist_ok=True)
  part = path + '.part'
  elsewhere = f'download it elsewhere and pass --archive={archive_help or file.name}'
  print(f'downloading {file.url} ({file.size / 1e6:.1f} MB) to {path}', file=sys.stderr)
  try:
    with urllib.request.urlopen(file.url, timeout=60) as response, open(part, 'wb') as f:
      shutil.copyfileobj(response, f, 1 << 20)
  except (OSError, http.client.HTTPException) as e:
    if os.path.exists(part):
      os.remove(part)
    if is_disk_full(e):
      raise
    reason = npz.error_text(getattr(e, 'reason', None) or e)
    raise DataError(f'cannot download {file.url} ({reason}); check the network, or '
                    f'{elsewhere}') from None
  digest = sha256_of(part)
  if digest != file.sha256:
    os.remove(part)
    raise DataError(f'the download of {file.url} has sha256 {digest[:16]}..., expected '
                    f'{file.sha256[:16]}... (interrupted or altered); run again, or {elsewhere}')
  os.replace(part, path)
  return path


def archive_paths(dataset: str, archive: str) -> dict[str, str]:
  """{archive file name: local path} of the user's --archive for `dataset`.

  Raises:
    DataError: the path (or a file the directory must hold) does not exist.
  """
  dist = DATASETS[dataset]
  if not os.path.exists(archive):
    raise DataError(f'--archive {archive!r} not found; pass --archive={dist.archive_help}, or '
                    'omit --archive to download it')
  if dataset == 'cifar10':
    return {dist.files[0].name: archive}
  paths, missing = {}, []
  for file in dist.files:
    candidates = [os.path.join(archive, file.name), os.path.join(archive, file.name[:-3])]
    found = next((c for c in candidates if os.path.isfile(c)), None)
    if found is None:
      missing.append(file.name)
    paths[file.name] = found
  if missing:
    raise DataError(f'--archive {archive!r} lacks {", ".join(missing)}; pass the directory '
                    f'holding the four idx files of {dist.files[0].url.rsplit("/", 1)[0]}/')
  return paths


def write_npz(path: str, **arrays: np.ndarray) -> None:
  """np.savez of `arrays` to `path` through a temporary file in the same directory, renamed
  once complete (never a half-written `path`)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f'{path}.{os.getpid()}.tmp'
  try:
    with open(tmp, 'wb') as f:
      np.savez(f, **arrays)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def prepare(dataset: str, out: str, *, archive: str | None = None) -> dict:
  """Writes out/<dataset>/{train,test}.npz from the official archive (module docstring).

  Args:
    dataset: a key of DATASETS (cifar10, mnist, fashion_mnist).
    out: the directory to pass as config.data.data_dir.
    archive: the archive (see DATASETS' archive_help); None downloads it into out/downloads.

  Returns:
    {'dataset', 'files': {split: path}, 'examples': {split: N}, 'official': whether every
    archive file has its published sha256}.

  Raises:
    ConfigError: unknown dataset.
    DataError: archive missing, unreadable or not the dataset's; download failed.
  """
  dist = registry.lookup(DATASETS, dataset, 'dataset to prepare')
  if archive is None:
    folder = os.path.join(out, 'downloads')
    paths = {f.name: download(f, folder, archive_help=dist.archive_help) for f in dist.files}
  else:
    paths = archive_paths(dataset, os.path.expanduser(archive))
  official = all(os.path.isfile(paths[f.name]) and sha256_of(paths[f.name]) == f.sha256
                 for f in dist.files)
  splits = dist.read(paths)
  files = {}
  for split, (x, y) in splits.items():
    files[split] = os.path.join(out, dataset, f'{split}.npz')
    write_npz(files[split], x=np.ascontiguousarray(x), y=y.astype(np.int64))
  return {'dataset': dataset, 'files': files, 'official': official,
          'examples': {split: len(x) for split, (x, _) in splits.items()}}


def main(argv) -> None:
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {" ".join(argv[1:])}; flags are --dataset, --out, --archive')
  f = flags.FLAGS
  if not f.dataset or not f.out:
    cli.fail(f'--dataset and --out are required, e.g. --dataset=cifar10 --out=DIR (datasets: '
             f'{", ".join(sorted(DATASETS))})')
  print(json.dumps(prepare(f.dataset, f.out, archive=f.archive or None), sort_keys=True))


def define_flags() -> None:
  flags.DEFINE_string('dataset', None, f'Dataset to prepare: {", ".join(sorted(DATASETS))}.')
  flags.DEFINE_string('out', None, 'Directory to pass as --config.data.data_dir; gets '
                      '<dataset>/train.npz and <dataset>/test.npz (and downloads/).')
  flags.DEFINE_string('archive', '', 'The official archive (cifar10: cifar-10-python.tar.gz or '
                      'its directory; mnist, fashion_mnist: the directory of the four idx '
                      'files); default: download it into <out>/downloads.')


if __name__ == '__main__':
  cli.entry(main, define_flags=define_flags, workdir_flag='out')
