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

Class-conditional runs (models.num_classes > 0): real labels come from the batch, fake
labels are drawn uniformly per example (for the global batch, sliced like z) from
fold_in(key, LABEL_STREAM), so unconditional runs draw exactly the numbers they drew before.
A projection critic trained with a penalty (gp, r1) is an exception in its critic updates:
their fakes are generated with the real labels of the same update, so that the penalty's
interpolate a * real_i + (1 - a) * fake_i joins two examples of class y_i, the class it is
scored as (Gulrajani et al. 2017, gan_cifar_resnet.py: the critic's fakes are
Generator(labels_splits[i]), the real labels, and the interpolates are scored with them;
Mescheder et al. 2018 train the conditional R1 critic the same way). The generator update
and every other conditional run keep uniformly drawn labels (sngan_projection's updater
draws them for both players) and draw exactly the numbers they drew before.
With critic head 'acgan' the critic adds acgan_d_weight * CE(classifier(real), real labels)
(AC-WGAN-GP, Gulrajani et al. 2017, gan_cifar_resnet.py: real examples only) and the
generator acgan_g_weight * CE(classifier(fake), sampled labels); the gradient penalty sees
only the adversarial scores.

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
from wgan_jax.rng import FLIP_STREAM, LABEL_STREAM, step_key
from wgan_jax.losses import GanLoss
from wgan_jax.parallel import local_slice, mean_over_devices
from wgan_jax.state import GanState

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


def sample_z(key, n: int, z_dim: int) -> jax.Array:
  """Generator noise z ~ N(0, I), [n, Z]."""
  return jax.random.normal(key, (n, z_dim), jnp.float32)


def sample_labels(key, n: int, num_classes: int) -> jax.Array:
  """Fake-example classes y ~ U{0, ..., C - 1}, int32 [n]."""
  return jax.random.randint(key, (n,), 0, num_classes, jnp.int32)


def class_cross_entropy(logits, labels) -> jax.Array:
  """Mean softmax cross-entropy of logits [n, C] against int labels [n]."""
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


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
  """What a critic update changes: parameters, model state, optimizer state."""
  d_params: Any
  d_state: Any
  d_opt_state: Any


def make_critic_update(*, d_apply, loss: GanLoss, plan: lipschitz.LipschitzPlan,
                       d_tx: optax.GradientTransformation, axis_name: Optional[str] = None,
                       num_shards: int = 1, critic_head: str = 'none',
                       acgan_weight: float = 1.0, batch_norm: bool = False):
  """One critic update on given real and fake batches (the generator is not involved).

  Returns critic_update(carry: CriticCarry, *, real, fake, key) -> (carry, metrics): the
  critic loss (objective + weight * penalty) is differentiated, the optimizer applied, and
  the weights projected when the method is `clip`. Real and fake go through the critic in
  one forward pass, the only pass that advances the critic's state (spectral-norm vectors,
  batch-norm moving averages); the penalty's forward passes use that new state without
  changing it. A critic with batch norm (batch_norm=True) normalises the real and the fake
  half of that pass each with its own statistics (batch_groups=2). `key` draws the interpolation
  weights of the gradient penalty (for the global batch, of which this device takes its
  slice under pmap). With axis_name set, gradients and metrics are device means.

  Class-conditional critics take real_labels and fake_labels (int [B]): a 'projection'
  critic scores each example with its class (the penalty's interpolates with the real
  labels, which the train step also gives the fakes when penalised); an 'acgan' critic adds
  acgan_weight * CE on the real examples (metrics acgan/d_ce, acgan/real_acc).
  """
  labelled = critic_head == 'projection'
  groups = {'batch_groups': 2} if batch_norm else {}  # real and fake: own statistics

  def critic_update(carry: CriticCarry, *, real, fake, key, real_labels=None,
                    fake_labels=None):
    B = real.shape[0]
    alpha = local_slice(jax.random.uniform(key, (B * num_shards,), real.dtype),
                        axis_name=axis_name, size=B)
    cond = {'labels': jnp.concatenate([real_labels, fake_labels])} if labelled else {}
    if critic_head == 'acgan':
      cond = {'with_logits': True}

    def d_loss_fn(d_params):
      out, new_d_state = d_apply(d_params, carry.d_state, None,
                                 jnp.concatenate([real, fake]), update_stats=True, **cond,
                                 **groups)
      scores, logits = out if critic_head == 'acgan' else (out, None)
      d_real, d_fake = scores[:B], scores[B:]
      objective = loss.d(d_real=d_real, d_fake=d_fake)
      aux = {'critic_gap': jnp.mean(d_real) - jnp.mean(d_fake),
             'd_real': jnp.mean(d_real), 'd_fake': jnp.mean(d_fake), 'd_objective': objective}
      total = objective
      if logits is not None:
        d_ce = class_cross_entropy(logits[:B], real_labels)
        total = total + acgan_weight * d_ce
        aux.update({'acgan/d_ce': d_ce, 'acgan/real_acc': jnp.mean(
            (jnp.argmax(logits[:B], axis=-1) == real_labels).astype(jnp.float32))})
      if plan.penalty is not None:
        gp_cond = {'labels': real_labels} if labelled else {}
        d_fn = lambda x: d_apply(d_params, new_d_state, None, x, update_stats=False,
                                 **gp_cond)[0]
        penalty, norms = plan.penalty(d_fn, real=real, fake=fake, alpha=alpha)
        total = total + plan.weight * penalty
        aux.update(penalty=penalty, penalty_grad_norm=jnp.mean(norms))
      return total, (new_d_state, aux)

    (d_loss, (d_state, aux)), grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
        carry.d_params)
    grads = mean_over_devices(grads, axis_name)
    updates, d_opt_state = d_tx.update(grads, carry.d_opt_state, carry.d_params)
    d_params = optax.apply_updates(carry.d_params, updates)
    if plan.clip_value is not None:
      d_params = lipschitz.clip_weights(d_params, clip_value=plan.clip_value)
    metrics = mean_over_devices(dict(aux, d_loss=d_loss), axis_name)
    metrics['d_grad_norm'] = optax.tree.norm(grads)
    return CriticCarry(d_params, d_state, d_opt_state), metrics

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


