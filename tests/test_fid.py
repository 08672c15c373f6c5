"""wgan_jax.eval.fid against scipy's sqrtm formula and exact closed forms."""
import chex
import numpy as np
import pytest
from scipy import linalg

from wgan_jax.eval import fid


def _features(rng, n, d, shift=0.0):
  """n samples of an anisotropic Gaussian in d dimensions."""
  mix = rng.standard_normal((d, d)) / np.sqrt(d) + np.eye(d)
  return rng.standard_normal((n, d)) @ mix * rng.uniform(0.5, 2.0, d) + shift


def _scipy_reference(mu1, sigma1, mu2, sigma2):
  """The TTUR / pytorch-fid formula: tr sqrtm(sigma1 sigma2) with scipy, real part."""
  covmean = linalg.sqrtm(sigma1 @ sigma2).real
  diff = mu1 - mu2
  return diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)


@pytest.mark.parametrize('d', [1, 2, 16, 64, 256])
def test_matches_scipy_sqrtm_formula(d):
  rng = np.random.default_rng(d)
  x, y = _features(rng, 2 * d + 20, d), _features(rng, 3 * d + 10, d, shift=0.3)
  (mu1, sigma1), (mu2, sigma2) = fid.statistics(x), fid.statistics(y)
  expected = _scipy_reference(mu1, sigma1, mu2, sigma2)
  got = fid.frechet_distance(mu1, sigma1, mu2, sigma2)
  assert abs(got - expected) <= 1e-6 * abs(expected), (got, expected)
  # The same with a precomputed root, and from the features without forming sigma1.
  root = fid.psd_sqrt(sigma2)
  assert abs(fid.frechet_distance(mu1, sigma1, mu2, sigma2, sqrt_sigma2=root)
             - expected) <= 1e-6 * abs(expected)
  assert abs(fid.frechet_distance_to(x, mu2, sigma2, sqrt_sigma2=root)
             - expected) <= 1e-6 * abs(expected)
  # Symmetric in its two arguments.
  assert abs(fid.frechet_distance(mu2, sigma2, mu1, sigma1) - got) <= 1e-9 * abs(got)


def test_features_path_with_fewer_samples_than_dimensions():
  rng = np.random.default_rng(7)
  x, y = _features(rng, 12, 64), _features(rng, 40, 64, shift=0.5)
  (mu1, sigma1), (mu2, sigma2) = fid.statistics(x), fid.statistics(y)
  expected = fid.frechet_distance(mu1, sigma1, mu2, sigma2)
  got = fid.frechet_distance_to(x, mu2, sigma2, sqrt_sigma2=fid.psd_sqrt(sigma2))
  assert abs(got - expected) <= 1e-7 * expected
  # psd_sqrt_from_features (SVD of the centred features) is the same root as psd_sqrt.
  chex.assert_trees_all_close(fid.psd_sqrt_from_features(x), fid.psd_sqrt(sigma1), atol=1e-6)


@pytest.mark.parametrize('d', [2, 16, 256])
def test_identical_statistics_give_zero(d):
  # Exact up to round-off: 1e-10 of the size of the terms that cancel (tr sigma ~ 10..700).
  # The eigenvalues of sqrt(s) s sqrt(s) are squares: an eigenvalue 1e-6 of sigma (d=16
  # here) comes back with an absolute error ~1e-10 after the square root.
  mu, sigma = fid.statistics(_features(np.random.default_rng(d), 4 * d, d))
  got = fid.frechet_distance(mu, sigma, mu, sigma)
  assert abs(got) <= 1e-10 * np.trace(sigma), (got, np.trace(sigma))
  x = _features(np.random.default_rng(d), 4 * d, d)
  assert abs(fid.frechet_distance_to(x, mu, sigma, sqrt_sigma2=fid.psd_sqrt(sigma))) <= (
      1e-10 * np.trace(sigma))


def test_equal_covariances_give_squared_mean_distance():
  rng = np.random.default_rng(1)
  _, sigma = fid.statistics(_features(rng, 300, 32))
  mu1, mu2 = rng.standard_normal(32), rng.standard_normal(32)
  expected = float(np.sum((mu1 - mu2) ** 2))
  assert abs(fid.frechet_distance(mu1, sigma, mu2, sigma) - expected) <= 1e-10 * np.trace(sigma)


def test_diagonal_covariances_closed_form():
  rng = np.random.default_rng(2)
  a, b = rng.uniform(0.1, 3.0, 50), rng.uniform(0.1, 3.0, 50)
  mu1, mu2 = rng.standard_normal(50), rng.standard_normal(50)
  expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + np.sum((mu1 - mu2) ** 2)
  got = fid.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
  assert abs(got - expected) <= 1e-12 * expected + 1e-12, (got, expected)


def test_one_dimensional_gaussians():
  # W2^2(N(m1, s1^2), N(m2, s2^2)) = (m1 - m2)^2 + (s1 - s2)^2.
  got = fid.frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-0.5]),
                             np.array([[0.25]]))
  assert abs(got - (1.5 ** 2 + 1.5 ** 2)) < 1e-12


def test_statistics_match_numpy():
  x = np.random.default_rng(3).standard_normal((20, 5)).astype(np.float32)
  mu, sigma = fid.statistics(x)
  chex.assert_shape((mu, sigma), [(5,), (5, 5)])
  assert mu.dtype == np.float64 and sigma.dtype == np.float64
  chex.assert_trees_all_close(mu, x.astype(np.float64).mean(0), atol=1e-12)
  chex.assert_trees_all_close(sigma, np.cov(x.astype(np.float64), rowvar=False), atol=1e-12)


def test_bad_shapes_raise():
  with pytest.raises(ValueError):
    fid.statistics(np.zeros((1, 3)))
  with pytest.raises(ValueError):
    fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
