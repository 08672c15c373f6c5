"""Generated images and their Inception features, computed on every device of every process.

`FakePass` runs the evaluation's forward passes as one jitted function whose batch is split
over a 1-D mesh of all devices (`jax.devices()`: every process's): the generator in
inference mode, the uint8 quantisation of its images (`quantize_levels`: the levels of
quantize_uint8), and the FID Inception network on those levels. A pass of
`per_device_batch` images per device covers per_device_batch x device count rows of the
noise; every process builds the same noise and supplies its devices' rows. The outputs are
gathered (a collective on many processes: every process runs the same passes), so every
process holds the whole result and the chief scores it.

One device computes the batches the single-device evaluation always computed (rows
[k B, (k + 1) B) of the same noise), so the images are the same uint8 levels and the
features the same numbers up to the convolutions' reduction order.
"""
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np

from wgan_jax import parallel
from wgan_jax.data.source import LEVELS
from wgan_jax.eval import inception
from wgan_jax.state import sampling_params


def quantize_uint8(images: np.ndarray) -> np.ndarray:
  """Generated images in [-1, 1] -> uint8(clip(127.5 x + 127.5, 0, 255)), in NumPy float32
  (image_eval.quantize: the evaluation's definition of a generated image's levels)."""
  x = np.asarray(images, np.float32)
  with np.errstate(over='ignore', invalid='ignore'):  # beyond [-1, 1]: clipped
    return np.clip(x * np.float32(127.5) + np.float32(127.5), 0.0, 255.0).astype(np.uint8)


def _order_keys(x: np.ndarray) -> np.ndarray:
  """float32 -> int64 keys in the floats' order (consecutive floats: consecutive keys)."""
  bits = x.astype(np.float32).view(np.int32).astype(np.int64)
  return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def _from_order_keys(keys: np.ndarray) -> np.ndarray:
  bits = np.where(keys < 0, (-keys) | 0x80000000, keys)
  return bits.astype(np.uint32).view(np.float32)


def level_edges() -> np.ndarray:
  """float32 [255]: edge k - 1 is the least float32 x whose level (quantize_uint8,
  NumPy's float32 formula) is >= k, found by bisection over the float32s of [-2, 2]."""
  level = lambda keys: quantize_uint8(_from_order_keys(keys)).astype(np.int64)
  k = np.arange(1, 256)
  lo = np.full(k.shape, _order_keys(np.float32([-2.0]))[0])  # level 0 < k
  hi = np.full(k.shape, _order_keys(np.float32([2.0]))[0])   # level 255 >= k
  while np.any(hi - lo > 1):
    mid = (lo + hi) // 2
    above = level(mid) >= k
    hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
  return _from_order_keys(hi)


EDGES = level_edges()


def quantize_levels(x: jax.Array) -> jax.Array:
  """Generated images in [-1, 1] -> uint8 levels, exactly quantize_uint8's.

  The level is the number of `EDGES` at or below x: comparisons only. Computing
  127.5 x + 127.5 on the device instead is not NumPy's two float32 roundings wherever XLA
  contracts it into one fused multiply-add (it does on CPU, and an optimisation barrier
  does not stop it): 94 of 200k pixels near the levels' edges came out one level lower.
  """
  edges = jnp.asarray(EDGES)
  return jnp.searchsorted(edges, x.astype(jnp.float32), side='right').astype(jnp.uint8)


class Fakes(NamedTuple):
  """A FakePass's result, whole, in every process."""
  images: Optional[np.ndarray]    # uint8 [num_images, H, W, C], or None
  features: Optional[np.ndarray]  # float32 [num_features, 2048] pool3, or None


def _gather(x: jax.Array) -> np.ndarray:
  """A batch-sharded output whole in this process (process_allgather across processes)."""
  return np.asarray(parallel.local_copy(x))


class FakePass:
  """The evaluation's generator (+ Inception) passes over every device (module docstring)."""

  def __init__(self, g_apply: Callable, *, conditional: bool, per_device_batch: int,
               inception_params: Optional[dict] = None, devices=None):
    """
    Args:
      g_apply: the generator's haiku apply (train.Run.models.g.apply).
      conditional: whether the generator takes int labels.
      per_device_batch: images per device per pass (eval.batch_size).
      inception_params: the FID Inception weights (features), or None (images only).
      devices: the devices to use (default: all devices of all processes).
    """
    self.mesh = parallel.make_mesh(devices)
    self.batch = per_device_batch * self.mesh.size
    self.conditional = conditional
    self.rows = NamedSharding(self.mesh, P(parallel.AXIS))
    self.inception = (None if inception_params is None
                      else parallel.to_replicated(inception_params, self.mesh))
    self._fns = {with_features: self._compile(g_apply, with_features)
                 for with_features in (False, True)}

  def _compile(self, g_apply: Callable, with_features: bool) -> Callable:
    levels = jnp.asarray(LEVELS)

    def forward(g_params, g_state, inception_params, z, labels):
      extra = {'labels': labels} if self.conditional else {}
      v = quantize_levels(g_apply(g_params, g_state, None, z, is_training=False, **extra)[0])
      if not with_features:
        return v, None
      features, _ = inception.NETWORK.apply(inception_params, levels[v])
      return v, features

    return jax.jit(forward, out_shardings=self.rows)

  def _rows(self, x: np.ndarray) -> jax.Array:
    """Host rows identical in every process -> a global array split over the mesh."""
    return jax.make_array_from_callback(x.shape, self.rows, lambda index: x[index])

  def __call__(self, state, z: np.ndarray, labels: Optional[np.ndarray] = None, *,
               num_images: int = 0, num_features: int = 0) -> Fakes:
    """The uint8 images of the first num_images rows of z and the Inception features of
    the first num_features (every process calls with the same arguments).

    Args:
      state: a TrainState whose leaves are whole in this process (parallel.local_copy); the
        generator's sampling weights (EMA where configured) are used.
      z: noise [n, z_dim], the same in every process; labels: int [n] (conditional).
    """
    if num_features and self.inception is None:
      raise ValueError('FakePass was built without Inception weights')
    params = parallel.to_replicated((sampling_params(state), state.g.state), self.mesh)
    images, features = [], []
    for start in range(0, max(num_images, num_features), self.batch):
      stop = min(start + self.batch, len(z))
      pad = self.batch - (stop - start)
      z_rows = np.pad(np.asarray(z[start:stop]), ((0, pad), (0, 0)))
      label_rows = (None if labels is None else
                    self._rows(np.pad(np.asarray(labels[start:stop], np.int32), (0, pad))))
      v, f = self._fns[start < num_features](*params, self.inception, self._rows(z_rows),
                                              label_rows)
      if start < num_images:
        images.append(_gather(v)[:min(stop, num_images) - start])
      if start < num_features:
        features.append(_gather(f)[:min(stop, num_features) - start])
    cat = lambda xs: np.concatenate(xs) if xs else None
    return Fakes(cat(images), cat(features))
