"""Built-in 2-D toy distributions (host side, NumPy).

Definitions follow gan_toy.py of Gulrajani et al. 2017 (improved_wgan_training) and
Example 1 of Arjovsky et al. 2017:

  gaussians8      centres (+-1, 0), (0, +-1), (+-1/sqrt2, +-1/sqrt2) times 2, per-axis noise
                  std 0.02, everything divided by 1.414.
  gaussians25     centres {-4, -2, 0, 2, 4}^2, per-axis noise std 0.05, everything divided
                  by 2.828.
  swissroll       sklearn make_swiss_roll(noise=0.25), dims [0, 2], divided by 7.5.
  parallel_lines  P0 = (0, U[0, 1]).
  gaussians8_rotated
                  gaussians8 rotated by 30 degrees and scaled by 1.5 (centres and noise): the
                  second domain of CycleGAN's toy pair (configs/cyclegan.py:gaussians8),
                  G: gaussians8 -> it.

Shapes:
  n       number of samples
  K       number of modes (8 or 25)
  points  float32 [n, 2]
  labels  int32 [n]: index of the mode a point was drawn from (zeros without modes)

Randomness is keyed, never streamed: training batch `step` uses
`np.random.default_rng([seed, step, TOY_TRAIN_STREAM])`, so it does not depend on earlier steps
and a resumed run sees bit-identical data.
"""
import math
from typing import Callable, NamedTuple, Sequence

import numpy as np

from wgan_jax import registry
from wgan_jax.rng import TOY_EVAL_STREAM, TOY_TRAIN_STREAM

_G8_SCALE = 2.0
_G8_STD = 0.02
_G8_DIVISOR = 1.414
_G25_STD = 0.05
_G25_DIVISOR = 2.828
_ROT_ANGLE = math.pi / 6  # gaussians8_rotated: 30 degrees (45 would map the modes onto
_ROT_SCALE = 1.5          # themselves), scale 1.5
_SWISS_NOISE = 0.25
_SWISS_DIVISOR = 7.5


class ToySpec(NamedTuple):
  """One toy distribution.

  Attributes:
    sample: (rng, n) -> (points float32 [n, 2], labels int32 [n]).
    centers: float64 [K, 2] mode centres after scaling, or None without modes.
    std: per-axis std of each mode after scaling, or None without modes.
    num_classes: K, or 1 without modes.
  """
  sample: Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]
  centers: np.ndarray | None
  std: float | None
  num_classes: int


def _gaussians8_centers() -> np.ndarray:
  """Unscaled 8-gaussians centres in gan_toy.py order, float64 [8, 2]."""
  s = 1.0 / math.sqrt(2.0)
  return np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (s, s), (s, -s), (-s, s), (-s, -s)],
                  dtype=np.float64) * _G8_SCALE


def _gaussians25_centers() -> np.ndarray:
  """Unscaled 25-gaussians centres, (2i, 2j) for i, j in -2..2 (i-major), float64 [25, 2]."""
  return np.array([(2.0 * i, 2.0 * j) for i in range(-2, 3) for j in range(-2, 3)],
                  dtype=np.float64)


def _mixture_sampler(centers: np.ndarray, std: float, divisor: float):
  """Sampler of a uniform mixture of isotropic gaussians, (centre + std * N(0, I)) / divisor."""
  def sample(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, len(centers), size=n)
    points = (centers[labels] + std * rng.standard_normal((n, 2))) / divisor
    return points.astype(np.float32), labels.astype(np.int32)
  return sample


def rotate_scale(points: np.ndarray, *, angle: float = _ROT_ANGLE,
                 scale: float = _ROT_SCALE) -> np.ndarray:
  """points [n, 2] rotated counter-clockwise by `angle` (radians) and scaled by `scale`."""
  c, s = math.cos(angle), math.sin(angle)
  return scale * points @ np.array([[c, s], [-s, c]], points.dtype)


