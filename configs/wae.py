"""Wasserstein auto-encoders (Tolstikhin et al. 2018): WAE-GAN and WAE-MMD.

  configs/wae.py:ARG with ARG = gan | mmd (default mmd, the official code's z_test), then a
  dataset (default mnist): mnist, celeb_a, gaussians8, swissroll, and `smoke`.

  mnist    latent 8, prior N(0, I); the paper's MNIST encoder / decoder (model wae_mnist,
           widths 128 .. 1024, 4 x 4 kernels; this repo's MNIST is zero-padded to 32 x 32,
           so the decoder starts at 8 x 8 instead of 7 x 7); batch 100, 100 epochs (60k
           steps); Adam beta1 0.5: lr 1e-3 for Q and G, 5e-4 for D_Z (WAE-GAN); lambda 10;
           c(x, y) = 0.05 ||x - y||^2 on [0, 1] pixels = 0.0125 ||x - y||^2 on [-1, 1]
           (paper Appendix C.1; official configs.py config_mnist: lr 0.001, lr_adv 0.0005,
           adam_beta1 0.5, batch_size 100, epoch_num 100, zdim 8, lambda 10, cost l2sq
           with wae.py's 0.05 scaling).
  celeb_a  latent 64, prior N(0, I); the paper's CelebA encoder / decoder (model
           wae_celeba, 5 x 5 kernels in the encoder and the last decoder conv, 4 x 4 / 2
           up-convs); batch 100, 55 epochs of the 162,770 training images (89,500 steps);
           Adam beta1 0.5: WAE-MMD lr 1e-3, lambda 100; WAE-GAN lr 3e-4 for Q and G, 1e-3
           for D_Z, lambda 1; c = 0.05 ||x - y||^2 on [-1, 1] pixels (paper Appendix C.2;
           official configs.py config_celebA: lr comment "0.001 for WAE-MMD and 0.0003 for
           WAE-GAN", lr_adv 0.001, lambda 100 (MMD), pz_scale 1 (the paper's text gives
           sigma_z^2 = 2; the code's 1 is used), cost l2sq).
  gaussians8, swissroll   (this repo's toy recipe, no paper setting) the toy MLPs (3 x 512
           ReLU encoder and decoder, latent 2), batch 256, Adam 1e-3 (0.5, 0.999), 3000
           steps, c = ||x - y||^2, lambda 100 (MMD; 10 gave eval/w1 0.38 against 0.31) / 1
           (GAN; 10 gave 0.43 against 0.37) on swissroll at 1500 steps, seed 0.

WAE-GAN's latent critic D_Z: 4 x 512 ReLU MLP (wae.py z_adversary; the paper's Appendix C),
the GAN cross-entropy (loss non_saturating: the official "non-saturating loss trick"),
no Lipschitz method, one D_Z update per Q / G update (n_critic 1); any loss and Lipschitz
method are one flag away (--config.loss=wasserstein --config.lipschitz.method=gp).
Not reproduced: the official learning-rate decay (manual: / 2 after epoch 30, / 5 after
epoch 50), the encoder's pre-training to match the prior's moments (e_pretrain) and its
input noise (e_noise add_noise, N(0, 0.01^2)); the rates here are constant.
"""
from wgan_jax import config_lib
from wgan_jax.errors import ConfigError

DATASETS = ('mnist', 'celeb_a', 'gaussians8', 'swissroll')
STEPS_PER_EPOCH = {'mnist': 600, 'celeb_a': 1628}  # 60,000 / 100; 162,770 / 100


def get_config(arg=None):
  a, c = config_lib.start(arg, flags=('gan', 'mmd'))
  if {'gan', 'mmd'} <= a.flags:
    raise ConfigError('config arguments gan and mmd exclude each other; pick one')
  dataset = a.dataset or 'mnist'
  if dataset not in DATASETS:
    raise ConfigError(f'configs/wae.py has recipes for {", ".join(DATASETS)}; got {dataset!r}')
  gan = 'gan' in a.flags
  c.family = 'wae_gan' if gan else 'wae_mmd'
  c.update(loss='non_saturating', n_critic=1, batch_size=100)
  c.lipschitz.method = 'none'
  c.wae.update(critic_hidden=512, critic_layers=4)
  c.data.name = dataset
  if dataset == 'mnist':
    c.model.update(name='wae_mnist', z_dim=8, g_ch=128)
    c.total_steps = 100 * STEPS_PER_EPOCH['mnist']
    c.wae.update(lambda_=10.0, recon_scale=0.0125)
    lr, lr_adv = 1e-3, 5e-4
  elif dataset == 'celeb_a':
    c.model.update(name='wae_celeba', z_dim=64, g_ch=128)
    c.total_steps = 55 * STEPS_PER_EPOCH['celeb_a']
    c.wae.update(lambda_=1.0 if gan else 100.0, recon_scale=0.05)
    lr, lr_adv = (3e-4, 1e-3) if gan else (1e-3, 1e-3)
  else:
    config_lib.use_toy_mlp(c, dataset)
    c.batch_size = 256
    c.total_steps = 3000
    c.wae.update(lambda_=1.0 if gan else 100.0, recon_scale=1.0)
    lr, lr_adv = 1e-3, 1e-3
  c.optim.g.update(name='adam', lr=lr, b1=0.5, b2=0.999, schedule='constant')
  c.optim.d.update(name='adam', lr=lr_adv, b1=0.5, b2=0.999, schedule='constant')
  c = config_lib.finish(c, a)
  if 'smoke' in a.flags:
    c.wae.critic_hidden = 16
  return c
