"""wgan_jax: the Wasserstein-GAN family in functional JAX."""
