"""Process-wide settings of a training run: precision, op threads, determinism.

Entry points (`trainer.main`, the scripts) decide these once, before or as
training starts; `training_settings` applies the ones `train()` needs for the
duration of a run and restores the previous ones after it, so that a library
call leaves nothing behind (a later run or test in the same process starts
from TensorFlow's defaults). The op thread pool can only be sized before
TensorFlow's runtime starts, so `trainer.main` resolves
`train.parallel_micro_batches` from the parsed config first and calls
`set_cpu_threads` before anything else touches TensorFlow.

`resolve_mixed_precision("auto", ...)` picks the compute dtype the hardware
runs fastest without losing training quality:

| hardware | policy | why |
|---|---|---|
| TPU | bfloat16 | the MXU multiplies bfloat16 natively |
| GPU, compute capability >= 8.0 (A100, H100, ...) | bfloat16 | native bfloat16 tensor cores; no loss scaling needed |
| GPU, compute capability 7.x (V100, T4) | float16 | tensor cores run float16 only; dynamic loss scaling |
| CPU with AVX512_BF16 or AMX-BF16 | bfloat16 | native bfloat16 dot products |
| any other CPU or GPU | float32 | bfloat16 is emulated there: 7.5 examples/s instead of about 110 in float32 on a 2-core AVX2 CPU (the default config) |

Weights and optimizer state stay float32 under every policy (Keras's
`mixed_*` policies); only matmuls and activations change.
"""

import contextlib
import os

import tensorflow as tf
from tensorflow.python.framework import config as tf_config
import tf_keras

