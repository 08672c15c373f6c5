"""Shared config defaults, the `get_config(arg)` argument grammar, and validation.

Every file in configs/ starts from `base_config()`, so every key below exists in every
config and a variant is a one-line swap (`--config.loss=hinge`). The argument after the
colon in `--config=configs/sngan.py:ARG` is a comma-separated list of tokens:
  a dataset name    cifar10, mnist, ... or a built-in 2-D one (gaussians8, ...), which also
                    switches to the toy MLP and the file's toy recipe
  a flag            file-specific (e.g. `cnn`), plus `smoke` everywhere: a tiny, fast run
  key=value         file-specific settings (e.g. `setting=C`)
"""
import dataclasses
import math
import os
from typing import Iterable, Mapping, Optional

import ml_collections
from ml_collections.config_flags.config_flags import ConfigFileFlagParser

from wgan_jax.errors import ConfigError

# Dataset names as config-argument tokens (the registries in wgan_jax.data hold the same
# names, checked by a test; they are not imported here to keep config loading light).
TOY_DATASETS = ('gaussians8', 'gaussians25', 'swissroll', 'parallel_lines', 'gaussians8_rotated')
IMAGE_DATASETS = ('cifar10', 'mnist', 'fashion_mnist', 'celeb_a', 'stl10')
# The names of wgan_jax.parallel.STRATEGIES (checked by a test; that module imports jax).
STRATEGIES = ('single', 'pmap', 'jit')
# model.conv_impl values (wgan_jax.ops.conv.CONV_IMPLS, checked by a test; not imported here
# to keep config loading light).
CONV_IMPLS = ('auto', 'xla', 'im2col', 'winograd')


def optimizer_config(name='adam', lr=1e-4, b1=0.0, b2=0.9, eps=1e-8, schedule='constant',
                     decay_start_step=0):
  """One player's optimizer (wgan_jax.optim); decay_start_step: the generator step at which
  the linear schedule starts decaying (0: from the start; total_steps or more: never)."""
  return ml_collections.ConfigDict(dict(name=name, lr=lr, b1=b1, b2=b2, eps=eps,
                                        schedule=schedule, decay_start_step=decay_start_step))


