"""Converts pytorch-fid's Inception weights to the .npz that wgan_jax.eval.inception loads.

  python -m wgan_jax.eval.convert_inception \
      --torch_weights=pt_inception-2015-12-05-6726825d.pth --out=inception_fid.npz

Get the .pth from the pytorch-fid GitHub release (inception.WEIGHTS_URL). torch is needed for
this one step only (`pip install torch`, CPU is enough); it is imported inside
`read_torch_state_dict` and is not in requirements.txt. Training and evaluation read the .npz.

The key mapping is the pure function `convert_state_dict` (NumPy in, NumPy out), so it is
tested without torch:
  <module>.conv.weight          [O, I, kh, kw] -> <module path>/w       [kh, kw, I, O] (HWIO)
  <module>.bn.weight            [O]            -> <module path>/scale   (gamma)
  <module>.bn.bias              [O]            -> <module path>/offset  (beta)
  <module>.bn.running_mean      [O]            -> <module path>/mean
  <module>.bn.running_var       [O]            -> <module path>/var     (eps 1e-3 in the net)
  <module>.bn.num_batches_tracked              -> dropped (training bookkeeping)
  fc.weight                     [1008, 2048]   -> fc/w [2048, 1008]
  fc.bias                       [1008]         -> fc/b
where <module path> is the torch module path with '.' replaced by '/' (Mixed_5b.branch1x1 ->
Mixed_5b/branch1x1). The .npz also records the SHA-256 and name of the source .pth
(`__source_sha256__`, `__source_file__`) and a format tag; `inception.load_params` checks them.
"""
import os
from typing import Sequence

import numpy as np
from absl import flags

from wgan_jax import cli
from wgan_jax.errors import DataError
from wgan_jax.eval import inception

_BN = {'weight': 'scale', 'bias': 'offset', 'running_mean': 'mean', 'running_var': 'var'}
_BN_INVERSE = {v: k for k, v in _BN.items()}
_SKIPPED = ('num_batches_tracked',)


def convert_key(key: str) -> str | None:
  """The converted name of torch state-dict key `key`; None for skipped keys.

  Raises:
    DataError: a key that belongs to no FID Inception parameter (e.g. AuxLogits.*).
  """
  parts = key.split('.')
  if parts[-1] in _SKIPPED:
    return None
  if key in ('fc.weight', 'fc.bias'):
    return 'fc/' + ('w' if parts[-1] == 'weight' else 'b')
  if len(parts) >= 3 and parts[-2] == 'conv' and parts[-1] == 'weight':
    return '/'.join(parts[:-2]) + '/w'
  if len(parts) >= 3 and parts[-2] == 'bn' and parts[-1] in _BN:
    return '/'.join(parts[:-2]) + '/' + _BN[parts[-1]]
  raise DataError(f'unexpected key {key!r} in the torch state dict: not a parameter of the FID '
                  f'Inception network (is this {inception.WEIGHTS_FILE}?)')


def _convert_value(name: str, value: np.ndarray) -> np.ndarray:
  value = np.asarray(value, np.float32)
  if name.endswith('/w'):
    # conv OIHW -> HWIO; linear [out, in] -> [in, out].
    value = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T
  return np.ascontiguousarray(value)


def convert_state_dict(state_dict: dict) -> dict[str, np.ndarray]:
  """Maps pytorch-fid's state dict (NumPy arrays) to the flat converted parameters.

  Args:
    state_dict: {torch key: array} of FIDInceptionV3 (pt_inception-2015-12-05-6726825d.pth).

  Returns:
    {'<module path>/<name>': float32 array} with exactly the keys and shapes of
    `inception.param_shapes()`.

  Raises:
    DataError: unexpected keys, missing parameters or wrong shapes.
  """
  flat = {}
  for key, value in state_dict.items():
    name = convert_key(key)
    if name is not None:
      flat[name] = _convert_value(name, value)
  inception.check_structure(flat)
  return flat