def make_train_step(*, models, loss: GanLoss, plan: lipschitz.LipschitzPlan,
                    g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation,
                    cfg: StepConfig) -> Callable[[GanState, dict], tuple[GanState, Metrics]]:
  """Builds the pure train step `(state, batch) -> (state, metrics)` (jit it outside).

  Args:
    models: a wgan_jax.models.ModelPair (g, d haiku transforms with state, z_dim).
    loss: the objective, a wgan_jax.losses.GanLoss.
    plan: the Lipschitz method, a wgan_jax.lipschitz.LipschitzPlan.
    g_tx, d_tx: the players' optax optimizers.
    cfg: StepConfig.
  Returns:
    train_step(state, batch) -> (new state, metrics): metrics are scalars; the critic's
    are means over the n_critic updates; `all_finite` is 1.0 when the metrics and the new
    state hold no NaN or infinity, else 0.0.
  """
  g_apply, d_apply = models.g.apply, models.d.apply
  num_classes, head = models.num_classes, models.critic_head
  critic_update = make_critic_update(d_apply=d_apply, loss=loss, plan=plan, d_tx=d_tx,
                                     axis_name=cfg.axis_name, num_shards=cfg.num_shards,
                                     critic_head=head, acgan_weight=cfg.acgan_d_weight,
                                     batch_norm=models.d_batch_norm)

  def local(x, global_size: int):
    """This device's slice of a globally drawn [global_size, ...] array (pmap), else x."""
    return local_slice(x, axis_name=cfg.axis_name, size=global_size // cfg.num_shards)

  def noise(key, global_size: int):
    """z for the global batch; under pmap this device's slice of it."""
    return local(sample_z(key, global_size, cfg.z_dim), global_size)

  def fake_labels(key, global_size: int):
    """Uniform fake classes for the global batch (sliced like z), or None if unconditional."""
    if not num_classes:
      return None
    key = jax.random.fold_in(key, LABEL_STREAM)
    return local(sample_labels(key, global_size, num_classes), global_size)

  # A penalised projection critic sees its fakes with the real labels (module docstring).
  same_class_fakes = head == 'projection' and plan.penalty is not None

  def critic_scan_body(state: GanState, carry: CriticCarry, inputs):
    real, real_labels, key = inputs
    z_key, penalty_key = jax.random.split(key)
    if cfg.random_flip:  # data.random_flip: a coin per example of the global batch
      flips = jax.random.bernoulli(jax.random.fold_in(key, FLIP_STREAM), 0.5, (cfg.batch_size,))
      real = flip_images(real, local(flips, cfg.batch_size))
    z = noise(z_key, cfg.batch_size)
    labels = real_labels if same_class_fakes else fake_labels(key, cfg.batch_size)
    fake, _ = g_apply(state.g_params, state.g_state, None, z, is_training=True,
                      **({'labels': labels} if num_classes else {}))
    cond = dict(real_labels=real_labels, fake_labels=labels) if num_classes else {}
    return critic_update(carry, real=real, fake=jax.lax.stop_gradient(fake), key=penalty_key,
                         **cond)

  def generator_update(state: GanState, key):
    z = noise(key, cfg.g_batch_size)
    labels = fake_labels(key, cfg.g_batch_size)
    g_cond = {'labels': labels} if num_classes else {}
    d_cond = {'projection': g_cond, 'acgan': {'with_logits': True}}.get(head, {})

    def g_loss_fn(g_params):
      fake, new_g_state = g_apply(g_params, state.g_state, None, z, is_training=True,
                                  **g_cond)
      out, _ = d_apply(state.d_params, state.d_state, None, fake, update_stats=False,
                       **d_cond)
      ortho = {}
      if cfg.ortho_reg:  # BigGAN's orthogonal regularisation of G's weights
        ortho = {'ortho_penalty': losses.ortho_penalty(g_params)}
      reg = cfg.ortho_reg * ortho['ortho_penalty'] if ortho else 0.0
      if head != 'acgan':
        return loss.g(d_fake=out) + reg, (new_g_state, ortho)
      d_fake, logits = out
      g_ce = class_cross_entropy(logits, labels)
      g_total = loss.g(d_fake=d_fake) + cfg.acgan_g_weight * g_ce + reg
      return g_total, (new_g_state, {'acgan/g_ce': g_ce, **ortho})

    (g_loss, (g_state, aux)), grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
        state.g_params)
    grads = mean_over_devices(grads, cfg.axis_name)
    g_loss, aux = mean_over_devices((g_loss, aux), cfg.axis_name)
    updates, g_opt_state = g_tx.update(grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, updates)
    metrics = {'g_loss': g_loss, 'g_grad_norm': optax.tree.norm(grads), **aux}
    return g_params, g_state, g_opt_state, metrics

  def train_step(state: GanState, batch: dict) -> tuple[GanState, Metrics]:
    real = real_images(batch)
    if real.shape[0] != cfg.n_critic:
      raise ValueError(f"this train step makes {cfg.n_critic} critic updates; the batch has "
                       f"{real.shape[0]} real batches")
    keys = jax.random.split(step_key(cfg.seed, state.step), cfg.n_critic + 1)
    carry, d_metrics = jax.lax.scan(
        lambda carry, xs: critic_scan_body(state, carry, xs),
        CriticCarry(state.d_params, state.d_state, state.d_opt_state),
        (real, batch.get('label'), keys[:-1]), unroll=cfg.critic_unroll)
    state = state._replace(d_params=carry.d_params, d_state=carry.d_state,
                           d_opt_state=carry.d_opt_state)
    g_params, g_state, g_opt_state, g_metrics = generator_update(state, keys[-1])
    g_ema_params = state.g_ema_params
    if g_ema_params is not None:
      decay = cfg.ema_decay if not cfg.ema_start else ema_decay_at(
          state.step, decay=cfg.ema_decay, start=cfg.ema_start)
      g_ema_params = ema_update(g_ema_params, g_params, decay)
    new_state = state._replace(step=state.step + 1, g_params=g_params, g_state=g_state,
                               g_opt_state=g_opt_state, g_ema_params=g_ema_params)
    metrics = {k: jnp.mean(v) for k, v in d_metrics.items()}
    metrics.update(g_metrics)
    metrics.update(_sigma_metrics(carry.d_state))
    # Divergence check, fetched with the logged metrics (no extra host sync): losses,
    # gradient norms and every parameter / optimizer / model-state leaf of the new state.
    metrics['all_finite'] = all_finite((metrics, new_state))
    return new_state, metrics

  return train_step


def init_state(*, models, g_tx, d_tx, key, data_shape, batch_size: int,
               ema: bool) -> GanState:
  """Initialises both players (pure; jit it, or eval_shape it for an abstract state)."""
  g_key, d_key = jax.random.split(key)
  z = jnp.zeros((batch_size, models.z_dim), jnp.float32)
  labels = jnp.zeros((batch_size,), jnp.int32)
  g_cond = {'labels': labels} if models.num_classes else {}
  d_cond = {'projection': g_cond, 'acgan': {'with_logits': True}}.get(models.critic_head, {})
  g_params, g_state = models.g.init(g_key, z, is_training=True, **g_cond)
  x = jnp.zeros((batch_size,) + tuple(data_shape), jnp.float32)
  d_params, d_state = models.d.init(d_key, x, update_stats=True, **d_cond)
  return GanState(
      step=jnp.zeros((), jnp.int32),
      g_params=g_params, g_state=g_state, d_params=d_params, d_state=d_state,
      g_opt_state=g_tx.init(g_params), d_opt_state=d_tx.init(d_params),
      g_ema_params=jax.tree.map(jnp.copy, g_params) if ema else None)
