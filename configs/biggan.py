"""BigGAN (Brock et al. 2019): class-conditional, hinge loss, SN in G and D, shared
embedding + hierarchical latents, EMA of G, orthogonal regularisation (models/biggan.py).

  configs/biggan.py:imagenet128  ImageNet 128x128 (data.name tfds:imagenet2012, image_size 128).
      BigGAN-PyTorch scripts/launch_BigGAN_bs256x8.sh: G_ch = D_ch = 96, dim_z 120 (hier),
      shared_dim 128, G_attn = D_attn 64, G_lr 1e-4, D_lr 4e-4, G_B2 = D_B2 0.999 with
      B1 0.0 (BigGAN.py's default G_B1 / D_B1), adam_eps 1e-6, batch 256 x 8 accumulations
      = 2048, ema decay 0.9999 (utils.ema default) from ema_start 20000, BN_eps 1e-5,
      G_init = D_init ortho, hinge (losses.py: loss_hinge_dis / loss_hinge_gen).
      Paper: 2 D steps per G step (Appendix C; the script above runs --num_D_steps 1) and
      orthogonal regularisation beta 1e-4 (Section 3.1; the script sets --G_ortho 0.0).
      Paper result: IS 166.5, FID 7.4 (abstract, arXiv 1809.11096v2).
  configs/biggan.py:imagenet256  the same recipe at 256x256 with BigGAN-PyTorch's
      TFHub/converter.py architecture for 256: dim_z 140, G_attn = D_attn 128.
  configs/biggan.py:cifar10      PyTorch-StudioGAN src/configs/CIFAR10/BigGAN.yaml: z_dim 80,
      g_shared_dim 128, g_conv_dim 96, d_conv_dim 96, attention after G block 2 and D
      block 1 (attn_g_loc [2], attn_d_loc [1]: the 16x16 blocks), EMA 0.9999 from step
      1000, hinge; its src/config.py defaults for the rest: batch 64, Adam lr 2e-4 both,
      (0.5, 0.999), 5 D updates per G update, 100k steps. StudioGAN's big_resnet D at 32
      is 2 x d_conv_dim wide (192), BigGAN-PyTorch's D_arch[32] 4 x D_ch: d_ch = 48 here
      gives StudioGAN's 192.
  ,smoke                          tiny widths, 4 steps (tests); with cifar10 attention at 16.
"""
from wgan_jax import config_lib


def get_config(arg=None):
  a, c = config_lib.start(arg, flags=('imagenet128', 'imagenet256'))
  c.loss = 'hinge'
  c.lipschitz.method = 'spectral'
  c.conditional.method = 'projection'
  imagenet = {'imagenet128': 128, 'imagenet256': 256}
  side = next((s for f, s in imagenet.items() if f in a.flags), 0)
  if side:
    c.data.update(name='tfds:imagenet2012', image_size=side)
    c.model.update(name='biggan', g_ch=96, d_ch=96, z_dim=120 if side == 128 else 140,
                   shared_dim=128, g_attn=side // 2, d_attn=side // 2)
    c.batch_size, c.n_critic, c.total_steps = 2048, 2, 200_000
    c.optim.g.update(name='adam', lr=1e-4, b1=0.0, b2=0.999, eps=1e-6, schedule='constant')
    c.optim.d.update(name='adam', lr=4e-4, b1=0.0, b2=0.999, eps=1e-6, schedule='constant')
    c.ema_decay, c.ema_start, c.ortho_reg = 0.9999, 20_000, 1e-4
  else:  # CIFAR-10 (StudioGAN)
    c.model.update(name='biggan', g_ch=96, d_ch=48, z_dim=80, shared_dim=128, g_attn=16,
                   d_attn=16)
    c.batch_size, c.n_critic, c.total_steps = 64, 5, 100_000
    for o in (c.optim.g, c.optim.d):
      o.update(name='adam', lr=2e-4, b1=0.5, b2=0.999, eps=1e-8, schedule='constant')
    c.ema_decay, c.ema_start, c.ortho_reg = 0.9999, 1000, 0.0
  c.model.d_out_bias = True  # BigGAN.py: self.linear = SNLinear(..., output_dim) with bias
  c.eval.standing_stats = 0  # BigGAN's sample.py option (16 passes); off by default
  c = config_lib.finish(c, a)
  if 'smoke' in a.flags:
    c.model.update(g_ch=4, d_ch=4, z_dim=28 if side == 256 else 24, shared_dim=8,
                   g_attn=0 if side else 16, d_attn=0 if side else 16)
    c.ema_start = 2
  return c