def base_config() -> ml_collections.ConfigDict:
  """Defaults shared by every config file (WGAN-GP-like; each file sets its recipe)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  # The model family (wgan_jax.families): gan | bigan | cyclegan | wae_gan | wae_mmd | vae.
  c.family = 'gan'
  # family bigan (wgan_jax.families.bigan): encoder deterministic | gaussian; nets mlp |
  # bigan_mnist | ali_cifar10 (wgan_jax.models.bigan).
  c.bigan = ml_collections.ConfigDict(dict(encoder='deterministic', nets='mlp'))
  c.total_steps = 100_000           # generator updates
  c.batch_size = 64                 # global critic batch (real and fake each)
  c.g_batch_size = 0                # generator-update batch; 0: same as batch_size
  c.n_critic = 5
  # Critic warm-up (the official WGAN schedule): n_critic_warmup critic updates instead of
  # n_critic at steps t < n_critic_warmup_steps and at every t % n_critic_warmup_every == 0
  # (0: never); n_critic_warmup 0 disables it. configs/wgan.py: 100, 25, 500.
  c.n_critic_warmup = 0
  c.n_critic_warmup_steps = 25
  c.n_critic_warmup_every = 500
  c.loss = 'wasserstein'
  c.ema_decay = 0.0                 # EMA of generator weights; 0 disables
  c.ema_start = 0                   # before this generator update the EMA copies the weights
  c.ortho_reg = 0.0                 # BigGAN's orthogonal regularisation of G (beta; 0: off)
  c.lipschitz = ml_collections.ConfigDict(dict(
      method='gp', clip_value=0.01, gp_weight=10.0, gp_one_sided=False, gp_target=1.0,
      r1_gamma=10.0))
  c.optim = ml_collections.ConfigDict(dict(g=optimizer_config(), d=optimizer_config()))
  # Data (wgan_jax.data): name is a dataset (cifar10, ..., gaussians8, ...), folder:PATH,
  # npz:PATH or tfds:NAME; placement auto | device | host | stream (wgan_jax.data.source);
  # image_size (0: the data's) resizes the centred square; channels (0: the data's majority)
  # converts grey / RGB / RGBA (alpha on white): one convention, wgan_jax.data.pixels.
  c.data = ml_collections.ConfigDict(dict(
      name='cifar10', split='train', data_dir='', placement='auto', device_budget_mb=2048.0,
      host_budget_mb=16384.0, stream_workers=2, random_flip=False, image_size=0, channels=0,
      # Two-domain runs (family cyclegan): the datasets of domains A and B, names as `name`
      # (tfds:cycle_gan/PAIR reads its split + 'A' / 'B'); '' for every other family.
      domain_a='', domain_b=''))
  c.model = ml_collections.ConfigDict(dict(
      name='resnet', z_dim=128, g_batch_norm=True, d_norm='none', g_spectral_norm=False,
      g_ch=256, d_ch=128, activation='relu', mlp_hidden=512, mlp_layers=3,
      g_name='', g_mlp_layers=0,      # G of another architecture / depth ('', 0: as D)
      d_pool='sum',                   # resnet critic's global pool over (H, W): sum | mean
      d_out_bias=True,                # a bias in the critic's output layer
      compute_dtype='float32',        # or bfloat16: matmuls / convs / activations in bf16
      # Convolution algorithm (wgan_jax/ops/conv.py): auto (winograd on CPU, xla elsewhere) |
      # winograd | im2col | xla; the same function up to float rounding. WGAN_JAX_CONV_IMPL,
      # when set, overrides it.
      conv_impl='auto'))
  # Evaluation (wgan_jax/eval/evaluators.py), every eval_every_steps: eval.num_samples points
  # scored on 2-D data, a grid of eval.num_images samples on images. Image metrics (FID, IS,
  # ...: wgan_jax/eval/image_eval.py) every eval.metrics_every_steps (0: off).
  c.eval = ml_collections.ConfigDict(dict(
      num_samples=2000, num_images=64,
      metrics_every_steps=0, metrics='fid,is', fid_num_samples=5000, is_num_samples=50000,
      swd_num_images=2048, batch_size=100, reference_stats='', inception_weights='',
      intra_fid_num_samples=1000,  # per class (conditional runs)
      # Standing statistics (BigGAN): > 0: sample with G's batch-norm statistics averaged
      # over this many training-mode passes (wgan_jax.eval.standing); 0: the stored ones.
      standing_stats=0))
  c.log_every_steps = 100
  c.eval_every_steps = 1000
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3            # the last K checkpoints are kept
  # parallel.mesh, sharding_rules and fsdp_min_bytes are read by the `jit` strategy only
  # (wgan_jax.parallel: formats). mesh 'data=-1': today's 1-D data parallelism; e.g.
  # 'data=-1,fsdp=2' shards the state over pairs of devices. fsdp_min_bytes 2**16 (64 KiB):
  # below it a leaf (biases, norm statistics, spectral-norm vectors, counters) saves less
  # memory than its per-step all-gather costs in latency; the kernels above it hold nearly
  # all the bytes of the papers' models (a 3x3x128x128 conv is 576 KiB).
  c.parallel = ml_collections.ConfigDict(dict(
      strategy='single', mesh='data=-1', sharding_rules=('.*=fsdp',), fsdp_min_bytes=2**16))
  # Class-conditional GANs: method none | projection | acgan; num_classes 0 = the dataset's.
  # The AC-WGAN-GP weights (gan_cifar_resnet.py: ACGAN_SCALE = 1., ACGAN_SCALE_G = 0.1).
  c.conditional = ml_collections.ConfigDict(dict(
      method='none', num_classes=0, acgan_d_weight=1.0, acgan_g_weight=0.1))
  # The auto-encoder families (wgan_jax.families.autoencoders; configs/wae.py, vae.py).
  c.wae = ml_collections.ConfigDict(dict(lambda_=10.0, recon_scale=1.0, critic_hidden=512,
                                         critic_layers=4))
  c.vae = ml_collections.ConfigDict(dict(obs_std=0.1))
  # CycleGAN (wgan_jax.families.cyclegan; Zhu et al. 2017): the cycle loss weight
  # (lambda_A = lambda_B), the identity weight (x lambda_cyc; 0: off), the image pools' size
  # (0: none), the generators' residual blocks (0: 9 at 256, 6 below) and the PatchGAN's
  # stride-2 layers (3: 70x70).
  c.cyclegan = ml_collections.ConfigDict(dict(
      lambda_cyc=10.0, lambda_identity=0.5, pool_size=50, n_blocks=0, d_layers=3))
  return c


@dataclasses.dataclass
class Arg:
  """A parsed `get_config` argument."""
  dataset: Optional[str] = None
  flags: set = dataclasses.field(default_factory=set)
  values: dict = dataclasses.field(default_factory=dict)

  @property
  def toy(self) -> bool:
    return self.dataset in TOY_DATASETS


def parse_arg(arg: Optional[str], *, flags: Iterable[str] = (),
              keys: Iterable[str] = ()) -> Arg:
  """Parses 'tok1,tok2,key=value' against the file's `flags` and `keys` (+ datasets, smoke)."""
  flags, keys = set(flags) | {'smoke'}, set(keys)
  out = Arg()
  for token in filter(None, (t.strip() for t in (arg or '').split(','))):
    if '=' in token:
      key, value = token.split('=', 1)
      if key not in keys:
        raise ConfigError(f'unknown config argument key {key!r} in {arg!r}; valid keys: '
                          f'{", ".join(sorted(keys)) or "none"}')
      out.values[key] = value
    elif token in TOY_DATASETS + IMAGE_DATASETS:
      out.dataset = token
    elif token in flags:
      out.flags.add(token)
    else:
      valid = ', '.join(sorted(flags) + list(TOY_DATASETS + IMAGE_DATASETS))
      raise ConfigError(f'unknown config argument {token!r} in {arg!r}; valid: {valid}')
  return out


