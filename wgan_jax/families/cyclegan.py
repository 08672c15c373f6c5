"""The `cyclegan` family: unpaired translation between domains A and B (Zhu et al. 2017;
junyanz/pytorch-CycleGAN-and-pix2pix models/cycle_gan_model.py, util/image_pool.py).

Networks (wgan_jax.models.build_cyclegan): the generator side holds G: A -> B and F: B -> A
(scopes 'G', 'F', merged), the critic side D_A (judges domain A: real a against F(b)) and
D_B (real b against G(a)) in one transform over pairs, scores [b, P_A + P_B]. (The official
code names its maps G_A = G, G_B = F and its critics by the generator they judge: netD_A is
our D_B.)

Critic update: real = (a, b), fake = (pool_A.query(F(b)), pool_B.query(G(a))), where each
pool is the official ImagePool of cyclegan.pool_size (50) generated examples, kept in the
train state's `extra` (checkpointed) and queried example by example in batch order: while it
holds fewer than pool_size examples the new one is stored and returned; afterwards with
probability 1/2 (u > 0.5, u ~ U[0, 1)) a uniformly chosen stored one is returned and replaced
by the new one, else the new one is returned. The draws come from fold_in(key, POOL_STREAM)
of the update's key. Under pmap the fakes of the global batch are gathered first
(all_gather over cfg.axis_name), so every device updates the same pools with the same
draws, and each takes its own rows of the result.

Generator objective (cycle_gan_model.py backward_G):
  adv      = sum over the two critics of loss.g(scores of that critic on its fakes)
             x ADV_SCALE[config.loss]
  cycle    = mean |F(G(a)) - a| + mean |G(F(b)) - b|
  identity = mean |G(b) - b| + mean |F(a) - a|
  loss     = adv + lambda_cyc * cycle + lambda_identity * lambda_cyc * identity
(lambda_A = lambda_B = lambda_cyc = 10, lambda_identity = 0.5; identity 0 turns it off.)

Loss scaling against the official code. Every critic loss of wgan_jax.losses is a mean over
the score entries, so on the concatenated scores of two critics with equally many entries it
is the mean of the two critics' losses; the official code sums them (loss_D_A + loss_D_B,
loss_G_A + loss_G_B). The critic view therefore adds the objective once more (`read`: the
total is the sum of the two critics' losses), and the generator's term sums the critics'.
The official least-squares terms are MSE(D(real), 1) + MSE(D(fake), 0) halved for the critic
(= our least_squares_d_loss per critic) and MSE(D(G(x)), 1) for the generator (= 2 x our
least_squares_g_loss, Mao et al.'s 1/2 (D - 1)^2), so ADV_SCALE['least_squares'] = 2; the
other losses have no official CycleGAN form and keep their own scale (1). Penalties (gp, r1)
see the critic side as one function of the pair (the gradient norm over (x_a, x_b) of the
sum of both critics' scores), not one penalty per critic.

Differences from the official training loop: the step's order is critic then generator
(official: G, then D with the fakes of the G update's forward pass, i.e. both with the
weights before G's update, as here for the critic); the generator update reads the same
real pair as the critic update (n_critic 1).
"""
import math

import jax
import jax.numpy as jnp
import ml_collections

from wgan_jax import config_lib
from wgan_jax import models as models_lib
from wgan_jax.errors import ConfigError
from wgan_jax.families.base import CriticView, Family, Networks, merge
from wgan_jax.parallel import local_slice
from wgan_jax.rng import POOL_STREAM

# config.loss -> the factor of the sum of the critics' loss.g terms that gives the official
# generator loss (least squares: MSE(D, 1) = 2 x 1/2 (D - 1)^2).
ADV_SCALE = {'least_squares': 2.0}


# ----------------------------------------------------------------------------- image pool
def pool_init(pool_size: int, example_shape: tuple) -> dict:
  """An empty ImagePool: {'images': float32 [pool_size, ...] zeros, 'count': int32 []}."""
  return {'images': jnp.zeros((pool_size,) + tuple(example_shape), jnp.float32),
          'count': jnp.zeros((), jnp.int32)}


