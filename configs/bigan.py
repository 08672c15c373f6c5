"""BiGAN (Donahue et al. 2017) / ALI (Dumoulin et al. 2017): family 'bigan', a generator
G(z) and an encoder E(x) against a joint critic D(x, z) (wgan_jax.families.bigan).

  configs/bigan.py:gaussians8  2-D data, 2-D latent: G, E and D are MLPs (model.mlp_hidden
  configs/bigan.py:swissroll   512 x mlp_layers 3, ReLU; D on concat(x, z)); batch 256, Adam
                               1e-4 (0.5, 0.999), one critic update per step, 10k steps;
                               deterministic encoder. Not a paper recipe (neither paper gives
                               one for these sets; ALI's mixture experiment is a different
                               25-mode task): the toy MLPs of this package.
  configs/bigan.py:mnist       BiGAN's permutation-invariant MNIST (jeffdonahue/bigan
                               train_mnist.sh, train_gan.py defaults): z of 50 dims, G
                               = 2 x 1024 ReLU + BN MLP, E / D = bigan_mnist nets
                               (wgan_jax.models.bigan), batch 128, Adam 2e-4 (b1 0.5, b2
                               0.999), 200 epochs constant + 200 epochs decay (400 x 50k /
                               128 = 156,250 steps), deterministic encoder.
  configs/bigan.py:cifar10     ALI on CIFAR-10 (IshmaelBelghazi/ALI experiments/
  (default)                    ali_cifar10.py): z of 64 dims, Gaussian encoder, ALI's encoder
                               and joint critic (bigan.nets ali_cifar10, ch 32), batch 100,
                               Adam 1e-4 (b1 0.5, b2 0.999), 1000 epochs (500k steps).
  ,gaussian / ,deterministic   the other encoder (bigan.encoder).
  ,smoke                       a tiny, 4-step run (tests).

Loss and Lipschitz method: both papers train the cross-entropy game (loss 'non_saturating';
the family's generator side plays loss.d with swapped labels, so 'minimax' trains the same)
with no Lipschitz method (lipschitz.method=none). WGAN-GP, SN and hinge BiGANs are flags away:
  --config.loss=wasserstein --config.lipschitz.method=gp --config.n_critic=5   WGAN-GP BiGAN
  --config.loss=hinge --config.lipschitz.method=spectral                       SN hinge BiGAN
  --config.lipschitz.method=r1 / clip                                           R1 / clipping

Where the recipes are simplified (the papers' values, then ours):
  * prior: BiGAN U[-1, 1]^50 -> N(0, I) (every family draws z ~ N(0, I));
  * BiGAN's L2 weight decay 2.5e-5 -> none; its exponential LR decay to 0.01 x over the last
    200 epochs -> linear decay to 0 over the last half (optim schedule 'linear',
    decay_start_step);
  * BiGAN's G ends in a sigmoid on [0, 1] pixels; here the mlp G is linear on [-1, 1] pixels,
    MNIST padded to 32x32 (wgan_jax.data.images);
  * ALI's decoder (transposed convs, BN, LReLU 0.1, sigmoid) -> the SNGAN standard CNN G
    (model dcgan, g_ch 64: tanh on [-1, 1] pixels);
  * ALI's Adam: the paper's CIFAR10 hyperparameter table writes beta2 = 10^-3; the code
    passes only beta1 to blocks' Adam, whose beta2 default is 0.999 (the same thing in
    1 - beta notation): 0.999 here;
  * dropout in ALI's critic and batch norm in BiGAN's critic: not reproduced
    (wgan_jax.models.bigan).
"""
from wgan_jax import config_lib

TOY_STEPS = 10_000
MNIST_EPOCHS, MNIST_DECAY_EPOCHS, MNIST_TRAIN = 200, 200, 50_000  # train_mnist.sh
CIFAR_EPOCHS, CIFAR_TRAIN = 1000, 50_000                           # ali_cifar10.py


def _adam(c, *, lr: float, b1: float, b2: float, schedule: str = 'constant',
          decay_start_step: int = 0) -> None:
  for o in (c.optim.g, c.optim.d):
    o.update(name='adam', lr=lr, b1=b1, b2=b2, schedule=schedule,
             decay_start_step=decay_start_step)


def get_config(arg=None):
  a, c = config_lib.start(arg, flags=('gaussian', 'deterministic'))
  c.family = 'bigan'
  c.loss = 'non_saturating'
  c.lipschitz.method = 'none'
  c.n_critic = 1
  c.g_batch_size = 0
  c.model.update(d_norm='none', d_out_bias=True, g_spectral_norm=False)
  if a.toy:
    config_lib.use_toy_mlp(c, a.dataset)
    c.bigan.update(nets='mlp', encoder='deterministic')
    c.batch_size, c.total_steps = 256, TOY_STEPS
    _adam(c, lr=1e-4, b1=0.5, b2=0.999)
  elif c.data.name in ('mnist', 'fashion_mnist'):
    c.model.update(name='mlp', z_dim=50, mlp_hidden=1024, mlp_layers=2, g_batch_norm=True)
    c.bigan.update(nets='bigan_mnist', encoder='deterministic')
    c.batch_size = 128
    per_epoch = MNIST_TRAIN // c.batch_size
    c.total_steps = (MNIST_EPOCHS + MNIST_DECAY_EPOCHS) * per_epoch
    _adam(c, lr=2e-4, b1=0.5, b2=0.999, schedule='linear',
          decay_start_step=MNIST_EPOCHS * per_epoch)
  else:
    c.model.update(name='dcgan', z_dim=64, g_ch=64, d_ch=32, g_batch_norm=True)
    c.bigan.update(nets='ali_cifar10', encoder='gaussian')
    c.batch_size = 100
    c.total_steps = CIFAR_EPOCHS * CIFAR_TRAIN // c.batch_size
    _adam(c, lr=1e-4, b1=0.5, b2=0.999)
  if 'gaussian' in a.flags:
    c.bigan.encoder = 'gaussian'
  if 'deterministic' in a.flags:
    c.bigan.encoder = 'deterministic'
  return config_lib.finish(c, a)
