#!/usr/bin/env python3
"""pytorch-fid's Inception forward pass on CPU: images/s, the reference of
benchmarks/inception_features.py.

The network is pytorch-fid's own `InceptionV3(output_blocks=[3])` (resize_input and
normalize_input on, as `fid_score.get_activations` uses it: bilinear resize to 299, pool3
features), built with random weights: its `fid_inception_v3` is replaced by the same
construction without the download of the FID weights (speed does not depend on the values).
Inputs are uniform [0, 1] images [B, 3, S, S] (`ToTensor` output), run under torch.no_grad()
in eval mode, as pytorch-fid does.

Needs `pip install torch==2.14.1 torchvision==0.29.1 pytorch-fid` (benchmarks/README.md).

  python fid_inception.py --batch_size 50 --input_size 32 --iters 3 --threads 2

The last stdout line is one JSON object with images_per_s and images_per_cpu_s (images per
CPU-second x threads: what the wall-clock rate would be with the threads' cores to itself).
"""
import argparse
import json
import time

import torch
from pytorch_fid import inception as pytorch_fid_inception


def fid_inception_v3_random():
  """pytorch_fid.inception.fid_inception_v3 without loading the FID weights."""
  net = pytorch_fid_inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)
  net.Mixed_5b = pytorch_fid_inception.FIDInceptionA(192, pool_features=32)
  net.Mixed_5c = pytorch_fid_inception.FIDInceptionA(256, pool_features=64)
  net.Mixed_5d = pytorch_fid_inception.FIDInceptionA(288, pool_features=64)
  net.Mixed_6b = pytorch_fid_inception.FIDInceptionC(768, channels_7x7=128)
  net.Mixed_6c = pytorch_fid_inception.FIDInceptionC(768, channels_7x7=160)
  net.Mixed_6d = pytorch_fid_inception.FIDInceptionC(768, channels_7x7=160)
  net.Mixed_6e = pytorch_fid_inception.FIDInceptionC(768, channels_7x7=192)
  net.Mixed_7b = pytorch_fid_inception.FIDInceptionE_1(1280)
  net.Mixed_7c = pytorch_fid_inception.FIDInceptionE_2(2048)
  return net


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--batch_size', type=int, default=50)
  p.add_argument('--input_size', type=int, default=32)
  p.add_argument('--iters', type=int, default=3)
  p.add_argument('--threads', type=int, default=2)
  args = p.parse_args()
  torch.set_num_threads(args.threads)
  pytorch_fid_inception.fid_inception_v3 = fid_inception_v3_random
  model = pytorch_fid_inception.InceptionV3([pytorch_fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
  model.eval()
  images = torch.rand(args.batch_size, 3, args.input_size, args.input_size,
                      generator=torch.Generator().manual_seed(0))
  with torch.no_grad():
    t0 = time.perf_counter()
    model(images)  # warm-up
    first_s = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(args.iters):
      features = model(images)[0]
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
  assert tuple(features.shape) == (args.batch_size, 2048, 1, 1), features.shape
  print(json.dumps({'side': 'pytorch-fid', 'torch': torch.__version__,
                    'threads': torch.get_num_threads(), 'batch_size': args.batch_size,
                    'input_size': args.input_size,
                    'images_per_s': round(args.iters * args.batch_size / elapsed, 2),
                    'images_per_cpu_s': round(args.iters * args.batch_size * args.threads / cpu,
                                              2),
                    'first_s': round(first_s, 2)}))


if __name__ == '__main__':
  main()
