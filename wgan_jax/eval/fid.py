"""The Frechet distance between Gaussians fitted to features (FID; Heusel et al. 2017), NumPy.

  d^2 = |mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr sqrt(sigma1 sigma2)

sigma1 sigma2 is not symmetric, but it is similar to the symmetric PSD matrix
M = sqrt(sigma2) sigma1 sqrt(sigma2) (conjugate by sqrt(sigma2)), so they share eigenvalues and
tr sqrt(sigma1 sigma2) = sum_i sqrt(lambda_i(M)). The square roots come from symmetric
eigendecompositions (LAPACK syevd) in float64 with negative round-off eigenvalues clipped to 0:
no complex arithmetic and no scipy.linalg.sqrtm (whose iteration can return complex values or
fail to converge on singular covariances, and is ~10x slower at D = 2048). The root of fixed
reference statistics can be computed once (`psd_sqrt`) and reused.

Shapes:
  N  number of feature vectors
  D  feature dimension (2048 for Inception pool3)
"""
import numpy as np
from scipy import linalg


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean and unbiased covariance of features, as TTUR / pytorch-fid.

  Args:
    features: [N, D], N >= 2.

  Returns:
    (mu float64 [D], sigma float64 [D, D]), sigma = cov with ddof = 1.
  """
  x = np.asarray(features, np.float64)
  if x.ndim != 2 or len(x) < 2:
    raise ValueError(f'statistics needs features [N >= 2, D], got shape {x.shape}')
  mu = x.mean(axis=0)
  centered = x - mu
  sigma = centered.T @ centered / (len(x) - 1)
  return mu, sigma


def _eigvalsh(m: np.ndarray) -> np.ndarray:
  """Eigenvalues of a symmetric matrix (LAPACK divide and conquer: several times faster than
  numpy's eigvalsh at D = 2048)."""
  return linalg.eigh((m + m.T) / 2.0, eigvals_only=True, driver='evd')


def psd_sqrt(sigma: np.ndarray) -> np.ndarray:
  """The symmetric PSD square root V sqrt(max(L, 0)) V^T of a symmetric sigma = V L V^T."""
  sigma = np.asarray(sigma, np.float64)
  eigvals, eigvecs = linalg.eigh((sigma + sigma.T) / 2.0, driver='evd')
  return (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T


def psd_sqrt_from_features(features: np.ndarray) -> np.ndarray:
  """sqrt(sigma) of `statistics(features)`, from the SVD of the centred features when N <= D.

  sigma = A^T A with A = (x - mu) / sqrt(N - 1) = U S V^T, so sqrt(sigma) = V S V^T (exactly the
  PSD root; O(N^2 D) instead of O(D^3) for few samples).
  """
  x = np.asarray(features, np.float64)
  if len(x) > x.shape[1]:
    return psd_sqrt(statistics(x)[1])
  a = (x - x.mean(axis=0)) / np.sqrt(len(x) - 1)
  _, s, vt = np.linalg.svd(a, full_matrices=False)
  return (vt.T * s) @ vt


def _sum_sqrt(eigvals: np.ndarray) -> float:
  return float(np.sqrt(np.clip(eigvals, 0.0, None)).sum())


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, *,
                       sqrt_sigma2: np.ndarray | None = None) -> float:
  """tr sqrt(sigma1 sigma2) for symmetric PSD sigmas: sum sqrt(eig(R sigma1 R)), R = sqrt(sigma2).

  R sigma1 R is symmetric PSD and similar to sigma2 sigma1 (conjugation by R), whose spectrum
  is that of sigma1 sigma2. `sqrt_sigma2` (e.g. of fixed reference statistics) skips one
  eigendecomposition.
  """
  root = psd_sqrt(sigma2) if sqrt_sigma2 is None else np.asarray(sqrt_sigma2, np.float64)
  return _sum_sqrt(_eigvalsh(root @ np.asarray(sigma1, np.float64) @ root))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray, *, sqrt_sigma2: np.ndarray | None = None) -> float:
  """The squared Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

  Args:
    mu1, mu2: means [D].
    sigma1, sigma2: symmetric PSD covariances [D, D].
    sqrt_sigma2: optional precomputed `psd_sqrt(sigma2)`.

  Returns:
    |mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr sqrt(sigma1 sigma2), in float64; FID
    when the statistics are those of Inception pool3 features.
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
    raise ValueError(f'frechet_distance: shapes mu {mu1.shape}, {mu2.shape} and sigma '
                     f'{sigma1.shape}, {sigma2.shape} do not match')
  sigma1, sigma2 = (sigma1 + sigma1.T) / 2.0, (sigma2 + sigma2.T) / 2.0
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2)
               - 2.0 * trace_sqrt_product(sigma1, sigma2, sqrt_sigma2=sqrt_sigma2))


def frechet_distance_to(features: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, *,
                        sqrt_sigma2: np.ndarray) -> float:
  """frechet_distance(*statistics(features), mu2, sigma2), without forming sigma1.

  With A = (x - mu1) / sqrt(N - 1) (sigma1 = A^T A) and B = A sqrt(sigma2):
  tr sqrt(sigma1 sigma2) = sum sqrt(eig(B^T B)) = sum sqrt(eig(B B^T)), the smaller of the
  two symmetric problems ([min(N, D)]^2), and tr(sigma1) = |A|_F^2.

  Args:
    features: [N, D] (e.g. of generated images), N >= 2.
    mu2, sigma2: reference statistics; sqrt_sigma2: psd_sqrt(sigma2).
  """
  x = np.asarray(features, np.float64)
  mu1 = x.mean(axis=0)
  a = (x - mu1) / np.sqrt(len(x) - 1)
  b = a @ np.asarray(sqrt_sigma2, np.float64)
  gram = b @ b.T if len(x) < x.shape[1] else b.T @ b
  diff = mu1 - np.asarray(mu2, np.float64)
  return float(diff @ diff + np.sum(a * a) + np.trace(np.asarray(sigma2, np.float64))
               - 2.0 * _sum_sqrt(_eigvalsh(gram)))
