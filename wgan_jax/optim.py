"""optax optimizers and learning-rate schedules from `config.optim.{g,d}`.

Each player's optimizer config has: name (adam | rmsprop | sgd), lr, b1, b2, eps,
schedule (constant | linear) and decay_start_step (the linear schedule holds lr until that
generator step, then decays to 0 at the end: sngan_projection's ImageNet runs,
iteration_decay_start 400k of 450k; missing or 0: from the start). For rmsprop, b2 is the
decay of the squared-gradient average (PyTorch's alpha, Adam's b2) and b1 the momentum; eps
is added outside the square root as in PyTorch (Arjovsky et al. used PyTorch's RMSprop).
"""
from typing import Callable

import optax

from wgan_jax import config_lib
from wgan_jax import step as step_lib
from wgan_jax.registry import lookup

SCHEDULES = {
    'constant': lambda lr, total, start: optax.constant_schedule(lr),
    # Linear decay to 0 over the run (WGAN-GP and SNGAN CIFAR ResNet recipes), or over its
    # updates from `start` on (chainer's LinearShift from iteration_decay_start).
    'linear': lambda lr, total, start: optax.linear_schedule(
        lr, 0.0, max(int(total) - int(start), 1), transition_begin=int(start)),
}


def _adam(cfg, lr):
  return optax.adam(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)


def _rmsprop(cfg, lr):
  return optax.rmsprop(lr, decay=cfg.b2, eps=cfg.eps, eps_in_sqrt=False,
                       momentum=cfg.b1 or None)


def _sgd(cfg, lr):
  return optax.sgd(lr, momentum=cfg.b1 or None)


OPTIMIZERS: dict[str, Callable] = {'adam': _adam, 'rmsprop': _rmsprop, 'sgd': _sgd}


def make_optimizer(cfg, *, total_updates: int, player: str = 'g',
                   decay_start: int = 0) -> optax.GradientTransformation:
  """One player's optimizer; its linear decay runs from update `decay_start` to
  `total_updates`."""
  schedule = lookup(SCHEDULES, cfg.schedule, f'optim.{player}.schedule')(
      cfg.lr, total_updates, min(decay_start, total_updates))
  return lookup(OPTIMIZERS, cfg.name, f'optim.{player}.name')(cfg, schedule)


def critic_updates(config) -> int:
  """The critic updates of the whole run: total_steps * n_critic, plus the warm-up's extra
  ones (wgan_jax.step.CriticSchedule)."""
  schedule = step_lib.CriticSchedule(**config_lib.critic_schedule_fields(config))
  return step_lib.critic_updates_before(config.total_steps, schedule)


def decay_start_updates(config, player: str) -> int:
  """The player's update at which its linear decay starts: optim.<player>.decay_start_step
  (a generator step; missing: 0), counted in critic updates for the critic."""
  start = int(config.optim[player].get('decay_start_step', 0) or 0)
  if player == 'g' or not start:
    return start
  schedule = step_lib.CriticSchedule(**config_lib.critic_schedule_fields(config))
  return step_lib.critic_updates_before(start, schedule)


def make_optimizers(config) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
  """(g_tx, d_tx). The critic makes critic_updates(config) updates over the run (n_critic
  per generator update, more at warm-up steps), so its schedule spans them: both decay to
  0 at the same generator step (and start decaying at the same one)."""
  g_tx = make_optimizer(config.optim.g, total_updates=config.total_steps, player='g',
                        decay_start=decay_start_updates(config, 'g'))
  d_tx = make_optimizer(config.optim.d, total_updates=critic_updates(config), player='d',
                        decay_start=decay_start_updates(config, 'd'))
  return g_tx, d_tx
