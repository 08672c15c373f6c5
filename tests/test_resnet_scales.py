"""The ResNets by resolution (models/resnet.py SCHEDULES) and the large-scale SNGAN configs:
parameter counts against the official code, shapes, bf16, the lr decay start, smoke runs."""
import os

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from wgan_jax import config_lib, optim, train
from wgan_jax.errors import ConfigError
from wgan_jax.models import build_models, resnet
from tests import configs_loader
from tests.test_models import conv_params, model_config

KEY = jax.random.PRNGKey(0)


# ----------------------------------------------------------------------------- the table
def test_schedules_reach_their_resolution():
  for side, s in resnet.SCHEDULES.items():
    assert s.bottom_width * 2 ** (len(s.g_mults) - 1) == side, side
    assert 1 <= s.d_down <= len(s.d_mults) and side % 2 ** s.d_down == 0, side
    assert resnet.schedule_for((side, side, 3))[0] == s


def test_unsupported_resolution_is_one_line_naming_the_valid_ones():
  with pytest.raises(ConfigError) as info:
    build_models(model_config(name='resnet'), data_shape=(96, 96, 3))
  message = str(info.value)
  assert '\n' not in message and '96x96' in message
  assert '32x32, 48x48, 64x64, 128x128, 256x256' in message
  with pytest.raises(ConfigError, match='no schedule for 48x64'):
    build_models(model_config(name='resnet'), data_shape=(48, 64, 3))


# ----------------------------------------------------------------------------- param counts
# Layer by layer from sngan_projection (weights + biases; chainer's BatchNormalization: gamma
# and beta; CategoricalConditionalBatchNormalization: gammas and betas EmbedID(n_cat, size);
# running statistics and SN vectors u are persistent, not parameters).
def _bn(c, classes=0):
  return 2 * c * (classes or 1)


def official_g(widths, bottom, classes=0, dim_z=128):
  """gen_models/resnet*.py: l1 = Linear(dim_z, bottom**2 * widths[0]); block2.. =
  Block(in, out, upsample=True, n_classes) of gen_models/resblocks.py (b1, c1, b2, c2, c_sc;
  hidden = out); then the plain BatchNormalization(ch) and Convolution2D(ch, 3, 3)."""
  n = dim_z * bottom ** 2 * widths[0] + bottom ** 2 * widths[0]
  for c_in, c_out in zip(widths, widths[1:]):
    n += (_bn(c_in, classes) + conv_params(3, c_in, c_out) + _bn(c_out, classes)
          + conv_params(3, c_out, c_out) + conv_params(1, c_in, c_out))
  return n + _bn(widths[-1]) + conv_params(3, widths[-1], 3)


def official_d(widths, n_down, classes=0):
  """dis_models/snresnet*.py: block1 = OptimizedBlock(3, ch) (c1, c2, c_sc), then Block(in,
  out, downsample) of dis_models/resblocks.py (c1 in->in, c2 in->out, c_sc when in != out
  or downsample), SNLinear(ch * 16, 1) with a bias, SNEmbedID(n_classes, ch * 16)."""
  n = conv_params(3, 3, widths[0]) + conv_params(3, widths[0], widths[0]) \
      + conv_params(1, 3, widths[0])
  for i, (c_in, c_out) in enumerate(zip(widths, widths[1:]), start=1):
    n += conv_params(3, c_in, c_in) + conv_params(3, c_in, c_out)
    if c_in != c_out or i < n_down:
      n += conv_params(1, c_in, c_out)
  return n + widths[-1] + 1 + classes * widths[-1]


OFFICIAL = {
    # SNGAN's STL-10 table (Miyato et al. 2018, Table 6; no official code): G dense
    # 6x6x512, up 256, 128, 64; D 64, 128, 256, 512 down, 1024; unconditional.
    48: (official_g([512, 256, 128, 64], 6), official_d([64, 128, 256, 512, 1024], 4)),
    # gen_models/resnet_64.py, dis_models/snresnet_64.py; configs/sn_projection_64.yml
    # (ch 64, n_classes 1000).
    64: (official_g([1024, 512, 256, 128, 64], 4, 1000),
         official_d([64, 128, 256, 512, 1024], 5, 1000)),
    # gen_models/resnet.py, dis_models/snresnet.py; configs/sn_projection.yml (ch 64,
    # n_classes 1000).
    128: (official_g([1024, 1024, 512, 256, 128, 64], 4, 1000),
          official_d([64, 128, 256, 512, 1024, 1024], 5, 1000)),
    # gen_models/resnet_256.py, dis_models/snresnet_256.py;
    # configs/sn_projection_dog_and_cat_256.yml (ch 32, n_classes 143).
    256: (official_g([512, 512, 256, 256, 128, 64, 32], 4, 143),
          official_d([32, 64, 128, 256, 256, 512, 512], 6, 143)),
}


