"""One jitted train step per generator update: n_critic critic updates, then one G update.

Shape glossary:
  K      critic updates of this generator update: n_critic (or the schedule's warm-up K)
  B      critic batch (real and fake examples per critic update)
  Bg     generator batch (fake examples in the generator update)
  Z      z_dim
  batch  {'x': [K, B, ...]}: K fresh real batches, one per critic update (float32, or uint8
         images scaled on the device), or {'index': int32 [K, B], 'table': uint8
         [N, H, W, C]} gathered on the device (`real_images`; wgan_jax.data.source);
         class-conditional runs also {'label': int32 [K, B]}
  C      number of classes (conditional runs)

Randomness (wgan_jax.rng): the key of step t is fold_in(PRNGKey(seed), t), split into one key per critic
update (noise z and interpolation weights) and one for the generator update. A resumed run
therefore draws exactly the numbers of an uninterrupted one.

Critic schedule (`CriticSchedule`): K may depend on the step, as in the official WGAN code
(WassersteinGAN main.py: Diters = 100 if gen_iterations < 25 or gen_iterations % 500 == 0
else 5). The step is built once per K (`make_train_step` with cfg.n_critic = K: one code
path, one compilation per distinct K); the trainer picks the one of step t with
`critic_updates_at(t)`, and the real batches of step t start at critic update
`critic_updates_before(t)` of the run, so the data too is a function of t alone.

Critic batch norm (models.d_batch_norm): the critic update's one pass over [real; fake] is
made with batch_groups=2, so the real and the fake half are each normalised with their own
batch statistics, as the official critic that sees them in two calls; that pass alone
advances the critic's state (spectral-norm vectors, batch-norm moving averages), and the
penalty's and the generator's passes normalise with the statistics of their own batch.

Data parallelism (wgan_jax.parallel): under pmap (cfg.axis_name set) every device holds
b = B / num_shards examples; noise and interpolation weights are still drawn for the
global batch and sliced, and gradients and metrics are averaged over the devices, so the
step computes the same numbers whatever the device count.

Families (wgan_jax.families, config.family): what the critic sees as real and as fake in
each critic update (a CriticView), and the generator side's objective, are the family's;
this step runs them all: the critic updates train the critic side on the family's views
with the configured loss and Lipschitz method, then one update trains the generator side
(G, with BiGAN's / the auto-encoders' encoder or CycleGAN's inverse map) on the family's
objective. Families without a critic (vae, wae_mmd) make no critic update (n_critic 1: one
real batch per step, read by the generator side). Which labels each network takes in
class-conditional runs is decided in wgan_jax.families.gan.

BigGAN's extras (Brock et al. 2019): cfg.ortho_reg > 0 adds ortho_reg *
losses.ortho_penalty(g_params) to the generator's objective (metric ortho_penalty); the EMA
of G's weights copies them (decay 0) until update cfg.ema_start (`ema_decay_at`).
"""
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from wgan_jax import lipschitz, losses
from wgan_jax.data.source import LEVELS
from wgan_jax.families.base import sample_labels, sample_z  # pylint: disable=unused-import
from wgan_jax.rng import FLIP_STREAM, step_key
from wgan_jax.losses import GanLoss
from wgan_jax.parallel import local_slice, mean_over_devices
from wgan_jax.state import PlayerState, TrainState

Metrics = dict[str, jax.Array]


class StepConfig(NamedTuple):
  """The static, hashable settings of the train step."""
  n_critic: int
  batch_size: int
  g_batch_size: int
  z_dim: int
  seed: int
  ema_decay: float
  num_shards: int = 1              # slices of the global batch this step sees one of:
                                   # the device count under pmap, 1 for single and jit
                                   # (jit's step is written for the global batch)
  axis_name: Optional[str] = None  # the pmap axis, else None
  critic_unroll: int = 1           # lax.scan unroll of the critic updates
  acgan_d_weight: float = 1.0      # critic's auxiliary-classifier loss weight (acgan head)
  acgan_g_weight: float = 1.0      # generator's auxiliary-classifier loss weight (acgan head)
  random_flip: bool = False        # flip each real image horizontally with probability 1/2
  ortho_reg: float = 0.0           # beta of G's orthogonal regularisation (0: off)
  ema_start: int = 0               # generator updates before which the EMA copies the weights
  critic_penalised: bool = False   # the Lipschitz method is a penalty (gp, r1)


