"""Plumbing shared by the experiments: the toy critic, flags from Settings, outputs.

Experiments print exactly one JSON line on stdout (the result) and write the same JSON and
their figures into `--out_dir`. User errors (a bad flag value, an unwritable out_dir) are
one line on stderr and exit code 2, as for `wgan_jax.main`.
"""
import contextlib
import json
import math
import os
import time
from typing import Callable, Iterable, Mapping, Optional

import jax
import ml_collections
from absl import flags

from wgan_jax import cli, config_lib, models
from wgan_jax.errors import ConfigError, WorkdirError


# ----------------------------------------------------------------------------- models
def toy_model_config(*, hidden: int, layers: int, activation: str = 'relu',
                     d_norm: str = 'none', z_dim: int = 2) -> ml_collections.ConfigDict:
  """A model config for gan_toy.py's MLP pair (wgan_jax.models.build_models)."""
  return ml_collections.ConfigDict(dict(
      name='mlp', z_dim=z_dim, g_batch_norm=False, d_norm=d_norm, g_spectral_norm=False,
      activation=activation, mlp_hidden=hidden, mlp_layers=layers))


def toy_critic(*, hidden: int, layers: int, activation: str = 'relu', d_norm: str = 'none'):
  """The toy MLP critic on 2-D points: a haiku transform with state (x [B, 2] -> [B])."""
  pair = models.build_models(
      toy_model_config(hidden=hidden, layers=layers, activation=activation, d_norm=d_norm),
      data_shape=(2,))
  return pair.d


def lipschitz_config(method: str, *, gp_weight: float = 10.0,
                     clip_value: float = 0.01) -> ml_collections.ConfigDict:
  """A `config.lipschitz` block (wgan_jax.lipschitz.make_plan) for one method."""
  c = config_lib.base_config().lipschitz
  c.update(method=method, gp_weight=float(gp_weight), clip_value=float(clip_value))
  return c


# ----------------------------------------------------------------------------- configs
# gan_toy.py trains at a constant rate; configs/wgan_gp.py's toy recipe decays it (for the
# quickstart's convergence), so the experiments that reproduce gan_toy.py set it back.
GAN_TOY_SCHEDULE = {'optim.g.schedule': 'constant', 'optim.d.schedule': 'constant'}


def train_gan(run, *, hook: Optional[Callable] = None, hook_every: int = 0):
  """Trains a train.Run for config.total_steps with its jitted step, no workdir.

  Args:
    run: a wgan_jax.train.Run.
    hook: hook(step, state, metrics) after every `hook_every`-th step and after the last
      one (it may read the state; the next step donates it).
    hook_every: generator steps between hook calls (0: never).
  Returns:
    (final state, seconds spent in the loop).
  """
  config = run.config
  strategy = run.strategy
  state = strategy.to_device(run.init_state())
  train_step_at = run.train_steps()  # by step: the critic schedule's K
  total = config.total_steps
  start = time.time()
  batch = run.batch(0)
  for t in range(total):
    state, metrics = train_step_at(t)(state, batch)
    if t + 1 < total:
      batch = run.batch(t + 1)
    if hook is not None and hook_every and ((t + 1) % hook_every == 0 or t + 1 == total):
      hook(t + 1, strategy.to_canonical(state), metrics)
  state = jax.block_until_ready(strategy.to_canonical(state))
  return state, time.time() - start


# ----------------------------------------------------------------------------- flags
def parse_floats(text: str, what: str, *, allow_empty: bool = False) -> tuple:
  """'0.5,1,2' -> (0.5, 1.0, 2.0) ('' -> () if allow_empty); ConfigError naming the flag
  otherwise."""
  if allow_empty and not text.strip():
    return ()
  try:
    values = tuple(float(t) for t in text.split(',') if t.strip())
  except ValueError:
    raise ConfigError(f'--{what} must be comma-separated numbers, got {text!r}') from None
  if not values or not all(math.isfinite(v) for v in values):
    raise ConfigError(f'--{what} must be one or more finite numbers, got {text!r}')
  return values


def parse_names(text: str, valid: Iterable[str], what: str) -> tuple:
  """'a,b' -> ('a', 'b') checked against `valid` ('all' selects every name)."""
  valid = tuple(valid)
  names = tuple(t.strip() for t in text.split(',') if t.strip())
  if names == ('all',):
    return valid
  bad = [n for n in names if n not in valid]
  if bad or not names:
    raise ConfigError(f'unknown --{what} {",".join(bad) or text!r}; valid: '
                      f'{", ".join(valid)} (comma-separated) or all')
  return names


def _flag_text(default) -> str:
  """A tuple default as its flag text: 'all' for names, '%g'-joined numbers."""
  if default and all(isinstance(v, str) for v in default):
    return 'all'
  return ','.join(f'{v:g}' for v in default)


def define_flags(defaults: tuple, helps: Mapping[str, str], *, out_dir: str,
                 flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """One flag per Settings field named in `helps`, of the field's type, defaulting to
  `defaults` (a Settings()); tuples are comma-separated text ('all' for every name).
  Also --out_dir (default `out_dir`)."""
  define = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
            str: flags.DEFINE_string}
  for name, help_text in helps.items():
    default = getattr(defaults, name)
    if isinstance(default, tuple):
      flags.DEFINE_string(name, _flag_text(default), help_text, flag_values=flag_values)
    else:
      define[type(default)](name, default, help_text, flag_values=flag_values)
  flags.DEFINE_string('out_dir', out_dir, 'Directory for the JSON and figures.',
                      flag_values=flag_values)


