"""Pure jnp operations without haiku (convolution algorithms)."""
