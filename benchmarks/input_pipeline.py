"""Input-pipeline throughput per data.placement, and its cost in the real train step.

  python -m benchmarks.input_pipeline [--only=reads,steps] [--read_repeats=3]
      [--read_seconds=1.5] [--png32=20000] [--jpeg128=3000] [--step_batch=16]
      [--step_steps=4] [--step_rounds=5] [--dir=FOLDER]

Prints JSON lines. The data is written into a temporary folder first: `png32`, 32x32 RGB PNG
files, and `jpeg128`, 128x128 RGB JPEG files (quality 90), read as data.name=folder:PATH;
their pixels are smooth random fields plus noise, about as compressible as photos.

reads: images/s of this process's batches of shape (5, 64) (SNGAN's n_critic x batch) for
  host    ImageSource.batches: the uint8 gather with NumPy from the split in host memory
  device  the indices from ImageSource.batches, put on the device, and the jitted gather and
          scaling of the step (wgan_jax.step.real_images on the placed table), waited for
  stream  ImageSource.batches with data.stream_workers = 0 (in this process), 1 and 2: the
          workers decode while the next batch is asked for (prefetch)
  Each case runs in its own process (python -m benchmarks.input_pipeline --case=...), so
  peak_rss_mb is its own; workers_peak_rss_mb is the largest worker's, table_mb the uint8
  split held in host memory (device: until placed). Median of --read_repeats groups of at
  least --read_seconds each; startup_s is the source's construction and the first batch
  (stream: the workers' start-up too).

steps: the SNGAN standard-CNN step (configs/sngan.py:cnn, batch --step_batch, n_critic 1)
  on png32 with data.placement host, device and stream (2 workers) and on synthetic data
  (a fixed batch already on the device), each timing step(state, Run.batch(t)) with the
  batch built inside the timed loop (benchmarks.train_step.Bench); the cases alternate in
  --step_rounds rounds of --step_steps steps (after compilation and a warm-up step), and
  ratio_vs_synthetic is the ratio of the medians (1.0: the input costs nothing).

load_1min (os.getloadavg) is given with every line: the machine may be shared.
"""
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags, logging
import numpy as np
from PIL import Image

_ONLY = flags.DEFINE_list('only', ['reads', 'steps'], 'Parts to run: reads, steps.')
_REPEATS = flags.DEFINE_integer('read_repeats', 3, 'Timed groups per read case (median).')
_SECONDS = flags.DEFINE_float('read_seconds', 1.5, 'Least duration of a timed read group.')
_PNG32 = flags.DEFINE_integer('png32', 20000, 'Number of 32x32 PNG files.')
_JPEG128 = flags.DEFINE_integer('jpeg128', 3000, 'Number of 128x128 JPEG files.')
_STEP_BATCH = flags.DEFINE_integer('step_batch', 16, 'Batch size of the train-step part.')
_STEP_STEPS = flags.DEFINE_integer('step_steps', 4, 'Timed steps per case and round.')
_STEP_ROUNDS = flags.DEFINE_integer('step_rounds', 5, 'Rounds of the train-step part.')
_CASE = flags.DEFINE_string('case', None, 'Internal: run one read case '
                            '(placement,dataset,workers,folder) and print its line.')
_DIR = flags.DEFINE_string('dir', None, 'Use (or fill) this folder instead of a temporary one.')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (5, 64)  # (n_critic, batch) of the read cases
DATASETS = {'png32': (32, 'png'), 'jpeg128': (128, 'jpeg')}


