"""Images/s of FID Inception features (pool3 + logits) on the default JAX device; one JSON line.

  python benchmarks/inception_features.py [--batch_sizes=50,100] [--input_size=299]
      [--iters=3] [--weights=inception_fid.npz]

Inputs are random images already at --input_size (299: the resize is the identity), so the
figure is the network alone; with --input_size=32 it includes the bilinear resize to 299.
Without --weights the network runs on random weights of the right shapes (same cost).
Compilation is excluded (one warm-up call per batch size). Never run by the test suite.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=wrong-import-position

from wgan_jax.eval import inception  # pylint: disable=wrong-import-position


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


def measure(params, batch_size: int, input_size: int, iters: int) -> dict:
  images = np.random.default_rng(1).uniform(
      -1, 1, (batch_size, input_size, input_size, 3)).astype(np.float32)
  fn = inception.make_feature_fn(params, batch_size=batch_size)
  t0 = time.perf_counter()
  fn(images)  # compile + first run
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(iters):
    fn(images)
  elapsed = time.perf_counter() - t0
  return {'batch_size': batch_size, 'images_per_s': round(iters * batch_size / elapsed, 2),
          'compile_and_first_s': round(compile_s, 2)}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--batch_sizes', default='50,100')
  parser.add_argument('--input_size', type=int, default=inception.INPUT_SIZE)
  parser.add_argument('--iters', type=int, default=3)
  parser.add_argument('--weights', default='')
  args = parser.parse_args()
  params = inception.load_params(args.weights).params if args.weights else random_params()
  results = [measure(params, int(b), args.input_size, args.iters)
             for b in args.batch_sizes.split(',')]
  device = jax.devices()[0]
  print(json.dumps({'benchmark': 'inception_features', 'device': device.device_kind,
                    'platform': device.platform, 'cpu_count': os.cpu_count(),
                    'input_size': args.input_size, 'network_size': inception.INPUT_SIZE,
                    'weights': 'file' if args.weights else 'random', 'results': results}))


if __name__ == '__main__':
  main()