class CriticSchedule(NamedTuple):
  """Critic updates per generator step: `warmup` at steps t < warmup_steps and at every
  t % warmup_every == 0 (warmup_every 0: never), else n_critic; warmup 0 disables the
  warm-up (config keys n_critic, n_critic_warmup, n_critic_warmup_steps,
  n_critic_warmup_every). The official WGAN schedule is CriticSchedule(5, 100, 25, 500)."""
  n_critic: int
  warmup: int = 0
  warmup_steps: int = 0
  warmup_every: int = 0


def _multiples_below(n: int, every: int) -> int:
  """#{t in [0, n) : t % every == 0} for n >= 0, every >= 1."""
  return (n + every - 1) // every


def warmup_steps_before(step: int, s: CriticSchedule) -> int:
  """The number of warm-up steps among 0 .. step - 1."""
  if not s.warmup:
    return 0
  head = min(step, s.warmup_steps)
  if not s.warmup_every or step <= s.warmup_steps:
    return head
  return head + (_multiples_below(step, s.warmup_every)
                 - _multiples_below(s.warmup_steps, s.warmup_every))


def critic_updates_at(step: int, s: CriticSchedule) -> int:
  """K of generator step `step` (0-based: the official gen_iterations before the step)."""
  warm = s.warmup and (step < s.warmup_steps or (s.warmup_every and step % s.warmup_every == 0))
  return s.warmup if warm else s.n_critic


def critic_updates_before(step: int, s: CriticSchedule) -> int:
  """The critic updates of steps 0 .. step - 1 (closed form): the data position of step."""
  warm = warmup_steps_before(step, s)
  return (step - warm) * s.n_critic + warm * s.warmup


def _sigma_metrics(d_state) -> Metrics:
  """'sigma/<layer>' for every spectrally normalised critic layer."""
  return {f'sigma/{module}': leaves['sigma'] for module, leaves in d_state.items()
          if 'sigma' in leaves}


def all_finite(tree) -> jax.Array:
  """1.0 when no floating leaf of `tree` holds a NaN or an infinity, else 0.0 (float32 [])."""
  flags = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
           if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
  return jnp.all(jnp.stack(flags)).astype(jnp.float32) if flags else jnp.float32(1.0)


def ema_update(ema, params, decay):
  """ema <- decay * ema + (1 - decay) * params."""
  return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)


def ema_decay_at(step: jax.Array, *, decay: float, start: int) -> jax.Array:
  """The EMA decay of generator update `step` (0-based): 0 (the EMA copies the weights)
  while step + 1 < start, else `decay` (BigGAN-PyTorch utils.ema.update(itr) with itr =
  step + 1, the updates done: `if itr < start_itr: decay = 0`)."""
  return jnp.where(step + 1 < start, 0.0, decay).astype(jnp.float32)


class CriticCarry(NamedTuple):
  """What a critic update changes: the critic side, and the family's `extra`."""
  d: PlayerState
  extra: Any = None


def _concat(a, b):
  """[a; b] leaf by leaf along the batch axis."""
  return jax.tree.map(lambda u, v: jnp.concatenate([u, v]), a, b)


def _batch_size(tree) -> int:
  return jax.tree.leaves(tree)[0].shape[0]