def use_toy_mlp(c: ml_collections.ConfigDict, dataset: str) -> None:
  """Switches a config to a built-in 2-D dataset and gan_toy.py's MLP (3 x 512 ReLU)."""
  c.data.name = dataset
  c.model.update(name='mlp', z_dim=2, g_batch_norm=False, mlp_hidden=512, mlp_layers=3)
  c.log_every_steps = 100
  c.eval_every_steps = 500
  c.checkpoint_every_steps = 500


# The WGAN-GP paper's architecture-robustness settings (Gulrajani et al. 2017, Section 5.2 /
# Figure 2, LSUN bedrooms: only WGAN-GP trained every one with one set of hyperparameters),
# as config-argument flags of every config file:
#   no_bn_g  no batch norm in the generator (alias nobn_g; the paper also kept the number of
#            filters constant across G's layers, which the standard CNN does not)
#   mlp_g    a 4-layer 512-unit ReLU MLP generator against the file's critic
#   no_norm  no normalisation anywhere: no batch norm in G, no layer / batch norm in D (spectral
#            normalisation, a Lipschitz method, stays with lipschitz.method=spectral)
#   tanh     tanh nonlinearities everywhere in G and D (models mlp and dcgan)
ARCH_FLAGS = ('no_bn_g', 'nobn_g', 'mlp_g', 'no_norm', 'tanh')


def apply_arch_flags(c: ml_collections.ConfigDict, flags: Iterable[str]) -> None:
  """Applies the ARCH_FLAGS among `flags` to the model config (nothing else changes)."""
  flags = set(flags)
  if flags & {'no_bn_g', 'nobn_g', 'no_norm'}:
    c.model.g_batch_norm = False
  if 'no_norm' in flags and c.model.d_norm in ('layer', 'batch'):
    c.model.d_norm = 'none'
  if 'mlp_g' in flags:
    c.model.update(g_name='mlp', g_mlp_layers=4, mlp_hidden=512, g_batch_norm=False)
  if 'tanh' in flags:
    c.model.activation = 'tanh'


