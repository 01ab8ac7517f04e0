"""Process-wide settings a training entry point makes once: the precision.

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

import tensorflow as tf
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