def make_swiss_roll(rng: np.random.Generator, n: int, noise: float = 0.0) -> np.ndarray:
  """NumPy re-implementation of sklearn.datasets.make_swiss_roll.

  t = 1.5 pi (1 + 2 U), x = t cos t, y = 21 U', z = t sin t, then noise * N(0, 1) on each
  coordinate.

  Args:
    rng: NumPy generator.
    n: number of samples.
    noise: std of the gaussian noise added to each coordinate.

  Returns:
    float64 [n, 3] points (x, y, z).
  """
  t = 1.5 * np.pi * (1.0 + 2.0 * rng.uniform(size=n))
  y = 21.0 * rng.uniform(size=n)
  xyz = np.stack([t * np.cos(t), y, t * np.sin(t)], axis=1)
  return xyz + noise * rng.standard_normal((n, 3))


def _swissroll_sample(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
  """gan_toy.py swiss roll: make_swiss_roll(noise=0.25)[:, [0, 2]] / 7.5."""
  points = make_swiss_roll(rng, n, noise=_SWISS_NOISE)[:, [0, 2]] / _SWISS_DIVISOR
  return points.astype(np.float32), np.zeros(n, np.int32)


def _parallel_lines_sample(rng: np.random.Generator,
                           n: int) -> tuple[np.ndarray, np.ndarray]:
  """P0 of the WGAN paper's Example 1: (0, U[0, 1])."""
  points = np.stack([np.zeros(n), rng.uniform(size=n)], axis=1)
  return points.astype(np.float32), np.zeros(n, np.int32)


TOY_DATASETS: dict[str, ToySpec] = {
    'gaussians8': ToySpec(
        sample=_mixture_sampler(_gaussians8_centers(), _G8_STD, _G8_DIVISOR),
        centers=_gaussians8_centers() / _G8_DIVISOR,
        std=_G8_STD / _G8_DIVISOR,
        num_classes=8),
    'gaussians25': ToySpec(
        sample=_mixture_sampler(_gaussians25_centers(), _G25_STD, _G25_DIVISOR),
        centers=_gaussians25_centers() / _G25_DIVISOR,
        std=_G25_STD / _G25_DIVISOR,
        num_classes=25),
    'swissroll': ToySpec(sample=_swissroll_sample, centers=None, std=None, num_classes=1),
    'parallel_lines': ToySpec(sample=_parallel_lines_sample, centers=None, std=None,
                              num_classes=1),
    'gaussians8_rotated': ToySpec(
        sample=_mixture_sampler(rotate_scale(_gaussians8_centers()), _ROT_SCALE * _G8_STD,
                                _G8_DIVISOR),
        centers=rotate_scale(_gaussians8_centers()) / _G8_DIVISOR,
        std=_ROT_SCALE * _G8_STD / _G8_DIVISOR,
        num_classes=8),
}


def get_toy(name: str) -> ToySpec:
  """The ToySpec called `name`; ConfigError listing the valid names otherwise."""
  return registry.lookup(TOY_DATASETS, name, 'dataset')


def toy_batches(name: str, *, seed: int, step: int,
                shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
  """Real training samples for one step, a pure function of (name, seed, step, shape).

  Args:
    name: a TOY_DATASETS key.
    seed: non-negative run seed.
    step: non-negative step number; step t's batch never depends on other steps.
    shape: leading batch shape, e.g. (n_critic, batch).

  Returns:
    (points float32 [*shape, 2], labels int32 [*shape]).
  """
  spec = get_toy(name)
  shape = tuple(int(s) for s in shape)
  rng = np.random.default_rng([seed, step, TOY_TRAIN_STREAM])
  points, labels = spec.sample(rng, math.prod(shape))
  return points.reshape(shape + (2,)), labels.reshape(shape)


def toy_eval_samples(name: str, *, seed: int, n: int, index: int) -> np.ndarray:
  """Fresh real samples for evaluation number `index` (a stream apart from training).

  Args:
    name: a TOY_DATASETS key.
    seed: non-negative run seed.
    n: number of samples.
    index: non-negative evaluation number.

  Returns:
    float32 [n, 2] points.
  """
  spec = get_toy(name)
  rng = np.random.default_rng([seed, index, TOY_EVAL_STREAM])
  points, _ = spec.sample(rng, n)
  return points