# Class-conditional flags of every config file:
#   conditional  a projection discriminator (Miyato & Koyama 2018) and conditional batch
#                norm in G (an embedding concatenated to z for the toy MLP)
#   acgan        an auxiliary-classifier critic (AC-WGAN-GP, Gulrajani et al. 2017: critic
#                CE on real examples, weight 1.0; generator CE on fakes, weight 0.1)
CONDITIONAL_FLAGS = ('conditional', 'acgan')
CONDITIONAL_METHODS = ('none', 'projection', 'acgan')


def apply_conditional_flags(c: ml_collections.ConfigDict, flags: Iterable[str]) -> None:
  """Applies the CONDITIONAL_FLAGS among `flags` (labels from the dataset)."""
  flags = set(flags)
  _check(not flags >= set(CONDITIONAL_FLAGS),
         'config arguments conditional and acgan exclude each other; pick one')
  if 'conditional' in flags:
    c.conditional.method = 'projection'
  if 'acgan' in flags:
    c.conditional.update(method='acgan', acgan_d_weight=1.0, acgan_g_weight=0.1)


def num_classes(c: ml_collections.ConfigDict, dataset_classes: int) -> int:
  """The run's number of classes: 0 when unconditional, else conditional.num_classes or
  the dataset's; ConfigError when a conditional run has fewer than 2 classes."""
  if c.get('conditional') is None or c.conditional.method == 'none':
    return 0  # configs saved before conditional GANs existed have no `conditional`
  _check(dataset_classes >= 2,
         f'conditional.method {c.conditional.method!r} needs a labelled dataset; '
         f'{c.data.name!r} has {dataset_classes} class{"es" if dataset_classes != 1 else ""}')
  k = c.conditional.num_classes or dataset_classes
  _check(k >= dataset_classes, f'conditional.num_classes={k} is below the {dataset_classes} '
                               f'classes of {c.data.name!r} (0: the dataset\'s)')
  return k


# The `evals` block of configs saved before it was merged into `eval`: old name -> new name
# (the other keys kept theirs).
OLD_EVALS_KEYS = {'every_steps': 'metrics_every_steps', 'num_samples': 'fid_num_samples'}


def upgrade_eval(saved: dict) -> dict:
  """A saved config (config.json, a checkpoint's config) in today's eval layout.

  Configs saved before `eval` and `evals` were one block: `evals` moves into `eval`
  (OLD_EVALS_KEYS renamed); eval keys a saved config lacks get base_config's values (off,
  for the image metrics). Parallel keys it lacks (parallel.mesh, sharding_rules,
  fsdp_min_bytes: saved before the `jit` mesh had them) get base_config's too. Returns a new
  dict; `saved` is unchanged.
  """
  out = dict(saved)
  base = base_config()
  evals = out.pop('evals', None) or {}
  merged = base.eval.to_dict()
  merged.update(out.get('eval') or {})
  merged.update({OLD_EVALS_KEYS.get(k, k): v for k, v in evals.items()})
  out['eval'] = merged
  out['parallel'] = {**base.parallel.to_dict(), **(out.get('parallel') or {})}
  return out


def shrink_for_smoke(c: ml_collections.ConfigDict) -> None:
  """`smoke`: a few steps of tiny models, for tests and a first look at a config."""
  c.total_steps = 4
  c.batch_size = 16
  c.g_batch_size = 0
  c.n_critic = min(c.n_critic, 2)
  if c.n_critic_warmup:
    c.n_critic_warmup = 3  # the schedule stays on, with a cheap warm-up
  c.model.update(g_ch=16, d_ch=16, mlp_hidden=32)
  c.eval.update(num_samples=128, num_images=16)
  c.log_every_steps = 1
  c.eval_every_steps = 2
  c.checkpoint_every_steps = 2


def start(arg: Optional[str], *, keys: Iterable[str] = (), flags: Iterable[str] = ()) -> tuple:
  """Every config file's first step: (`arg` parsed against the flags every file takes,
  `base_config()` on the argument's dataset, default cifar10).

  The flags are cnn / resnet (the image architecture), ARCH_FLAGS, CONDITIONAL_FLAGS, smoke
  and the file's own `flags`; `keys` are the file's key=value settings.
  """
  a = parse_arg(arg, flags=('cnn', 'resnet') + ARCH_FLAGS + CONDITIONAL_FLAGS + tuple(flags),
                keys=keys)
  c = base_config()
  c.data.name = a.dataset or 'cifar10'
  return a, c


