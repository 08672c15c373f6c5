"""Figures written to the workdir: the toy-data critic plot and image sample grids.

matplotlib (Agg backend) is imported lazily inside `plot_toy`; `save_image_grid` needs only
Pillow.

Shapes:
  n        number of toy points
  N, M     grid sizes along x and y
  B        number of images
  H, W, C  image height, width, channels (C = 1 or 3)
"""
import math

import numpy as np
from etils import epath

TOY_FIGSIZE = (5.0, 5.0)  # inches; plot_toy PNGs are TOY_FIGSIZE * dpi pixels
TOY_DPI = 100


def toy_grid(points_a: np.ndarray, points_b: np.ndarray, n: int = 64,
             margin: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """A square n x n grid covering both point sets, to evaluate the critic on.

  Evaluate the critic on `grid_points`, then `values.reshape(n, n)` is [M = len(ys),
  N = len(xs)] with values[i, j] at (xs[j], ys[i]), which is the `critic_grid` layout
  `plot_toy` expects.

  Args:
    points_a: [n_a, 2] points (e.g. real).
    points_b: [n_b, 2] points (e.g. fake).
    n: grid points per axis.
    margin: extra room around the bounding square of both sets.

  Returns:
    (xs [n], ys [n], grid_points float32 [n * n, 2]), x varying fastest.
  """
  pts = np.concatenate([np.asarray(points_a, np.float64).reshape(-1, 2),
                        np.asarray(points_b, np.float64).reshape(-1, 2)])
  pts = pts[np.isfinite(pts).all(axis=1)]
  if len(pts) == 0:
    pts = np.zeros((1, 2))
  lo, hi = pts.min(axis=0), pts.max(axis=0)
  mid, half = (lo + hi) / 2.0, (hi - lo).max() / 2.0 + margin
  xs = np.linspace(mid[0] - half, mid[0] + half, n)
  ys = np.linspace(mid[1] - half, mid[1] + half, n)
  gx, gy = np.meshgrid(xs, ys)  # [n(y), n(x)]
  grid_points = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
  return xs, ys, grid_points


def plot_toy(path: str, *, real: np.ndarray, fake: np.ndarray,
             critic_grid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
             title: str = '', dpi: int = TOY_DPI,
             fake_labels: np.ndarray | None = None) -> None:
  """The WGAN-GP paper's toy figure: critic contours, real (orange) and fake (green) points.

  Args:
    path: PNG file to write.
    real: [n, 2] real samples.
    fake: [m, 2] generated samples.
    critic_grid: optional (xs [N], ys [M], values [M, N]) critic values, see `toy_grid`.
    title: figure title.
    dpi: resolution; the PNG is TOY_FIGSIZE * dpi pixels.
    fake_labels: optional int [m], the class each fake point was generated for; the fake
      points are then coloured by class (tab10 / tab20 colours, legend 'class k').
  """
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt

  real = np.asarray(real, np.float64).reshape(-1, 2)
  fake = np.asarray(fake, np.float64).reshape(-1, 2)
  fig, ax = plt.subplots(figsize=TOY_FIGSIZE, dpi=dpi)
  try:
    if critic_grid is not None:
      xs, ys, values = (np.asarray(a, np.float64) for a in critic_grid)
      values = values.reshape(len(ys), len(xs))
      if np.isfinite(values).all() and np.ptp(values) > 0:
        ax.contour(xs, ys, values, levels=20, linewidths=0.8)
      ax.set_xlim(xs[0], xs[-1])
      ax.set_ylim(ys[0], ys[-1])
    else:
      xs, ys, _ = toy_grid(real, fake, n=2)
      ax.set_xlim(xs[0], xs[-1])
      ax.set_ylim(ys[0], ys[-1])
    ax.scatter(real[:, 0], real[:, 1], c='orange', marker='+', linewidths=0.8, label='real')
    if fake_labels is None:
      ax.scatter(fake[:, 0], fake[:, 1], c='green', marker='+', linewidths=0.8, label='fake')
    else:
      fake_labels = np.asarray(fake_labels).reshape(-1)
      classes = np.unique(fake_labels)
      cmap = plt.get_cmap('tab10' if classes.max(initial=0) < 10 else 'tab20')
      for k in classes:
        pts = fake[fake_labels == k]
        ax.scatter(pts[:, 0], pts[:, 1], color=cmap(int(k) % cmap.N), marker='.', s=6,
                   label=f'class {k}')
    ax.set_aspect('equal', adjustable='box')
    if title:
      ax.set_title(title)
    with epath.Path(path).open('wb') as f:  # local or gs://
      fig.savefig(f, dpi=dpi, format='png')
  finally:
    plt.close(fig)


def images_to_uint8_grid(images: np.ndarray, *, ncol: int | None = None) -> np.ndarray:
  """Tile images in [-1, 1] into one uint8 grid.

  Pixel value = round((clip(x, -1, 1) + 1) * 127.5); NaN -> 128; empty cells are 0.

  Args:
    images: float [B, H, W, C] in [-1, 1], C = 1 or 3.
    ncol: images per row; default ceil(sqrt(B)).

  Returns:
    uint8 [rows * H, ncol * W, C], rows = ceil(B / ncol).
  """
  images = np.asarray(images, np.float64)
  if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.shape[0] == 0:
    raise ValueError(f'images must be [B>0, H, W, C in (1, 3)], got {images.shape}')
  b, h, w, c = images.shape
  ncol = ncol or math.ceil(math.sqrt(b))
  ncol = max(1, min(int(ncol), b))
  nrow = math.ceil(b / ncol)
  pixels = np.round((np.clip(np.nan_to_num(images, nan=0.0), -1.0, 1.0) + 1.0) * 127.5)
  pixels = pixels.astype(np.uint8)
  pad = nrow * ncol - b
  if pad:
    pixels = np.concatenate([pixels, np.zeros((pad, h, w, c), np.uint8)])
  grid = pixels.reshape(nrow, ncol, h, w, c).transpose(0, 2, 1, 3, 4)
  return grid.reshape(nrow * h, ncol * w, c)


def save_image_grid(path: str, images: np.ndarray, *, ncol: int | None = None) -> np.ndarray:
  """Write images in [-1, 1] as one PNG grid (see `images_to_uint8_grid`) with Pillow.

  Args:
    path: PNG file to write.
    images: float [B, H, W, C] in [-1, 1], C = 1 or 3.
    ncol: images per row; default ceil(sqrt(B)).

  Returns:
    The uint8 [rows * H, ncol * W, C] grid that was written.
  """
  from PIL import Image

  grid = images_to_uint8_grid(images, ncol=ncol)
  with epath.Path(path).open('wb') as f:  # local or gs://
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(f, format='PNG')
  return grid
