"""Evaluation on the 2-D toy distributions (host side, NumPy / SciPy).

The protocol is that of the PyTorch reference benchmarks/torch_reference/toy_wgan_gp.py:
  * exact W1 (earth mover's distance, Euclidean ground cost) between equally many generated
    and fresh real samples;
  * a sample is high quality when it lies within 3 std of its nearest mode centre; a mode is
    covered when it is the nearest centre of at least one high-quality sample.

Shapes:
  n, m  numbers of samples
  K     number of modes
  x, y  [n, 2] points
"""
import numpy as np
from scipy import optimize
from scipy.spatial import distance

from wgan_jax.data.toy import ToySpec


def exact_w1(x: np.ndarray, y: np.ndarray) -> float:
  """Exact W1 between two equal-size empirical distributions with uniform weights.

  W1 = min over permutations s of (1/n) sum_i |x_i - y_s(i)|_2; with uniform weights and
  equal sizes an optimal transport plan is a permutation (Birkhoff), so this is the
  assignment problem, solved exactly on the float64 distance matrix.

  Args:
    x: [n, d] points.
    y: [n, d] points.

  Returns:
    The mean matched Euclidean distance.

  Raises:
    ValueError: if x and y hold different numbers of points or dimensions.
  """
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  y = np.asarray(y, np.float64).reshape(len(y), -1)
  if x.shape != y.shape:
    raise ValueError(f'exact_w1 needs equal-size point sets, got {x.shape} and {y.shape}')
  if len(x) == 0:
    raise ValueError('exact_w1 needs at least one point')
  cost = distance.cdist(x, y, metric='euclidean')
  rows, cols = optimize.linear_sum_assignment(cost)
  return float(cost[rows, cols].mean())


def mode_stats(x: np.ndarray, *, centers: np.ndarray, std: float) -> dict:
  """Mode coverage and sample quality, as mode_stats in benchmarks/torch_reference/toy_wgan_gp.py.

  Args:
    x: [n, 2] samples.
    centers: [K, 2] mode centres.
    std: per-axis std of each mode; high quality means distance to the nearest centre
      < 3 * std.

  Returns:
    dict with `modes_covered` (int, modes that are the nearest centre of >= 1 high-quality
    sample), `high_quality_frac` (float in [0, 1]) and `per_mode_counts` (list of K ints,
    high-quality samples per nearest mode).
  """
  x = np.asarray(x, np.float64)
  centers = np.asarray(centers, np.float64)
  d = np.linalg.norm(x[:, None, :] - centers[None, :, :], axis=-1)  # [n, K]
  nearest = d.argmin(axis=1)
  hq = d[np.arange(len(x)), nearest] < 3.0 * std
  counts = np.bincount(nearest[hq], minlength=len(centers))
  return {
      'modes_covered': int((counts >= 1).sum()),
      'high_quality_frac': float(hq.mean()) if len(x) else 0.0,
      'per_mode_counts': counts.tolist(),
  }


def mode_accuracy(x: np.ndarray, labels: np.ndarray, *, centers: np.ndarray,
                  std: float) -> dict[str, float]:
  """Per-class mode accuracy of a class-conditional generator on a gaussian mixture.

  For class k, acc_k = fraction of the samples generated for class k that are high quality
  (nearest centre closer than 3 std) and whose nearest centre is mode k. Classes without
  samples are left out of the mean and the minimum.

  Args:
    x: [n, 2] samples.
    labels: int [n], the class each sample was generated for (class k = mode k).
    centers: [K, 2] mode centres.
    std: per-axis std of each mode.

  Returns:
    {'eval/mode_accuracy': mean_k acc_k, 'eval/mode_accuracy_min': min_k acc_k}.
  """
  x = np.asarray(x, np.float64)
  labels = np.asarray(labels)
  d = np.linalg.norm(x[:, None, :] - np.asarray(centers, np.float64)[None], axis=-1)
  nearest = d.argmin(axis=1)
  hit = (nearest == labels) & (d[np.arange(len(x)), nearest] < 3.0 * std)
  accs = [hit[labels == k].mean() for k in range(len(centers)) if np.any(labels == k)]
  return {'eval/mode_accuracy': float(np.mean(accs)),
          'eval/mode_accuracy_min': float(np.min(accs))}


def evaluate_toy(fake: np.ndarray, real: np.ndarray, *, spec: ToySpec) -> dict[str, float]:
  """Scalar toy metrics of generated samples against fresh real samples.

  Args:
    fake: [n, 2] generated samples.
    real: [n, 2] real samples (as many as fake).
    spec: the toy distribution; mode statistics only when spec.centers is not None.

  Returns:
    {'eval/w1'} plus, for mixtures, 'eval/modes_covered' and 'eval/high_quality_frac'.
  """
  fake = np.asarray(fake)
  out = {'eval/w1': exact_w1(fake, real)}
  if spec.centers is not None:
    stats = mode_stats(fake, centers=spec.centers, std=spec.std)
    out['eval/modes_covered'] = float(stats['modes_covered'])
    out['eval/high_quality_frac'] = stats['high_quality_frac']
  return out