# The named datasets larger than 32x32: a ResNet on them takes the larger schedules' base
# width (wgan_jax/models/resnet.py SCHEDULES; sngan_projection's ch 64), not the CIFAR
# configs' 256 / 128, which the schedules' 16x multipliers would make 4096-channel layers.
LARGE_IMAGE_DATASETS = ('stl10', 'celeb_a')
LARGE_RESNET_WIDTH = 64


def finish(c: ml_collections.ConfigDict, a: Arg) -> ml_collections.ConfigDict:
  """Every config file's last step: the ResNet's width on LARGE_IMAGE_DATASETS, the
  architecture and conditional flags of its argument `a`, then `smoke`'s shrinking;
  returns `c`."""
  if c.model.name == 'resnet' and c.data.name in LARGE_IMAGE_DATASETS:
    c.model.update(g_ch=LARGE_RESNET_WIDTH, d_ch=LARGE_RESNET_WIDTH)
  apply_arch_flags(c, a.flags)
  apply_conditional_flags(c, a.flags)
  if 'smoke' in a.flags:
    shrink_for_smoke(c)
  return c


CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          'configs')


def load_config(file: str, arg: str = '',
                overrides: Optional[Mapping] = None) -> ml_collections.ConfigDict:
  """configs/<file>.py:<arg> as --config loads it, with dotted-key overrides applied.

  Args:
    file: a config file name in configs/ without '.py' (wgan, wgan_gp, sngan).
    arg: the config argument (e.g. 'gaussians8').
    overrides: {'model.mlp_hidden': 128, ...}; every key must exist in the config.
  Returns:
    The ConfigDict.
  Raises:
    ConfigError: an unknown config file or override key.
  """
  path = os.path.join(CONFIG_DIR, f'{file}.py')
  if not os.path.exists(path):
    raise ConfigError(f'no config file {path!r}')
  config = ConfigFileFlagParser(name='config').parse(f'{path}:{arg}' if arg else path)
  with config.unlocked():
    for key, value in (overrides or {}).items():
      node = config
      *parents, leaf = key.split('.')
      for part in parents:
        node = node[part] if part in node else None
        if node is None:
          break
      if node is None or leaf not in node:
        raise ConfigError(f'unknown config key {key!r} for configs/{file}.py')
      node[leaf] = value
  return config


INT32_MAX = 2**31 - 1


def _finite(value) -> bool:
  return math.isfinite(value)


def _check(ok: bool, message: str) -> None:
  if not ok:
    raise ConfigError(message)


def _check_name(value, valid, key: str) -> None:
  _check(value in valid, f'unknown {key} {value!r}; valid: {", ".join(valid)}')


def check_mesh_needs_jit(p: ml_collections.ConfigDict) -> None:
  """ConfigError when parallel.mesh or sharding_rules differ from their defaults under a
  strategy other than `jit`, which alone reads them."""
  default = base_config().parallel
  for key in ('mesh', 'sharding_rules'):
    value = tuple(p[key]) if key == 'sharding_rules' else p[key]
    if p.strategy != 'jit' and value != default[key]:
      raise ConfigError(f'parallel.{key}={value!r} is read by parallel.strategy=jit only (this '
                        f'run: {p.strategy}); set --config.parallel.strategy=jit or drop it')


