"""The paper-reproduction experiments (wgan_jax.experiments), shortened to tiny runs."""
import json
import math
import os

import numpy as np
import pytest
from absl import flags

from wgan_jax.errors import ConfigError
from wgan_jax.experiments import (clipping_gradients, common, lines_theory, lipschitz_check,
                                  parallel_lines, toy_suite)

LOG2 = math.log(2.0)


# ----------------------------------------------------------------------------- theory
def test_gp_optimum_closed_form():
  # s* = 1 + |theta| / (2 lambda); estimate s* |theta|; value |theta| + theta^2 / (4 lambda).
  assert lines_theory.gp_optimal_slope(1.0, 10.0) == pytest.approx(1.05)
  assert lines_theory.gp_optimum(1.0, 10.0) == pytest.approx(1.05)
  assert lines_theory.gp_optimum(-2.0, 10.0) == pytest.approx(2.2)
  assert lines_theory.gp_optimum(0.0, 10.0) == 0.0
  assert lines_theory.gp_optimum(2.0, 0.1) == pytest.approx(2.0 + 4.0 / 0.2)
  # It maximises s |theta| - lambda (s - 1)^2 over the slope s.
  for theta, lam in ((0.25, 10.0), (1.5, 1.0), (-2.0, 0.5)):
    s = np.linspace(0.5, 5.0, 200001)
    objective = s * abs(theta) - lam * (s - 1.0) ** 2
    assert s[np.argmax(objective)] == pytest.approx(lines_theory.gp_optimal_slope(theta, lam),
                                                    abs=1e-4)
    assert objective.max() == pytest.approx(lines_theory.gp_optimum_value(theta, lam), abs=1e-8)
  assert lines_theory.js(0.5) == LOG2 and lines_theory.js(0.0) == 0.0
  assert lines_theory.w1(-0.5) == 0.5


def test_interpolate_mass_is_a_distribution():
  mass = lines_theory.interpolate_cell_mass(8, 8)
  assert mass.shape == (8, 8) and (mass >= 0).all()
  assert mass.sum() == pytest.approx(1.0, abs=1e-9)
  np.testing.assert_allclose(mass.sum(axis=1), 1.0 / 8, atol=1e-9)  # t uniform on the strip
  # Heights near the middle of the strip concentrate around y = 1/2 (trapezoid / triangle).
  assert mass[4, 0] < mass[4, 4]


def test_gp_optimum_2d_is_at_least_the_closed_form():
  # Critics of x and y can only do better than critics of x alone, by under 2% here.
  r = lines_theory.gp_optimum_2d(2.0, 10.0, grid=8)
  assert r['closed_form'] == pytest.approx(2.2)
  assert 1.0 <= r['ratio'] < 1.02
  assert r['value'] >= lines_theory.gp_optimum_value(2.0, 10.0) - 1e-9
  assert lines_theory.gp_optimum_2d(0.0, 10.0)['estimate'] == 0.0


# ----------------------------------------------------------------------------- parallel lines
def _lines(method, **kw):
  defaults = dict(thetas=(-1.0, 0.0, 0.5, 1.0), steps=100, hidden=16, layers=2,
                  batch_size=64, eval_samples=4096)
  defaults.update(kw)
  return parallel_lines.run(parallel_lines.Settings(method=method, **defaults))


def test_parallel_lines_spectral_estimates_grow_with_abs_theta(tmp_path):
  result = _lines('spectral', thetas=(0.25, 0.5, 1.0, 2.0, -2.0), lr=1e-2)
  for key in ('method', 'thetas', 'estimates', 'expected', 'relative_errors',
              'max_relative_error', 'steps', 'wall_time_s'):
    assert key in result, key
  est = result['estimates']
  assert est[0] < est[1] < est[2] < est[3]
  assert est[4] > est[1]  # |theta| matters, not its sign
  # A 1-Lipschitz critic never estimates more than W1 = |theta| (up to sampling noise).
  assert all(e <= abs(t) * 1.02 + 0.01 for e, t in zip(est, result['thetas']))
  paths = parallel_lines.write_outputs(result, str(tmp_path))
  with open(paths['json']) as f:
    assert json.load(f)['method'] == 'spectral'
  assert os.path.getsize(paths['figure']) > 0


def test_parallel_lines_js_estimates_are_in_zero_log2(tmp_path):
  result = _lines('js', lr=1e-2)
  nonzero = [e for e, t in zip(result['estimates'], result['thetas']) if t != 0]
  assert all(0.0 <= e <= LOG2 + 1e-6 for e in nonzero)
  assert min(nonzero) > 0.5  # well on the way to log 2 after 100 updates
  assert result['expected'] == [LOG2, 0.0, LOG2, LOG2]
  assert 'max_absolute_error' in result
  # The combined figure picks up every method's JSON in the directory.
  parallel_lines.write_outputs(result, str(tmp_path))
  gp = parallel_lines.summarise(
      parallel_lines.Settings(method='gp', thetas=(-1.0, 0.0, 0.5, 1.0), gp_weight=5.0),
      [1.1, 0.0, 0.5, 1.21])
  assert gp['expected'] == pytest.approx([1.1, 0.0, 0.525, 1.1]) and gp['gp_weight'] == 5.0
  assert gp['max_relative_error'] == pytest.approx(0.1) and gp['check']['passed'] is False
  assert result['check']['tolerance'] == 0.05
  parallel_lines.write_outputs(gp, str(tmp_path))
  assert sorted(parallel_lines.load_results(str(tmp_path))) == ['gp', 'js']


