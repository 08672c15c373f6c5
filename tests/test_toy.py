"""Tests of wgan_jax.data.toy, wgan_jax.eval.toy and wgan_jax.plots."""
import math

import numpy as np
import pytest
from PIL import Image

from wgan_jax import errors
from wgan_jax import plots
from wgan_jax.data import toy
from wgan_jax.eval import toy as toy_eval

N = 20_000


def _sample(name, n=N, seed=0):
  return toy.get_toy(name).sample(np.random.default_rng(seed), n)


# ----------------------------------------------------------------------------- data


def test_registry_names_and_unknown_name():
  assert set(toy.TOY_DATASETS) == {'gaussians8', 'gaussians25', 'swissroll', 'parallel_lines',
                                   'gaussians8_rotated'}
  with pytest.raises(errors.ConfigError, match='gaussians8'):
    toy.get_toy('gaussians9')


@pytest.mark.parametrize('name', sorted(toy.TOY_DATASETS))
def test_sample_dtypes_and_shapes(name):
  points, labels = _sample(name, n=10)
  assert points.shape == (10, 2) and points.dtype == np.float32
  assert labels.shape == (10,) and labels.dtype == np.int32
  spec = toy.get_toy(name)
  assert labels.min() >= 0 and labels.max() < spec.num_classes


def test_gaussians8_centers_and_std():
  spec = toy.get_toy('gaussians8')
  assert spec.num_classes == 8
  s = 1 / math.sqrt(2)
  expected = np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (s, s), (s, -s), (-s, s), (-s, -s)])
  np.testing.assert_allclose(spec.centers, expected * 2 / 1.414)
  assert spec.std == pytest.approx(0.02 / 1.414)


@pytest.mark.parametrize('name,k,std,divisor', [('gaussians8', 8, 0.02, 1.414),
                                                ('gaussians25', 25, 0.05, 2.828)])
def test_mixture_statistics(name, k, std, divisor):
  spec = toy.get_toy(name)
  points, labels = _sample(name)
  assert spec.num_classes == k and spec.centers.shape == (k, 2)
  assert spec.std == pytest.approx(std / divisor)
  # Labels are the nearest centre (modes are > 50 std apart).
  d = np.linalg.norm(points[:, None].astype(np.float64) - spec.centers[None], axis=-1)
  np.testing.assert_array_equal(labels, d.argmin(axis=1))
  # Modes are roughly equally likely.
  counts = np.bincount(labels, minlength=k)
  assert counts.min() > 0.7 * N / k and counts.max() < 1.3 * N / k
  for j in range(k):
    pj = points[labels == j].astype(np.float64)
    se = spec.std / math.sqrt(len(pj))
    np.testing.assert_allclose(pj.mean(axis=0), spec.centers[j], atol=5 * se)
    np.testing.assert_allclose(pj.std(axis=0), spec.std, rtol=0.2)
  # Pooled per-axis std around the centres.
  resid = points - spec.centers[labels]
  np.testing.assert_allclose(resid.std(axis=0), spec.std, rtol=0.03)


def test_gaussians25_grid():
  spec = toy.get_toy('gaussians25')
  grid = {(round(x * 2.828), round(y * 2.828)) for x, y in spec.centers}
  assert grid == {(x, y) for x in range(-4, 5, 2) for y in range(-4, 5, 2)}


def test_parallel_lines():
  spec = toy.get_toy('parallel_lines')
  assert spec.centers is None and spec.std is None and spec.num_classes == 1
  points, labels = _sample('parallel_lines')
  assert np.all(points[:, 0] == 0)
  assert points[:, 1].min() >= 0 and points[:, 1].max() <= 1
  assert points[:, 1].mean() == pytest.approx(0.5, abs=0.01)
  assert points[:, 1].std() == pytest.approx(math.sqrt(1 / 12), abs=0.01)
  assert np.all(labels == 0)


