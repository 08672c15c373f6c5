"""WGAN-GP (Gulrajani et al. 2017): Wasserstein loss + gradient penalty, lambda 10, n_critic 5.

  configs/wgan_gp.py             CIFAR-10 ResNet (G 256 ch, D 128 ch, no batch norm in D),
                                 Adam 2e-4 (0, 0.9), linear decay to 0 over 100k G steps;
                                 paper: IS 7.86 +- .07 (unconditional).
  configs/wgan_gp.py:gaussians8  gan_toy.py: MLP 3 x 512 ReLU both players, batch 256,
                                 Adam 1e-4 (0.5, 0.9), lambda 0.1 (as in the code).
  configs/wgan_gp.py:cnn         the SNGAN standard CNN with the WGAN-GP recipe.
  ,smoke                         a tiny, 4-step run (tests).
"""
from wgan_jax import config_lib


def get_config(arg=None):
  a = config_lib.parse_arg(arg, flags=('cnn', 'resnet'))
  c = config_lib.base_config()
  c.loss = 'wasserstein'
  c.n_critic = 5
  c.batch_size = 64
  c.lipschitz.update(method='gp', gp_weight=10.0)
  c.data.name = a.dataset or 'cifar10'
  c.model.update(name='dcgan' if 'cnn' in a.flags else 'resnet', g_batch_norm=True,
                 d_norm='none', g_ch=64 if 'cnn' in a.flags else 256,
                 d_ch=64 if 'cnn' in a.flags else 128)
  c.total_steps = 100_000
  for o in (c.optim.g, c.optim.d):
    o.update(name='adam', lr=2e-4, b1=0.0, b2=0.9, schedule='linear')
  if a.toy:
    config_lib.use_toy_mlp(c, a.dataset)
    c.batch_size = 256
    c.lipschitz.gp_weight = 0.1
    c.total_steps = 4000
    for o in (c.optim.g, c.optim.d):
      o.update(name='adam', lr=1e-4, b1=0.5, b2=0.9, schedule='constant')
  if 'smoke' in a.flags:
    config_lib.shrink_for_smoke(c)
  return c