def make_critic_update(*, d_apply, loss: GanLoss, plan: lipschitz.LipschitzPlan,
                       d_tx: optax.GradientTransformation, axis_name: Optional[str] = None,
                       num_shards: int = 1, batch_norm: bool = False):
  """One critic update on a family's CriticView (the generator side is not involved).

  Returns critic_update(player: PlayerState, view: families.CriticView, *, key) ->
  (player, metrics): the critic loss (objective + weight * penalty, plus the view's extra
  term) is differentiated, the optimizer applied, and the weights projected when the method
  is `clip`. Real and fake go through the critic in one forward pass, the only pass that
  advances the critic's state (spectral-norm vectors, batch-norm moving averages); the
  penalty's forward passes use that new state without changing it. A critic with batch
  norm (batch_norm=True) normalises the real and the fake half of that pass each with its
  own statistics (batch_groups=2). `key` draws the interpolation weights of the gradient
  penalty (for the global batch, of which this device takes its slice under pmap); inputs
  that are pairs (BiGAN's (x, z)) are interpolated leaf by leaf with one weight per example
  and the gradient norm is taken over the whole pair. With axis_name set, gradients and
  metrics are device means.
  """
  groups = {'batch_groups': 2} if batch_norm else {}  # real and fake: own statistics

  def critic_update(player: PlayerState, view, *, key):
    real, fake = view.real, view.fake
    B = _batch_size(real)
    dtype = jax.tree.leaves(real)[0].dtype
    alpha = local_slice(jax.random.uniform(key, (B * num_shards,), dtype),
                        axis_name=axis_name, size=B)

    def d_loss_fn(d_params):
      out, new_d_state = d_apply(d_params, player.state, None, _concat(real, fake),
                                 update_stats=True, **(view.kwargs or {}), **groups)
      scores, extra_term, extra_metrics = (out, None, {}) if view.read is None else view.read(out)
      d_real, d_fake = scores[:B], scores[B:]
      objective = loss.d(d_real=d_real, d_fake=d_fake)
      aux = {'critic_gap': jnp.mean(d_real) - jnp.mean(d_fake),
             'd_real': jnp.mean(d_real), 'd_fake': jnp.mean(d_fake), 'd_objective': objective}
      total = objective
      if extra_term is not None:
        total = total + extra_term
        aux.update(extra_metrics)
      if plan.penalty is not None:
        d_fn = lambda x: d_apply(d_params, new_d_state, None, x, update_stats=False,
                                 **(view.penalty_kwargs or {}))[0]
        penalty, norms = plan.penalty(d_fn, real=real, fake=fake, alpha=alpha)
        total = total + plan.weight * penalty
        aux.update(penalty=penalty, penalty_grad_norm=jnp.mean(norms))
      return total, (new_d_state, aux)

    (d_loss, (d_state, aux)), grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
        player.params)
    grads = mean_over_devices(grads, axis_name)
    updates, d_opt_state = d_tx.update(grads, player.opt_state, player.params)
    d_params = optax.apply_updates(player.params, updates)
    if plan.clip_value is not None:
      d_params = lipschitz.clip_weights(d_params, clip_value=plan.clip_value)
    metrics = mean_over_devices(dict(aux, d_loss=d_loss), axis_name)
    metrics['d_grad_norm'] = optax.tree.norm(grads)
    return PlayerState(d_params, d_state, d_opt_state), metrics

  return critic_update


def real_images(batch: dict) -> jax.Array:
  """The real examples [K, B, ...] of a batch, float32 (images in [-1, 1]).

  batch['x'] float32 (2-D data) is returned as it is; uint8 images (data.placement host or
  stream), or the rows batch['index'] int32 [K, B] of the uint8 table batch['table']
  [N, H, W, C] (placement device), are scaled v / 127.5 - 1 on the device by the lookup
  table wgan_jax.data.source.LEVELS: the same bits as `to_float` on the host.
  """
  x = jnp.take(batch['table'], batch['index'], axis=0) if 'index' in batch else batch['x']
  if x.dtype != jnp.uint8:
    return x
  return jnp.asarray(LEVELS)[x]


def flip_images(images: jax.Array, flips: jax.Array) -> jax.Array:
  """images [b, H, W, C] with the rows where flips [b] is True mirrored left-right."""
  return jnp.where(flips[:, None, None, None], images[:, :, ::-1], images)


def real_examples(batch: dict) -> dict:
  """The real examples of a batch as the families read them: {'x': [K, B, ...] float32,
  'label': int32 [K, B] (conditional runs)}; two-domain batches also 'x_b' (domain B, from
  'x_b' or 'index_b' / 'table_b' as real_images reads domain A)."""
  real = {'x': real_images(batch)}
  if 'label' in batch:
    real['label'] = batch['label']
  if 'x_b' in batch or 'index_b' in batch:
    real['x_b'] = real_images({k[:-2]: v for k, v in batch.items() if k.endswith('_b')})
  return real


