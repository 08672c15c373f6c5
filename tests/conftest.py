"""Test setup: simulated CPU devices must be configured before jax is imported."""
import os
import sys

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=4')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Model-level tests compile with plain im2col convolutions: Winograd's transforms double the
# compile time of every CNN step, which the suite's time budget cannot carry. The variable,
# when set, overrides model.conv_impl wherever models are built (wgan_jax.ops.conv.resolve_impl).
# The Winograd paths (outputs, gradients, second derivatives, up-convs) are tested directly
# in tests/test_conv.py with impl='winograd'. Set WGAN_JAX_CONV_IMPL=auto to run all of it.
os.environ.setdefault('WGAN_JAX_CONV_IMPL', 'im2col')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