def test_swissroll():
  spec = toy.get_toy('swissroll')
  assert spec.centers is None and spec.num_classes == 1
  points, labels = _sample('swissroll')
  assert np.all(labels == 0)
  radius = np.linalg.norm(points.astype(np.float64), axis=1)
  noise = 0.25 / 7.5 * math.sqrt(2)  # std of the 2-D noise vector's norm scale
  r_lo, r_hi = 1.5 * math.pi / 7.5, 4.5 * math.pi / 7.5
  assert radius.min() > r_lo - 5 * noise and radius.max() < r_hi + 5 * noise
  # t uniform on [1.5 pi, 4.5 pi] -> radius mean 3 pi / 7.5.
  assert radius.mean() == pytest.approx(3 * math.pi / 7.5, abs=0.02)
  assert radius.min() < r_lo + 0.1 and radius.max() > r_hi - 0.1


def test_make_swiss_roll_noiseless_matches_definition():
  xyz = toy.make_swiss_roll(np.random.default_rng(1), 1000, noise=0.0)
  t = np.hypot(xyz[:, 0], xyz[:, 2])
  assert t.min() >= 1.5 * math.pi - 1e-9 and t.max() <= 4.5 * math.pi + 1e-9
  np.testing.assert_allclose(xyz[:, 0], t * np.cos(t), atol=1e-9)
  np.testing.assert_allclose(xyz[:, 2], t * np.sin(t), atol=1e-9)
  assert xyz[:, 1].min() >= 0 and xyz[:, 1].max() <= 21


@pytest.mark.parametrize('name', sorted(toy.TOY_DATASETS))
def test_toy_batches_deterministic_and_step_independent(name):
  a_pts, a_lab = toy.toy_batches(name, seed=3, step=7, shape=(5, 16))
  assert a_pts.shape == (5, 16, 2) and a_pts.dtype == np.float32
  assert a_lab.shape == (5, 16) and a_lab.dtype == np.int32
  # Same (seed, step) -> bit-identical, whatever was drawn before.
  toy.toy_batches(name, seed=3, step=6, shape=(5, 16))
  b_pts, b_lab = toy.toy_batches(name, seed=3, step=7, shape=(5, 16))
  np.testing.assert_array_equal(a_pts, b_pts)
  np.testing.assert_array_equal(a_lab, b_lab)
  # Other step, other seed, eval stream: different draws.
  c_pts, _ = toy.toy_batches(name, seed=3, step=8, shape=(5, 16))
  d_pts, _ = toy.toy_batches(name, seed=4, step=7, shape=(5, 16))
  e_pts = toy.toy_eval_samples(name, seed=3, n=80, index=7)
  for other in (c_pts, d_pts, e_pts.reshape(5, 16, 2)):
    assert not np.array_equal(a_pts, other)
  # The n_critic sub-batches of one step differ from each other.
  assert not np.array_equal(a_pts[0], a_pts[1])


def test_toy_batches_stepwise_statistics_independent():
  """Consecutive steps are uncorrelated (mode labels of step t vs step t+1)."""
  labs = np.stack([toy.toy_batches('gaussians8', seed=0, step=s, shape=(256,))[1]
                   for s in range(200)]).astype(np.float64)
  corr = np.corrcoef(labs[:-1].ravel(), labs[1:].ravel())[0, 1]
  assert abs(corr) < 0.02


def test_toy_eval_samples():
  a = toy.toy_eval_samples('gaussians8', seed=0, n=100, index=0)
  b = toy.toy_eval_samples('gaussians8', seed=0, n=100, index=0)
  c = toy.toy_eval_samples('gaussians8', seed=0, n=100, index=1)
  assert a.shape == (100, 2) and a.dtype == np.float32
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


# ----------------------------------------------------------------------------- eval


def test_exact_w1_self_is_zero():
  x = np.random.default_rng(0).normal(size=(50, 2))
  assert toy_eval.exact_w1(x, x) == 0.0
  assert toy_eval.exact_w1(x, x[::-1]) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize('shift', [(0.3, -0.4), (2.0, 1.0), (-0.01, 0.0)])
def test_exact_w1_translation(shift):
  x = np.random.default_rng(1).normal(size=(100, 2))
  y = x + np.array(shift)
  assert toy_eval.exact_w1(x, y) == pytest.approx(math.hypot(*shift), rel=1e-9)