def make_train_step(*, family, loss: GanLoss, plan: lipschitz.LipschitzPlan,
                    g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation,
                    cfg: StepConfig) -> Callable[[TrainState, dict], tuple[TrainState, Metrics]]:
  """Builds the pure train step `(state, batch) -> (state, metrics)` (jit it outside).

  Args:
    family: a wgan_jax.families.Family (what the critic sees, the generator side's
      objective).
    loss: the objective, a wgan_jax.losses.GanLoss.
    plan: the Lipschitz method, a wgan_jax.lipschitz.LipschitzPlan.
    g_tx, d_tx: the players' optax optimizers.
    cfg: StepConfig.
  Returns:
    train_step(state, batch) -> (new state, metrics): metrics are scalars; the critic's
    are means over the n_critic updates; `all_finite` is 1.0 when the metrics and the new
    state hold no NaN or infinity, else 0.0.
  """
  has_critic = family.critic_view is not None
  critic_update = make_critic_update(d_apply=family.d_apply, loss=loss, plan=plan, d_tx=d_tx,
                                     axis_name=cfg.axis_name, num_shards=cfg.num_shards,
                                     batch_norm=family.d_batch_norm) if has_critic else None

  def critic_scan_body(state: TrainState, carry: CriticCarry, inputs):
    real, key = inputs
    z_key, penalty_key = jax.random.split(key)
    if cfg.random_flip:  # data.random_flip: a coin per example of the global batch
      flips = jax.random.bernoulli(jax.random.fold_in(key, FLIP_STREAM), 0.5, (cfg.batch_size,))
      real = dict(real, x=flip_images(real['x'], local_slice(
          flips, axis_name=cfg.axis_name, size=cfg.batch_size // cfg.num_shards)))
    view, extra = family.critic_view(state.g.params, state.g.state, real, key=key,
                                     z_key=z_key, extra=carry.extra)
    d, metrics = critic_update(carry.d, view, key=penalty_key)
    return CriticCarry(d, extra), metrics

  def generator_update(state: TrainState, real, key):
    critic = None
    if has_critic:
      critic = lambda x, **kwargs: family.d_apply(state.d.params, state.d.state, None, x,
                                                  update_stats=False, **kwargs)[0]

    def g_loss_fn(g_params):
      objective, new_g_state, aux = family.g_objective(g_params, state.g.state, real, key=key,
                                                       critic=critic)
      if cfg.ortho_reg:  # BigGAN's orthogonal regularisation of G's weights
        aux = dict(aux, ortho_penalty=losses.ortho_penalty(g_params))
      reg = cfg.ortho_reg * aux['ortho_penalty'] if cfg.ortho_reg else 0.0
      return objective + reg, (new_g_state, aux)

    (g_loss, (g_state, aux)), grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
        state.g.params)
    grads = mean_over_devices(grads, cfg.axis_name)
    g_loss, aux = mean_over_devices((g_loss, aux), cfg.axis_name)
    updates, g_opt_state = g_tx.update(grads, state.g.opt_state, state.g.params)
    g_params = optax.apply_updates(state.g.params, updates)
    metrics = {'g_loss': g_loss, 'g_grad_norm': optax.tree.norm(grads), **aux}
    return PlayerState(g_params, g_state, g_opt_state), metrics

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, Metrics]:
    real = real_examples(batch)
    if real['x'].shape[0] != cfg.n_critic:
      raise ValueError(f"this train step makes {cfg.n_critic} critic updates; the batch has "
                       f"{real['x'].shape[0]} real batches")
    keys = jax.random.split(step_key(cfg.seed, state.step), cfg.n_critic + 1)
    metrics = {}
    if has_critic:
      carry, d_metrics = jax.lax.scan(
          lambda carry, xs: critic_scan_body(state, carry, xs),
          CriticCarry(state.d, state.extra), (real, keys[:-1]), unroll=cfg.critic_unroll)
      state = state._replace(d=carry.d, extra=carry.extra)
      metrics = {k: jnp.mean(v) for k, v in d_metrics.items()}
    g, g_metrics = generator_update(state, jax.tree.map(lambda x: x[-1], real), keys[-1])
    g_ema_params = state.g_ema_params
    if g_ema_params is not None:
      decay = cfg.ema_decay if not cfg.ema_start else ema_decay_at(
          state.step, decay=cfg.ema_decay, start=cfg.ema_start)
      g_ema_params = ema_update(g_ema_params, g.params, decay)
    new_state = state._replace(step=state.step + 1, g=g, g_ema_params=g_ema_params)
    metrics.update(g_metrics)
    if has_critic:
      metrics.update(_sigma_metrics(state.d.state))
    # Divergence check, fetched with the logged metrics (no extra host sync): losses,
    # gradient norms and every parameter / optimizer / model-state leaf of the new state.
    metrics['all_finite'] = all_finite((metrics, new_state))
    return new_state, metrics

  return train_step


def init_state(*, family, g_tx, d_tx, key, batch_size: int, ema: bool) -> TrainState:
  """Initialises both players (pure; jit it, or eval_shape it for an abstract state)."""
  nets = family.init(key, batch_size=batch_size)
  d = None
  if nets.d_params is not None:
    d = PlayerState(nets.d_params, nets.d_state, d_tx.init(nets.d_params))
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      g=PlayerState(nets.g_params, nets.g_state, g_tx.init(nets.g_params)), d=d,
      g_ema_params=jax.tree.map(jnp.copy, nets.g_params) if ema else None, extra=nets.extra)
