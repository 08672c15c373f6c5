"""The papers' settings as config arguments: WGAN-GP architecture flags, SNGAN settings A-F."""
import jax
import jax.numpy as jnp
import ml_collections
import pytest

from wgan_jax import config_lib, models
from wgan_jax.errors import ConfigError

from tests import configs_loader

FILES = ('wgan', 'wgan_gp', 'sngan')


def _pair(config, data_shape):
  model_config = ml_collections.ConfigDict(config.model.to_dict())
  model_config.d_norm = config_lib.critic_norm(config)
  return models.build_models(model_config, data_shape=data_shape)


def _forward(pair, data_shape, batch=2):
  """Initialises both players and runs G then D once, abstractly (shapes, no compile)."""
  def forward(key):
    z = jnp.zeros((batch, pair.z_dim))
    g_params, g_state = pair.g.init(key, z, is_training=True)
    x, _ = pair.g.apply(g_params, g_state, None, z, is_training=True)
    d_params, d_state = pair.d.init(key, x, update_stats=True)
    scores, _ = pair.d.apply(d_params, d_state, None, x, update_stats=False)
    return x, scores, g_params, d_params

  x, scores, g_params, d_params = jax.eval_shape(forward, jax.random.PRNGKey(0))
  assert x.shape == (batch,) + tuple(data_shape) and scores.shape == (batch,)
  return g_params, d_params


@pytest.mark.parametrize('file', FILES)
def test_arch_flags_set_only_the_model(file):
  base = configs_loader.load(file, 'cnn').to_dict()
  expected = {
      'no_bn_g': {'g_batch_norm': False},
      'nobn_g': {'g_batch_norm': False},
      # no_norm also removes the critic's layer / batch norm (configs/wgan.py's critic has
      # batch norm)
      'no_norm': {'g_batch_norm': False, **({'d_norm': 'none'} if base['model']['d_norm'] in (
          'layer', 'batch') else {})},
      'mlp_g': {'g_name': 'mlp', 'g_mlp_layers': 4, 'mlp_hidden': 512, 'g_batch_norm': False},
      'tanh': {'activation': 'tanh'},
  }
  for flag, model_changes in expected.items():
    config = configs_loader.load(file, f'cnn,{flag}').to_dict()
    assert {k: v for k, v in config.items() if k != 'model'} == \
        {k: v for k, v in base.items() if k != 'model'}, flag
    assert config['model'] == dict(base['model'], **model_changes), flag


def test_existing_arguments_keep_their_configs():
  c = configs_loader.load('wgan_gp', 'gaussians8')
  assert (c.model.name, c.model.mlp_hidden, c.model.g_name, c.model.g_mlp_layers,
          c.model.activation, c.lipschitz.gp_weight) == ('mlp', 512, '', 0, 'relu', 0.1)
  c = configs_loader.load('sngan', 'cnn')
  assert (c.model.name, c.model.g_batch_norm, c.n_critic, c.optim.d.lr) == ('dcgan', True, 1, 2e-4)
  with pytest.raises(ConfigError, match="unknown config argument 'no_bn_d'"):
    configs_loader.load('wgan_gp', 'cnn,no_bn_d')


@pytest.mark.parametrize('setting,recipe', [
    ('A', (1e-4, 0.5, 0.9, 5)), ('B', (1e-4, 0.5, 0.999, 1)), ('C', (2e-4, 0.5, 0.999, 1)),
    ('D', (1e-3, 0.5, 0.9, 5)), ('E', (1e-3, 0.5, 0.999, 5)), ('F', (1e-3, 0.9, 0.999, 5))])
def test_sngan_settings(setting, recipe):
  c = configs_loader.load('sngan', f'cnn,setting={setting}')
  o = c.optim.d
  assert (o.lr, o.b1, o.b2, c.n_critic) == recipe
  assert c.optim.g.to_dict() == o.to_dict()


def test_cnn_with_mlp_generator_and_tanh_build():
  shape = (8, 8, 1)
  g_params, d_params = _forward(_pair(configs_loader.load('wgan_gp', 'cnn,mlp_g,smoke'), shape),
                                shape)
  assert sorted(g_params) == ['dense_0', 'dense_1', 'dense_2', 'dense_3', 'dense_out']
  assert 'conv_0' in d_params  # the standard CNN critic
  _forward(_pair(configs_loader.load('wgan_gp', 'cnn,tanh,no_bn_g,smoke'), shape), shape)
  with pytest.raises(ConfigError, match="activation 'tanh' is only supported by models mlp"):
    _pair(configs_loader.load('wgan_gp', 'resnet,tanh,smoke'), shape)


