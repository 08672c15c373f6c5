"""WGAN (Arjovsky et al. 2017, Algorithm 1): Wasserstein loss, weight clipping c = 0.01.

RMSProp lr 5e-5 for both players, n_critic 5, batch 64 (WassersteinGAN main.py).
  configs/wgan.py             CIFAR-10, the SNGAN standard CNN (DCGAN-like) with G batch norm
                              and, as the official DCGAN critic (models/dcgan.py, DCGAN_D),
                              batch norm in the critic after every conv but the first
                              (model.d_norm='batch': the real and the fake batch each
                              normalised with its own statistics, the official two calls);
                              the official critic schedule: 100 critic updates at the first
                              25 generator steps and every 500th (main.py: Diters = 100 if
                              gen_iterations < 25 or gen_iterations % 500 == 0), 5 otherwise
                              (n_critic_warmup=100, n_critic_warmup_steps=25,
                              n_critic_warmup_every=500; n_critic_warmup=0 turns it off).
                              The WGAN paper reports no CIFAR-10 scores (LSUN samples and
                              W1-estimate curves); the WGAN-GP paper plots weight clipping
                              well below WGAN-GP on CIFAR-10 (Figure 3, Inception score
                              over training), and the SNGAN paper's Table 2 lists it
                              (standard CNN) well below SN-GANs.
  configs/wgan.py:gaussians8  the same method on gan_toy.py's MLP with gan_toy.py's WGAN mode:
                              batch 256, TF RMSProp lr 5e-5, decay 0.9, eps 1e-10, no batch
                              norm in the critic, n_critic 5 at every step.
  configs/wgan.py:resnet      the CIFAR ResNet instead (no batch norm in its critic).
  ,no_bn_g ,mlp_g ,no_norm ,tanh   the WGAN-GP paper's architecture settings (see
                              configs/wgan_gp.py): weight clipping is one of the methods that
                              failed on some of them (WGAN-GP paper, Figure 2); no_norm also
                              removes the critic's batch norm.
  ,smoke                      a tiny, 4-step run (tests; image data: a warm-up of 3 critic
                              updates).
"""
from wgan_jax import config_lib


def get_config(arg=None):
  a, c = config_lib.start(arg)
  c.update(loss='wasserstein', n_critic=5, batch_size=64)
  c.lipschitz.update(method='clip', clip_value=0.01)
  resnet = 'resnet' in a.flags
  c.model.update(name='resnet' if resnet else 'dcgan', g_batch_norm=True,
                 d_norm='none' if resnet else 'batch',
                 g_ch=256 if resnet else 64, d_ch=128 if resnet else 64)
  c.update(n_critic_warmup=100, n_critic_warmup_steps=25, n_critic_warmup_every=500)
  c.total_steps = 100_000
  for o in (c.optim.g, c.optim.d):
    o.update(name='rmsprop', lr=5e-5, b1=0.0, b2=0.99, eps=1e-8, schedule='constant')
  if a.toy:
    config_lib.use_toy_mlp(c, a.dataset)
    c.model.d_norm = 'none'
    c.n_critic_warmup = 0  # gan_toy.py: CRITIC_ITERS = 5 at every step
    c.total_steps = 4000
    # gan_toy.py (MODE 'wgan'): BATCH_SIZE 256, tf.train.RMSPropOptimizer(5e-5), whose
    # defaults are decay 0.9, epsilon 1e-10 (TF adds it inside the square root and starts
    # the average at 1, here eps is outside it and the average starts at 0).
    c.batch_size = 256
    for o in (c.optim.g, c.optim.d):
      o.update(b2=0.9, eps=1e-10)
  return config_lib.finish(c, a)