def abstract_counts(models, side):
  """(G, D) parameter counts by jax.eval_shape of the inits (no arrays)."""
  cond = lambda y: {'labels': y} if models.num_classes else {}
  labels = jax.ShapeDtypeStruct((2,), jnp.int32)
  g_params, _ = jax.eval_shape(
      lambda k, z, y: models.g.init(k, z, is_training=True, **cond(y)),
      KEY, jax.ShapeDtypeStruct((2, models.z_dim), jnp.float32), labels)
  d_params, _ = jax.eval_shape(
      lambda k, x, y: models.d.init(k, x, update_stats=True, **cond(y)),
      KEY, jax.ShapeDtypeStruct((2, side, side, 3), jnp.float32), labels)
  return hk.data_structures.tree_size(g_params), hk.data_structures.tree_size(d_params)


def _config_models(arg, side, num_classes=0):
  c = configs_loader.load('sngan', arg)
  model = c.model.to_dict()
  model['d_norm'] = config_lib.critic_norm(c)
  return build_models(model_config(**model), data_shape=(side, side, 3),
                      num_classes=num_classes, critic_head='projection')


@pytest.mark.parametrize('side, source, expected', [
    (48, 'sngan:stl10', (4_878_083, 10_141_441)),
    (64, dict(ch=64, classes=1000), (17_974_915, 11_165_441)),
    (128, 'sngan:imagenet128,conditional', (41_996_931, 30_041_857)),
    (256, dict(ch=32, classes=143), (10_662_659, 8_576_129)),
])
def test_parameter_counts_match_the_official_code(side, source, expected):
  assert OFFICIAL[side] == expected   # the layer-by-layer count and the hand sum agree
  if isinstance(source, str):
    models = _config_models(source.split(':')[1], side, 1000 if side == 128 else 0)
  else:
    models = build_models(model_config(name='resnet', z_dim=128, g_ch=source['ch'],
                                       d_ch=source['ch'], d_norm='spectral'),
                          data_shape=(side, side, 3), num_classes=source['classes'],
                          critic_head='projection')
  assert abstract_counts(models, side) == expected


# ----------------------------------------------------------------------------- shapes, bf16
def test_output_shapes_by_resolution_at_tiny_width():
  """Every resolution's G -> D forward in bfloat16, abstractly (conditional, projection
  head): float32 samples and scores. (The float32 pairs are traced by the parameter counts;
  bf16 arithmetic in these blocks runs in test_models.py's bfloat16 test.)"""
  for side in resnet.SCHEDULES:
    models = build_models(model_config(name='resnet', z_dim=8, g_ch=2, d_ch=2,
                                       d_norm='spectral', compute_dtype='bfloat16'),
                          data_shape=(side, side, 3), num_classes=3, critic_head='projection')

    def forward(key, models=models):
      z, y = jnp.zeros((2, 8)), jnp.array([0, 2])
      g_vars = models.g.init(key, z, labels=y, is_training=True)
      x, _ = models.g.apply(*g_vars, None, z, labels=y, is_training=True)
      d_vars = models.d.init(key, x, labels=y, update_stats=True)
      return x, models.d.apply(*d_vars, None, x, labels=y, update_stats=True)[0]

    x, scores = jax.eval_shape(forward, KEY)
    assert x.shape == (2, side, side, 3) and x.dtype == jnp.float32, side
    assert scores.shape == (2,) and scores.dtype == jnp.float32, side