def test_parallel_lines_clip_estimates_grow_within_the_clipping_box():
  # Proportionality needs the full run (README); a short one stays inside the box's bound.
  clip = _lines('clip', thetas=(0.5, 1.0, 2.0), lr=1e-3)
  assert clip['clip_slope'] > 0
  assert clip['clip_slope'] <= clip['clip_slope_bound'] * 1.001
  assert clip['clip_slope_bound'] == pytest.approx(16 ** 2 * 0.01 ** 3)
  assert clip['activation'] == 'tanh'
  assert all(0 <= e <= clip['clip_slope_bound'] * abs(t) * 1.01
             for e, t in zip(clip['estimates'], clip['thetas']))
  assert 0 < clip['estimates'][0] < clip['estimates'][1] < clip['estimates'][2]


def test_parallel_lines_rejects_bad_settings():
  with pytest.raises(ConfigError, match='method'):
    parallel_lines.run(parallel_lines.Settings(method='wgan'))
  with pytest.raises(ConfigError, match='--steps'):
    _lines('gp', steps=-1)
  with pytest.raises(ConfigError, match='--activation'):
    _lines('gp', activation='sigmoid')
  with pytest.raises(ConfigError, match='--thetas'):
    common.parse_floats('1,x', 'thetas')
  assert common.parse_names('all', ('a', 'b'), 'method') == ('a', 'b')
  with pytest.raises(ConfigError, match='valid: a, b'):
    common.parse_names('a,c', ('a', 'b'), 'method')


def test_sample_lines_are_the_two_lines():
  import jax
  real, fake = parallel_lines.sample_lines(jax.random.PRNGKey(0), 0.75, 1000)
  real, fake = np.asarray(real), np.asarray(fake)
  assert (real[:, 0] == 0).all() and np.allclose(fake[:, 0], 0.75)
  for pts in (real, fake):
    assert pts[:, 1].min() >= 0 and pts[:, 1].max() <= 1 and 0.4 < pts[:, 1].mean() < 0.6


# ----------------------------------------------------------------------------- toy suite
def test_toy_suite_table_and_figures(tmp_path):
  settings = toy_suite.Settings(methods=('nsgan',), datasets=('gaussians8',),
                                steps=3, hidden=16, eval_samples=64)
  result = toy_suite.run(settings, str(tmp_path))
  assert [r['method'] for r in result['rows']] == ['nsgan']
  for r in result['rows']:
    for key in ('w1', 'modes_covered', 'high_quality_frac', 'wall_time_s', 'steps_per_s'):
      assert r[key] is not None, key
    assert 0 < r['w1'] < 10 and 0 <= r['modes_covered'] <= 8 and r['num_modes'] == 8
    assert os.path.exists(tmp_path / r['figure'])
  paths = toy_suite.write_outputs(result, str(tmp_path))
  with open(paths['markdown']) as f:
    table = f.read()
  assert '| NS-GAN | gaussians8 |' in table
  assert os.path.getsize(paths['figure']) > 0
  # The non-saturating GAN is the wgan_gp toy recipe with the GAN loss and no penalty.
  c = toy_suite.pair_config('nsgan', 'swissroll', settings)
  assert (c.loss, c.lipschitz.method, c.n_critic, c.model.mlp_hidden) == \
      ('non_saturating', 'none', 1, 16)


# ----------------------------------------------------------------------------- clipping
def test_clipping_gradients_records_per_layer_norms(tmp_path):
  # Depth 6: at depth 4 both boxes pass about as much gradient back (ratios near 1 either
  # way), at 6 the 0.001 box's gradients vanish in the first layers.
  settings = clipping_gradients.Settings(clip_values=(0.1, 0.001), depth=6, hidden=32, steps=4,
                                         log_every=2, measure_batch=32, gp=False)
  assert [v[0] for v in clipping_gradients.variants(settings._replace(gp=True))] == \
      ['clip 0.1', 'clip 0.001', 'gradient penalty']
  result = clipping_gradients.run(settings)
  assert [v['name'] for v in result['variants']] == ['clip 0.1', 'clip 0.001']
  for v in result['variants']:
    assert v['layers'] == [f'dense_{i}' for i in range(6)] + ['dense_out']
    assert v['steps'] == [2, 4]
    assert np.asarray(v['weight_grad_norms']).shape == (2, 7)
    for mean, zero in zip(v['mean_log10_weight_grad_norm'], v['zero_fraction']):
      assert (mean is None and zero == 1.0) or (np.isfinite(mean) and 0 <= zero < 1)
  means = clipping_gradients.mean_log10_norms(np.array([[0.0, 10.0], [0.0, 1000.0]]))
  assert means == ([None, 2.0], [1.0, 0.0])
  by_name = {v['name']: v for v in result['variants']}
  # Larger clipping boxes pass gradients back more strongly (explode vs vanish).
  assert by_name['clip 0.1']['input_to_output_ratio'] > \
      by_name['clip 0.001']['input_to_output_ratio']
  paths = clipping_gradients.write_outputs(result, str(tmp_path))
  assert os.path.getsize(paths['figure']) > 0
  assert set(clipping_gradients.summary(result)['variants'][0]) >= {'name',
                                                                    'input_to_output_ratio'}


