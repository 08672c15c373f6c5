"""Regenerates tests/data/inception_reference.npz: PyTorch reference outputs on random weights.

The fixture stores only seeds and the reference's OUTPUTS; the weights (23.9M values) and the
inputs are regenerated from the seeds by tests/inception_testdata.py (NumPy's frozen legacy
RandomState). Regenerate with the project's environment plus a separate one that has torch:

  python3 -m venv /tmp/venv_torch && /tmp/venv_torch/bin/pip install torch numpy
  python tests/data/make_inception_reference.py --torch_python=/tmp/venv_torch/bin/python

Steps: (1) here: random state dict + inputs -> a temporary .npz; (2) in the torch environment:
tests/data/torch_fid_inception.py (own minimal FIDInceptionV3 following pytorch-fid, strict
`load_state_dict`, F.interpolate bilinear align_corners=False) -> outputs; (3) here: the
outputs + seeds -> tests/data/inception_reference.npz.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tests import inception_testdata as testdata  # pylint: disable=wrong-import-position

# name -> (inputs seed, input shape NHWC, network input size)
CASES = {
    'up75': (1, (2, 32, 32, 3), 75),     # CIFAR-size images upsampled to 75
    'down75': (2, (2, 90, 83, 3), 75),   # shrinking: no antialiasing in torch
    # The FID protocol's input size; the only case where Mixed_7b/7c are larger than 1x1,
    # so the only one that checks their pools. Batch 4 as in test_eval_metrics.py.
    'full299': (3, (4, 32, 32, 3), 299),
}
# name -> (inputs seed, input shape NHWC, output size); resize-only checks
RESIZES = {
    'up32to299': (4, (1, 32, 32, 3), (299, 299)),
    'down37x41to16x9': (5, (2, 37, 41, 2), (16, 9)),
}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--torch_python', default='/tmp/venv_torch/bin/python')
  parser.add_argument('--out', default=os.path.join(ROOT, testdata.FIXTURE))
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    data = {f'sd/{k}': v for k, v in testdata.random_state_dict(testdata.WEIGHTS_SEED).items()}
    for name, (seed, shape, size) in CASES.items():
      data[f'images/{name}'] = testdata.random_images(seed, shape)
      data[f'size/{name}'] = np.array(size)
    for name, (seed, shape, size) in RESIZES.items():
      data[f'resize_in/{name}'] = testdata.random_images(seed, shape)
      data[f'resize_size/{name}'] = np.array(size)
    np.savez(os.path.join(tmp, 'in.npz'), **data)
    subprocess.run([args.torch_python, os.path.join(ROOT, 'tests/data/torch_fid_inception.py'),
                    os.path.join(tmp, 'in.npz'), os.path.join(tmp, 'out.npz')], check=True)
    ref = dict(np.load(os.path.join(tmp, 'out.npz')))
  fixture = {'weights_seed': np.array(testdata.WEIGHTS_SEED),
             'torch_keys': ref['torch_keys'], 'torch_version': ref['torch_version']}
  for name, (seed, shape, size) in CASES.items():
    fixture[f'case/{name}'] = np.array([seed, size, *shape])
    fixture[f'features/{name}'] = ref[f'features/{name}']
    fixture[f'logits/{name}'] = ref[f'logits/{name}']
  for name, (seed, shape, size) in RESIZES.items():
    fixture[f'resize_case/{name}'] = np.array([seed, *size, *shape])
    # Every 7th row and column of large outputs keeps the file small.
    step = 7 if size[0] > 100 else 1
    fixture[f'resize/{name}'] = ref[f'resize/{name}'][:, ::step, ::step]
    fixture[f'resize_step/{name}'] = np.array(step)
  np.savez_compressed(args.out, **fixture)
  print(f'wrote {args.out} ({os.path.getsize(args.out)} bytes, torch {ref["torch_version"]})')


if __name__ == '__main__':
  main()