def test_dcgan_tanh_changes_the_functions():
  shape = (8, 8, 1)
  relu = _pair(configs_loader.load('wgan_gp', 'cnn,smoke'), shape)
  tanh = _pair(configs_loader.load('wgan_gp', 'cnn,tanh,smoke'), shape)
  x = jax.random.normal(jax.random.PRNGKey(3), (2,) + shape)

  def primitives(pair):
    params, state = jax.eval_shape(lambda: pair.d.init(jax.random.PRNGKey(1), x,
                                                       update_stats=True))
    params, state = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (params, state))
    jaxpr = jax.make_jaxpr(lambda p: pair.d.apply(p, state, None, x, update_stats=False))(params)
    return {str(e.primitive) for e in jaxpr.eqns}

  relu_ops, tanh_ops = primitives(relu), primitives(tanh)
  assert 'tanh' in tanh_ops and 'tanh' not in relu_ops


def test_generator_depth_apart_from_the_critic():
  config = configs_loader.load('wgan', 'swissroll,smoke')
  with config.unlocked():
    config.model.update(mlp_layers=6, g_mlp_layers=2)
  g_params, d_params = _forward(_pair(config, (2,)), (2,))
  assert len(g_params) == 3 and len(d_params) == 7  # hidden layers + the output layer
  with config.unlocked():
    config.model.g_mlp_layers = -1
  with pytest.raises(ConfigError, match='g_mlp_layers'):
    _pair(config, (2,))


def test_toy_tanh_config_trains(tmp_path):
  from wgan_jax import train
  config = configs_loader.load('wgan_gp', 'gaussians8,tanh,smoke', total_steps=2,
                               eval_every_steps=2)
  last = train.train_and_evaluate(config, str(tmp_path))
  assert last['step'] == 2 and 'eval/w1' in last


def _recipe(c):
  o = c.optim.d
  assert c.optim.g.to_dict() == o.to_dict()
  return dict(g_ch=c.model.g_ch, d_ch=c.model.d_ch, batch=c.batch_size,
              g_batch=config_lib.g_batch_size(c), n_critic=c.n_critic, steps=c.total_steps,
              pool=c.model.d_pool, bias=c.model.d_out_bias,
              optim=(o.name, o.lr, o.b1, o.b2, o.eps, o.schedule))


@pytest.mark.parametrize('file, arg, expected', [
    # gan_cifar_resnet.py lines 36-46, 172-173, 305-306.
    ('wgan_gp', '', dict(g_ch=128, d_ch=128, batch=64, g_batch=128, n_critic=5, steps=100_000,
                         pool='mean', bias=True, optim=('adam', 2e-4, 0.0, 0.9, 1e-8, 'linear'))),
    # gan_cifar.py lines 27-31, 137-138 (DIM 128: widest layers 4 DIM = 8 x 64).
    ('wgan_gp', 'cnn', dict(g_ch=64, d_ch=64, batch=64, g_batch=64, n_critic=5, steps=200_000,
                            pool='mean', bias=True,
                            optim=('adam', 1e-4, 0.5, 0.9, 1e-8, 'constant'))),
    # sngan_projection configs/sn_cifar10_unconditional.yml, snresnet_32.py lines 17, 29.
    ('sngan', '', dict(g_ch=256, d_ch=128, batch=64, g_batch=128, n_critic=5, steps=50_000,
                       pool='sum', bias=False, optim=('adam', 2e-4, 0.0, 0.9, 1e-8, 'linear'))),
    # chainer-gan-lib example.sh line 8 (setting C), common/net.py line 211 (a bias).
    ('sngan', 'cnn', dict(g_ch=64, d_ch=64, batch=64, g_batch=64, n_critic=1, steps=100_000,
                          pool='sum', bias=True,
                          optim=('adam', 2e-4, 0.5, 0.999, 1e-8, 'constant'))),
    # gan_toy.py MODE 'wgan-gp': BATCH_SIZE 256, CRITIC_ITERS 5, Adam(1e-4, 0.5, 0.9); the
    # linear decay is the quickstart's deviation (constant in gan_toy.py; README Recipes).
    ('wgan_gp', 'gaussians8', dict(g_ch=128, d_ch=128, batch=256, g_batch=256, n_critic=5,
                                   steps=4000, pool='mean', bias=True,
                                   optim=('adam', 1e-4, 0.5, 0.9, 1e-8, 'linear'))),
    # gan_toy.py MODE 'wgan': BATCH_SIZE 256, CRITIC_ITERS 5, RMSPropOptimizer(5e-5).
    ('wgan', 'gaussians8', dict(g_ch=64, d_ch=64, batch=256, g_batch=256, n_critic=5,
                                steps=4000, pool='sum', bias=True,
                                optim=('rmsprop', 5e-5, 0.0, 0.9, 1e-10, 'constant'))),
])
def test_official_recipe_values(file, arg, expected):
  """The values of README.md's Recipes tables (source lines there)."""
  assert _recipe(configs_loader.load(file, arg)) == expected


def test_acgan_weights_default_to_the_official_values():
  """gan_cifar_resnet.py lines 51-52: ACGAN_SCALE 1., ACGAN_SCALE_G 0.1, without `acgan`
  too (e.g. --config.conditional.method=acgan)."""
  c = config_lib.base_config().conditional
  assert (c.acgan_d_weight, c.acgan_g_weight) == (1.0, 0.1)