def write_images(folder: str, n: int, size: int, fmt: str, seed: int = 0) -> None:
  """n smooth random RGB images of size x size (bilinear upsampling of 1/4-size noise plus
  small noise) as files 000000.png ... in `folder`, unless it already holds n."""
  os.makedirs(folder, exist_ok=True)
  if len(os.listdir(folder)) == n:
    return
  rng = np.random.default_rng(seed)
  for i in range(n):
    small = Image.fromarray(rng.integers(0, 256, (size // 4, size // 4, 3), dtype=np.uint8))
    pixels = np.asarray(small.resize((size, size), Image.Resampling.BILINEAR), np.int16)
    pixels = np.clip(pixels + rng.integers(-8, 9, pixels.shape), 0, 255).astype(np.uint8)
    options = {'quality': 90} if fmt == 'jpeg' else {}
    Image.fromarray(pixels).save(os.path.join(folder, f'{i:06d}.{fmt}'), **options)


def peak_rss_mb(who=resource.RUSAGE_SELF) -> float:
  return resource.getrusage(who).ru_maxrss / 1024


def timed_groups(fn, *, repeats: int, seconds: float) -> list[float]:
  """Calls/s of fn() in `repeats` groups of at least `seconds` each (fn(t) gets a running
  counter)."""
  rates, t = [], 1
  for _ in range(repeats):
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or count < 2:
      fn(t)
      t, count = t + 1, count + 1
    rates.append(count / (time.perf_counter() - t0))
  return rates


def read_case(placement: str, dataset: str, workers: int, folder: str) -> dict:
  """One read case (module docstring) in this process."""
  from wgan_jax.data import source  # pylint: disable=import-outside-toplevel
  data = {'name': f'folder:{folder}', 'placement': placement, 'stream_workers': workers}
  images = int(np.prod(SHAPE))
  t0 = time.perf_counter()
  src = source.ImageSource(data, seed=0)
  table_mb = src.store.nbytes / 2**20 if placement != 'stream' else 0.0
  if placement == 'device':
    import jax  # pylint: disable=import-outside-toplevel
    from wgan_jax import step as step_lib  # pylint: disable=import-outside-toplevel
    table = jax.device_put(src.take_table())
    gather = jax.jit(lambda table, index: step_lib.real_images({'table': table,
                                                                'index': index}))

    def one(t):
      batch, _ = src.batches(t, shape=SHAPE)
      gather(table, jax.device_put(batch['index'])).block_until_ready()
  else:
    def one(t):
      src.batches(t, shape=SHAPE)
  one(0)
  startup_s = time.perf_counter() - t0
  rates = timed_groups(one, repeats=_REPEATS.value, seconds=_SECONDS.value)
  src.close()
  rate = statistics.median(rates) * images
  return {
      'part': 'reads', 'placement': placement, 'data': dataset,
      'workers': workers if placement == 'stream' else None,
      'image_shape': list(src.data_shape), 'batch_shape': list(SHAPE),
      'images_per_sec': round(rate), 'repeats': [round(r * images) for r in rates],
      'startup_s': round(startup_s, 3), 'table_mb': round(table_mb, 1),
      'peak_rss_mb': round(peak_rss_mb(), 1),
      'workers_peak_rss_mb': round(peak_rss_mb(resource.RUSAGE_CHILDREN), 1)
      if placement == 'stream' and workers else None,
      'load_1min': os.getloadavg()[0],
  }


def read_cases(root: str) -> list[dict]:
  """Every read case, each in a fresh process."""
  cases = []
  for dataset in DATASETS:
    for placement, workers in [('host', 0), ('device', 0), ('stream', 0), ('stream', 1),
                               ('stream', 2)]:
      cases.append((placement, dataset, workers))
  lines = []
  for placement, dataset, workers in cases:
    folder = os.path.join(root, dataset)
    done = subprocess.run(
        [sys.executable, '-m', 'benchmarks.input_pipeline',
         f'--case={placement},{dataset},{workers},{folder}',
         f'--read_repeats={_REPEATS.value}', f'--read_seconds={_SECONDS.value}'],
        capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode:
      raise RuntimeError(f'case {placement},{dataset},{workers} failed: {done.stderr}')
    line = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(line), flush=True)
    lines.append(line)
  return lines


def step_cases(root: str) -> list[dict]:
  """The train-step part (module docstring), cases alternating round by round."""
  from benchmarks import train_step  # pylint: disable=import-outside-toplevel
  from wgan_jax import config_lib  # pylint: disable=import-outside-toplevel

  folder = os.path.join(root, 'png32')
  cases = {'synthetic': None, 'host': 'host', 'device': 'device', 'stream': 'stream'}
  benches = {}
  for name, placement in cases.items():
    overrides = {'batch_size': _STEP_BATCH.value, 'data.name': f'folder:{folder}'}
    if placement:
      overrides.update({'data.placement': placement, 'data.stream_workers': 2})
    config = config_lib.load_config('sngan', 'cnn', overrides)
    benches[name] = train_step.Bench(config, synthetic=placement is None, flops=False)
  rates = {name: [] for name in cases}
  try:
    for _ in range(_STEP_ROUNDS.value):
      for name, bench in benches.items():
        rates[name].append(bench.time_steps(_STEP_STEPS.value, batches_in_loop=True))
  finally:
    for bench in benches.values():
      bench.close()
  reference = statistics.median(rates['synthetic'])
  lines = []
  for name, bench in benches.items():
    rate = statistics.median(rates[name])
    line = {'part': 'steps', 'config': 'configs/sngan.py:cnn', 'data': name,
            'batch_size': _STEP_BATCH.value, 'n_critic': bench.config.n_critic,
            'steps_per_sec': round(rate, 4), 'repeats': [round(r, 4) for r in rates[name]],
            'ratio_vs_synthetic': round(rate / reference, 4),
            'compile_s': round(bench.compile_s, 1), 'load_1min': os.getloadavg()[0]}
    print(json.dumps(line), flush=True)
    lines.append(line)
  return lines


def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.ERROR)
  if _CASE.value:
    placement, dataset, workers, folder = _CASE.value.split(',', 3)
    print(json.dumps(read_case(placement, dataset, int(workers), folder)))
    return
  with tempfile.TemporaryDirectory() as tmp:
    root = _DIR.value or tmp
    counts = {'png32': _PNG32.value, 'jpeg128': _JPEG128.value}
    for dataset, (size, fmt) in DATASETS.items():
      write_images(os.path.join(root, dataset), counts[dataset], size, fmt)
    if 'reads' in _ONLY.value:
      read_cases(root)
    if 'steps' in _ONLY.value:
      step_cases(root)


if __name__ == '__main__':
  app.run(main)
