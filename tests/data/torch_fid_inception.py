"""A minimal PyTorch FID Inception-v3 (pytorch-fid's FIDInceptionV3 layout), test reference only.

Runs in a separate environment that has torch (never imported by the test suite):

  /tmp/venv_torch/bin/python tests/data/torch_fid_inception.py IN.npz OUT.npz

IN.npz holds the torch state dict (`sd/<key>` arrays) and image batches `images/<name>`
(float32 NHWC in [-1, 1]) with their network input size `size/<name>`; OUT.npz gets
`features/<name>` [N, 2048], `logits/<name>` [N, 1008], resize checks `resize/<name>` for
`resize_in/<name>` to `resize_size/<name>`, and `torch_keys` (JSON of the reference model's own
state-dict keys and shapes). The network follows torchvision's Inception3 with pytorch-fid's
patches (FIDInceptionA/C/E_1: average pools excluding padding; FIDInceptionE_2: max pool),
1008 classes, no aux logits, and pytorch-fid's preprocessing: F.interpolate(bilinear,
align_corners=False) to the input size (inputs already in [-1, 1]).
"""
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class BasicConv2d(nn.Module):

  def __init__(self, cin, cout, **kwargs):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
    self.bn = nn.BatchNorm2d(cout, eps=0.001)

  def forward(self, x):
    return F.relu(self.bn(self.conv(x)))


def _avg_exclude_pad(x):
  return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):

  def __init__(self, cin, pool_features):
    super().__init__()
    self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
    self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
    self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
    self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
    self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

  def forward(self, x):
    b1 = self.branch1x1(x)
    b5 = self.branch5x5_2(self.branch5x5_1(x))
    b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    bp = self.branch_pool(_avg_exclude_pad(x))
    return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):

  def __init__(self, cin):
    super().__init__()
    self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
    self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

  def forward(self, x):
    b3 = self.branch3x3(x)
    bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    return torch.cat([b3, bd, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionC(nn.Module):

  def __init__(self, cin, c7):
    super().__init__()
    self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
    self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
    self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
    self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
    self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

  def forward(self, x):
    b1 = self.branch1x1(x)
    b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    bd = self.branch7x7dbl_1(x)
    for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                  self.branch7x7dbl_5):
      bd = layer(bd)
    bp = self.branch_pool(_avg_exclude_pad(x))
    return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):

  def __init__(self, cin):
    super().__init__()
    self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
    self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
    self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
    self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

  def forward(self, x):
    b3 = self.branch3x3_2(self.branch3x3_1(x))
    b7 = x
    for layer in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3,
                  self.branch7x7x3_4):
      b7 = layer(b7)
    return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionE(nn.Module):
  """pool='avg': FIDInceptionE_1 (padding excluded); pool='max': FIDInceptionE_2."""

  def __init__(self, cin, pool):
    super().__init__()
    self.pool = pool
    self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
    self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
    self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
    self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
    self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
    self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
    self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
    self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
    self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

  def forward(self, x):
    b1 = self.branch1x1(x)
    b3 = self.branch3x3_1(x)
    b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
    bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
    if self.pool == 'avg':
      pooled = _avg_exclude_pad(x)
    else:
      pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
    return torch.cat([b1, b3, bd, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):

  def __init__(self):
    super().__init__()
    self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
    self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
    self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
    self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
    self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
    self.Mixed_5b = FIDInceptionA(192, 32)
    self.Mixed_5c = FIDInceptionA(256, 64)
    self.Mixed_5d = FIDInceptionA(288, 64)
    self.Mixed_6a = InceptionB(288)
    self.Mixed_6b = FIDInceptionC(768, 128)
    self.Mixed_6c = FIDInceptionC(768, 160)
    self.Mixed_6d = FIDInceptionC(768, 160)
    self.Mixed_6e = FIDInceptionC(768, 192)
    self.Mixed_7a = InceptionD(768)
    self.Mixed_7b = FIDInceptionE(1280, 'avg')
    self.Mixed_7c = FIDInceptionE(2048, 'max')
    self.fc = nn.Linear(2048, 1008)

  def forward(self, x, size):
    """x: N, 3, H, W in [-1, 1] -> (pool3 features [N, 2048], logits [N, 1008])."""
    x = F.interpolate(x, size=(size, size), mode='bilinear', align_corners=False)
    x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    for name in ('5b', '5c', '5d', '6a', '6b', '6c', '6d', '6e', '7a', '7b', '7c'):
      x = getattr(self, 'Mixed_' + name)(x)
    features = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
    return features, self.fc(features)


def main(in_path, out_path):
  torch.set_num_threads(2)
  data = np.load(in_path)
  state = {k[len('sd/'):]: torch.from_numpy(data[k]) for k in data.files if k.startswith('sd/')}
  model = FIDInceptionV3().eval()
  model.load_state_dict(state, strict=True)  # the key names and shapes of the real file
  out = {'torch_keys': np.array(json.dumps(
      {k: list(v.shape) for k, v in model.state_dict().items()})),
         'torch_version': np.array(torch.__version__)}
  with torch.no_grad():
    for key in data.files:
      if key.startswith('images/'):
        name = key[len('images/'):]
        images = torch.from_numpy(data[key]).permute(0, 3, 1, 2).contiguous()
        features, logits = model(images, int(data['size/' + name]))
        out['features/' + name] = features.numpy()
        out['logits/' + name] = logits.numpy()
      if key.startswith('resize_in/'):
        name = key[len('resize_in/'):]
        images = torch.from_numpy(data[key]).permute(0, 3, 1, 2).contiguous()
        size = tuple(int(s) for s in data['resize_size/' + name])
        resized = F.interpolate(images, size=size, mode='bilinear', align_corners=False)
        out['resize/' + name] = resized.permute(0, 2, 3, 1).numpy()
  np.savez(out_path, **out)


if __name__ == '__main__':
  main(sys.argv[1], sys.argv[2])
