"""IS, KID, SWD closed forms; reference statistics; evaluation during training and of checkpoints.

Inception runs on random weights written through the converter (tests/inception_testdata.py);
their recorded source checksum is not pytorch-fid's, so the tests trust it by patching
inception.TRUSTED_SOURCE_SHA256_PREFIXES. Every Inception pass here uses batches of 4 images
of 32x32x3 at 299x299: one compilation.
"""
import json
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage
import tensorflow_datasets as tfds

from tests import configs_loader
from tests import inception_testdata as testdata
from wgan_jax import errors, evaluate, train
from wgan_jax.data import images as images_lib
from wgan_jax.eval import fid, image_eval, inception, metrics, reference_stats, sharded, swd
from wgan_jax.metrics_writer import MetricWriter
from wgan_jax.state import PlayerState, TrainState

SHA = 'ab' * 32
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def trust_test_weights(monkeypatch):
  monkeypatch.setattr(inception, 'TRUSTED_SOURCE_SHA256_PREFIXES', (SHA[:8],))


@pytest.fixture(scope='module')
def files(tmp_path_factory):
  """(weights .npz, reference stats .npz of 8 mock cifar10 images)."""
  tmp = tmp_path_factory.mktemp('eval_files')
  weights = testdata.write_weights(str(tmp / 'inception_fid.npz'), source_sha256=SHA)
  stats = str(tmp / 'cifar10_train.npz')
  with pytest.MonkeyPatch.context() as patch, tfds.testing.mock_data(num_examples=8):
    patch.setattr(inception, 'TRUSTED_SOURCE_SHA256_PREFIXES', (SHA[:8],))
    reference_stats.compute_reference_stats(dataset='cifar10', split='train', out=stats,
                                            weights=weights, num_samples=8, batch_size=4,
                                            num_kid_features=8)
  return weights, stats


# ----------------------------------------------------------------------------- Inception Score


def test_inception_score_closed_forms():
  uniform = np.full((50, 1008), 1.0 / 1008)
  chex.assert_trees_all_close(metrics.inception_score(uniform), (1.0, 0.0), atol=1e-12)
  k = 4  # one-hot over k classes, every split balanced (8 = 2 x k per split)
  one_hot = np.eye(1008)[np.arange(80) % k]
  chex.assert_trees_all_close(metrics.inception_score(one_hot, splits=10), (4.0, 0.0),
                              atol=1e-12)
  # One-hot on the same class everywhere: no diversity, IS = 1.
  assert metrics.inception_score(np.eye(10)[np.zeros(20, int)])[0] == pytest.approx(1.0)
  probs = metrics.softmax(np.random.default_rng(0).standard_normal((30, 7)) * 3)
  chex.assert_trees_all_close(probs.sum(1), np.ones(30))
  score, _ = metrics.inception_score(probs, splits=3)
  assert 1.0 < score < 7.0
  with pytest.raises(ValueError):
    metrics.inception_score(uniform[:5])


