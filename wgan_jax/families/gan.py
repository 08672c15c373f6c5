"""The `gan` family: a generator G(z) against a critic D(x), unconditional or
class-conditional. This module is the one place that decides which labels each network
takes.

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
"""
import jax
import jax.numpy as jnp
import optax

from wgan_jax.families.base import CriticView, Draws, Family, Networks
from wgan_jax.rng import LABEL_STREAM


def class_cross_entropy(logits, labels) -> jax.Array:
  """Mean softmax cross-entropy of logits [n, C] against int labels [n]."""
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def build(*, models, loss, cfg, config=None, bn_axis_name=None) -> Family:
  """The gan Family of a models.ModelPair (g: z -> x, d: x -> scores)."""
  del config, bn_axis_name  # the gan family has no settings or networks of its own
  g_apply = models.g.apply
  num_classes, head = models.num_classes, models.critic_head
  draws = Draws(models.z_dim, cfg.axis_name, cfg.num_shards)
  # A penalised projection critic sees its fakes with the real labels (module docstring).
  same_class_fakes = head == 'projection' and cfg.critic_penalised

  def fake_labels(key, global_size: int):
    """Uniform fake classes for the global batch (sliced like z), or None if unconditional."""
    if not num_classes:
      return None
    return draws.labels(jax.random.fold_in(key, LABEL_STREAM), global_size, num_classes)

  def g_kwargs(labels) -> dict:
    return {'labels': labels} if num_classes else {}

  def d_kwargs(labels) -> dict:
    """The critic's keyword arguments when it scores examples of classes `labels`."""
    return {'projection': g_kwargs(labels), 'acgan': {'with_logits': True}}.get(head, {})

  def init(key, *, batch_size: int) -> Networks:
    g_key, d_key = jax.random.split(key)
    z = jnp.zeros((batch_size, models.z_dim), jnp.float32)
    labels = jnp.zeros((batch_size,), jnp.int32)
    g_params, g_state = models.g.init(g_key, z, is_training=True, **g_kwargs(labels))
    x = jnp.zeros((batch_size,) + tuple(models.data_shape), jnp.float32)
    d_params, d_state = models.d.init(d_key, x, update_stats=True, **d_kwargs(labels))
    return Networks(g_params, g_state, d_params, d_state)

  def acgan_read(real_labels, b: int):
    """The acgan critic's output (scores, logits) -> scores, its CE term on the reals."""
    def read(out):
      scores, logits = out
      d_ce = class_cross_entropy(logits[:b], real_labels)
      accuracy = jnp.mean((jnp.argmax(logits[:b], axis=-1) == real_labels).astype(jnp.float32))
      return scores, cfg.acgan_d_weight * d_ce, {'acgan/d_ce': d_ce, 'acgan/real_acc': accuracy}
    return read

  def critic_view(g_params, g_state, real, *, key, z_key, extra):
    x, real_labels = real['x'], real.get('label')
    z = draws.z(z_key, cfg.batch_size)
    labels = real_labels if same_class_fakes else fake_labels(key, cfg.batch_size)
    fake, _ = g_apply(g_params, g_state, None, z, is_training=True, **g_kwargs(labels))
    view = CriticView(real=x, fake=jax.lax.stop_gradient(fake))
    if head == 'projection':
      view = view._replace(kwargs={'labels': jnp.concatenate([real_labels, labels])},
                           penalty_kwargs={'labels': real_labels})
    elif head == 'acgan':
      view = view._replace(kwargs={'with_logits': True},
                           read=acgan_read(real_labels, x.shape[0]))
    return view, extra

  def g_objective(g_params, g_state, real, *, key, critic):
    del real  # G sees no real data
    z = draws.z(key, cfg.g_batch_size)
    labels = fake_labels(key, cfg.g_batch_size)
    fake, new_g_state = g_apply(g_params, g_state, None, z, is_training=True,
                                **g_kwargs(labels))
    out = critic(fake, **d_kwargs(labels))
    if head != 'acgan':
      return loss.g(d_fake=out), new_g_state, {}
    d_fake, logits = out
    g_ce = class_cross_entropy(logits, labels)
    return loss.g(d_fake=d_fake) + cfg.acgan_g_weight * g_ce, new_g_state, {'acgan/g_ce': g_ce}

  return Family(name='gan', init=init, critic_view=critic_view, g_objective=g_objective,
                models=models, d_batch_norm=models.d_batch_norm)
