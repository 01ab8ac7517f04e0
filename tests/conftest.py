"""Shared test setup.

The CPU is split into two logical devices before TensorFlow initializes, so
MirroredStrategy tests run on a CPU-only machine. Everything else places ops on
the first device as usual. `data_dir` is the tiny test corpus's dataset,
built once for all the trainer tests.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gin  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import data  # noqa: E402

TINY_CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "testdata", "tiny_corpus.txt")

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


@pytest.fixture(autouse=True)
def _clear_gin():
  """No gin state leaks from one test into the next."""
  gin.clear_config()
  yield
  gin.clear_config()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """The tiny corpus as a dataset: vocab 512, sequences of 32 tokens."""
  path = str(tmp_path_factory.mktemp("data"))
  data.prepare_dataset(path, corpus=TINY_CORPUS, vocab_size=512,
                       max_seq_length=32, progress=False)
  return path