def _numpy_inception_score(logits, splits):
  """IS as tflib/inception_score.py computes it: softmax, then exp(mean KL) per split."""
  logits = np.asarray(logits, np.float64)
  e = np.exp(logits - logits.max(axis=1, keepdims=True))
  preds = e / e.sum(axis=1, keepdims=True)
  scores = []
  for i in range(splits):
    part = preds[i * len(preds) // splits:(i + 1) * len(preds) // splits]
    kl = part * (np.log(part) - np.log(part.mean(axis=0, keepdims=True)))
    scores.append(np.exp(kl.sum(axis=1).mean()))
  return np.mean(scores), np.std(scores)


def test_inception_logits_are_pool3_at_w_without_bias():
  rng = np.random.default_rng(2)
  pool3, w = rng.standard_normal((30, 16)), rng.standard_normal((16, 7))
  b = rng.standard_normal(7)
  logits = metrics.inception_logits(pool3.astype(np.float32), w.astype(np.float32))
  exact = pool3.astype(np.float32).astype(np.float64) @ w.astype(np.float32).astype(np.float64)
  np.testing.assert_allclose(logits, exact, rtol=1e-12)
  score = metrics.inception_score(metrics.softmax(logits), splits=3)
  chex.assert_trees_all_close(score, _numpy_inception_score(exact, 3), rtol=1e-10)
  biased = _numpy_inception_score(exact + b, 3)
  assert abs(score[0] - biased[0]) > 0.05


def test_device_quantisation_is_numpys_on_every_level_edge():
  """The evaluation's passes quantise on the device by comparisons with sharded.EDGES: the
  same levels as image_eval.quantize's NumPy float32 formula at and beside every edge (a
  fused multiply-add on the device puts some of them one level lower)."""
  k = np.arange(256, dtype=np.float32)
  nominal = (k - np.float32(127.5)) / np.float32(127.5)
  points = np.concatenate([nominal, sharded.EDGES, testdata.random_images(0, (4096,)) * 1.1,
                           np.float32([-np.inf, np.inf, -0.0, 0.0, 5.0, -5.0])])
  x = np.concatenate([points, np.nextafter(points, np.float32(-9)),
                      np.nextafter(points, np.float32(9))])
  levels = np.asarray(jax.jit(sharded.quantize_levels)(x))
  np.testing.assert_array_equal(levels, sharded.quantize_uint8(x))
  np.testing.assert_array_equal(images_lib.to_float(levels), image_eval.quantize(x))
  assert set(np.unique(levels[:256])) == set(range(256))
  # A fused multiply-add rounds 127.5 x + 127.5 once (float64 holds the float32 product and
  # sum exactly): its floors fall one level lower at some edges, hence the comparisons.
  fused = np.clip(x.astype(np.float64) * 127.5 + 127.5, 0, 255).astype(np.float32)
  assert np.any(np.floor(fused) != levels)


def test_image_evaluator_scores_is_without_bias(tmp_path):
  """IS logits are pool3 @ W without the bias (the features of the passes stood in for)."""
  weights = testdata.write_weights(str(tmp_path / 'inception_fid.npz'), source_sha256=SHA)
  config = _image_config(metrics_every_steps=1, metrics='is', is_num_samples=20, batch_size=10,
                         inception_weights=weights)
  evaluator = image_eval.ImageEvaluator(run=train.Run(config, open_data=False),
                                        settings=config.eval, workdir=None)
  assert evaluator.protocol['fake_quantization'].startswith('uint8')
  feats = testdata.random_images(1, (20, inception.FEATURE_DIM)) * 20.0
  evaluator.fakes = lambda state, z, labels, num_images, num_features: sharded.Fakes(
      None, feats[:num_features])
  score = evaluator.scores(None, 1)['eval/is']
  with np.load(weights) as f:
    w, b = f['fc/w'], f['fc/b']
  feats = feats.astype(np.float64)
  assert score == pytest.approx(_numpy_inception_score(feats @ w, 10)[0], rel=1e-9)
  assert score != pytest.approx(_numpy_inception_score(feats @ w + b, 10)[0], rel=1e-6)


def test_evaluation_on_four_devices_equals_one_device_and_host_quantisation(files):
  """FID / IS / KID / SWD with the passes split over 4 devices equal those on one device
  (1e-6), whose images are the host-quantised samples of Run.sample_fn and whose features
  are inception.make_feature_fn's."""
  weights, stats = files
  # The standard CNN and 2 images per device, as tests/test_multihost_eval.py's evaluation
  # in one process: the same compiled pass.
  config = configs_loader.load('sngan', 'cnn,cifar10,smoke', **{
      'eval.metrics_every_steps': 2, 'eval.metrics': 'fid,is,kid,swd',
      'eval.fid_num_samples': 8, 'eval.is_num_samples': 10, 'eval.swd_num_images': 12,
      'eval.batch_size': 2, 'eval.reference_stats': stats, 'eval.inception_weights': weights})
  with tfds.testing.mock_data(num_examples=16):
    run = train.Run(config)
    evaluators = [image_eval.ImageEvaluator(run=run, settings=config.eval, workdir=None,
                                            devices=devices)
                  for devices in (jax.devices(), jax.devices()[:1])]
  state = _generator_state(run)
  assert [e.fakes.batch for e in evaluators] == [8, 2]
  four, one = [e.fakes(state, e.z, None, num_images=12, num_features=10) for e in evaluators]
  host = image_eval.quantize(np.concatenate(
      [run.sample_fn()(state.g_ema_params, state.g.state, evaluators[1].z[i:i + 2])
       for i in range(0, 12, 2)]))
  np.testing.assert_array_equal(images_lib.to_float(one.images), host)
  np.testing.assert_array_equal(four.images, one.images)
  # Batches of 4, as the `files` fixture's: its compiled network.
  features = inception.make_feature_fn(inception.load_params(weights).params, batch_size=4)
  chex.assert_trees_all_close(one.features, features(host[:10])[0], rtol=1e-6, atol=1e-6)
  chex.assert_trees_all_close(four.features, one.features, rtol=1e-6, atol=1e-6)
  scores = [e.scores(state, 2) for e in evaluators]
  assert scores[0]['protocol'] == scores[1]['protocol']
  for key in ('eval/fid', 'eval/is', 'eval/is_std', 'eval/kid', 'eval/kid_std', 'eval/swd'):
    assert scores[0][key] == pytest.approx(scores[1][key], rel=1e-6, abs=1e-9), key


# ----------------------------------------------------------------------------- KID


def test_polynomial_kernel_and_mmd_formula():
  rng = np.random.default_rng(1)
  x, y = rng.standard_normal((5, 3)), rng.standard_normal((6, 3))
  k = metrics.polynomial_kernel(x, y)
  assert k[2, 4] == pytest.approx((x[2] @ y[4] / 3 + 1) ** 3)
  kxx, kyy = metrics.polynomial_kernel(x, x), metrics.polynomial_kernel(y, y)
  expected = ((kxx.sum() - np.trace(kxx)) / 20 + (kyy.sum() - np.trace(kyy)) / 30
              - 2 * k.mean())
  assert metrics.mmd2_unbiased(x, y) == pytest.approx(expected, rel=1e-12)


def test_kid_is_unbiased():
  # E[MMD^2_u] = 0 for two samples of one distribution: the mean over 400 independent pairs
  # is within 4 standard errors of 0, while the biased (V-statistic) estimate is clearly > 0.
  rng = np.random.default_rng(2)
  values, biased = [], []
  for _ in range(400):
    x, y = rng.standard_normal((20, 8)), rng.standard_normal((20, 8))
    values.append(metrics.mmd2_unbiased(x, y))
    biased.append(metrics.polynomial_kernel(x, x).mean() + metrics.polynomial_kernel(y, y).mean()
                  - 2 * metrics.polynomial_kernel(x, y).mean())
  standard_error = np.std(values) / np.sqrt(len(values))
  assert abs(np.mean(values)) < 4 * standard_error
  assert np.mean(biased) > 10 * standard_error


def test_kid_subsets():
  rng = np.random.default_rng(3)
  x = rng.standard_normal((300, 16))
  mean, std, m = metrics.kid(x, x, num_subsets=20, subset_size=100)
  assert m == 100 and abs(mean) < 0.05 and std > 0
  shifted, _, _ = metrics.kid(x + 1.0, x, num_subsets=20, subset_size=100)
  assert shifted > 10 * abs(mean) and shifted > 0.1
  assert metrics.kid(x[:30], x, num_subsets=2, subset_size=1000)[2] == 30  # capped


# ----------------------------------------------------------------------------- SWD


def test_sliced_wasserstein_one_dimensional_closed_forms():
  rng = np.random.default_rng(4)
  a = ((np.arange(1000) + 0.5) / 1000)[:, None].astype(np.float32)  # U[0, 1] quantiles
  # In 1-D every unit direction is +-1: SW = W1 = mean |sort(a) - sort(b)| = the shift.
  assert swd.sliced_wasserstein(a, a + 0.3, rng) == pytest.approx(0.3, rel=1e-5)
  assert swd.sliced_wasserstein(a, a[::-1].copy(), rng) == pytest.approx(0.0, abs=1e-7)
  # N(0, 1) vs N(0, 2^2) quantiles: W1 = |2 - 1| E|Z| = sqrt(2 / pi).
  from scipy import stats  # pylint: disable=import-outside-toplevel
  z = stats.norm.ppf((np.arange(20000) + 0.5) / 20000)[:, None].astype(np.float32)
  assert swd.sliced_wasserstein(z, 2 * z, rng) == pytest.approx(np.sqrt(2 / np.pi), rel=1e-3)


def test_pyramid_matches_scipy_and_reconstructs():
  rng = np.random.default_rng(5)
  images = rng.uniform(-1, 1, (3, 32, 32, 2)).astype(np.float32)
  kernel = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]).astype(np.float32) / 256
  expected = ndimage.convolve(images, kernel[None, :, :, None], mode='mirror')[:, ::2, ::2]
  np.testing.assert_allclose(swd.pyr_down(images), expected, atol=1e-6)
  pyramid = swd.laplacian_pyramid(images, 2)
  chex.assert_shape(pyramid, [(3, 32, 32, 2), (3, 16, 16, 2)])
  np.testing.assert_allclose(swd.pyr_up(pyramid[1]) + pyramid[0], images, atol=1e-5)
  assert swd.resolutions(32) == [32, 16] and swd.resolutions(64) == [64, 32, 16]


