"""Test setup: simulated CPU devices must be configured before jax is imported."""
import os
import shutil
import sys
import tempfile

import pytest

from tests import simulated_devices

os.environ.setdefault('XLA_FLAGS', simulated_devices.xla_flags(4))
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Model-level tests compile with plain im2col convolutions: Winograd's transforms double the
# compile time of every CNN step, which the suite's time budget cannot carry. The variable,
# when set, overrides model.conv_impl wherever models are built (wgan_jax.ops.conv.resolve_impl).
# The Winograd paths (outputs, gradients, second derivatives, up-convs) are tested directly
# in tests/test_conv.py with impl='winograd'. Set WGAN_JAX_CONV_IMPL=auto to run all of it.
os.environ.setdefault('WGAN_JAX_CONV_IMPL', 'im2col')
# One XLA compilation cache for the session, shared by this process and the command-line
# runs it starts: the tests build the same small programs many times, from separate Runs
# (a hit is the same executable, so no number changes). Removed at the end of the session.
_SESSION_CACHE = None
if 'WGAN_JAX_COMPILATION_CACHE' not in os.environ:
  _SESSION_CACHE = tempfile.mkdtemp(prefix='wgan_jax_xla_')
  os.environ['WGAN_JAX_COMPILATION_CACHE'] = _SESSION_CACHE
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pytest_configure(config):
  del config
  import jax  # pylint: disable=import-outside-toplevel
  if os.environ['WGAN_JAX_COMPILATION_CACHE']:
    jax.config.update('jax_compilation_cache_dir', os.environ['WGAN_JAX_COMPILATION_CACHE'])
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)


# The slowest modules (multi-process jobs, full-depth smoke runs) start first, so that the
# two workers (pytest.ini) finish together instead of one waiting on a long test at the end.
SLOW_FIRST = ('test_multihost_eval.py', 'test_multihost_preemption.py',
              'test_resnet_scales.py', 'test_biggan.py', 'test_families.py')


def pytest_collection_modifyitems(config, items):
  del config
  rank = lambda item: (SLOW_FIRST.index(item.path.name) if item.path.name in SLOW_FIRST
                       else len(SLOW_FIRST))
  items.sort(key=rank)  # stable: each module's tests keep their order


@pytest.fixture
def fast_compile(monkeypatch):
  """For end-to-end runs of deep networks: XLA's own convolutions (their compile is a
  fraction of im2col's at these depths; the algorithms are tested in test_conv.py) and 'rbg'
  keys (threefry's compile of the initialisers' many draws dominates such runs)."""
  import jax  # pylint: disable=import-outside-toplevel
  monkeypatch.setenv('WGAN_JAX_CONV_IMPL', 'xla')
  impl = jax.config.jax_default_prng_impl
  jax.config.update('jax_default_prng_impl', 'rbg')
  yield
  jax.config.update('jax_default_prng_impl', impl)


def pytest_unconfigure(config):
  del config
  if _SESSION_CACHE:
    shutil.rmtree(_SESSION_CACHE, ignore_errors=True)
