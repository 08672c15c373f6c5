"""Inception Score and Kernel Inception Distance from Inception outputs (NumPy, float64).

Inception Score (Salimans et al. 2016), as the original code (openai/improved-gan) computes it:
the predictions are split into `splits` consecutive parts; per part
  IS_k = exp( mean_i KL(p(y|x_i) || p_k(y)) ),  p_k(y) = mean_i p(y|x_i) over the part,
and the score is mean_k IS_k with std_k IS_k (10 splits; softmax over all 1008 logits).
The logits are pool3 @ W, the final layer's weight WITHOUT its bias (`inception_logits`):
that code (copied into the WGAN-GP code as tflib/inception_score.py, line 93:
`logits = tf.matmul(tf.squeeze(pool3), w)`) takes w, the MatMul input of softmax/logits,
and never adds the graph's bias; the papers' Inception Scores are of these logits, not of
the biased ones pytorch-fid's `fc` layer returns.

Kernel Inception Distance (Binkowski et al. 2018): the unbiased estimator of the squared MMD
with the cubic polynomial kernel k(x, y) = (x.y / D + 1)^3, averaged over random subsets:
  MMD^2_u = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (m (m - 1))
            - 2 sum_{i, j} k(x_i, y_j) / m^2
with `num_subsets` subsets of `subset_size` drawn without replacement from each set (100 of
1000, as TTUR / torch-fidelity); the result is (mean, std) over the subsets.

Shapes:
  N  number of samples;  K  classes (1008);  D  feature dimension (2048);  m  subset size
"""
import numpy as np
from scipy import special

IS_SPLITS = 10
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


def softmax(logits: np.ndarray) -> np.ndarray:
  """Row softmax in float64, [N, K] -> [N, K]."""
  return special.softmax(np.asarray(logits, np.float64), axis=-1)


def inception_logits(features: np.ndarray, w: np.ndarray) -> np.ndarray:
  """The Inception Score's logits pool3 @ W in float64, no bias (see the module docstring).

  Args:
    features: [N, D] pool3 features (D = 2048).
    w: [D, K] the final linear layer's weight (the converted file's fc/w; K = 1008).
  Returns:
    [N, K] logits.
  """
  return np.asarray(features, np.float64) @ np.asarray(w, np.float64)


def inception_score(probs: np.ndarray, splits: int = IS_SPLITS) -> tuple[float, float]:
  """Inception Score of class predictions.

  Args:
    probs: [N, K] rows of class probabilities p(y|x) (softmax of the Inception logits).
    splits: number of consecutive parts (N >= splits); parts differ in size by at most one.

  Returns:
    (mean, std) over the parts of exp(mean_i KL(p(y|x_i) || p(y))). Uniform predictions
    give 1; one-hot predictions spread evenly over k classes give k.
  """
  p = np.asarray(probs, np.float64)
  if p.ndim != 2 or len(p) < splits or splits < 1:
    raise ValueError(f'inception_score needs [N >= splits, K] predictions and splits >= 1, got '
                     f'{p.shape} with splits={splits}')
  scores = []
  for part in np.array_split(p, splits):
    marginal = part.mean(axis=0, keepdims=True)
    # xlogy(p, p) - xlogy(p, q): 0 log 0 = 0, the KL convention.
    kl = (special.xlogy(part, part) - special.xlogy(part, marginal)).sum(axis=1)
    scores.append(np.exp(kl.mean()))
  return float(np.mean(scores)), float(np.std(scores))


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0):
  """k(x, y) = (x.y / D + coef0)^degree for all pairs, [n, D] x [m, D] -> [n, m]."""
  return (x @ y.T / x.shape[1] + coef0) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
  """The unbiased MMD^2 estimate with the cubic polynomial kernel (see module docstring).

  Args:
    x: [m, D] samples from P.
    y: [n, D] samples from Q (m, n >= 2).
  """
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  m, n = len(x), len(y)
  k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
  term_xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
  term_yy = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
  return float(term_xx + term_yy - 2.0 * k_xy.mean())


def kid(features_fake: np.ndarray, features_real: np.ndarray, *,
        num_subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
        seed: int = 0) -> tuple[float, float, int]:
  """Kernel Inception Distance: MMD^2_u over random subsets.

  Args:
    features_fake: [N_f, D].
    features_real: [N_r, D].
    num_subsets: number of subset pairs.
    subset_size: m; capped at min(N_f, N_r).
    seed: seed of the subset draws.

  Returns:
    (mean, std, m) of MMD^2_u over the subsets, and the subset size used.
  """
  fake, real = np.asarray(features_fake, np.float64), np.asarray(features_real, np.float64)
  m = min(subset_size, len(fake), len(real))
  if m < 2:
    raise ValueError(f'kid needs at least 2 samples per set, got {len(fake)} and {len(real)}')
  rng = np.random.default_rng(seed)
  values = [mmd2_unbiased(fake[rng.choice(len(fake), m, replace=False)],
                          real[rng.choice(len(real), m, replace=False)])
            for _ in range(num_subsets)]
  return float(np.mean(values)), float(np.std(values)), m
