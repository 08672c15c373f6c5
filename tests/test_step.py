"""The train step: determinism, one compile, spectral-norm state, clipping, EMA; the critic
schedule (warm-up) and the critic's batch norm."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from wgan_jax import families, lipschitz, optim, train
from wgan_jax import step as step_lib
from wgan_jax.errors import ConfigError
from wgan_jax.state import PlayerState, TrainState

from tests import configs_loader


def _run(arg='gaussians8,smoke', file='wgan_gp', **overrides):
  config = configs_loader.load(file, arg, **overrides)
  return train.Run(config)


def _steps(run, n, state=None):
  state = run.init_state() if state is None else state
  step_fn = run.train_step()
  history = []
  for t in range(int(state.step), int(state.step) + n):
    state, metrics = step_fn(state, run.batch(t))
    history.append(jax.device_get(metrics))
  return state, history


def test_step_is_deterministic_and_compiles_once():
  run = _run()
  step_fn = chex.assert_max_traces(run.step_fn(), n=1)
  jitted = jax.jit(step_fn, donate_argnums=0)
  state = run.init_state()
  metrics = []
  for t in range(3):
    state, m = jitted(state, run.batch(t))
    metrics.append(jax.device_get(m))
  assert int(state.step) == 3
  _, again = _steps(_run(), 3)
  chex.assert_trees_all_equal(metrics, again)
  for key in ('d_loss', 'g_loss', 'critic_gap', 'penalty', 'd_grad_norm', 'g_grad_norm'):
    assert key in metrics[0] and np.isfinite(metrics[0][key]), key
  assert metrics[0]['d_loss'] != metrics[1]['d_loss']  # fresh data and noise every step


def test_metrics_have_scalar_float32_values():
  _, history = _steps(_run(), 1)
  for key, value in history[0].items():
    chex.assert_shape(value, ())
    assert value.dtype == np.float32, key


def test_critic_gap_matches_definition():
  run = _run(**{'lipschitz.method': 'none', 'optim.d.lr': 0.0, 'optim.g.lr': 0.0})
  state = jax.device_get(run.init_state())  # a host copy: the step donates its input
  _, history = _steps(run, 1, jax.device_put(state))
  # With lr 0 nothing changes: recompute mean D(real) - mean D(fake) by hand.
  batch = run.batch(0)['x']
  keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(0), 0), run.config.n_critic + 1)
  gaps = []
  for k in range(run.config.n_critic):
    z = jax.random.normal(jax.random.split(keys[k])[0], (run.config.batch_size, 2))
    fake, _ = run.models.g.apply(state.g.params, state.g.state, None, z, is_training=True)
    d = lambda x: run.models.d.apply(state.d.params, state.d.state, None, x,
                                     update_stats=False)[0]
    gaps.append(jnp.mean(d(batch[k])) - jnp.mean(d(fake)))
  np.testing.assert_allclose(history[0]['critic_gap'], np.mean(gaps), rtol=1e-5, atol=1e-7)


def test_clip_keeps_every_critic_weight_in_bounds():
  run = _run(file='wgan', **{'optim.d.lr': 0.5})  # huge steps: clipping must bind
  state, _ = _steps(run, 2)
  leaves = jax.tree.leaves(state.d.params)
  assert max(float(jnp.max(jnp.abs(p))) for p in leaves) == pytest.approx(0.01)


@functools.lru_cache(maxsize=None)
def _sngan_frozen_step():
  """(run, state before, state after, metrics) of one SNGAN step with both lr 0 (shared)."""
  run = _run(file='sngan', **{'optim.d.lr': 0.0, 'optim.g.lr': 0.0})
  state0 = jax.device_get(run.init_state())  # a host copy: the step donates its input
  state1, history = _steps(run, 1, jax.device_put(state0))
  return run, state0, jax.device_get(state1), history


def test_spectral_state_advances_once_per_critic_update():
  run, state0, state1, history = _sngan_frozen_step()
  u0 = state0.d.state
  # lr 0: W is constant, so n_critic updating passes = n_critic power iterations on u.
  n = run.config.n_critic
  for module, leaves in jax.device_get(state1.d.state).items():
    w = jax.device_get(state1.d.params)[module]['w']
    w_mat = w.reshape(-1, w.shape[-1])
    expected = lipschitz.power_iteration(w_mat, u0[module]['u'], n_iters=n)
    np.testing.assert_allclose(leaves['u'], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(leaves['sigma'], np.linalg.norm(w_mat @ expected), rtol=1e-5)
    assert f'sigma/{module}' in history[0]


def test_ema_tracks_generator_weights():
  # decay 0.9, not 0.5: a swap of decay and 1 - decay must show.
  assert float(step_lib.ema_update(jnp.float32(10.0), jnp.float32(0.0), 0.9)) == \
      pytest.approx(9.0)
  run = _run(**{'ema_decay': 0.9})
  state0 = run.init_state()
  g0 = jax.device_get(state0.g.params)
  state1, _ = _steps(run, 1, state0)
  expected = jax.tree.map(lambda e, p: 0.9 * e + 0.1 * p, g0, jax.device_get(state1.g.params))
  chex.assert_trees_all_close(state1.g_ema_params, expected, rtol=1e-6)
  assert _run().init_state().g_ema_params is None


def _step_keys(run, step=0):
  """The keys of generator step `step`: n_critic critic-update keys, then the G key."""
  return jax.random.split(step_lib.step_key(run.config.seed, step), run.config.n_critic + 1)


def test_generator_loss_uses_the_stored_critic_state():
  """lr 0: g_loss is -mean D(G(z)) under the critic's state after the step's critic updates
  (the generator's pass through a spectrally normalised critic must not power-iterate)."""
  run, state0, state1, history = _sngan_frozen_step()
  z = step_lib.sample_z(_step_keys(run)[-1], run.step_config.g_batch_size, run.models.z_dim)
  fake, _ = run.models.g.apply(state0.g.params, state0.g.state, None, z, is_training=True)
  d_fake, _ = run.models.d.apply(state1.d.params, state1.d.state, None, fake,
                                 update_stats=False)
  np.testing.assert_allclose(history[0]['g_loss'], -jnp.mean(d_fake), rtol=1e-5, atol=1e-7)
  # The same with one more power iteration is measurably different (the test can fail).
  d_ahead, _ = run.models.d.apply(state1.d.params, state1.d.state, None, fake,
                                  update_stats=True)
  assert abs(float(jnp.mean(d_ahead) - jnp.mean(d_fake))) > 0.01 * abs(float(jnp.mean(d_fake)))


def test_gradient_penalty_uses_the_critic_state_of_its_update():
  """lr 0, one critic update: the penalty is that of the critic under the state its
  updating pass just wrote (the penalty's passes must not power-iterate again)."""
  run = _run(**{'optim.d.lr': 0.0, 'optim.g.lr': 0.0, 'model.d_norm': 'spectral',
                'n_critic': 1})
  state0 = jax.device_get(run.init_state())
  state1, history = _steps(run, 1, jax.device_put(state0))
  z_key, penalty_key = jax.random.split(_step_keys(run)[0])
  b = run.config.batch_size
  fake, _ = run.models.g.apply(state0.g.params, state0.g.state, None,
                               step_lib.sample_z(z_key, b, run.models.z_dim), is_training=True)
  alpha = jax.random.uniform(penalty_key, (b,), jnp.float32)
  real = run.batch(0)['x'][0]

  def penalty(update_stats):
    d_fn = lambda x: run.models.d.apply(state1.d.params, state1.d.state, None, x,
                                        update_stats=update_stats)[0]
    return lipschitz.gradient_penalty(d_fn, real=real, fake=fake, alpha=alpha)[0]

  np.testing.assert_allclose(history[0]['penalty'], penalty(False), rtol=1e-5, atol=1e-7)
  assert abs(float(penalty(True) - penalty(False))) > 1e-3 * float(penalty(False))


def test_bfloat16_compute_step_keeps_state_and_metrics_float32():
  """model.compute_dtype=bfloat16 (gradient penalty config): the state keeps its float32
  dtypes and structure, metrics (losses, penalty) are float32 and close to the float32
  step's; the optimiser updates float32 parameters."""
  ref_state, ref = _steps(_run(), 2)
  state, bf16 = _steps(_run(**{'model.compute_dtype': 'bfloat16'}), 2)
  chex.assert_trees_all_equal_dtypes(state, ref_state)
  chex.assert_trees_all_equal_shapes(state, ref_state)
  for key in ('d_loss', 'g_loss', 'penalty'):
    for a, b in zip(bf16, ref):
      assert a[key].dtype == np.float32
      np.testing.assert_allclose(a[key], b[key], rtol=0.05, atol=0.01, err_msg=key)
  assert bf16[1]['d_loss'] != ref[1]['d_loss']  # the bf16 option is in effect


# ----------------------------------------------------------------------------- critic schedule
def _official_diters(gen_iterations):
  """WassersteinGAN main.py: Diters = 100 if gen_iterations < 25 or gen_iterations % 500 == 0
  else opt.Diters (5)."""
  return 100 if gen_iterations < 25 or gen_iterations % 500 == 0 else 5


@pytest.mark.parametrize('schedule,diters', [
    (step_lib.CriticSchedule(5, 100, 25, 500), _official_diters),
    (step_lib.CriticSchedule(5), lambda t: 5),                      # warm-up off
    (step_lib.CriticSchedule(2, 7, 0, 4), lambda t: 7 if t % 4 == 0 else 2),
    (step_lib.CriticSchedule(2, 7, 9, 4), lambda t: 7 if t < 9 or t % 4 == 0 else 2),
    (step_lib.CriticSchedule(3, 1, 3, 0), lambda t: 1 if t < 3 else 3),
])
def test_critic_schedule_is_the_official_formula(schedule, diters):
  before = 0
  for t in range(2100):
    assert step_lib.critic_updates_at(t, schedule) == diters(t), t
    assert step_lib.critic_updates_before(t, schedule) == before, t  # closed form = the sum
    before += diters(t)


def test_config_schedule_of_the_wgan_image_recipe():
  config = configs_loader.load('wgan', 'cifar10')
  run = train.Run(config, open_data=False)
  assert run.schedule == step_lib.CriticSchedule(5, 100, 25, 500)
  assert config.model.d_norm == 'batch' and run.models.d_batch_norm
  for arg in ('gaussians8', 'cifar10,resnet', 'cifar10,no_norm'):
    c = configs_loader.load('wgan', arg)
    assert c.model.d_norm != 'batch', arg
  assert configs_loader.load('wgan', 'gaussians8').n_critic_warmup == 0
  assert configs_loader.load('wgan_gp', 'cifar10').n_critic_warmup == 0


def test_critic_learning_rate_decays_to_zero_over_the_warmup_schedule():
  """A linear critic schedule spans every critic update of the run, warm-up ones included:
  5 * 1000 + 95 * (25 + 1) updates for WGAN's (5, 100, 25, 500) over 1000 steps."""
  config = configs_loader.load('wgan', 'cifar10', total_steps=1000,
                               **{'optim.d.schedule': 'linear'})
  assert optim.critic_updates(config) == 5 * 1000 + 95 * 26
  config.n_critic_warmup = 0
  assert optim.critic_updates(config) == 5 * 1000


def test_warmup_step_makes_k_critic_updates():
  # Spectral normalisation with learning rates 0: W is constant, so the u of every critic
  # layer after a step has had one power iteration per critic update of that step.
  run = _run(file='sngan', **{'optim.d.lr': 0.0, 'optim.g.lr': 0.0, 'n_critic_warmup': 7,
                              'n_critic_warmup_steps': 1, 'n_critic_warmup_every': 0})
  assert [step_lib.critic_updates_at(t, run.schedule) for t in range(3)] == [7, 2, 2]
  state0 = run.init_state()
  u0 = jax.device_get(state0.d.state)
  batch = run.batch(0)
  assert batch['x'].shape[:2] == (7, run.config.batch_size)
  state1, _ = run.train_steps()(0)(state0, batch)
  params = jax.device_get(state1.d.params)
  for module, leaves in jax.device_get(state1.d.state).items():
    w = params[module]['w'].reshape(-1, params[module]['w'].shape[-1])
    expected = lipschitz.power_iteration(w, u0[module]['u'], n_iters=7)
    np.testing.assert_allclose(leaves['u'], expected, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match='makes 2 critic updates'):
    run.train_step()(state1, batch)  # the step of K = 2 refuses the 7 batches of step 0


def test_resume_across_warmup_steps_is_bit_exact(tmp_path):
  # K per step: 3, 2, 2, 3 (warm-up at t < 1 and t % 3 == 0). The loop stops after step 2 and
  # resumes; the result equals 4 steps straight through (each K compiled once).
  overrides = {'n_critic_warmup': 3, 'n_critic_warmup_steps': 1, 'n_critic_warmup_every': 3,
               'checkpoint_every_steps': 2, 'eval_every_steps': 4, 'log_every_steps': 1}
  load = lambda total: configs_loader.load('wgan', 'gaussians8,smoke', total_steps=total,
                                           **overrides)
  run = train.Run(load(4))
  assert [step_lib.critic_updates_at(t, run.schedule) for t in range(4)] == [3, 2, 2, 3]
  step_at, state = run.train_steps(), run.init_state()
  for t in range(4):
    state, _ = step_at(t)(state, run.batch(t))
  train.train_and_evaluate(load(2), str(tmp_path))
  train.train_and_evaluate(load(4), str(tmp_path))
  _, resumed, step = train.load_for_inference(str(tmp_path))
  assert step == 4
  chex.assert_trees_all_equal(jax.device_get(state), jax.device_get(resumed))


def test_schedule_data_positions_follow_the_critic_updates():
  # Image data: the real batches of steps 0, 1, ... are consecutive rows of one ordering
  # (no example skipped or read twice within an epoch), whatever K each step has.
  overrides = {'n_critic_warmup': 3, 'n_critic_warmup_steps': 1, 'n_critic_warmup_every': 2,
               'n_critic': 1, 'batch_size': 2}
  with tfds.testing.mock_data(num_examples=32):
    run = train.Run(configs_loader.load('wgan', 'cifar10,smoke', **overrides))
    ks = [step_lib.critic_updates_at(t, run.schedule) for t in range(5)]
    assert ks == [3, 1, 3, 1, 3]
    assert run.source.placement == 'device'  # data.placement auto: a small split
    steps = np.concatenate([run.batch(t)['index'] for t in range(5)])
    rows = run.source.indices(0, shape=(sum(ks), 2))
  np.testing.assert_array_equal(steps, rows)


# ----------------------------------------------------------------------------- critic batch norm
@functools.lru_cache(maxsize=1)
def _bn_pair():
  """A tiny standard CNN pair on 8x8x3 images with the critic's batch norm, and jitted
  init / apply (shared by the tests below: one compilation per shape)."""
  import ml_collections
  from wgan_jax import models as models_lib
  config = ml_collections.ConfigDict(dict(name='dcgan', z_dim=4, d_norm='batch', g_ch=4,
                                          d_ch=4))
  pair = models_lib.build_models(config, data_shape=(8, 8, 3))
  d = jax.jit(pair.d.apply, static_argnames=('update_stats', 'batch_groups'))
  g = jax.jit(functools.partial(pair.g.apply, is_training=True))
  return pair, d, g


def _filled(shapes, seed, scale=0.3):
  """Arrays of the given ShapeDtypeStructs, NumPy-filled (no RNG compilation): floats
  scale * N(0, 1) (model state: |N(0, 1)| + 0.5, valid variances), integers 0."""
  rng = np.random.default_rng(seed)
  fill = lambda s: (np.asarray(scale * rng.standard_normal(s.shape), s.dtype)
                    if jnp.issubdtype(s.dtype, jnp.floating) else np.zeros(s.shape, s.dtype))
  return jax.tree.map(fill, shapes)


def _images(seed, n, shift=0.0):
  return np.random.default_rng(seed).standard_normal((n, 8, 8, 3)).astype(np.float32) + shift


def test_critic_batch_norm_normalises_real_and_fake_separately():
  from wgan_jax import models as models_lib
  import ml_collections
  pair, apply, _ = _bn_pair()
  assert pair.d_batch_norm
  real, fake = _images(0, 4), _images(1, 4, shift=0.5)
  params, state = jax.eval_shape(functools.partial(pair.d.init, update_stats=True),
                                 jax.random.PRNGKey(0), real)
  params, state = _filled(params, 0), jax.tree.map(lambda v: np.abs(v) + 0.5, _filled(state, 1))
  assert set(state['bn_1']) == {'mean', 'var'} and 'bn_0' not in state  # none after conv_0
  d = lambda x, **kw: apply(params, state, None, x, **kw)
  joint, new_state = d(np.concatenate([real, fake]), update_stats=True, batch_groups=2)
  apart = np.concatenate([d(real, update_stats=False)[0], d(fake, update_stats=False)[0]])
  np.testing.assert_allclose(joint, apart, rtol=1e-5, atol=1e-6)
  mixed = d(np.concatenate([real, fake]), update_stats=False)[0]  # one group: other scores
  assert not np.allclose(mixed, apart, rtol=1e-3, atol=1e-4)
  chex.assert_trees_all_equal(d(real, update_stats=False)[1], state)  # only updates advance
  assert not np.allclose(new_state['bn_1']['var'], state['bn_1']['var'])
  with pytest.raises(ConfigError, match="only supported by model dcgan"):
    models_lib.build_models(ml_collections.ConfigDict(dict(name='mlp', d_norm='batch')),
                            data_shape=(2,))


def test_critic_batch_norm_state_advances_only_in_critic_updates():
  # Learning rates 0, no clipping: after one step the critic's moving averages are those of
  # the K updating passes over [real_k; fake_k] (2 groups), and g_loss is -mean D(G(z)) with
  # the batch statistics of the fakes; the generator's pass changes nothing.
  import ml_collections
  import optax
  from wgan_jax import losses
  pair, apply, g_apply = _bn_pair()
  k, b = 2, 4
  cfg = step_lib.StepConfig(n_critic=k, batch_size=b, g_batch_size=b, z_dim=4, seed=3,
                            ema_decay=0.0)
  plan = lipschitz.make_plan(ml_collections.ConfigDict(dict(method='none')))
  family = families.build_gan(models=pair, loss=losses.get_loss('wasserstein'), cfg=cfg)
  step = jax.jit(step_lib.make_train_step(family=family, loss=losses.get_loss('wasserstein'),
                                          plan=plan, g_tx=optax.sgd(0.0), d_tx=optax.sgd(0.0),
                                          cfg=cfg))
  state = jax.eval_shape(lambda key: step_lib.init_state(
      family=family, g_tx=optax.sgd(0.0), d_tx=optax.sgd(0.0), key=key, batch_size=b,
      ema=False), jax.random.PRNGKey(0))
  state = state._replace(
      step=np.zeros((), np.int32),
      g=PlayerState(_filled(state.g.params, 2), jax.tree.map(np.abs, _filled(state.g.state, 4, 1.0)),
                    _filled(state.g.opt_state, 6)),
      d=PlayerState(_filled(state.d.params, 3), jax.tree.map(np.abs, _filled(state.d.state, 5, 1.0)),
                    _filled(state.d.opt_state, 7)))
  real = np.stack([_images(10 + i, b) for i in range(k)])
  new_state, metrics = step(state, {'x': real})
  keys = jax.random.split(step_lib.step_key(cfg.seed, 0), k + 1)
  g = lambda z: g_apply(state.g.params, state.g.state, None, z)[0]
  d_state = state.d.state
  for i in range(k):
    fake = g(step_lib.sample_z(jax.random.split(keys[i])[0], b, 4))
    _, d_state = apply(state.d.params, d_state, None, jnp.concatenate([real[i], fake]),
                       update_stats=True, batch_groups=2)
  assert not np.allclose(d_state['bn_1']['mean'], state.d.state['bn_1']['mean'])
  chex.assert_trees_all_close(new_state.d.state, d_state, rtol=1e-5, atol=1e-6)
  scores, _ = apply(state.d.params, d_state, None, g(step_lib.sample_z(keys[-1], b, 4)),
                    update_stats=False)
  np.testing.assert_allclose(metrics['g_loss'], -np.mean(scores), rtol=1e-5, atol=1e-6)


def test_critic_batch_norm_under_pmap_uses_the_global_batch_statistics():
  # Two devices with [real_i; fake_i] each (batch_groups=2) score as one device with
  # [real; fake]: the group statistics are averaged over the devices.
  import ml_collections
  from wgan_jax import models as models_lib
  pair, apply, _ = _bn_pair()
  config = ml_collections.ConfigDict(dict(name='dcgan', z_dim=4, d_norm='batch', g_ch=4,
                                          d_ch=4))
  mapped = models_lib.build_models(config, data_shape=(8, 8, 3), bn_axis_name='data')
  real, fake = _images(20, 4), _images(21, 4, shift=0.5)
  params, state = jax.eval_shape(functools.partial(pair.d.init, update_stats=True),
                                 jax.random.PRNGKey(0), real)
  params, state = _filled(params, 0), jax.tree.map(lambda v: np.abs(v) + 0.5, _filled(state, 1))
  single, _ = apply(params, state, None, np.concatenate([real, fake]), update_stats=False,
                    batch_groups=2)
  local = np.stack([np.concatenate([real[2 * i:2 * i + 2], fake[2 * i:2 * i + 2]])
                    for i in range(2)])
  replicate = lambda tree: jax.tree.map(lambda v: np.stack([v, v]), tree)
  scores, _ = jax.pmap(functools.partial(mapped.d.apply, update_stats=False, batch_groups=2),
                       axis_name='data', devices=jax.devices()[:2])(
                           replicate(params), replicate(state), None, local)
  np.testing.assert_allclose(np.concatenate([scores[0, :2], scores[1, :2]]), single[:4],
                             rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.concatenate([scores[0, 2:], scores[1, 2:]]), single[4:],
                             rtol=1e-4, atol=1e-5)