def validate(c: ml_collections.ConfigDict) -> None:
  """Raises ConfigError (one line: the key, the value, what is valid) on a bad value.

  Names (loss, lipschitz.method, model.name, optimizers, data.name) are checked by the
  registries that resolve them, when `train.Run` builds the run, still before anything
  is written.
  """
  _check_name(c.parallel.strategy, STRATEGIES, 'parallel.strategy')
  check_mesh_needs_jit(c.parallel)
  _check(c.parallel.fsdp_min_bytes >= 0,
         f'parallel.fsdp_min_bytes must be >= 0, got {c.parallel.fsdp_min_bytes}')
  # The step counter, PRNG seeds and labels are int32 on the device.
  _check(0 <= c.seed <= INT32_MAX, f'seed must be in [0, {INT32_MAX}], got {c.seed}')
  _check(1 <= c.total_steps <= INT32_MAX,
         f'total_steps must be in [1, {INT32_MAX}] (the step counter is int32), got '
         f'{c.total_steps}')
  for player in ('g', 'd'):
    o = c.optim[player]
    _check(o.lr >= 0, f'optim.{player}.lr must be >= 0, got {o.lr}')
    _check(_finite(o.lr), f'optim.{player}.lr must be finite, got {o.lr}')
    _check(0 <= o.b1 < 1 and 0 <= o.b2 < 1,
           f'optim.{player}.b1 and b2 must be in [0, 1), got {o.b1}, {o.b2}')
    _check(_finite(o.eps) and o.eps > 0, f'optim.{player}.eps must be > 0 and finite, got '
                                          f'{o.eps}')
    start = o.get('decay_start_step', 0)
    _check(0 <= start <= INT32_MAX, f'optim.{player}.decay_start_step must be in [0, '
                                    f'{INT32_MAX}] (0: decay from the start), got {start}')
  for key in ('batch_size', 'n_critic', 'log_every_steps', 'checkpoint_every_steps',
              'keep_checkpoints'):
    _check(c[key] >= 1, f'{key} must be >= 1, got {c[key]}')
  _check(c.eval_every_steps >= 0,
         f'eval_every_steps must be >= 0 (0: off), got {c.eval_every_steps}')
  _check(c.g_batch_size >= 0, f'g_batch_size must be >= 0 (0: batch_size), got {c.g_batch_size}')
  for key in ('n_critic_warmup', 'n_critic_warmup_steps', 'n_critic_warmup_every'):
    _check(0 <= c.get(key, 0) <= INT32_MAX, f'{key} must be in [0, {INT32_MAX}] '
                                            f'(n_critic_warmup 0: no warm-up), got {c.get(key)}')
  for key in ('batch_size', 'g_batch_size', 'n_critic', 'log_every_steps', 'eval_every_steps',
              'checkpoint_every_steps', 'keep_checkpoints'):
    _check(c[key] <= INT32_MAX, f'{key} must be <= {INT32_MAX}, got {c[key]}')
  _check(c.lipschitz.clip_value > 0,
         f'lipschitz.clip_value must be > 0, got {c.lipschitz.clip_value}')
  _check(_finite(c.lipschitz.clip_value),
         f'lipschitz.clip_value must be finite, got {c.lipschitz.clip_value}')
  for key in ('gp_weight', 'gp_target', 'r1_gamma'):
    value = c.lipschitz.get(key, 0.0)
    _check(_finite(value) and value >= 0,
           f'lipschitz.{key} must be >= 0 and finite, got {value}')
  _check(0 <= c.ema_decay < 1, f'ema_decay must be in [0, 1) (0 disables), got {c.ema_decay}')
  _check(0 <= c.get('ema_start', 0) <= INT32_MAX,
         f'ema_start must be in [0, {INT32_MAX}], got {c.get("ema_start")}')
  _check(_finite(c.get('ortho_reg', 0.0)) and c.get('ortho_reg', 0.0) >= 0,
         f'ortho_reg must be >= 0 and finite (0: off), got {c.get("ortho_reg")}')
  _check(c.eval.get('standing_stats', 0) >= 0,
         f'eval.standing_stats must be >= 0 (0: off), got {c.eval.get("standing_stats")}')
  _check(not c.eval.get('standing_stats', 0) or c.model.name == 'biggan',
         f'eval.standing_stats needs model biggan (its batch norm takes the momentum), not '
         f'{c.model.name!r}; set eval.standing_stats=0')
  _check(c.model.z_dim >= 1, f'model.z_dim must be >= 1, got {c.model.z_dim}')
  _check_name(c.model.get('conv_impl', 'auto'), CONV_IMPLS, 'model.conv_impl')
  for key in ('g_ch', 'd_ch', 'mlp_hidden', 'mlp_layers'):
    if key in c.model:
      _check(c.model[key] >= 1, f'model.{key} must be >= 1, got {c.model[key]}')
  if 'g_mlp_layers' in c.model:
    _check(c.model.g_mlp_layers >= 0,
           f'model.g_mlp_layers must be >= 0 (0: as the critic), got {c.model.g_mlp_layers}')
  _validate_data(c.data)
  _check(c.eval.num_samples >= 2, f'eval.num_samples must be >= 2, got {c.eval.num_samples}')
  _check(c.eval.num_images >= 1, f'eval.num_images must be >= 1, got {c.eval.num_images}')
  cond = c.get('conditional')
  if cond is not None:
    _check_name(cond.method, CONDITIONAL_METHODS, 'conditional.method')
    _check(cond.num_classes >= 0,
           f'conditional.num_classes must be >= 0 (0: the dataset\'s), got {cond.num_classes}')
    for key in ('acgan_d_weight', 'acgan_g_weight'):
      _check(_finite(cond[key]) and cond[key] >= 0,
             f'conditional.{key} must be >= 0 and finite, got {cond[key]}')
  _validate_domains(c)
  if c.lipschitz.method == 'spectral':
    _check(c.model.d_norm in ('none', 'spectral'),
           f'lipschitz.method spectral normalises the critic; model.d_norm must be none or '
           f'spectral, got {c.model.d_norm!r}')


