"""WGAN-GP (Gulrajani et al. 2017): Wasserstein loss + gradient penalty, lambda 10, n_critic 5.

  configs/wgan_gp.py             CIFAR-10 ResNet as gan_cifar_resnet.py: G and D 128 ch
                                 (DIM_G, DIM_D), no normalisation in D, global mean pool,
                                 critic batch 64, G batch 128 (GEN_BS_MULTIPLE 2), Adam 2e-4
                                 (0, 0.9), linear decay to 0 over 100k G steps;
                                 paper: IS 7.86 +- .07 (unconditional, Table 3; IS over 50k
                                 samples, 10 splits, the original Inception network).
  configs/wgan_gp.py:gaussians8  gan_toy.py: MLP 3 x 512 ReLU both players, batch 256,
                                 Adam 1e-4 (0.5, 0.9), lambda 0.1 (as in the code), 4000
                                 G steps; the rate decays linearly to 0 over the run
                                 (gan_toy.py keeps it constant: with a constant rate the
                                 quickstart ended with 7 of 8 modes, eval/w1 0.17 (seed 0);
                                 with the decay all 8 modes and eval/w1 <= 0.10 for seeds
                                 0-4, README.md "Figures"). toy_suite and clipping_gradients
                                 run gan_toy.py's constant rate.
  configs/wgan_gp.py:cnn         the SNGAN standard CNN (g_ch = d_ch = 64: widest layers 512,
                                 gan_cifar.py's 4 * DIM with DIM 128) with gan_cifar.py's
                                 recipe: Adam 1e-4 (0.5, 0.9) constant, batch 64, 200k G
                                 steps. gan_cifar.py's own networks are smaller (three 5x5
                                 layers each way, see README.md, Recipes).
  ,smoke                         a tiny, 4-step run (tests).

The paper's architecture-robustness settings (Section 5.2, Figure 2: DCGAN, LSGAN, WGAN with
clipping and WGAN-GP on LSUN bedrooms, one set of hyperparameters each; reported as samples,
no scores: only WGAN-GP trained every architecture, the others failed on several), as flags
(config_lib.ARCH_FLAGS, also in configs/wgan.py and configs/sngan.py):
  ,no_bn_g   no batch norm in G (alias nobn_g), e.g. configs/wgan_gp.py:cnn,no_bn_g
  ,mlp_g     a 4-layer 512-unit ReLU MLP generator against the file's critic
             (configs/wgan_gp.py:cnn,mlp_g)
  ,no_norm   no normalisation in either player (no batch norm in G, no layer norm in D)
  ,tanh      tanh nonlinearities everywhere in G and D (toy MLP and :cnn)
Not available: the paper's "constant number of filters in G", "gated multiplicative
nonlinearities" and "101-layer ResNet" settings. On toy data (e.g.
configs/wgan_gp.py:gaussians8,tanh) the flags change the toy MLPs the same way.
"""
from wgan_jax import config_lib


def get_config(arg=None):
  a, c = config_lib.start(arg)
  c.update(loss='wasserstein', n_critic=5, batch_size=64)
  c.lipschitz.update(method='gp', gp_weight=10.0)
  cnn = 'cnn' in a.flags
  c.model.update(name='dcgan' if cnn else 'resnet', g_batch_norm=True, d_norm='none',
                 g_ch=64 if cnn else 128, d_ch=64 if cnn else 128, d_pool='mean',
                 d_out_bias=True)
  if cnn:    # gan_cifar.py: ITERS 200000, Adam(1e-4, beta1=0.5, beta2=0.9), no decay
    c.total_steps = 200_000
    lr, b1, schedule = 1e-4, 0.5, 'constant'
  else:      # gan_cifar_resnet.py: ITERS 100000, Adam(LR*decay, 0., 0.9), GEN_BS_MULTIPLE 2
    c.total_steps = 100_000
    c.g_batch_size = 128
    lr, b1, schedule = 2e-4, 0.0, 'linear'
  for o in (c.optim.g, c.optim.d):
    o.update(name='adam', lr=lr, b1=b1, b2=0.9, schedule=schedule)
  if a.toy:
    config_lib.use_toy_mlp(c, a.dataset)
    c.batch_size, c.g_batch_size = 256, 0
    c.lipschitz.gp_weight = 0.1
    c.total_steps = 4000
    for o in (c.optim.g, c.optim.d):
      o.update(name='adam', lr=1e-4, b1=0.5, b2=0.9, schedule='linear')
  return config_lib.finish(c, a)