def test_swd_identical_sets_and_ordering():
  rng = np.random.default_rng(6)
  real = rng.uniform(-1, 1, (16, 32, 32, 3)).astype(np.float32)
  same = swd.swd(real, real.copy(), nhoods_per_image=16)
  assert set(same) == {'swd_32', 'swd_16', 'swd'} and same['swd'] == 0.0
  smooth = ndimage.uniform_filter(real, size=(1, 5, 5, 1))
  near = swd.swd(real, real + 0.05 * rng.standard_normal(real.shape).astype(np.float32),
                 nhoods_per_image=16)
  far = swd.swd(real, smooth, nhoods_per_image=16)
  assert 0 < near['swd'] < far['swd']


# ----------------------------------------------------------------------------- reference stats


def test_reference_stats_file(files):
  weights, stats = files
  loaded = reference_stats.load(stats)
  chex.assert_shape((loaded.mu, loaded.sigma, loaded.kid_features),
                    [(2048,), (2048, 2048), (8, 2048)])
  p = loaded.protocol
  assert (p['dataset'], p['split'], p['num_samples'], p['weights_sha256'], p['resize'],
          p['num_kid_features']) == ('cifar10', 'train', 8, SHA, inception.RESIZE_METHOD, 8)
  # The same images through the feature function give the stored statistics.
  with tfds.testing.mock_data(num_examples=8):
    n, batches = reference_stats.read_real_images('cifar10', split='train', data_dir=None,
                                                  num_samples=8, batch_size=4)
    images = np.concatenate(list(batches))
  assert n == 8 and images.shape == (8, 32, 32, 3)
  fn = inception.make_feature_fn(inception.load_params(weights).params, batch_size=4)
  features = fn(images)[0]
  chex.assert_trees_all_close(loaded.kid_features, features, rtol=1e-6, atol=1e-6)
  chex.assert_trees_all_close((loaded.mu, loaded.sigma), fid.statistics(features), atol=1e-6)
  chex.assert_trees_all_close(loaded.sqrt_sigma @ loaded.sqrt_sigma, loaded.sigma, atol=1e-8)


