"""The variational auto-encoder (Kingma & Welling 2014) as the WAE paper's baseline.

  configs/vae.py:ARG with a dataset (default mnist): mnist, celeb_a, gaussians8, swissroll,
  and `smoke`.

Encoder q(z | x) = N(mean(x), diag exp(log_var(x))) (two Dense heads), prior N(0, I), decoder
likelihood p(x | z) = N(G(z), obs_std^2 I) (Kingma & Welling 2014, Appendix C.2: the Gaussian
MLP decoder; here with a fixed variance, vae.obs_std); the loss is the negative ELBO,
||x - G(z)||^2 / (2 obs_std^2) + KL(q(z | x) || N(0, I)) in closed form (their Appendix B),
one reparameterised sample per example.

  mnist    latent 8, the WAE paper's MNIST encoder (Gaussian head) and decoder (model
           wae_mnist), batch 100, 100 epochs (60k steps), Adam 1e-3 (0.5, 0.999): the
           WAE paper compares its WAEs with a VAE of the same architecture (Section 4,
           Appendix C; official wae.py e_noise 'gaussian'); obs_std 0.1 on [-1, 1] pixels
           (this repo's choice: neither paper gives a Gaussian decoder variance for MNIST,
           Kingma & Welling model MNIST with a Bernoulli decoder).
  celeb_a  latent 64, model wae_celeba, batch 100, 55 epochs (89,500 steps), Adam 1e-3
           (0.5, 0.999) (as WAE-MMD on CelebA), obs_std 0.1.
  gaussians8, swissroll   the toy MLPs (3 x 512 ReLU, latent 2), batch 256, Adam 1e-3
           (0.5, 0.999), 3000 steps, obs_std 0.1 (this repo's toy recipe).

Kingma & Welling's own recipe (Adagrad, lr 0.01-0.02, MLPs with 500 hidden units, weight
decay from a N(0, I) prior on the weights) is not the default: the configs keep the WAE
comparison's architectures and optimiser. Constant rates (the WAE code's decay is not
reproduced).
"""
from wgan_jax import config_lib
from wgan_jax.errors import ConfigError

DATASETS = ('mnist', 'celeb_a', 'gaussians8', 'swissroll')
STEPS_PER_EPOCH = {'mnist': 600, 'celeb_a': 1628}  # 60,000 / 100; 162,770 / 100


def get_config(arg=None):
  a, c = config_lib.start(arg)
  dataset = a.dataset or 'mnist'
  if dataset not in DATASETS:
    raise ConfigError(f'configs/vae.py has recipes for {", ".join(DATASETS)}; got {dataset!r}')
  c.family = 'vae'
  c.update(n_critic=1, batch_size=100)
  c.lipschitz.method = 'none'
  c.vae.obs_std = 0.1
  c.data.name = dataset
  if dataset == 'mnist':
    c.model.update(name='wae_mnist', z_dim=8, g_ch=128)
    c.total_steps = 100 * STEPS_PER_EPOCH['mnist']
  elif dataset == 'celeb_a':
    c.model.update(name='wae_celeba', z_dim=64, g_ch=128)
    c.total_steps = 55 * STEPS_PER_EPOCH['celeb_a']
  else:
    config_lib.use_toy_mlp(c, dataset)
    c.batch_size = 256
    c.total_steps = 3000
  for o in (c.optim.g, c.optim.d):
    o.update(name='adam', lr=1e-3, b1=0.5, b2=0.999, schedule='constant')
  return config_lib.finish(c, a)
