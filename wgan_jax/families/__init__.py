"""Model families: what each player is made of and what each critic sees, over one step.

A family (config.family) is a `Family`: its networks' init, what the critic side sees as
real and as fake in a critic update (`critic_view`, None for families without a critic),
and the generator side's objective (`g_objective`: the adversarial term and the family's
extra terms: reconstruction, cycle, identity, KL, MMD). wgan_jax.step runs every family
with the same code (K critic updates, each a loss x Lipschitz method on the family's view,
then one update of the generator side), so every critic keeps every loss and Lipschitz
method, and the spectral-norm state advances in critic updates only.

  gan       a generator G(z) against a critic D(x); class-conditional runs too (gan.py:
            the one place that decides which labels each network takes)
  bigan     BiGAN / ALI: G(z) and an encoder E(x) against a joint critic D(x, z) (bigan.py)
  wae_gan   Wasserstein auto-encoder, a critic on latents; wae_mmd: with an MMD penalty;
  vae       the VAE (autoencoders.py: encoder Q(x) and decoder G(z), prior N(0, I))
  cyclegan  unpaired translation G: A -> B, F: B -> A against critics D_A, D_B with image
            pools, cycle and identity terms (cyclegan.py; data.domain_a / data.domain_b)

Shape glossary:
  b       examples of one update on this device (B / num_shards under pmap)
  real    {'x': [b, ...], 'label': int32 [b] (conditional runs)}: one update's real batch
          (float32; images in [-1, 1])
  view    CriticView: the critic's real and fake inputs (pytrees with leading axis b, the
          same structure), its keyword arguments, and how to read its output
"""
from typing import Callable

from wgan_jax import registry
from wgan_jax.families import autoencoders, bigan, cyclegan, gan
from wgan_jax.families.base import CriticView, Draws, Family, Networks, merge, sample_labels, sample_z

# family name -> build(*, models, loss, cfg, config, bn_axis_name) -> Family
FAMILIES: dict[str, Callable[..., Family]] = {
    'gan': gan.build,
    'bigan': bigan.build,
    'wae_gan': autoencoders.build_wae_gan,
    'wae_mmd': autoencoders.build_wae_mmd,
    'vae': autoencoders.build_vae,
    'cyclegan': cyclegan.build,
}


def build(config, *, models, loss, cfg, bn_axis_name=None) -> Family:
  """The Family of config.family (missing: 'gan').

  Args:
    config: the run's config (the family reads its own settings from it).
    models: the models.ModelPair of config.model: gan's pair; the other families take its
      generator (G, the decoder; CycleGAN's G: X -> Y) and build their encoder / inverse
      map and critic side under wgan_jax.models.
    loss: the critics' objective (losses.GanLoss).
    cfg: the step's static settings (step.StepConfig).
    bn_axis_name: the mapped axis of cross-device batch norm (pmap), for the family's own
      networks.
  Returns:
    The Family; its `models` are the networks the run samples and evaluates with.
  Raises:
    ConfigError (one line): an unknown family, or a setting or dataset it cannot use.
  """
  name = config.get('family', 'gan')
  return registry.lookup(FAMILIES, name, 'family')(models=models, loss=loss, cfg=cfg,
                                                    config=config, bn_axis_name=bn_axis_name)


build_gan = gan.build  # the gan family of a ModelPair, without a config

__all__ = ['CriticView', 'Draws', 'FAMILIES', 'Family', 'Networks', 'build', 'build_gan', 'merge',
           'sample_labels', 'sample_z']