def test_exact_w1_points_on_a_line_is_sorted_mean_gap():
  rng = np.random.default_rng(2)
  u, v = rng.normal(size=200), rng.exponential(size=200)
  x = np.stack([u, 0.5 * u], axis=1)  # on the line y = x / 2
  y = np.stack([v, 0.5 * v], axis=1)
  expected = math.sqrt(1.25) * np.abs(np.sort(u) - np.sort(v)).mean()
  assert toy_eval.exact_w1(x, y) == pytest.approx(expected, rel=1e-9)


def test_exact_w1_matches_transport_linear_program():
  """Birkhoff: with equal sizes and uniform weights the LP optimum is a permutation."""
  from scipy import optimize
  rng = np.random.default_rng(3)
  x, y = rng.normal(size=(12, 2)), rng.uniform(-1, 1, size=(12, 2))
  n = len(x)
  cost = np.linalg.norm(x[:, None] - y[None], axis=-1)
  a_eq = np.concatenate([np.kron(np.eye(n), np.ones(n)), np.kron(np.ones(n), np.eye(n))])
  res = optimize.linprog(cost.ravel(), A_eq=a_eq, b_eq=np.full(2 * n, 1 / n), bounds=(0, None))
  assert res.status == 0
  assert toy_eval.exact_w1(x, y) == pytest.approx(res.fun, rel=1e-7)


def test_exact_w1_unequal_sizes():
  with pytest.raises(ValueError):
    toy_eval.exact_w1(np.zeros((3, 2)), np.zeros((4, 2)))


def test_exact_w1_real_noise_floor():
  x = toy.toy_eval_samples('gaussians8', seed=0, n=2000, index=0)
  y = toy.toy_eval_samples('gaussians8', seed=0, n=2000, index=1)
  w1 = toy_eval.exact_w1(x, y)
  assert 0.03 < w1 < 0.09


def test_mode_stats_hand_made():
  spec = toy.get_toy('gaussians8')
  stats = toy_eval.mode_stats(spec.centers, centers=spec.centers, std=spec.std)
  assert stats == {'modes_covered': 8, 'high_quality_frac': 1.0, 'per_mode_counts': [1] * 8}
  # Just inside / just outside 3 std of mode 0; a second point at mode 2.
  c = spec.centers
  x = np.array([c[0] + [2.9 * spec.std, 0], c[0] + [0, -3.1 * spec.std], c[2], c[2]])
  stats = toy_eval.mode_stats(x, centers=c, std=spec.std)
  assert stats['modes_covered'] == 2
  assert stats['high_quality_frac'] == 0.75
  assert stats['per_mode_counts'] == [1, 0, 2, 0, 0, 0, 0, 0]
  # Far from every mode: nothing covered.
  far = np.array([[0.0, 0.0], [5.0, 5.0], [0.5, 0.5]])
  stats = toy_eval.mode_stats(far, centers=c, std=spec.std)
  assert stats['modes_covered'] == 0 and stats['high_quality_frac'] == 0.0
  assert stats['per_mode_counts'] == [0] * 8


def test_mode_stats_matches_reference_formula_on_real_data():
  """Same numbers as benchmarks/torch_reference/toy_wgan_gp.py's mode_stats (re-stated here)."""
  spec = toy.get_toy('gaussians8')
  x = toy.toy_eval_samples('gaussians8', seed=0, n=2000, index=0).astype(np.float64)
  x[:100] *= 0.5  # some low-quality samples
  d = np.linalg.norm(x[:, None, :] - spec.centers[None, :, :], axis=-1)
  nearest = d.argmin(1)
  hq = d[np.arange(len(x)), nearest] < 3.0 * (0.02 / 1.414)
  counts = np.bincount(nearest[hq], minlength=8)
  stats = toy_eval.mode_stats(x, centers=spec.centers, std=spec.std)
  assert stats['per_mode_counts'] == counts.tolist()
  assert stats['high_quality_frac'] == hq.mean()
  assert stats['modes_covered'] == 8
  assert 0.9 < stats['high_quality_frac'] < 0.96


