"""Random FID-Inception weights and inputs from seeds, shared by the tests and the fixture.

`random_state_dict(seed)` builds a pytorch-fid style state dict (the real key names and shapes,
including `num_batches_tracked`) with random values from NumPy's legacy `RandomState`, whose
streams are frozen across NumPy versions, so a fixture only needs to store the seeds and the
reference outputs. Scales keep activations O(1) through the 94 conv + batch-norm layers:
He-normal convs, gamma ~ U[0.8, 1.2], beta, running mean ~ N(0, 0.1^2), var ~ U[0.5, 1.5].
"""
import functools
import os

import numpy as np

from wgan_jax.eval import convert_inception

WEIGHTS_SEED = 20151205
FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data',
                       'inception_reference.npz')


@functools.lru_cache(maxsize=1)
def random_state_dict(seed: int = WEIGHTS_SEED) -> dict:
  """A random state dict with the real keys and shapes of pt_inception-2015-12-05-6726825d.pth.

  Cached: do not modify the returned arrays.
  """
  rng = np.random.RandomState(seed)
  out = {}
  for key, shape in sorted(convert_inception.torch_shapes().items()):
    if key.endswith('conv.weight'):
      fan_in = int(np.prod(shape[1:]))
      value = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
    elif key == 'fc.weight':
      value = rng.standard_normal(shape) * np.sqrt(1.0 / shape[1])
    elif key == 'fc.bias':
      value = rng.standard_normal(shape) * 0.01
    elif key.endswith('bn.weight'):
      value = rng.uniform(0.8, 1.2, shape)
    elif key.endswith('bn.running_var'):
      value = rng.uniform(0.5, 1.5, shape)
    else:  # bn.bias, bn.running_mean
      value = rng.standard_normal(shape) * 0.1
    out[key] = value.astype(np.float32)
    if key.endswith('bn.running_var'):
      out[key.replace('running_var', 'num_batches_tracked')] = np.array(0, np.int64)
  return out


def random_images(seed: int, shape: tuple) -> np.ndarray:
  """float32 images uniform in [-1, 1]."""
  return np.random.RandomState(seed).uniform(-1.0, 1.0, shape).astype(np.float32)


@functools.lru_cache(maxsize=1)
def converted(seed: int = WEIGHTS_SEED) -> dict:
  """convert_state_dict(random_state_dict(seed)), computed once per test process."""
  return convert_inception.convert_state_dict(random_state_dict(seed))


def write_weights(path: str, seed: int = WEIGHTS_SEED, source_sha256: str = 'f' * 64) -> str:
  """Writes converted random weights (through the converter) to `path`; returns it.

  The recorded source checksum is not pytorch-fid's: loading the file needs
  `inception.TRUSTED_SOURCE_SHA256_PREFIXES` patched to include `source_sha256[:8]`.
  """
  convert_inception.save_converted(path, converted(seed), source_sha256=source_sha256,
                                   source_file=f'random_seed{seed}.pth')
  return path