# ----------------------------------------------------------------------------- lr decay start
def test_decay_start_holds_the_rate_then_decays_both_players_at_the_same_step():
  c = configs_loader.load('sngan', 'imagenet128,conditional', total_steps=10,
                          **{'optim.g.decay_start_step': 6, 'optim.d.decay_start_step': 6})
  g_tx, d_tx = optim.make_optimizers(c)

  def rates(tx, n):
    params = {'w': jnp.zeros(())}
    state = tx.init(params)
    out = []
    for _ in range(n):   # Adam's first update of a unit gradient is -lr (b1 = 0).
      updates, state = tx.update({'w': jnp.ones(())}, state, params)
      out.append(-float(updates['w']))
    return np.array(out)

  lr = c.optim.g.lr
  np.testing.assert_allclose(rates(g_tx, 10), lr * np.array([1] * 7 + [3, 2, 1]) / np.array(
      [1] * 7 + [4, 4, 4]), rtol=1e-5)
  d = rates(d_tx, 50)   # n_dis 5: the critic's decay starts at its update 30
  np.testing.assert_allclose(d[:31], lr, rtol=1e-5)
  np.testing.assert_allclose(d[31:], lr * (50 - np.arange(31, 50)) / 20, rtol=1e-5)
  assert optax.linear_schedule(lr, 0.0, 10)(0) == lr
  with pytest.raises(ConfigError, match='optim.d.decay_start_step must be in'):
    config_lib.validate(configs_loader.load('sngan', '', **{'optim.d.decay_start_step': -1}))


def test_large_configs_follow_the_papers():
  stl = configs_loader.load('sngan', 'stl10')
  assert (stl.data.name, stl.data.split, stl.model.name, stl.model.g_ch, stl.model.d_ch,
          stl.batch_size, config_lib.g_batch_size(stl), stl.n_critic, stl.total_steps,
          stl.model.d_pool, stl.model.d_out_bias) == \
      ('stl10', 'unlabelled', 'resnet', 64, 64, 64, 128, 5, 100_000, 'sum', True)
  assert configs_loader.load('sngan', 'stl10,conditional').data.split == 'train'
  net = configs_loader.load('sngan', 'imagenet128,conditional')
  assert (net.data.name, net.data.image_size, net.conditional.method,
          net.conditional.num_classes, net.batch_size, config_lib.g_batch_size(net),
          net.n_critic, net.total_steps) == \
      ('tfds:imagenet2012', 128, 'projection', 1000, 64, 128, 5, 450_000)
  for c in (stl, net):
    for o in (c.optim.g, c.optim.d):
      assert (o.name, o.lr, o.b1, o.b2, o.schedule, c.loss, c.lipschitz.method) == \
          ('adam', 2e-4, 0.0, 0.9, 'linear', 'hinge', 'spectral')
  assert net.optim.g.decay_start_step == net.optim.d.decay_start_step == 400_000
  # Every file's ResNet on the larger named datasets takes the schedules' base width 64.
  for file, arg in (('wgan_gp', 'celeb_a'), ('wgan', 'resnet,stl10'), ('sngan', 'celeb_a')):
    c = configs_loader.load(file, arg)
    assert (c.model.g_ch, c.model.d_ch) == (64, 64), (file, arg)
  assert configs_loader.load('sngan', 'cifar10').model.g_ch == 256
  with pytest.raises(ConfigError, match='imagenet128 sets the data'):
    configs_loader.load('sngan', 'imagenet128,cifar10')


# ----------------------------------------------------------------------------- smoke runs
def _smoke(config, workdir) -> dict:
  last = train.train_and_evaluate(config, str(workdir))
  assert last['step'] == 2 and np.isfinite(last['d_loss']) and np.isfinite(last['g_loss'])
  assert os.listdir(workdir / 'samples') == ['step_0000002.png']
  return last


def test_stl10_smoke_trains_on_the_unlabelled_split(tmp_path, fast_compile):
  config = configs_loader.load('sngan', 'stl10,smoke', total_steps=2, n_critic=1,
                               batch_size=2)
  assert config.model.g_ch == config.model.d_ch == 4
  with tfds.testing.mock_data(num_examples=4):
    _smoke(config, tmp_path)


def test_imagenet128_conditional_smoke_trains_on_class_folders(tmp_path, fast_compile):
  """Two class folders of odd-sized images, centre-cropped and resized to 128: the
  conditional ResNet end to end (conditional BN in G, the spectrally normalised projection
  critic, labels from the folders)."""
  rng = np.random.default_rng(0)
  for label in ('n01440764', 'n01443537'):
    os.makedirs(tmp_path / 'train' / label)
    for i, size in enumerate(((40, 30), (24, 24))):
      Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(
          tmp_path / 'train' / label / f'{i}.png')
  config = configs_loader.load('sngan', 'imagenet128,conditional,smoke', total_steps=2,
                               n_critic=1, batch_size=2,
                               **{'data.name': f'folder:{tmp_path / "train"}'})
  assert 'sigma/class_embed' in _smoke(config, tmp_path / 'run')
