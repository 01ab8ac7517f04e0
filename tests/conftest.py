"""Shared test setup and helpers.

The CPU is split into two logical devices before TensorFlow initializes, so
MirroredStrategy tests run on a CPU-only machine. Everything else places ops on
the first device as usual. `data_dir` is the tiny test corpus's dataset,
built once for all the trainer tests. The helpers below (`run`, `parse`,
`weights`, `losses`, `assert_same`, `cli`, `cli_args`, ...) are imported by
the test modules: `from conftest import run`.
"""

import json
import os
import socket
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gin  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import data  # noqa: E402
from trainer import checkpointing  # noqa: E402
from trainer import configurables  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CORPUS = os.path.join(ROOT, "tests", "testdata", "tiny_corpus.txt")
# The tiny corpus's dataset, as `data_dir` prepares it.
TINY_DATA = [f'dataset.corpus = "{TINY_CORPUS}"', "dataset.vocab_size = 512",
             "dataset.max_seq_length = 32",
             "dataset.max_predictions_per_seq = 5"]

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


def parse(*bindings, gin_file="configs/tiny.gin"):
  """Parses `gin_file` with the tiny data and `bindings` (one part per
  micro-batch unless a binding says otherwise)."""
  gin.clear_config()
  gin.add_config_file_search_path(ROOT)
  gin.parse_config_files_and_bindings(
      [os.path.join(ROOT, gin_file)],
      TINY_DATA + ["train.parallel_micro_batches = 1"] + list(bindings))


def mirrored():
  """Two logical CPUs. As in `trainer.distribute`, CPU replicas reduce
  through one device rather than collective ops."""
  return tf.distribute.MirroredStrategy(
      ["/cpu:0", "/cpu:1"],
      cross_device_ops=tf.distribute.ReductionToOneDevice())


def run(model_dir, data_dir, *bindings, strategy=None, gin_file=None,
        gradient_hook=None):
  """Trains configs/tiny.gin (or `gin_file`) in-process; returns metrics."""
  parse(*bindings, **(dict(gin_file=gin_file) if gin_file else {}))
  return configurables.train(
      model_dir=str(model_dir), data_dir=data_dir,
      strategy=strategy or tf.distribute.OneDeviceStrategy("/cpu:0"),
      gradient_hook=gradient_hook)


def weights(model_dir):
  """Model variables of the latest checkpoint, keyed by object path."""
  reader = tf.train.load_checkpoint(str(model_dir))
  return {k: reader.get_tensor(k)
          for k in reader.get_variable_to_shape_map()
          if k.startswith("model/") and "OPTIMIZER_SLOT" not in k}


def losses(model_dir):
  with open(os.path.join(model_dir, "metrics.jsonl")) as f:
    return [r["loss"] for r in map(json.loads, f) if "loss" in r]


def assert_same(a, b, rtol):
  """Weights of the latest checkpoints and logged losses agree to `rtol`."""
  wa, wb = weights(a), weights(b)
  assert wa.keys() == wb.keys() and len(wa) > 10
  for k in wa:
    np.testing.assert_allclose(wa[k], wb[k], rtol=rtol, atol=rtol, err_msg=k)
  np.testing.assert_allclose(losses(a), losses(b), rtol=rtol)


def assert_identical(a, b, check_losses=True):
  """Weights, m/v slots, iterations, RNG and step equal bit for bit."""
  sa, sb = (checkpointing.saved_state(tf.train.latest_checkpoint(str(p)))
            for p in (a, b))
  assert sa.keys() == sb.keys()
  assert any("OPTIMIZER_SLOT" in k for k in sa)
  assert any(k.startswith("dropout_rng/") for k in sa)
  for k in sa:
    np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
  if check_losses:
    assert losses(a) == losses(b)


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def cli_args(model_dir, data_dir, *bindings, parallel=1):
  """`trainer.main` arguments for configs/tiny.gin on the tiny data; one
  part per micro-batch by default, as the in-process runs that command-line
  runs are compared with bit for bit."""
  args = [f"--gin_file={os.path.join(ROOT, 'configs/tiny.gin')}",
          f"--model_dir={model_dir}", f"--data_dir={data_dir}"]
  return args + [f"--gin_bindings={b}" for b in TINY_DATA + [
      f"train.parallel_micro_batches = {parallel}"] + list(bindings)]


def cli(*args, env=None, timeout=300, module="trainer.main"):
  """Runs `python -m module args` to completion."""
  return subprocess.run(
      [sys.executable, "-m", module, *args], cwd=ROOT, env={
          **os.environ, **(env or {})}, capture_output=True, text=True,
      timeout=timeout)


def cli_many(arg_lists, timeout=300, module="trainer.main"):
  """Runs `python -m module args` for every args list, all at once.

  For checks of many short commands (most of each is TensorFlow's start-up):
  their start-ups overlap. Returns CompletedProcess-like results in order.
  """
  procs = [subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True) for args in arg_lists]
  results = []
  for args, proc in zip(arg_lists, procs):
    stdout, stderr = proc.communicate(timeout=timeout)
    results.append(subprocess.CompletedProcess(args, proc.returncode, stdout,
                                               stderr))
  return results
