"""The FID Inception network, its converter and weights file, against a PyTorch reference.

The reference outputs in tests/data/inception_reference.npz come from an own minimal PyTorch
FIDInceptionV3 (tests/data/torch_fid_inception.py, pytorch-fid's layout, torch 2.13 CPU) run on
the same random weights, which tests/inception_testdata.py regenerates from a seed. To
regenerate the fixture (needs a separate environment with torch):

  python3 -m venv /tmp/venv_torch && /tmp/venv_torch/bin/pip install torch numpy
  python tests/data/make_inception_reference.py --torch_python=/tmp/venv_torch/bin/python
"""
import json
import sys

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from tests import inception_testdata as testdata
from wgan_jax import errors
from wgan_jax.eval import convert_inception, inception


@pytest.fixture(scope='module')
def reference():
  with np.load(testdata.FIXTURE) as f:
    return dict(f)


@pytest.fixture(scope='module')
def params():
  return inception.flat_to_params(testdata.converted())


def _assert_close_relative(actual, expected, rtol=1e-4):
  """|a - e| <= rtol * (|e| + max |e|) elementwise: 1e-4 relative to the output's scale."""
  scale = np.abs(expected).max()
  np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


# ----------------------------------------------------------------------------- resize


@pytest.mark.parametrize('name', ['up32to299', 'down37x41to16x9'])
def test_resize_matches_torch_interpolate(reference, name):
  seed, out_h, out_w, *shape = (int(v) for v in reference[f'resize_case/{name}'])
  images = testdata.random_images(seed, tuple(shape))
  step = int(reference[f'resize_step/{name}'])
  got = np.asarray(inception.resize_bilinear(jnp.asarray(images), (out_h, out_w)))
  chex.assert_shape(got, (shape[0], out_h, out_w, shape[-1]))
  np.testing.assert_allclose(got[:, ::step, ::step], reference[f'resize/{name}'], atol=1e-6)


def test_resize_taps_closed_form():
  # Same size: identity. Doubling: src = (i + 0.5) / 2 - 0.5 clipped at 0.
  i0, i1, l0, l1 = inception.linear_resize_taps(4, 4)
  chex.assert_trees_all_equal((i0, i1, l1), (np.arange(4), np.minimum(np.arange(4) + 1, 3),
                                             np.zeros(4, np.float32)))
  i0, i1, l0, l1 = inception.linear_resize_taps(2, 4)
  # src = 0.5 i - 0.25 clipped to [0, 1]: the last output repeats the edge pixel.
  chex.assert_trees_all_close(l0 * i0 + l1 * i1, np.array([0.0, 0.25, 0.75, 1.0]), atol=1e-7)
  chex.assert_trees_all_close(l0 + l1, np.ones(4, np.float32))


# ----------------------------------------------------------------------------- converter


def test_torch_key_set_is_pytorch_fids(reference):
  # The key names and shapes of the reference model's own state dict (strict-loaded there).
  expected = json.loads(str(reference['torch_keys']))
  state = testdata.random_state_dict()
  assert {k: list(v.shape) for k, v in state.items()} == expected
  assert len(state) == 566 and sum(v.size for k, v in state.items()
                                   if 'num_batches' not in k) == 23_885_392


def test_converter_mapping_and_round_trip():
  state = testdata.random_state_dict()
  flat = testdata.converted()
  assert set(flat) == set(inception.param_shapes()) and len(flat) == 94 * 5 + 2
  np.testing.assert_array_equal(flat['Conv2d_1a_3x3/w'],
                                state['Conv2d_1a_3x3.conv.weight'].transpose(2, 3, 1, 0))
  chex.assert_shape(flat['Mixed_6b/branch7x7_2/w'], (1, 7, 128, 128))
  for torch_name, name in (('weight', 'scale'), ('bias', 'offset'),
                           ('running_mean', 'mean'), ('running_var', 'var')):
    np.testing.assert_array_equal(flat[f'Mixed_7c/branch_pool/{name}'],
                                  state[f'Mixed_7c.branch_pool.bn.{torch_name}'])
  np.testing.assert_array_equal(flat['fc/w'], state['fc.weight'].T)
  np.testing.assert_array_equal(flat['fc/b'], state['fc.bias'])
  back = convert_inception.to_state_dict(flat)
  expected = {k: v for k, v in state.items() if not k.endswith('num_batches_tracked')}
  assert set(back) == set(expected)
  for key, value in expected.items():
    np.testing.assert_array_equal(back[key], value, err_msg=key)