def pool_query(pool: dict, images: jax.Array, *, key) -> tuple[jax.Array, dict]:
  """The official ImagePool.query of images [n, ...], example by example in order.

  Example i: while count < pool_size it is stored at row count and returned; afterwards, if
  u_i > 0.5 (u ~ U[0, 1) from `key`), stored row r_i ~ U{0..pool_size - 1} is returned and
  replaced by it, else it is returned. pool_size 0: images are returned unchanged.

  Args:
    pool: {'images': [P, ...], 'count': int32 []} (pool_init).
    images: [n, ...] new examples (constants: no gradient flows into the pool).
    key: the query's key (u and r for the n examples).
  Returns:
    (returned [n, ...], the new pool).
  """
  size = pool['images'].shape[0]
  if size == 0:
    return images, pool
  n = images.shape[0]
  u_key, r_key = jax.random.split(key)
  swap = jax.random.uniform(u_key, (n,)) > 0.5
  rows = jax.random.randint(r_key, (n,), 0, size)

  def one(carry, inputs):
    stored, count = carry
    image, s, r = inputs
    filling = count < size
    slot = jnp.where(filling, count, r)
    out = jnp.where(filling | ~s, image, stored[slot])
    stored = stored.at[slot].set(jnp.where(filling | s, image, stored[slot]))
    return (stored, count + filling.astype(jnp.int32)), out

  (stored, count), out = jax.lax.scan(one, (pool['images'], pool['count']),
                                      (images.astype(jnp.float32), swap, rows))
  return out.astype(images.dtype), {'images': stored, 'count': count}


def query_global(pool: dict, images: jax.Array, *, key, axis_name=None) -> tuple:
  """pool_query of the global batch: under pmap (axis_name) the devices' images are
  gathered in device order, queried once with the same draws everywhere, and this device's
  rows returned; else pool_query itself."""
  if axis_name is None:
    return pool_query(pool, images, key=key)
  b = images.shape[0]
  whole = jax.lax.all_gather(images, axis_name, tiled=True)
  out, pool = pool_query(pool, whole, key=key)
  return local_slice(out, axis_name=axis_name, size=b), pool


# ----------------------------------------------------------------------------- objective terms
def l1(x, y) -> jax.Array:
  """mean |x - y| over every entry (nn.L1Loss)."""
  return jnp.mean(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32)))


