"""CycleGAN (Zhu et al. 2017; junyanz/pytorch-CycleGAN-and-pix2pix): unpaired translation
G: A -> B, F: B -> A (family cyclegan, wgan_jax/families/cyclegan.py).

  configs/cyclegan.py:horse2zebra   the paper's recipe on tfds:cycle_gan/horse2zebra
                                    (domain A = split trainA, 1067 horses; B = trainB, 1334
                                    zebras): least-squares loss, Adam 2e-4 (0.5, 0.999) for
                                    both players, batch 1, n_critic 1, 100 epochs constant
                                    then 100 epochs of linear decay to 0 (an epoch is
                                    max(|A|, |B|) = 1334 steps at batch 1, the official
                                    unaligned dataset's length), lambda_cyc 10, identity 0.5,
                                    image pools of 50, ResNet generators of 9 blocks at 256
                                    (6 with size=128), 70x70 PatchGAN critics, instance norm.
  :pair=NAME,epoch_steps=N          another tfds:cycle_gan/NAME pair (N: its larger training
                                    domain's size)
  :folder,a=PATH,b=PATH,epoch_steps=N   two image folders (folder:PATH each)
  ,size=128                         128x128 images and 6 residual blocks (default 256, 9)
  :gaussians8                       the toy pair gaussians8 -> gaussians8_rotated (30 degrees,
                                    x 1.5): MLPs 3 x 128 ReLU, batch 64, 2000 steps (1000
                                    constant, 1000 decaying), the same losses and weights
  ,smoke                            a tiny 4-step run (tests)

Not reproduced: the official preprocessing (resize to 286, random 256 crop, random flip;
here the centred square resized to data.image_size, no augmentation), its per-epoch
learning-rate steps (here per step, linearly from decay_start_step to 0) and its
G-before-D update order (families/cyclegan.py).
"""
from wgan_jax import config_lib

EPOCHS, DECAY_EPOCHS = 100, 100  # official n_epochs, n_epochs_decay
# tfds cycle_gan pairs with a flag: name -> (|trainA|, |trainB|).
PAIRS = {'horse2zebra': (1067, 1334)}
KEYS = ('pair', 'epoch_steps', 'a', 'b', 'size')


def _epoch_steps(a, default=None) -> int:
  value = a.values.get('epoch_steps', default)
  if value is None:
    raise config_lib.ConfigError('configs/cyclegan.py: pass epoch_steps=N (the larger '
                                 'training domain\'s size) with pair= or folder')
  steps = int(value)
  if steps < 1:
    raise config_lib.ConfigError(f'configs/cyclegan.py: epoch_steps must be >= 1, got {steps}')
  return steps


def get_config(arg=None):
  a, c = config_lib.start(arg, keys=KEYS, flags=tuple(PAIRS) + ('folder',))
  c.family = 'cyclegan'
  c.update(loss='least_squares', n_critic=1, batch_size=1, ema_decay=0.0)
  c.lipschitz.method = 'none'
  c.model.update(name='cyclegan', g_ch=64, d_ch=64, d_norm='none', g_batch_norm=False,
                 conv_impl='auto')
  c.cyclegan.update(lambda_cyc=10.0, lambda_identity=0.5, pool_size=50, n_blocks=0,
                    d_layers=3)
  pairs = sorted(set(PAIRS) & a.flags)
  if a.toy:
    if a.dataset != 'gaussians8':
      raise config_lib.ConfigError(f'configs/cyclegan.py: the toy pair is gaussians8 '
                                   f'(-> gaussians8_rotated), got {a.dataset!r}')
    c.data.update(name='gaussians8', domain_a='gaussians8', domain_b='gaussians8_rotated')
    c.model.update(mlp_hidden=128, mlp_layers=3)
    c.batch_size = 64
    epoch_steps, epochs, decay_epochs = 1, 1000, 1000
    c.log_every_steps, c.eval_every_steps, c.checkpoint_every_steps = 100, 500, 500
  else:
    if 'folder' in a.flags:
      if not (a.values.get('a') and a.values.get('b')):
        raise config_lib.ConfigError('configs/cyclegan.py:folder needs a=PATH,b=PATH')
      domains = (f"folder:{a.values['a']}", f"folder:{a.values['b']}")
      epoch_steps = _epoch_steps(a)
    else:
      name = a.values.get('pair') or (pairs[0] if pairs else 'horse2zebra')
      domains = (f'tfds:cycle_gan/{name}',) * 2
      epoch_steps = _epoch_steps(a, max(PAIRS[name]) if name in PAIRS else None)
    size = int(a.values.get('size', 256))
    c.data.update(name=domains[0], domain_a=domains[0], domain_b=domains[1], image_size=size,
                  channels=3, random_flip=False)
    epochs, decay_epochs = EPOCHS, DECAY_EPOCHS
    c.log_every_steps, c.eval_every_steps, c.checkpoint_every_steps = 100, 5000, 5000
    c.eval.num_images = 8
  c.total_steps = (epochs + decay_epochs) * epoch_steps
  for o in (c.optim.g, c.optim.d):
    o.update(name='adam', lr=2e-4, b1=0.5, b2=0.999, schedule='linear',
             decay_start_step=epochs * epoch_steps)
  c = config_lib.finish(c, a)
  if 'smoke' in a.flags:
    c.batch_size = 4 if not a.toy else 16
    c.cyclegan.update(pool_size=6, n_blocks=1, d_layers=2)
    c.model.update(g_ch=4, d_ch=4, mlp_hidden=16)
    c.eval.update(num_samples=64, num_images=4)
    if not a.toy:
      c.data.image_size = 32
  return c