def test_converter_rejects_other_state_dicts():
  state = testdata.random_state_dict()
  with pytest.raises(errors.DataError, match='AuxLogits'):
    convert_inception.convert_state_dict({**state, 'AuxLogits.fc.weight': np.zeros((1008, 768))})
  missing = {k: v for k, v in state.items() if k != 'Mixed_5b.branch1x1.conv.weight'}
  with pytest.raises(errors.DataError, match='1 missing'):
    convert_inception.convert_state_dict(missing)
  wrong = dict(state, **{'fc.bias': np.zeros(1000, np.float32)})
  with pytest.raises(errors.DataError, match='fc/b'):
    convert_inception.convert_state_dict(wrong)


def test_reading_a_pth_without_torch_is_one_line(monkeypatch):
  monkeypatch.setitem(sys.modules, 'torch', None)  # import torch -> ImportError
  with pytest.raises(errors.DataError) as info:
    convert_inception.read_torch_state_dict('pt_inception-2015-12-05-6726825d.pth')
  assert 'pip install torch' in str(info.value) and '\n' not in str(info.value)


# ----------------------------------------------------------------------------- the network


@pytest.mark.parametrize('name', ['up75', 'down75', 'full299'])
def test_features_match_pytorch_reference(reference, params, name):
  seed, size, *shape = (int(v) for v in reference[f'case/{name}'])
  images = testdata.random_images(seed, tuple(shape))
  features, logits = inception.apply(params, jnp.asarray(images), size)
  chex.assert_shape((features, logits), [(shape[0], 2048), (shape[0], 1008)])
  chex.assert_tree_all_finite((features, logits))
  _assert_close_relative(np.asarray(features), reference[f'features/{name}'])
  _assert_close_relative(np.asarray(logits), reference[f'logits/{name}'])


def test_batched_feature_fn_is_deterministic_and_batch_independent(reference, params):
  seed, size, *shape = (int(v) for v in reference['case/up75'])
  images = testdata.random_images(seed, tuple(shape))
  three = np.concatenate([images, images[:1]])
  fn = inception.make_feature_fn(params, batch_size=2, size=size)  # 2 batches, the last padded
  features, logits = fn(three)
  chex.assert_shape((features, logits), [(3, 2048), (3, 1008)])
  again = fn(three)
  chex.assert_trees_all_equal((features, logits), again)
  _assert_close_relative(features[:2], reference['features/up75'])
  np.testing.assert_array_equal(features[2], features[0])
  grey = inception.preprocess(jnp.asarray(images[:, :, :, :1]), 40)  # one channel -> RGB
  chex.assert_trees_all_equal(grey, inception.preprocess(
      jnp.asarray(np.repeat(images[:, :, :, :1], 3, axis=-1)), 40))


def test_pools_closed_form():
  x = jnp.arange(16.0).reshape(1, 4, 4, 1)
  avg = np.asarray(inception.avg_pool_exclude_pad(x))[0, :, :, 0]
  assert avg[0, 0] == pytest.approx((0 + 1 + 4 + 5) / 4)  # corner: 4 valid pixels
  assert avg[1, 1] == pytest.approx(np.mean([0, 1, 2, 4, 5, 6, 8, 9, 10]))
  assert np.asarray(inception.max_pool(x, 1, padding=1))[0, 0, 0, 0] == 5.0
  chex.assert_shape(inception.max_pool(jnp.zeros((2, 147, 147, 3)), 2), (2, 73, 73, 3))


# ----------------------------------------------------------------------------- weights file


def test_load_params_checks_source_checksum_and_structure(tmp_path, monkeypatch):
  path = testdata.write_weights(str(tmp_path / 'w.npz'), source_sha256='ab' * 32)
  with pytest.raises(errors.DataError, match='6726825d'):
    inception.load_params(path)
  monkeypatch.setattr(inception, 'TRUSTED_SOURCE_SHA256_PREFIXES', ('abababab',))
  loaded = inception.load_params(path)
  assert loaded.source_sha256 == 'ab' * 32
  np.testing.assert_array_equal(loaded.params['Mixed_6e/branch7x7dbl_5']['w'],
                                testdata.converted()['Mixed_6e/branch7x7dbl_5/w'])
  # A file with one array of the wrong shape fails the structural check.
  flat = dict(testdata.converted())
  flat['fc/b'] = np.zeros(1000, np.float32)
  with pytest.raises(errors.DataError, match='fc/b'):
    inception.check_structure(flat)


def test_missing_weights_is_one_line_naming_the_file_and_the_command(tmp_path):
  with pytest.raises(errors.DataError) as info:
    inception.load_params(str(tmp_path / 'inception_fid.npz'))
  message = str(info.value)
  assert '\n' not in message
  for part in ('pt_inception-2015-12-05-6726825d.pth', 'github.com/mseitzer/pytorch-fid',
               'python -m wgan_jax.eval.convert_inception'):
    assert part in message
