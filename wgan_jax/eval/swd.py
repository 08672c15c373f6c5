"""Sliced Wasserstein distance between image sets (Karras et al. 2018, ProGAN's SWD), NumPy.

An Inception-free image metric, reported as `swd`. ProGAN's protocol:
  1. a Laplacian pyramid of every image (cv2.pyrDown / pyrUp: 5x5 binomial filter
     [1, 4, 6, 4, 1]^2 / 256, mirror borders), one level per resolution >= 16
     (32x32 images: levels 32 and 16);
  2. per level, 128 random 7x7 neighbourhoods per image -> descriptors [C, 7, 7];
  3. each set's descriptors normalised per channel (mean 0, std 1 over all its descriptors);
  4. per level, the sliced Wasserstein-1 distance: 4 repeats x 128 random unit directions,
     W1 of each 1-D projection = mean |sort(proj A) - sort(proj B)|, averaged;
  5. reported x 1e3, per level (`swd_<res>`) and averaged over levels (`swd`).
Karras et al. use 16384 images; pass fewer for speed (SWD then has more sampling noise).
Images are used as given (floats in [-1, 1]); the per-channel normalisation makes the scale
irrelevant, so ProGAN's uint8 rounding is not reproduced.

Shapes:
  N        number of images (equal for both sets)
  H, W, C  image size; H = W a power of two times >= 16 for more than one level
  M        descriptors = N * nhoods_per_image
  P        descriptor length C * 7 * 7
"""
import numpy as np

NHOOD_SIZE = 7
NHOODS_PER_IMAGE = 128
DIR_REPEATS = 4
DIRS_PER_REPEAT = 128
MIN_RESOLUTION = 16
SCALE = 1e3
_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], np.float32) / 16.0


def _filter_mirror(images: np.ndarray, taps: np.ndarray) -> np.ndarray:
  """Separable 5-tap filter over H and W of [N, H, W, C] with mirror borders (d c b | a b c)."""
  out = images
  for axis in (1, 2):
    pad = [(0, 0)] * out.ndim
    pad[axis] = (2, 2)
    padded = np.pad(out, pad, mode='reflect')
    size = out.shape[axis]
    out = sum(t * np.take(padded, np.arange(i, i + size), axis=axis) for i, t in enumerate(taps))
  return out.astype(np.float32)


def pyr_down(images: np.ndarray) -> np.ndarray:
  """Blur with the 5x5 binomial filter, keep every second pixel: [N, H, W, C] -> [N, H/2, W/2, C]."""
  return _filter_mirror(images, _BINOMIAL)[:, ::2, ::2]


def pyr_up(images: np.ndarray) -> np.ndarray:
  """Zero-insert to twice the size and blur with 4x the filter: [N, H, W, C] -> [N, 2H, 2W, C]."""
  n, h, w, c = images.shape
  up = np.zeros((n, 2 * h, 2 * w, c), np.float32)
  up[:, ::2, ::2] = images
  return _filter_mirror(up, 2.0 * _BINOMIAL)


def laplacian_pyramid(images: np.ndarray, num_levels: int) -> list[np.ndarray]:
  """[level 0 = image - up(down(image)), ..., last = the coarsest Gaussian level]."""
  gaussian = [np.asarray(images, np.float32)]
  for _ in range(1, num_levels):
    gaussian.append(pyr_down(gaussian[-1]))
  return [g - pyr_up(gaussian[i + 1]) for i, g in enumerate(gaussian[:-1])] + [gaussian[-1]]