def test_reference_stats_without_weights_is_one_line_before_reading_data(tmp_path):
  with pytest.raises(errors.DataError) as info:
    reference_stats.compute_reference_stats(dataset='cifar10', split='train',
                                            out=str(tmp_path / 's.npz'),
                                            weights=str(tmp_path / 'missing.npz'))
  assert 'convert_inception' in str(info.value) and '\n' not in str(info.value)
  assert not os.path.exists(tmp_path / 's.npz')


# ----------------------------------------------------------------------------- config checks


def _image_config(**settings):
  overrides = {f'eval.{k}': v for k, v in settings.items()}
  return configs_loader.load('sngan', 'cifar10,smoke', total_steps=2, n_critic=1, batch_size=4,
                             ema_decay=0.9, **overrides)


def test_missing_files_fail_before_the_workdir_is_written(tmp_path, files):
  weights, stats = files
  workdir = tmp_path / 'run'
  cases = [
      (dict(metrics_every_steps=1, inception_weights=str(tmp_path / 'none.npz'),
            reference_stats=stats), errors.DataError, 'convert_inception'),
      (dict(metrics_every_steps=1, inception_weights='', reference_stats=stats),
       errors.DataError, 'eval.inception_weights'),
      (dict(metrics_every_steps=1, inception_weights=weights, reference_stats=''),
       errors.DataError, 'wgan_jax.eval.reference_stats --dataset=cifar10'),
      (dict(metrics_every_steps=1, fid_num_samples=1, inception_weights=weights,
            reference_stats=stats), errors.ConfigError, 'eval.fid_num_samples must be >= 2'),
      (dict(metrics_every_steps=1, metrics='fid,lpips', inception_weights=weights,
            reference_stats=stats), errors.ConfigError, 'valid: fid, intra_fid, is, kid, swd'),
  ]
  with tfds.testing.mock_data(num_examples=16):
    for settings, error, match in cases:
      with pytest.raises(error, match=match) as info:
        train.train_and_evaluate(_image_config(**settings), str(workdir))
      assert '\n' not in str(info.value)
      assert not workdir.exists()
  with pytest.raises(errors.DataError, match='are of dataset'):
    image_eval.check_files(_image_config(inception_weights=weights, reference_stats=stats).eval,
                           ('fid',), dataset='mnist')
  toy = configs_loader.load('wgan_gp', 'gaussians8,smoke', **{'eval.metrics_every_steps': 1})
  with pytest.raises(errors.ConfigError, match='image data'):
    train.train_and_evaluate(toy, str(workdir))
  # Only SWD: no Inception files needed.
  image_eval.validate(_image_config(metrics_every_steps=1, metrics='swd'), is_toy=False)