PLACEMENTS = ('auto', 'device', 'host', 'stream')  # data.placement (wgan_jax.data.source)


def _validate_domains(c: ml_collections.ConfigDict) -> None:
  """Two domains (data.domain_a, data.domain_b) exactly for family cyclegan, which is
  unconditional and has no image metrics of G(z)."""
  domains = (c.data.get('domain_a', ''), c.data.get('domain_b', ''))
  if c.get('family', 'gan') != 'cyclegan':
    _check(not any(domains), f'data.domain_a / data.domain_b are read by family cyclegan only '
                             f'(this run: {c.get("family", "gan")}); drop them')
    return
  _check(all(domains), f'family cyclegan needs two datasets, data.domain_a and data.domain_b '
                       f'(got {domains[0]!r}, {domains[1]!r}), e.g. '
                       f'--config=configs/cyclegan.py:horse2zebra')
  cond = c.get('conditional')
  _check(cond is None or cond.method == 'none',
         f'family cyclegan is unconditional; set conditional.method=none (got '
         f'{cond.method if cond is not None else None!r})')
  _check(not c.eval.metrics_every_steps,
         f'eval.metrics_every_steps={c.eval.metrics_every_steps}: image metrics of G(z) do not '
         f'apply to family cyclegan (its evaluator reports eval/cycle_error); set it to 0')


def _validate_data(d: ml_collections.ConfigDict) -> None:
  """The data keys that need no data to check (names are checked when the data opens)."""
  _check_name(d.get('placement', 'auto'), PLACEMENTS, 'data.placement')
  for key in ('device_budget_mb', 'host_budget_mb'):
    value = d.get(key, 0)
    _check(_finite(value) and value >= 0, f'data.{key} must be >= 0 and finite, got {value}')
  _check(d.get('stream_workers', 1) >= 0,
         f'data.stream_workers must be >= 0 (0: read in the training process), got '
         f'{d.get("stream_workers")}')
  _check(d.get('image_size', 0) >= 0,
         f'data.image_size must be >= 0 (0: the images\' own size), got {d.get("image_size")}')
  _check(d.get('channels', 0) in (0, 1, 3),
         f'data.channels must be 0 (the majority of the images), 1 or 3, got '
         f'{d.get("channels")}')


def critic_norm(c: ml_collections.ConfigDict) -> str:
  """The critic's normalisation: 'spectral' whenever lipschitz.method is spectral."""
  return 'spectral' if c.lipschitz.method == 'spectral' else c.model.d_norm


def critic_schedule_fields(c: ml_collections.ConfigDict) -> dict:
  """n_critic and the warm-up keys (0: off where a saved config predates them), as the
  keyword arguments of wgan_jax.step.CriticSchedule."""
  return dict(n_critic=c.n_critic, warmup=c.get('n_critic_warmup', 0),
              warmup_steps=c.get('n_critic_warmup_steps', 0),
              warmup_every=c.get('n_critic_warmup_every', 0))


def g_batch_size(c: ml_collections.ConfigDict) -> int:
  return c.g_batch_size or c.batch_size
