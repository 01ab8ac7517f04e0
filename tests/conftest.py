"""Shared test setup.

The CPU is split into two logical devices before TensorFlow initializes, so
MirroredStrategy tests run on a CPU-only machine. Everything else places ops on
the first device as usual.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gin  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


@pytest.fixture(autouse=True)
def _clear_gin():
  """No gin state leaks from one test into the next."""
  gin.clear_config()
  yield
  gin.clear_config()