# ----------------------------------------------------------------------------- trainer / CLI


def _generator_state(run, seed=0) -> TrainState:
  """A TrainState with random generator weights (NumPy-filled: no RNG compilation), EMA = raw."""
  z = jnp.zeros((4, run.models.z_dim))
  labels = {'labels': jnp.zeros(4, jnp.int32)} if run.num_classes else {}
  shapes = jax.eval_shape(lambda: run.models.g.init(jax.random.PRNGKey(0), z, is_training=True,
                                                    **labels))
  rng = np.random.default_rng(seed)
  params = jax.tree.map(lambda s: jnp.asarray(0.05 * rng.standard_normal(s.shape), s.dtype),
                        shapes[0])
  g_state = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), shapes[1])
  return TrainState(step=jnp.zeros((), jnp.int32), g=PlayerState(params, g_state, None), d=None,
                    g_ema_params=params)


def test_trainer_evaluator_and_evaluate_cli_core_agree(tmp_path, files, monkeypatch, fast_compile):
  weights, stats = files
  config = _image_config(metrics_every_steps=2, metrics='fid,is,kid,swd', fid_num_samples=8,
                         is_num_samples=10, swd_num_images=8, batch_size=4,
                         reference_stats=stats, inception_weights=weights)
  workdir, cli_workdir = tmp_path / 'run', tmp_path / 'cli'
  workdir.mkdir()
  cli_workdir.mkdir()
  with tfds.testing.mock_data(num_examples=16):
    image_eval.validate(config, is_toy=False)
    run = train.Run(config)
    state = _generator_state(run)
    # The trainer's hook: due at every_steps and the last step, a flat record with protocol.
    writer = MetricWriter(str(workdir), total_steps=2)
    grid, metrics = train.make_evaluators(run, str(workdir), images=writer)
    assert [s for s in range(1, 5) if metrics.due(s)] == [2, 4]
    assert [s for s in range(1, 5) if grid.due(s)] == [2, 4]  # a grid with every score
    assert grid(state, 2) == {}
    record = metrics(state, 2)
    writer.start(0)
    writer.write(2, record)  # strings go to TensorBoard as text
    writer.close()
    # wgan_jax.evaluate's core on the same state (a checkpoint of step 2 of the run).
    monkeypatch.setattr(train, 'load_for_inference',
                        lambda workdir, step=None: (train.Run(config, open_data=False), state, 2))
    again = evaluate.evaluate_workdir(str(cli_workdir), metrics='fid,is,kid,swd')
  for key in ('eval/fid', 'eval/is', 'eval/is_std', 'eval/kid', 'eval/kid_std', 'eval/swd',
              'eval/swd_32', 'eval/swd_16'):
    assert np.isfinite(record[key]), key
    assert again[key] == pytest.approx(record[key], rel=1e-9, abs=1e-12), key
  assert record['eval/fid'] > 0 and record['eval/is'] >= 1.0 and record['eval/swd'] > 0
  expected_protocol = {
      'num_fake': 8, 'num_real': 8, 'reference_dataset': 'cifar10', 'reference_split': 'train',
      'weights_sha256': SHA, 'resize': inception.RESIZE_METHOD, 'is_num_samples': 10,
      'is_splits': 10, 'kid_subsets': 100, 'kid_subset_size': 8, 'swd_num_images': 8,
      'generator': 'ema'}
  for key, value in expected_protocol.items():
    assert record[f'eval/protocol/{key}'] == value, key
    assert again['protocol'][key] == value, key
  assert again['protocol']['checkpoint_step'] == 2
  with open(workdir / 'metrics.jsonl') as f:
    (line,) = [json.loads(l) for l in f]
  assert line['step'] == 2 and line['eval/fid'] == record['eval/fid']
  assert line['eval/protocol/reference_split'] == 'train'
  for directory in (workdir, cli_workdir):
    with open(directory / image_eval.SCORES_FILE) as f:
      scores = json.load(f)
    assert list(scores) == ['2'] and scores['2']['eval/fid'] == pytest.approx(record['eval/fid'])
    assert scores['2']['protocol']['weights_sha256'] == SHA
  with open(cli_workdir / 'metrics.jsonl') as f:
    assert json.loads(f.readline())['eval/protocol/checkpoint_step'] == 2
  assert os.listdir(workdir / 'samples') == ['step_0000002.png']