def split_scores(scores: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The critic side's scores [n, P_A + P_B] (P_A = P_B) -> (D_A's [n, P], D_B's [n, P])."""
  p = scores.shape[1] // 2
  return scores[:, :p], scores[:, p:]


def generator_terms(*, g, f, a, b, identity: bool = True) -> dict:
  """The translations and L1 terms of one generator update.

  Args:
    g, f: x -> G(x), x -> F(x) (training mode).
    a, b: real examples of domains A and B, [n, ...].
    identity: compute the identity term (else it is 0.0).
  Returns:
    {'fake_a': F(b), 'fake_b': G(a), 'cycle': mean |F(G(a)) - a| + mean |G(F(b)) - b|,
     'identity': mean |G(b) - b| + mean |F(a) - a|}.
  """
  fake_b, fake_a = g(a), f(b)
  return {'fake_a': fake_a, 'fake_b': fake_b,
          'cycle': l1(f(fake_b), a) + l1(g(fake_a), b),
          'identity': l1(g(b), b) + l1(f(a), a) if identity else jnp.float32(0.0)}


# ----------------------------------------------------------------------------- the family
def check_config(config) -> None:
  """ConfigError (one line) for a cyclegan config it cannot train (see config_lib too)."""
  s = config.cyclegan
  for key in ('lambda_cyc', 'lambda_identity'):
    if not (math.isfinite(s[key]) and s[key] >= 0):
      raise ConfigError(f'cyclegan.{key} must be >= 0 and finite, got {s[key]}')
  for key in ('pool_size', 'n_blocks'):
    if s[key] < 0:
      raise ConfigError(f'cyclegan.{key} must be >= 0, got {s[key]}')
  if s.d_layers < 1:
    raise ConfigError(f'cyclegan.d_layers must be >= 1, got {s.d_layers}')
  if config.model.g_spectral_norm:
    raise ConfigError('family cyclegan: model.g_spectral_norm is not supported (its maps keep '
                      'no state); set it to false')
  if config.model.name != 'cyclegan':
    raise ConfigError(f'family cyclegan needs model.name=cyclegan (its generators and '
                      f'critics), got {config.model.name!r}')


def build(*, models, loss, cfg, config, bn_axis_name=None) -> Family:
  """The cyclegan Family (module docstring) of a run's config; `models` gives the data
  shape (its networks are rebuilt with the cyclegan block's n_blocks and d_layers)."""
  del bn_axis_name  # instance norm only: nothing is averaged over devices
  check_config(config)
  s = config.cyclegan
  model_config = ml_collections.ConfigDict(config.model.to_dict())
  model_config.d_norm = config_lib.critic_norm(config)
  nets = models_lib.build_cyclegan(model_config, data_shape=models.data_shape,
                                   n_blocks=s.n_blocks, d_layers=s.d_layers)
  g_apply, f_apply = nets.g.apply, nets.e.apply
  adv_scale = ADV_SCALE.get(config.loss, 1.0)
  lambda_cyc, lambda_idt = float(s.lambda_cyc), float(s.lambda_identity)
  shape = tuple(models.data_shape)

  def init(key, *, batch_size: int) -> Networks:
    g_key, f_key, d_key = jax.random.split(key, 3)
    x = jnp.zeros((batch_size,) + shape, jnp.float32)
    g_params, g_state = nets.g.init(g_key, x, is_training=True)
    f_params, f_state = nets.e.init(f_key, x, is_training=True)
    d_params, d_state = nets.d.init(d_key, (x, x), update_stats=True)
    pools = {'a': pool_init(s.pool_size, shape), 'b': pool_init(s.pool_size, shape)}
    return Networks(merge(g_params, f_params), merge(g_state, f_state), d_params, d_state,
                    extra=pools)

  def maps(g_params, g_state):
    g = lambda x: g_apply(g_params, g_state, None, x, is_training=True)[0]
    f = lambda x: f_apply(g_params, g_state, None, x, is_training=True)[0]
    return g, f

  def critic_view(g_params, g_state, real, *, key, z_key, extra):
    del z_key  # no noise: the maps are deterministic
    a, b = real['x'], real['x_b']
    g, f = maps(g_params, g_state)
    fake_a, fake_b = jax.lax.stop_gradient((f(b), g(a)))
    a_key, b_key = jax.random.split(jax.random.fold_in(key, POOL_STREAM))
    fake_a, pool_a = query_global(extra['a'], fake_a, key=a_key, axis_name=cfg.axis_name)
    fake_b, pool_b = query_global(extra['b'], fake_b, key=b_key, axis_name=cfg.axis_name)
    n = a.shape[0]
    # The sum of the two critics' losses (module docstring): the objective once more.
    read = lambda out: (out, loss.d(d_real=out[:n], d_fake=out[n:]), {})
    return CriticView(real=(a, b), fake=(fake_a, fake_b), read=read), {'a': pool_a,
                                                                        'b': pool_b}

  def g_objective(g_params, g_state, real, *, key, critic):
    del key
    g, f = maps(g_params, g_state)
    terms = generator_terms(g=g, f=f, a=real['x'], b=real['x_b'], identity=lambda_idt > 0)
    d_a, d_b = split_scores(critic((terms['fake_a'], terms['fake_b'])))
    adv = adv_scale * (loss.g(d_fake=d_a) + loss.g(d_fake=d_b))
    total = adv + lambda_cyc * terms['cycle'] + lambda_idt * lambda_cyc * terms['identity']
    # No model state changes in G or F (instance norm, no spectral norm).
    return total, g_state, {'cyclegan/g_adv': adv, 'cyclegan/cycle_l1': terms['cycle'],
                                'cyclegan/identity_l1': terms['identity']}

  return Family(name='cyclegan', init=init, critic_view=critic_view, g_objective=g_objective,
                models=models._replace(g=nets.g, e=nets.e, d=nets.d, z_dim=nets.z_dim))
