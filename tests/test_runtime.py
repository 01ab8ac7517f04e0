"""Mixed precision chosen for the hardware (`trainer/runtime.py`)."""

import pytest

from trainer import runtime

AVX2 = {"fpu", "sse4_2", "avx", "avx2", "fma"}
AVX512_BF16 = AVX2 | {"avx512f", "avx512bw", "avx512_bf16"}
AMX = AVX2 | {"amx_tile", "amx_bf16", "amx_int8"}


@pytest.mark.parametrize("flags, expected", [
    (AVX2, None), (AVX512_BF16, "bfloat16"), (AMX, "bfloat16"),
    (AVX2 | {"avx512f"}, None), (set(), None)])
def test_auto_on_cpus(flags, expected):
  dtype, reason = runtime.resolve_mixed_precision("auto", gpus=[],
                                                  flags=flags)
  assert dtype == expected
  assert reason.startswith("auto: the CPU")


@pytest.mark.parametrize("gpus, expected", [
    ([(9, 0)], "bfloat16"), ([(8, 0), (8, 6)], "bfloat16"),
    ([(7, 0)], "float16"), ([(7, 5)], "float16"), ([(6, 1)], None),
    ([(8, 0), (7, 0)], "float16")])  # The weakest GPU decides.
def test_auto_on_gpus(gpus, expected):
  dtype, reason = runtime.resolve_mixed_precision("auto", gpus=gpus,
                                                  flags=AVX512_BF16)
  assert dtype == expected and "GPU compute capability" in reason


def test_auto_on_tpu():
  assert runtime.resolve_mixed_precision("auto", tpu=True, gpus=[],
                                         flags=AVX2)[0] == "bfloat16"


@pytest.mark.parametrize("value, expected", [
    (None, None), ("float32", None), ("bfloat16", "bfloat16"),
    ("float16", "float16")])
def test_explicit_values_win(value, expected):
  for flags in (AVX2, AVX512_BF16):
    dtype, reason = runtime.resolve_mixed_precision(value, gpus=[],
                                                    flags=flags)
    assert dtype == expected and reason == "set in the config"


def test_unknown_value_names_the_binding():
  with pytest.raises(ValueError, match="train.mixed_precision.*'fp8'"):
    runtime.resolve_mixed_precision("fp8", gpus=[], flags=AVX2)


def test_cpu_flags_are_read(tmp_path):
  cpuinfo = tmp_path / "cpuinfo"
  cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n")
  assert runtime.cpu_flags(str(cpuinfo)) == {"fpu", "avx2", "avx512_bf16"}
  assert runtime.cpu_flags(str(tmp_path / "missing")) == set()


def test_training_settings_leave_nothing_behind():
  import tf_keras  # pylint: disable=g-import-not-at-top
  from tensorflow.python.framework import config as tf_config  # pylint: disable=g-import-not-at-top
  before = (tf_config.is_op_determinism_enabled(),
            tf_keras.backend.experimental.is_tf_random_generator_enabled(),
            tf_keras.mixed_precision.global_policy().name)
  with runtime.training_settings(seed=0, deterministic=True,
                                 precision="bfloat16"):
    assert tf_config.is_op_determinism_enabled()
    assert tf_keras.backend.experimental.is_tf_random_generator_enabled()
    assert tf_keras.mixed_precision.global_policy().name == "mixed_bfloat16"
  assert (tf_config.is_op_determinism_enabled(),
          tf_keras.backend.experimental.is_tf_random_generator_enabled(),
          tf_keras.mixed_precision.global_policy().name) == before