def test_evaluate_cli_error_is_one_line(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'wgan_jax.evaluate', f'--workdir={tmp_path / "nothing"}'],
      capture_output=True, text=True, cwd=ROOT, timeout=120,
      env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert result.returncode == 2, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ') and 'config.json' in lines[0]


# ----------------------------------------------------------------------------- intra-class FID
def test_per_class_reference_statistics():
  """compute(..., num_classes) adds the statistics of each class's subset; too few images of
  a class is a one-line DataError naming the class."""
  rng = np.random.default_rng(0)
  x = rng.standard_normal((12, 2, 2, 3)).astype(np.float32)
  y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 2, 2, 0], np.int32)
  features_fn = lambda images: (images.reshape(len(images), -1)[:, :5],)
  batches = [(x[:5], y[:5]), (x[5:], y[5:])]
  stats = reference_stats.compute(batches, features_fn, num_kid_features=4, num_classes=3)
  feats = x.reshape(12, -1)[:, :5]
  chex.assert_trees_all_close((stats['mu'], stats['sigma']), fid.statistics(feats))
  for c in range(3):
    mu, sigma = fid.statistics(feats[y == c])
    chex.assert_trees_all_close(stats['class_mu'][c], mu)
    chex.assert_trees_all_close(stats['class_sigma'][c], sigma, rtol=1e-6)
  assert stats['class_sigma'].dtype == np.float32
  assert stats['class_counts'].tolist() == [4, 3, 5]
  with pytest.raises(errors.DataError, match='class 2 has 1 among the selected 5') as info:
    reference_stats.compute([(x[:5], y[:5])], features_fn, num_kid_features=4, num_classes=3)
  assert '\n' not in str(info.value)