# ----------------------------------------------------------------------------- lipschitz
def test_lipschitz_bound_is_above_the_empirical_constants(tmp_path):
  # A trained SNGAN critic (the spectrally normalised effective weights) end to end.
  settings = lipschitz_check.Settings(methods=('sngan',), steps=3, hidden=16, points=256,
                                      pairs=5000)
  result = lipschitz_check.run(settings)
  (row,) = result['rows']
  assert row['method'] == 'sngan' and result['all_bounds_hold']
  assert row['bound'] >= row['max_grad_norm'] > 0 and row['bound'] >= row['max_pair_ratio'] > 0
  assert row['bound_holds'] and 0 < row['tightness'] <= 1
  # Every effective layer has sigma ~ 1 (the power-iteration estimate).
  assert all(0.9 < s < 1.2 for s in row['layer_sigmas'].values())
  paths = lipschitz_check.write_outputs(result, str(tmp_path))
  assert os.path.getsize(paths['figure']) > 0


@pytest.mark.parametrize('clip', [None, 0.05])
def test_lipschitz_bound_of_raw_weights(clip):
  # Unconstrained and clipped critics (the path of WGAN, WGAN-GP and NS-GAN), untrained.
  import jax
  from wgan_jax import lipschitz
  critic = common.toy_critic(hidden=32, layers=3)
  x = np.random.default_rng(0).uniform(-2, 2, (512, 2)).astype(np.float32)
  params, state = critic.init(jax.random.PRNGKey(0), x, update_stats=True)
  if clip:
    params = lipschitz.clip_weights(params, clip_value=clip)
  f = lambda z: critic.apply(params, state, None, z, update_stats=False)[0]
  emp = lipschitz_check.empirical_lipschitz(f, x, pairs=2000, seed=0)
  bound = float(lipschitz.spectral_norm_bound(
      lipschitz_check.effective_weights(params, state, spectral=False))[0])
  assert bound >= emp['max_grad_norm'] > 0 and bound >= emp['max_pair_ratio'] > 0
  assert emp['max_near_pair_ratio'] == pytest.approx(emp['max_grad_norm'], rel=0.05)


# ----------------------------------------------------------------------------- outputs
def test_json_output_is_one_line_and_strict(capsys):
  line = common.emit({'a': float('nan'), 'b': (1.0, np.float32(0.5)), 'c': np.arange(2)})
  out = capsys.readouterr().out
  assert out == line + '\n' and '\n' not in line
  assert json.loads(line) == {'a': None, 'b': [1.0, 0.5], 'c': [0, 1]}


@pytest.mark.parametrize('module, kwargs', [
    (clipping_gradients, dict(empty_ok=('clip_values',))),
    (lipschitz_check, dict(names={'methods': toy_suite.METHODS})),
    (toy_suite, dict(names={'methods': toy_suite.METHODS, 'datasets': toy_suite.DATASETS})),
    (parallel_lines, dict(method='spectral')),
])
def test_flags_come_from_settings(module, kwargs):
  fv = flags.FlagValues()
  common.define_flags(module.Settings(), module.FLAG_HELP, out_dir='runs/x', flag_values=fv)
  fv(['prog'])
  assert common.settings_from_flags(module.Settings, module.FLAG_HELP, flag_values=fv,
                                    **kwargs) == module.Settings()
  assert fv.out_dir == 'runs/x'


def test_flags_parse_lists():
  fv = flags.FlagValues()
  common.define_flags(clipping_gradients.Settings(), clipping_gradients.FLAG_HELP,
                      out_dir='runs/x', flag_values=fv)
  fv(['prog', '--clip_values=', '--depth=3', '--nogp'])
  settings = common.settings_from_flags(clipping_gradients.Settings,
                                        clipping_gradients.FLAG_HELP, flag_values=fv,
                                        empty_ok=('clip_values',))
  assert (settings.clip_values, settings.depth, settings.gp) == ((), 3, False)
  fv = flags.FlagValues()
  common.define_flags(toy_suite.Settings(), toy_suite.FLAG_HELP, out_dir='runs/x',
                      flag_values=fv)
  fv(['prog', '--methods=wgan,nope'])
  with pytest.raises(ConfigError, match='nope'):
    common.settings_from_flags(toy_suite.Settings, toy_suite.FLAG_HELP, flag_values=fv,
                               names={'methods': toy_suite.METHODS})