def test_evaluate_toy_keys():
  spec = toy.get_toy('gaussians8')
  real = toy.toy_eval_samples('gaussians8', seed=0, n=64, index=0)
  fake = real + 0.1
  out = toy_eval.evaluate_toy(fake, real, spec=spec)
  assert set(out) == {'eval/w1', 'eval/modes_covered', 'eval/high_quality_frac'}
  assert all(isinstance(v, float) for v in out.values())
  assert out['eval/w1'] == pytest.approx(0.1 * math.sqrt(2), rel=1e-6)
  lines = toy.get_toy('parallel_lines')
  real = toy.toy_eval_samples('parallel_lines', seed=0, n=64, index=0)
  out = toy_eval.evaluate_toy(real + np.float32([0.25, 0.0]), real, spec=lines)
  assert set(out) == {'eval/w1'}
  assert out['eval/w1'] == pytest.approx(0.25, rel=1e-6)  # W(P0, P_theta) = |theta|


# ----------------------------------------------------------------------------- plots


def test_toy_grid_layout():
  a = np.array([[0.0, 0.0], [1.0, 2.0]])
  b = np.array([[-1.0, 1.0]])
  xs, ys, grid = plots.toy_grid(a, b, n=5, margin=0.5)
  assert xs.shape == (5,) and ys.shape == (5,) and grid.shape == (25, 2)
  assert xs[0] <= -1.5 and xs[-1] >= 1.5 and ys[0] <= -0.5 and ys[-1] >= 2.5
  assert xs[-1] - xs[0] == pytest.approx(ys[-1] - ys[0])  # square
  values = (10 * grid[:, 0] + grid[:, 1]).reshape(5, 5)  # [len(ys), len(xs)]
  np.testing.assert_allclose(values, 10 * xs[None, :] + ys[:, None], rtol=1e-6)


def test_plot_toy_writes_png(tmp_path):
  real = toy.toy_eval_samples('gaussians8', seed=0, n=200, index=0)
  fake = np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)
  xs, ys, grid = plots.toy_grid(real, fake, n=32)
  values = -np.linalg.norm(grid, axis=1).reshape(32, 32)
  for i, crit in enumerate([(xs, ys, values), None]):
    path = tmp_path / f'toy{i}.png'
    plots.plot_toy(str(path), real=real, fake=fake, critic_grid=crit, title='step 0')
    assert path.stat().st_size > 1000
    with Image.open(path) as im:
      w, h = plots.TOY_FIGSIZE
      assert im.size == (int(w * plots.TOY_DPI), int(h * plots.TOY_DPI))


def test_save_image_grid(tmp_path):
  images = np.zeros((4, 8, 8, 1), np.float32)
  images[0] = -1.0
  images[1] = 1.0
  images[2] = 0.0
  images[3] = 5.0  # clipped to 1
  images[3, 0, 0, 0] = -7.0  # clipped to -1
  path = tmp_path / 'grid.png'
  grid = plots.save_image_grid(str(path), images, ncol=2)
  assert grid.dtype == np.uint8 and grid.shape == (16, 16, 1)
  with Image.open(path) as im:
    assert im.size == (16, 16)
    arr = np.asarray(im)
  np.testing.assert_array_equal(arr, grid[..., 0])
  assert np.all(arr[:8, :8] == 0)
  assert np.all(arr[:8, 8:] == 255)
  assert np.all(arr[8:, :8] == 128)
  assert arr[8, 8] == 0 and np.all(arr[8:, 8:].ravel()[1:] == 255)


def test_save_image_grid_rgb_default_ncol(tmp_path):
  images = np.random.default_rng(0).uniform(-1, 1, size=(5, 4, 6, 3))
  path = tmp_path / 'rgb.png'
  grid = plots.save_image_grid(str(path), images)
  assert grid.shape == (2 * 4, 3 * 6, 3)  # ceil(sqrt(5)) = 3 columns, 2 rows
  with Image.open(path) as im:
    assert im.mode == 'RGB' and im.size == (18, 8)
    np.testing.assert_array_equal(np.asarray(im), grid)
  np.testing.assert_array_equal(grid[:4, 6:12], np.round((images[1] + 1) * 127.5))
  assert np.all(grid[4:, 12:] == 0)  # empty cell