def torch_key(name: str) -> str:
  """The torch state-dict key of converted parameter `name` (the inverse of `convert_key`)."""
  module, leaf = name.rsplit('/', 1)
  if module == 'fc':
    return 'fc.' + ('weight' if leaf == 'w' else 'bias')
  if leaf == 'w':
    return module.replace('/', '.') + '.conv.weight'
  return module.replace('/', '.') + '.bn.' + _BN_INVERSE[leaf]


def _torch_layout(name: str, value: np.ndarray) -> np.ndarray:
  if not name.endswith('/w'):
    return value
  return value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T


def to_state_dict(flat: dict) -> dict[str, np.ndarray]:
  """The inverse of `convert_state_dict` (without num_batches_tracked): torch layout again."""
  return {torch_key(name): _torch_layout(name, np.asarray(value)) for name, value in flat.items()}


def torch_shapes() -> dict[str, tuple[int, ...]]:
  """{torch key: shape} of pytorch-fid's state dict (without num_batches_tracked)."""
  shapes = {}
  for name, shape in inception.param_shapes().items():
    if name.endswith('/w'):
      shape = (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape[::-1]
    shapes[torch_key(name)] = tuple(shape)
  return shapes


def save_converted(path: str, flat: dict, *, source_sha256: str, source_file: str) -> None:
  """Writes converted parameters and their provenance to `path` (.npz, uncompressed)."""
  inception.check_structure(flat)
  meta = {'__format__': np.array(inception.CONVERTED_FORMAT),
          '__source_sha256__': np.array(source_sha256),
          '__source_file__': np.array(os.path.basename(source_file))}
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'wb') as f:
    np.savez(f, **flat, **meta)


def read_torch_state_dict(path: str) -> dict[str, np.ndarray]:
  """The state dict of a .pth as NumPy arrays (imports torch, only here)."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise DataError('converting the Inception weights needs torch (only for this step): '
                    'pip install torch (the CPU build is enough), then re-run') from None
  if not os.path.isfile(path):
    raise DataError(f'{path!r} not found: download {inception.WEIGHTS_FILE} from '
                    f'{inception.WEIGHTS_URL}')
  state = torch.load(path, map_location='cpu', weights_only=True)
  return {k: v.detach().cpu().numpy() for k, v in state.items()}


def convert_file(torch_weights: str, out: str) -> str:
  """Converts `torch_weights` (.pth) to `out` (.npz); returns the .pth's SHA-256."""
  if not os.path.isfile(torch_weights):
    raise DataError(f'{torch_weights!r} not found: download {inception.WEIGHTS_FILE} from '
                    f'{inception.WEIGHTS_URL}')
  sha = inception.file_sha256(torch_weights)
  if not sha.startswith(inception.TRUSTED_SOURCE_SHA256_PREFIXES):
    raise DataError(f'{torch_weights!r} has SHA-256 {sha[:16]}..., not that of '
                    f'{inception.WEIGHTS_FILE} (6726825d...): download it again from '
                    f'{inception.WEIGHTS_URL}')
  flat = convert_state_dict(read_torch_state_dict(torch_weights))
  save_converted(out, flat, source_sha256=sha, source_file=torch_weights)
  return sha


def main(argv: Sequence[str]) -> None:
  del argv
  torch_weights, out = flags.FLAGS.torch_weights, flags.FLAGS.out
  if not torch_weights or not out:
    cli.fail(f'--torch_weights and --out are required, e.g. --torch_weights='
             f'{inception.WEIGHTS_FILE} --out=inception_fid.npz')
  sha = convert_file(torch_weights, out)
  print(f'wrote {out} (from {os.path.basename(torch_weights)}, sha256 {sha})')


def define_flags() -> None:
  flags.DEFINE_string('torch_weights', None, f'pytorch-fid weights ({inception.WEIGHTS_FILE}).')
  flags.DEFINE_string('out', None, 'Converted .npz to write.')


if __name__ == '__main__':
  cli.entry(main, define_flags=define_flags)