POLICIES = {None: "float32", "float32": "float32",
            "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
CHOICES = ("auto",) + tuple(k for k in POLICIES if k)


def cpu_flags(cpuinfo="/proc/cpuinfo"):
  """The CPU's feature flags (empty where /proc/cpuinfo is unavailable)."""
  try:
    with open(cpuinfo) as f:
      for line in f:
        if line.startswith("flags"):
          return set(line.split(":", 1)[1].split())
  except OSError:
    pass
  return set()


def gpu_compute_capabilities():
  """(major, minor) of each visible GPU, (0, 0) where TensorFlow can't say."""
  capabilities = []
  for gpu in tf.config.list_physical_devices("GPU"):
    details = tf.config.experimental.get_device_details(gpu)
    capabilities.append(tuple(details.get("compute_capability", (0, 0))))
  return capabilities


def resolve_mixed_precision(mixed_precision, *, tpu=False, gpus=None,
                            flags=None):
  """The compute dtype to train in, and why.

  Args:
    mixed_precision: "auto", "bfloat16", "float16", "float32" or None
      (float32). Explicit values are returned as they are.
    tpu: training on TPU.
    gpus: compute capabilities of the GPUs (default: detected).
    flags: the CPU's feature flags (default: read from /proc/cpuinfo).

  Returns:
    (dtype, reason): dtype is None (float32), "bfloat16" or "float16".
  """
  if mixed_precision not in POLICIES and mixed_precision != "auto":
    raise ValueError(f"train.mixed_precision must be one of "
                     f"{', '.join(map(repr, CHOICES))} or None, got "
                     f"{mixed_precision!r}")
  if mixed_precision != "auto":
    dtype = None if mixed_precision == "float32" else mixed_precision
    return dtype, "set in the config"
  if tpu:
    return "bfloat16", "auto: TPU"
  gpus = gpu_compute_capabilities() if gpus is None else gpus
  if gpus:
    cc = min(gpus)
    name = f"GPU compute capability {cc[0]}.{cc[1]}"
    if cc >= (8, 0):
      return "bfloat16", f"auto: {name} has bfloat16 tensor cores"
    if cc >= (7, 0):
      return "float16", f"auto: {name} has float16 tensor cores"
    return None, f"auto: {name} has no tensor cores"
  flags = cpu_flags() if flags is None else flags
  native = sorted({"avx512_bf16", "amx_bf16"} & set(flags))
  if native:
    return "bfloat16", f"auto: the CPU has {'/'.join(native)}"
  return None, "auto: the CPU has no native bfloat16 (no avx512_bf16/amx_bf16)"


def set_precision_policy(dtype):
  """Sets tf_keras's global policy for `resolve_mixed_precision`'s dtype."""
  tf_keras.mixed_precision.set_global_policy(POLICIES[dtype])


def describe_precision(dtype, reason):
  """One line for the start-up output."""
  name = {None: "float32", "bfloat16": "mixed bfloat16",
          "float16": "mixed float16 with dynamic loss scaling"}[dtype]
  return f"precision: {name} ({reason})"



def resolve_parallel_micro_batches(value, *, accelerator, local_replicas,
                                   cores=None):
  """How many parts of each micro-batch are computed side by side, and why.

  On a CPU, TensorFlow runs each op on a pool of `intra_op` threads, one per
  core; a small model's ops are too small to split well (measured on 2
  cores, BERT-tiny in 4 micro-batches of 16: 200-217 examples/s with 2
  threads per op, 254-272 with each micro-batch computed as two halves side
  by side, one thread per op each). So "auto" (None) picks 2 on a host with
  2 or more cores, no GPU or TPU, running one replica, else 1. It changes
  rounding, and so results: the value is recorded in the run's
  operative_config.gin.

  Args:
    value: `train.parallel_micro_batches`: None (auto) or a number >= 1.
    accelerator: the host trains on a GPU or TPU.
    local_replicas: replicas on this host (each already runs alongside the
      others: 1 part).
    cores: CPU cores (default: `os.cpu_count()`).

  Returns:
    (parts, reason).
  """
  if value is not None:
    if not isinstance(value, int) or value < 1:
      raise ValueError(f"train.parallel_micro_batches must be >= 1 or None "
                       f"(auto), got {value!r}")
    return value, "set in the config"
  cores = cores or os.cpu_count() or 1
  if not accelerator and local_replicas == 1 and cores > 1:
    return 2, f"auto: {cores} CPU cores, one replica"
  return 1, "auto"


def set_cpu_threads(parts):
  """Gives each op `cores // parts` threads; call before TensorFlow starts.

  Leaves the pool alone with one part, or when the user set
  TF_NUM_INTRAOP_THREADS.
  """
  if parts > 1 and "TF_NUM_INTRAOP_THREADS" not in os.environ:
    tf.config.threading.set_intra_op_parallelism_threads(
        max(1, (os.cpu_count() or 1) // parts))


@contextlib.contextmanager
def training_settings(*, seed, deterministic, precision):
  """Seeds, determinism, dropout generators and precision for one run.

  Args:
    seed: seeds Python, numpy and TensorFlow (weight init, dropout).
    deterministic: make ops deterministic for the run.
    precision: `resolve_mixed_precision`'s dtype.

  Yields:
    Nothing; on exit, determinism, the dropout-generator switch and the
    precision policy are as they were before.
  """
  was_deterministic = tf_config.is_op_determinism_enabled()
  had_generator = tf_keras.backend.experimental.is_tf_random_generator_enabled()
  policy = tf_keras.mixed_precision.global_policy()
  if deterministic:
    tf.config.experimental.enable_op_determinism()
  tf_keras.utils.set_random_seed(seed)
  # Dropout draws from a tf.random.Generator whose state is a variable that
  # the checkpoint saves, so a resumed run continues the same random stream.
  tf_keras.backend.experimental.enable_tf_random_generator()
  set_precision_policy(precision)
  try:
    yield
  finally:
    if not was_deterministic:
      tf_config.disable_op_determinism()
    if not had_generator:
      tf_keras.backend.experimental.disable_tf_random_generator()
    tf_keras.mixed_precision.set_global_policy(policy)