def _class_reference(tmp_path, weights, num_classes=2) -> str:
  """Reference statistics with per-class entries of random features (two classes: small)."""
  rng = np.random.default_rng(1)
  feats = [np.abs(rng.standard_normal((6, 2048))) for _ in range(num_classes)]
  stats = reference_stats.compute([(f, np.full(6, c, np.int32)) for c, f in enumerate(feats)],
                                  lambda f: (f,), num_kid_features=4, num_classes=num_classes)
  path = str(tmp_path / 'per_class.npz')
  protocol = {'dataset': 'cifar10', 'split': 'train', 'num_samples': 6 * num_classes,
              'weights_sha256': inception.load_params(weights).source_sha256,
              'resize': inception.RESIZE_METHOD, 'num_kid_features': 4, 'per_class': True,
              'num_classes': num_classes}
  reference_stats.save(path, **stats, protocol=protocol)
  return path


def test_intra_fid_of_a_conditional_generator(tmp_path, files, fast_compile):
  """eval/intra_fid = mean over the reference's classes c of the FID between the images the
  generator makes for class c and class c's statistics, recomputed here with the full
  Frechet formula; FID of a conditional generator samples balanced classes."""
  weights, _ = files
  stats = _class_reference(tmp_path, weights)
  config = configs_loader.load(
      'sngan', 'cnn,cifar10,conditional,smoke', total_steps=2, n_critic=1, batch_size=4,
      **{'eval.metrics_every_steps': 2, 'eval.metrics': 'fid,intra_fid',
         'eval.fid_num_samples': 4, 'eval.intra_fid_num_samples': 4, 'eval.batch_size': 1,
         'eval.reference_stats': stats, 'eval.inception_weights': weights})
  with tfds.testing.mock_data(num_examples=16):
    image_eval.validate(config, is_toy=False)
    run = train.Run(config)
  state = _generator_state(run)
  evaluator = image_eval.make_image_evaluator(run, str(tmp_path))
  record = evaluator.scores(state, 2)
  assert evaluator.labels.tolist() == [0, 1, 2, 3]
  reference = reference_stats.load(stats)
  features = inception.make_feature_fn(inception.load_params(weights).params, batch_size=4)
  sample = run.sample_fn()
  per_class = []
  for c in range(2):
    fake = sample(state.g_ema_params, state.g.state, evaluator.z_intra, jnp.full(4, c))
    fake = image_eval.quantize(fake)  # generated images are scored on the uint8 levels
    per_class.append(fid.frechet_distance(*fid.statistics(features(fake)[0]),
                                          reference.class_mu[c], reference.class_sigma[c]))
  assert per_class[0] != pytest.approx(per_class[1], rel=1e-3)  # the classes differ
  assert record['eval/intra_fid'] == pytest.approx(np.mean(per_class), rel=1e-6)
  assert record['eval/intra_fid_max'] == pytest.approx(max(per_class), rel=1e-6)
  protocol = record['protocol']
  assert (protocol['intra_fid_num_classes'], protocol['intra_fid_num_fake_per_class'],
          protocol['intra_fid_num_real_min']) == (2, 4, 6)


def test_intra_fid_errors(tmp_path, files):
  weights, stats = files
  settings = {'eval.metrics_every_steps': 1, 'eval.metrics': 'intra_fid',
              'eval.reference_stats': stats, 'eval.inception_weights': weights}
  unconditional = configs_loader.load('sngan', 'cifar10,smoke', **settings)
  with pytest.raises(errors.ConfigError, match='class-conditional generator'):
    image_eval.validate(unconditional, is_toy=False)
  conditional = configs_loader.load('sngan', 'cifar10,conditional,smoke', **settings)
  with pytest.raises(errors.DataError, match='--per_class') as info:
    image_eval.validate(conditional, is_toy=False)
  assert '\n' not in str(info.value)
