"""Every random stream of the codebase, in one table.

The contract: every random number is a function of (seed, where it is used), never of how
many numbers were drawn before. A key is `fold_in(PRNGKey(seed), x)` for an x named here;
host-side NumPy draws seed `np.random.default_rng([seed, ..., stream])` the same way. So a
resumed run draws exactly the numbers of an uninterrupted one (no key is stored in a
checkpoint), and a new stream leaves every existing draw unchanged. The values below are
frozen: changing one changes the runs of existing configs.

  stream              value       key of ...                                   used in
  step_key(seed, t)   t           generator step t, split into one key per     step.py
                                  critic update and one for the G update
  LABEL_STREAM        0x1AB       fake labels: fold_in(an update's key, .)     step.py
  FLIP_STREAM         0xF11B      data.random_flip's coins: fold_in(an         step.py
                                  update's key, .)
  SAMPLES_STREAM      0x5EED      fixed noise of the sample grid / toy         eval/evaluators.py
                                  evaluation (eval.num_images / num_samples)
  METRICS_STREAM      0x5EED + 1  fixed noise of the image metrics; fold_in    eval/image_eval.py
                                  (., 1) for intra-class FID's noise
  sample_key(seed, c) c           chunk c (rows c * BATCH ..) of               sample.py
                                  `python -m wgan_jax.sample`
  TOY_TRAIN_STREAM    0           toy batch t: default_rng([seed, t, .])       data/toy.py
  TOY_EVAL_STREAM     1           toy real points of evaluation i:             data/toy.py
                                  default_rng([seed, i, .])
  GRAD_STREAM         0x6AD       clipping_gradients' measurement batches;     experiments/
                                  fold_in(., step) per step
  PROBE_STREAM        0x11B       lipschitz_check's probe points (jax) and     experiments/
                                  pairs (default_rng([seed, .]))
  LINES_EVAL_STREAM   0xE7A1      parallel_lines' evaluation samples           experiments/
  LINES_INIT_STREAM   0x1417      parallel_lines' critic initialisation        experiments/
  STANDING_STREAM     0x57A2D     standing statistics' passes                  train.py
                                  (eval.standing_stats); pass i: fold_in(., i)
  ENCODER_STREAM      0xE2C       bigan's Gaussian encoder noise: fold_in(an   families/
                                  update's key, .)                             bigan.py
  POOL_STREAM         0x9001      CycleGAN's image-pool draws: fold_in(an      families/
                                  update's key, .)                             cyclegan.py

Model initialisation uses PRNGKey(seed) itself (train.Run.init_state); parallel_lines'
critic updates fold_in(fold_in(PRNGKey(seed), t), i) for update i of theta number t.

The stream numbers are plain ints and jax is imported only by the key functions, so modules
that need just the table (wgan_jax.data.toy, imported by the jax-free data worker processes
of wgan_jax.data.stream) do not import jax.
"""
LABEL_STREAM = 0x1AB
FLIP_STREAM = 0xF11B
SAMPLES_STREAM = 0x5EED
METRICS_STREAM = 0x5EED + 1
TOY_TRAIN_STREAM = 0
TOY_EVAL_STREAM = 1
GRAD_STREAM = 0x6AD
PROBE_STREAM = 0x11B
LINES_EVAL_STREAM = 0xE7A1
LINES_INIT_STREAM = 0x1417
STANDING_STREAM = 0x57A2D
ENCODER_STREAM = 0xE2C
POOL_STREAM = 0x9001


def stream_key(seed: int, stream: int) -> 'jax.Array':
  """fold_in(PRNGKey(seed), stream): the key of a named stream of the table."""
  import jax  # pylint: disable=import-outside-toplevel
  return jax.random.fold_in(jax.random.PRNGKey(seed), stream)


def step_key(seed: int, step) -> 'jax.Array':
  """The PRNG key of generator step `step`: fold_in(PRNGKey(seed), step)."""
  import jax  # pylint: disable=import-outside-toplevel
  return jax.random.fold_in(jax.random.PRNGKey(seed), step)


def sample_key(seed: int, chunk: int) -> 'jax.Array':
  """The key of chunk `chunk` of `python -m wgan_jax.sample`: fold_in(PRNGKey(seed), chunk)."""
  import jax  # pylint: disable=import-outside-toplevel
  return jax.random.fold_in(jax.random.PRNGKey(seed), chunk)
