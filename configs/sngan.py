"""SNGAN (Miyato et al. 2018): hinge loss, spectral normalisation of every critic layer.

  configs/sngan.py             CIFAR-10 ResNet (G 256 ch, D 128 ch, global sum pool, no bias
                               in D's output layer), Adam 2e-4 (0, 0.9),
                               n_dis 5, G batch 2 x D batch (128 / 64), linear decay;
                               paper: IS 8.22 +- .05, FID 21.7 +- .21 (Table 2; IS over
                               10 x 5k samples, FID 10k real vs 5k fake).
  configs/sngan.py:cnn         the standard CNN, setting C by default (Adam 2e-4 (0.5, 0.999),
                               n_dis 1); paper: IS 7.58, FID 25.5 (hinge, Table 2).
  configs/sngan.py:cnn,setting=A   the paper's hyperparameter settings A-F (its Table 1;
                               standard CNN; `setting=` also applies to the ResNet):
                                 setting  lr     b1   b2     n_dis
                                 A        1e-4   0.5  0.9    5    (after WGAN-GP)
                                 B        1e-4   0.5  0.999  1    (after Warde-Farley & Bengio)
                                 C        2e-4   0.5  0.999  1    (after DCGAN)
                                 D        1e-3   0.5  0.9    5
                                 E        1e-3   0.5  0.999  5
                                 F        1e-3   0.9  0.999  5
                               The paper reports the Inception score and FID of every method
                               under A-F as bar charts (Figures 1 and 2), not as numbers:
                               SN-GANs stay good under all six, while WGAN-GP and the
                               other normalisations degrade or fail at the aggressive
                               learning rates and momenta of D, E and F.
  configs/sngan.py:gaussians8  the same method on gan_toy.py's MLP: batch 256, n_dis 5,
                               Adam 2e-4 (0.5, 0.9) decayed linearly to 0 over 3000
                               steps (the decay is what sharpens the modes: with a
                               constant rate, ,conditional puts 79% of the samples in
                               their mode at step 3000, the worst class 4%; with it,
                               99.8-100%, the worst class 99.2-99.6%, seeds 0-2).
  ,no_bn_g ,mlp_g ,no_norm ,tanh   the WGAN-GP paper's architecture settings (see
                               configs/wgan_gp.py); spectral normalisation stays on.
  ,smoke                       a tiny, 4-step run (tests).
"""
from wgan_jax import config_lib
from wgan_jax.errors import ConfigError

# (lr, b1, b2, n_dis), Miyato et al. 2018, Section 4.
SETTINGS = {
    'A': (1e-4, 0.5, 0.9, 5), 'B': (1e-4, 0.5, 0.999, 1), 'C': (2e-4, 0.5, 0.999, 1),
    'D': (1e-3, 0.5, 0.9, 5), 'E': (1e-3, 0.5, 0.999, 5), 'F': (1e-3, 0.9, 0.999, 5),
}


def get_config(arg=None):
  a, c = config_lib.start(arg, keys=('setting',))
  c.loss = 'hinge'
  c.lipschitz.method = 'spectral'
  cnn = 'cnn' in a.flags
  # snresnet_32.py: global sum pool, SNLinear(ch, 1, nobias=True); chainer-gan-lib's
  # SNDCGANDiscriminator's SNLinear has a bias.
  c.model.update(name='dcgan' if cnn else 'resnet', g_batch_norm=True, d_norm='spectral',
                 g_ch=64 if cnn else 256, d_ch=64 if cnn else 128, d_pool='sum',
                 d_out_bias=cnn)
  c.batch_size = 64
  c.total_steps = 50_000
  lr, b1, b2, n_dis = 2e-4, 0.0, 0.9, 5
  if cnn or 'setting' in a.values:
    setting = a.values.get('setting', 'C')
    if setting not in SETTINGS:
      raise ConfigError(f'unknown SNGAN setting {setting!r}; valid: {", ".join(SETTINGS)}')
    lr, b1, b2, n_dis = SETTINGS[setting]
    c.total_steps = 100_000
  else:
    c.g_batch_size = 128
  c.n_critic = n_dis
  for o in (c.optim.g, c.optim.d):
    # The paper decays linearly for the ResNet only.
    o.update(name='adam', lr=lr, b1=b1, b2=b2, schedule='constant' if cnn else 'linear')
  if a.toy:
    config_lib.use_toy_mlp(c, a.dataset)
    c.model.d_out_bias = True   # gan_toy.py's MLP critic
    c.batch_size, c.g_batch_size, c.n_critic = 256, 0, 5
    c.total_steps = 3000
    for o in (c.optim.g, c.optim.d):
      o.update(lr=2e-4, b1=0.5, b2=0.9, schedule='linear')
  return config_lib.finish(c, a)
