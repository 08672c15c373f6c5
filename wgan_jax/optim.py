"""optax optimizers and learning-rate schedules from `config.optim.{g,d}`.

Each player's optimizer config has: name (adam | rmsprop | sgd), lr, b1, b2, eps,
schedule (constant | linear). For rmsprop, b2 is the decay of the squared-gradient
average (PyTorch's alpha, Adam's b2) and b1 the momentum; eps is added outside the
square root as in PyTorch (Arjovsky et al. used PyTorch's RMSprop).
"""
from typing import Callable

import optax

from wgan_jax import config_lib
from wgan_jax import step as step_lib
from wgan_jax.registry import lookup

SCHEDULES = {
    'constant': lambda lr, total: optax.constant_schedule(lr),
    # Linear decay to 0 over the run (WGAN-GP and SNGAN CIFAR ResNet recipes).
    'linear': lambda lr, total: optax.linear_schedule(lr, 0.0, max(int(total), 1)),
}


def _adam(cfg, lr):
  return optax.adam(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)


def _rmsprop(cfg, lr):
  return optax.rmsprop(lr, decay=cfg.b2, eps=cfg.eps, eps_in_sqrt=False,
                       momentum=cfg.b1 or None)


def _sgd(cfg, lr):
  return optax.sgd(lr, momentum=cfg.b1 or None)


OPTIMIZERS: dict[str, Callable] = {'adam': _adam, 'rmsprop': _rmsprop, 'sgd': _sgd}


def make_optimizer(cfg, *, total_updates: int, player: str = 'g') -> optax.GradientTransformation:
  """One player's optimizer; `total_updates` is the length of its linear decay."""
  schedule = lookup(SCHEDULES, cfg.schedule, f'optim.{player}.schedule')(cfg.lr, total_updates)
  return lookup(OPTIMIZERS, cfg.name, f'optim.{player}.name')(cfg, schedule)


def critic_updates(config) -> int:
  """The critic updates of the whole run: total_steps * n_critic, plus the warm-up's extra
  ones (wgan_jax.step.CriticSchedule)."""
  schedule = step_lib.CriticSchedule(**config_lib.critic_schedule_fields(config))
  return step_lib.critic_updates_before(config.total_steps, schedule)


def make_optimizers(config) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
  """(g_tx, d_tx). The critic makes critic_updates(config) updates over the run (n_critic
  per generator update, more at warm-up steps), so its schedule spans them: both decay to
  0 at the same generator step."""
  g_tx = make_optimizer(config.optim.g, total_updates=config.total_steps, player='g')
  d_tx = make_optimizer(config.optim.d, total_updates=critic_updates(config), player='d')
  return g_tx, d_tx
