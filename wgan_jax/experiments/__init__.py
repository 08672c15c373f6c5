"""Runnable reproductions of the WGAN, WGAN-GP and SNGAN papers' claims.

Each module is a command, `python -m wgan_jax.experiments.<name>`, that prints one JSON
result line on stdout and writes its figures (and the same JSON) into `--out_dir`:

  parallel_lines      WGAN paper, Example 1: a critic trained against a fixed P_theta; the
                      dual W1 estimate (spectral, gp, clip) and the JS estimate (js) vs theta.
  toy_suite           WGAN, WGAN-GP, SNGAN and the non-saturating GAN on the 2-D toys: the
                      WGAN-GP toy figure per (method, dataset) and a table of W1 / modes.
  clipping_gradients  WGAN-GP paper, Figure 1(b): per-layer critic gradient norms with weight
                      clipping vs the gradient penalty.
  lipschitz_check     empirical Lipschitz constants of trained critics vs the product of
                      their layers' spectral norms.

Every experiment is also a function (`run(settings) -> result dict`) that the tests call
in-process with tiny settings.
"""