def settings_from_flags(settings_type, helps: Mapping[str, str], *,
                        names: Optional[Mapping[str, Iterable[str]]] = None,
                        empty_ok: Iterable[str] = (),
                        flag_values: flags.FlagValues = flags.FLAGS, **fixed):
  """The Settings of the parsed flags that `define_flags` defined.

  Args:
    settings_type: the experiment's Settings NamedTuple.
    helps: the same flag names as for define_flags.
    names: {field: valid names} of tuple fields holding names (parse_names; 'all' = every
      name); other tuple fields hold numbers (parse_floats).
    empty_ok: tuple fields whose flag may be empty (an empty tuple).
    flag_values: where the flags were defined.
    **fixed: fields given here instead of read from the flags.
  Raises:
    ConfigError: a malformed list.
  """
  names = names or {}
  defaults = settings_type()
  values = dict(fixed)
  for name in helps:
    if name in fixed:
      continue
    value = flag_values[name].value
    if name in names:
      value = parse_names(value, names[name], name)
    elif isinstance(getattr(defaults, name), tuple):
      value = parse_floats(value, name, allow_empty=name in empty_ok)
    values[name] = value
  return settings_type(**values)


def entry(settings_type, helps: Mapping[str, str], *, out_dir: str,
          check: Callable, run: Callable, write: Callable,
          summary: Callable[[Mapping], Mapping] = lambda result: result, **parse) -> None:
  """An experiment's `__main__`: its flags from `settings_type` (define_flags), then
  check(settings), run(settings, out_dir), write(result, out_dir) and the JSON line of
  summary(result), under cli.entry (a bad flag or out_dir: one line, exit 2).

  `parse` goes to settings_from_flags (names=..., empty_ok=...).
  """
  def main(argv) -> None:
    del argv
    settings = settings_from_flags(settings_type, helps, **parse)
    check(settings)
    path = prepare_out_dir(flags.FLAGS.out_dir)
    result = run(settings, path)
    write(result, path)
    emit(summary(result))

  cli.entry(main, define_flags=lambda: define_flags(settings_type(), helps, out_dir=out_dir))


def check_positive(values: Mapping[str, float]) -> None:
  """ConfigError for the first flag whose value is not > 0."""
  for name, value in values.items():
    if not value > 0:
      raise ConfigError(f'--{name} must be > 0, got {value}')


# ----------------------------------------------------------------------------- outputs
def prepare_out_dir(path: str) -> str:
  """Creates `path` (the experiment's --out_dir) or raises WorkdirError saying why not."""
  try:
    os.makedirs(path, exist_ok=True)
    probe = os.path.join(path, '.write_probe')
    with open(probe, 'w') as f:
      f.write('ok')
    os.remove(probe)
  except OSError as e:
    raise WorkdirError(f'cannot write to --out_dir {path!r} ({e.strerror}); '
                       f'pass --out_dir=DIR with a writable directory') from None
  return path


def to_jsonable(obj):
  """Floats rounded to 6 significant digits, NaN / inf as None, tuples as lists."""
  if isinstance(obj, Mapping):
    return {str(k): to_jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [to_jsonable(v) for v in obj]
  if hasattr(obj, 'tolist'):  # NumPy / JAX scalars and arrays
    return to_jsonable(obj.tolist())
  if isinstance(obj, float):
    return float(f'{obj:.6g}') if math.isfinite(obj) else None
  return obj


def write_json(path: str, result: Mapping) -> None:
  with open(path, 'w') as f:
    json.dump(to_jsonable(result), f, indent=2, sort_keys=True)
    f.write('\n')


def emit(result: Mapping) -> str:
  """Prints the result as one JSON line on stdout and returns that line."""
  line = json.dumps(to_jsonable(result), sort_keys=False)
  print(line, flush=True)
  return line


def pyplot():
  """matplotlib.pyplot on the Agg backend (imported lazily, as in wgan_jax.plots: heavy,
  and only the figures need it)."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


@contextlib.contextmanager
def figure(path: str, *args, **kwargs):
  """`with figure(path, ...) as (fig, axes):` plt.subplots(...), saved to `path` (tight
  layout, 100 dpi) when the block ends without an error, closed in any case."""
  plt = pyplot()
  fig, axes = plt.subplots(*args, **kwargs)
  try:
    yield fig, axes
    fig.tight_layout()
    fig.savefig(path, dpi=100)
  finally:
    plt.close(fig)


def write_json_and_figure(result: Mapping, out_dir: str, name: str,
                          plot: Callable[[str, Mapping], None]) -> dict:
  """Writes <out_dir>/<name>.json and draws <out_dir>/<name>.png with plot(path, result);
  returns {'json': path, 'figure': path}."""
  prepare_out_dir(out_dir)
  paths = {'json': os.path.join(out_dir, f'{name}.json'),
           'figure': os.path.join(out_dir, f'{name}.png')}
  write_json(paths['json'], result)
  plot(paths['figure'], result)
  return paths
