"""Images/s of the FID Inception features against pytorch-fid's, measured in one run.

  python -m benchmarks.inception_features [--batch_sizes=50] [--input_size=32] [--iters=3]
      [--rounds=2] [--weights=inception_fid.npz] [--torch_python=/tmp/venv_fid/bin/python]

The wgan_jax side is the evaluation's feature function (inception.make_feature_fn: bilinear
resize to 299, pool3 features and logits) on the default JAX device; inputs are random
images at --input_size (32: CIFAR-10, the resize included; 299: the network alone). Without
--weights the network runs on random weights of the right shapes (same cost).

With --torch_python (an interpreter with torch, torchvision and pytorch-fid, see
benchmarks/README.md), pytorch-fid's own InceptionV3 (benchmarks/torch_reference/
fid_inception.py) runs the same batches; the two sides alternate --rounds times per batch
size (a shared machine's load moves both alike) and the line gives both medians and the
ratio jax / torch (> 1: wgan_jax faster). Each side also reports its images per CPU-second
x cores (`per_cpu_s`), a figure that contention moves less than the wall-clock rate.
Compilation / the first call are excluded. Never run by the test suite; prints one JSON line.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=wrong-import-position

from wgan_jax.eval import inception  # pylint: disable=wrong-import-position

TORCH_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'torch_reference',
                            'fid_inception.py')


def random_params(seed: int = 0) -> dict:
  """Random weights of the network's shapes, filled by NumPy (no RNG compilation)."""
  rng = np.random.default_rng(seed)
  flat = {}
  for name, shape in inception.param_shapes().items():
    if name.endswith('/var'):
      flat[name] = np.ones(shape, np.float32)
    else:
      fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
      flat[name] = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
  return inception.flat_to_params(flat)


def jax_side(params, batch_size: int, input_size: int):
  """(compile + first call seconds, measure(iters) -> (images/s, images per CPU-s x cores))."""
  images = np.random.default_rng(1).uniform(
      -1, 1, (batch_size, input_size, input_size, 3)).astype(np.float32)
  fn = inception.make_feature_fn(params, batch_size=batch_size)
  t0 = time.perf_counter()
  fn(images)
  first_s = time.perf_counter() - t0

  def measure(iters: int):
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(iters):
      fn(images)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return iters * batch_size / wall, iters * batch_size * os.cpu_count() / cpu

  return first_s, measure


def torch_side(torch_python: str, batch_size: int, input_size: int, iters: int):
  """(images/s, images per CPU-s x cores) of one pytorch-fid process."""
  out = subprocess.run([torch_python, TORCH_SCRIPT, '--batch_size', str(batch_size),
                        '--input_size', str(input_size), '--iters', str(iters),
                        '--threads', str(os.cpu_count())],
                       capture_output=True, text=True, check=True).stdout
  result = json.loads(out.strip().splitlines()[-1])
  return result['images_per_s'], result['images_per_cpu_s']


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--batch_sizes', default='50')
  parser.add_argument('--input_size', type=int, default=32)
  parser.add_argument('--iters', type=int, default=3)
  parser.add_argument('--rounds', type=int, default=2)
  parser.add_argument('--weights', default='')
  parser.add_argument('--torch_python', default='')
  args = parser.parse_args()
  params = inception.load_params(args.weights).params if args.weights else random_params()
  results = []
  for batch_size in (int(b) for b in args.batch_sizes.split(',')):
    first_s, measure = jax_side(params, batch_size, args.input_size)
    jax_rates, torch_rates = [], []
    for _ in range(args.rounds):
      jax_rates.append(measure(args.iters))
      if args.torch_python:
        torch_rates.append(torch_side(args.torch_python, batch_size, args.input_size,
                                      args.iters))
    row = {'batch_size': batch_size, 'compile_and_first_s': round(first_s, 2),
           'jax_images_per_s': round(statistics.median(r[0] for r in jax_rates), 2),
           'jax_per_cpu_s': round(statistics.median(r[1] for r in jax_rates), 2)}
    if torch_rates:
      row.update(torch_images_per_s=round(statistics.median(r[0] for r in torch_rates), 2),
                 torch_per_cpu_s=round(statistics.median(r[1] for r in torch_rates), 2))
      row.update(ratio=round(row['jax_images_per_s'] / row['torch_images_per_s'], 3),
                 ratio_per_cpu_s=round(row['jax_per_cpu_s'] / row['torch_per_cpu_s'], 3))
    results.append(row)
  device = jax.devices()[0]
  print(json.dumps({'benchmark': 'inception_features', 'device': device.device_kind,
                    'platform': device.platform, 'cpu_count': os.cpu_count(),
                    'input_size': args.input_size, 'network_size': inception.INPUT_SIZE,
                    'weights': 'file' if args.weights else 'random', 'rounds': args.rounds,
                    'results': results}))


if __name__ == '__main__':
  main()
