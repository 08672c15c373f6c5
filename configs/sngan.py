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
  configs/sngan.py:stl10       SNGAN's STL-10 ResNet (Miyato et al. 2018, appendix Table 6;
                               resnet.SCHEDULES[48]: G dense 6x6x512, up-blocks 256, 128,
                               64; D blocks 64, 128, 256, 512 down, 1024; g_ch = d_ch = 64)
                               on STL-10's `unlabelled` split (100k images; `train`, the 5k
                               labelled ones, with conditional / acgan) resized to 48x48;
                               the CIFAR ResNet's recipe: hinge, Adam 2e-4 (0, 0.9), n_dis
                               5, G batch 2 x D batch (128 / 64), linear decay, 100k
                               generator updates (Section 4: 100k unless noted; Mimicry's
                               reproduction the same). Paper: IS 9.10 +- .04, FID 40.1 +-
                               .50 (Table 2; IS over 10 x 5k samples, FID 10k real vs 5k
                               fake). D's output layer has a bias (snresnet_64.py /
                               snresnet.py, the official critics above 32x32; no STL-10
                               code was released).
  configs/sngan.py:imagenet128,conditional   Miyato & Koyama 2018's ImageNet 128x128 model:
                               sngan_projection gen_models/resnet.py + dis_models/snresnet.py
                               (resnet.SCHEDULES[128], ch 64: G 1024, 1024, 512, 256, 128, 64;
                               D 64, 128, 256, 512, 1024, 1024), conditional BN in G, the
                               projection head in D (1000 classes), hinge, Adam 2e-4 (0, 0.9),
                               n_dis 5, D batch 64 and G batch 128 (configs/sn_projection.yml:
                               batchsize 16 and n_gen_samples 32 on each of the paper's 4
                               GPUs, train_mn.py), 450k generator updates, lr constant to
                               400k then linear to 0 (iteration_decay_start 400000).
                               Data: tfds:imagenet2012 (train; labels 0-999), the centred
                               square resized to data.image_size=128 (pixels.py, bicubic);
                               or --config.data.name=folder:DIR of the 1000 class folders.
                               The official pipeline differs: ImageMagick resize to 256 +
                               centre crop, images under 256 px dropped, bilinear to 128,
                               uniform dequantisation noise (datasets/preprocess.sh,
                               datasets/imagenet.py). Paper (Table 2; README_paper.md): IS
                               29.7, intra-FID 103.1 at 450k (36.8 / 92.4 after 850k); IS
                               over 10 x 5k samples, intra-FID per class 5k samples vs the
                               class's training images, averaged over the classes.
                               Without `conditional`: the same model unconditional.
  ,no_bn_g ,mlp_g ,no_norm ,tanh   the WGAN-GP paper's architecture settings (see
                               configs/wgan_gp.py); spectral normalisation stays on.
  ,smoke                       a tiny, 4-step run (tests); stl10 / imagenet128 at width 4.
"""
from wgan_jax import config_lib
from wgan_jax.errors import ConfigError

# (lr, b1, b2, n_dis), Miyato et al. 2018, Section 4.
SETTINGS = {
    'A': (1e-4, 0.5, 0.9, 5), 'B': (1e-4, 0.5, 0.999, 1), 'C': (2e-4, 0.5, 0.999, 1),
    'D': (1e-3, 0.5, 0.9, 5), 'E': (1e-3, 0.5, 0.999, 5), 'F': (1e-3, 0.9, 0.999, 5),
}
# Base width of the large-scale configs' smoke runs (their widest layers are 16x it).
LARGE_SMOKE_WIDTH = 4


def use_stl10_resnet(c, a) -> None:
  """SNGAN's STL-10 ResNet recipe (module docstring) on config `c`."""
  c.model.d_out_bias = True   # g_ch = d_ch = 64: config_lib.LARGE_RESNET_WIDTH
  if not a.flags & set(config_lib.CONDITIONAL_FLAGS):
    c.data.split = 'unlabelled'
  c.total_steps = 100_000


def use_imagenet128(c, a) -> None:
  """Miyato & Koyama 2018's ImageNet 128x128 recipe (module docstring) on config `c`."""
  if a.dataset or 'cnn' in a.flags:
    raise ConfigError('config argument imagenet128 sets the data and the ResNet; drop '
                      f'{a.dataset or "cnn"!r}')
  c.data.update(name='tfds:imagenet2012', split='train', image_size=128)
  c.model.update(g_ch=64, d_ch=64, d_out_bias=True)
  c.conditional.num_classes = 1000
  c.total_steps = 450_000
  for o in (c.optim.g, c.optim.d):
    o.decay_start_step = 400_000


def shrink_large(c, full_steps: int) -> None:
  """`smoke` of the large-scale configs (after config_lib's): the smoke run at
  LARGE_SMOKE_WIDTH, its lr decay starting at the same fraction of the run as in the
  full run of full_steps."""
  c.model.update(g_ch=LARGE_SMOKE_WIDTH, d_ch=LARGE_SMOKE_WIDTH)
  for o in (c.optim.g, c.optim.d):
    o.decay_start_step = o.decay_start_step * c.total_steps // full_steps


def get_config(arg=None):
  a, c = config_lib.start(arg, keys=('setting',), flags=('imagenet128',))
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
  large = not cnn and (a.dataset == 'stl10' or 'imagenet128' in a.flags)
  if 'imagenet128' in a.flags:
    use_imagenet128(c, a)
  elif large:
    use_stl10_resnet(c, a)
  if a.toy:
    config_lib.use_toy_mlp(c, a.dataset)
    c.model.d_out_bias = True   # gan_toy.py's MLP critic
    c.batch_size, c.g_batch_size, c.n_critic = 256, 0, 5
    c.total_steps = 3000
    for o in (c.optim.g, c.optim.d):
      o.update(lr=2e-4, b1=0.5, b2=0.9, schedule='linear')
  full_steps = c.total_steps
  config_lib.finish(c, a)
  if large and 'smoke' in a.flags:
    shrink_large(c, full_steps)
  return c