def resolutions(size: int) -> list[int]:
  """The pyramid's resolutions: size, size / 2, ... while >= 16 (at least the full size)."""
  out = [size]
  while out[-1] // 2 >= MIN_RESOLUTION and out[-1] % 2 == 0:
    out.append(out[-1] // 2)
  return out


def descriptors(level: np.ndarray, rng: np.random.Generator,
                nhoods_per_image: int = NHOODS_PER_IMAGE,
                nhood_size: int = NHOOD_SIZE) -> np.ndarray:
  """Random nhood_size^2 neighbourhoods of every image: [N, H, W, C] -> [N * nhoods, C, k, k]."""
  n, h, w, _ = level.shape
  half = nhood_size // 2
  img = np.repeat(np.arange(n), nhoods_per_image)
  ys = rng.integers(half, h - half, size=len(img))
  xs = rng.integers(half, w - half, size=len(img))
  offsets = np.arange(-half, half + 1)
  patches = level[img[:, None, None], (ys[:, None] + offsets)[:, :, None],
                  (xs[:, None] + offsets)[:, None, :]]  # [M, k, k, C]
  return patches.transpose(0, 3, 1, 2)


def normalize_descriptors(desc: np.ndarray) -> np.ndarray:
  """Per-channel standardisation over all descriptors and pixels, flattened: [M, C, k, k] -> [M, P]."""
  desc = desc - desc.mean(axis=(0, 2, 3), keepdims=True)
  std = desc.std(axis=(0, 2, 3), keepdims=True)
  desc = desc / np.where(std > 0, std, 1.0)
  return desc.reshape(len(desc), -1).astype(np.float32)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, rng: np.random.Generator,
                       dir_repeats: int = DIR_REPEATS,
                       dirs_per_repeat: int = DIRS_PER_REPEAT) -> float:
  """Mean over random unit directions v of W1(<a, v>, <b, v>) between two equal-size point sets.

  Args:
    a, b: [M, P] points.
    rng: source of the directions.
    dir_repeats, dirs_per_repeat: directions are drawn in dir_repeats batches.

  Returns:
    mean over directions of mean_i |sort(a v)_i - sort(b v)_i| (the 1-D W1 of equal-size
    empirical distributions).
  """
  if a.ndim != 2 or a.shape != b.shape:
    raise ValueError(f'sliced_wasserstein needs equal [M, P] sets, got {a.shape}, {b.shape}')
  results = []
  for _ in range(dir_repeats):
    dirs = rng.standard_normal((a.shape[1], dirs_per_repeat))
    dirs = (dirs / np.sqrt(np.square(dirs).sum(axis=0, keepdims=True))).astype(np.float32)
    proj_a = np.sort(a @ dirs, axis=0)
    proj_b = np.sort(b @ dirs, axis=0)
    results.append(np.abs(proj_a - proj_b).mean())
  return float(np.mean(results))


def swd(real: np.ndarray, fake: np.ndarray, *, seed: int = 0,
        nhoods_per_image: int = NHOODS_PER_IMAGE) -> dict[str, float]:
  """ProGAN's SWD x 1e3 between two image sets.

  Args:
    real: [N, H, W, C] images (any fixed range, e.g. [-1, 1]).
    fake: [N, H, W, C] images, as many as `real`.
    seed: seeds the neighbourhood positions and the directions (the same draws for both sets).
    nhoods_per_image: neighbourhoods per image per level (128 in ProGAN).

  Returns:
    {'swd_<res>': SWD x 1e3 at each pyramid resolution, 'swd': their mean}.
  """
  real, fake = np.asarray(real, np.float32), np.asarray(fake, np.float32)
  if real.shape != fake.shape or real.ndim != 4:
    raise ValueError(f'swd needs two [N, H, W, C] sets of the same shape, got {real.shape}, '
                     f'{fake.shape}')
  levels = resolutions(real.shape[1])
  pyramids = [laplacian_pyramid(x, len(levels)) for x in (real, fake)]
  out = {}
  for i, res in enumerate(levels):
    desc = [normalize_descriptors(descriptors(p[i], np.random.default_rng([seed, i]),
                                              nhoods_per_image)) for p in pyramids]
    out[f'swd_{res}'] = SCALE * sliced_wasserstein(*desc, np.random.default_rng([seed, i, 1]))
  out['swd'] = float(np.mean([out[f'swd_{res}'] for res in levels]))
  return out
