"""Fault tolerance: kills, preemption, non-finite steps, damaged checkpoints,
lost workers. Processes that must really die are `python -m trainer.main`
subprocesses; the runs they are compared with are in-process."""

import glob
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import assert_identical
from conftest import assert_same
from conftest import cli_args
from conftest import free_port
from conftest import mirrored
from conftest import ROOT
from conftest import run
from trainer import checkpointing
from trainer import faults
from trainer import preemption
from trainer import train as train_lib

# Dropout on, so that resuming must also continue its random stream; a log
# line and a checkpoint every few steps, so that a kill lands between them.
EXACT = ["train.deterministic = True", "BertEncoder.output_dropout = 0.1",
         "BertEncoder.attention_dropout = 0.1", "train.steps_per_loop = 1",
         "train.checkpoint_every_steps = 2"]


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
  """An uninterrupted run with the `EXACT` settings."""
  path = tmp_path_factory.mktemp("reference")
  run(path, data_dir, *EXACT)
  return path


def _start(model_dir, data_dir, *bindings):
  return subprocess.Popen(
      [sys.executable, "-u", "-m", "trainer.main",
       *cli_args(model_dir, data_dir, *bindings)],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _signal_after(proc, marker, signum):
  """Sends `signum` once `proc` prints a line starting with `marker`."""
  lines = []
  for line in proc.stdout:
    lines.append(line)
    if line.startswith(marker):
      proc.send_signal(signum)
      break
  lines.append(proc.communicate(timeout=300)[0])
  return "".join(lines)


def test_sigkill_then_resume_equals_uninterrupted(
    data_dir, reference, tmp_path, capsys):
  out = _signal_after(_start(tmp_path, data_dir, *EXACT), "step 5/8",
                      signal.SIGKILL)
  assert "step 8/8" not in out, out
  run(tmp_path, data_dir, *EXACT)
  assert "resumed from" in capsys.readouterr().out
  assert_identical(reference, tmp_path)


def test_sigterm_saves_at_next_step_and_resumes(
    data_dir, reference, tmp_path):
  # Four steps per tf.function call: the stop must come inside the call.
  bindings = EXACT + ["train.steps_per_loop = 4",
                      "train.checkpoint_every_steps = 8"]
  proc = _start(tmp_path, data_dir, *bindings)
  start = time.time()
  out = _signal_after(proc, "training ", signal.SIGTERM)
  assert proc.returncode == preemption.EXIT_CODE, out
  assert time.time() - start < 120
  stopped = [l for l in out.splitlines() if l.startswith("stopped on SIGTERM")]
  assert len(stopped) == 1, out
  saved = tf.train.latest_checkpoint(str(tmp_path))
  step = int(saved.rsplit("-", 1)[1])
  assert 0 < step < 8 and step % 4, (step, out)  # Not a loop boundary.
  assert saved in stopped[0]
  run(tmp_path, data_dir, *bindings)
  assert_identical(reference, tmp_path, check_losses=False)


def _nan_at(spec):
  """The gradient hook `tests/faulty_main.py --nonfinite_steps=spec` uses."""
  return faults.nonfinite_gradients(faults.parse_steps(spec))


def test_nonfinite_step_changes_nothing(data_dir, tmp_path):
  run(tmp_path, data_dir, "train.total_steps = 4", "train.steps_per_loop = 1",
      "train.checkpoint_every_steps = 1", "train.keep_checkpoints = 4",
      gradient_hook=_nan_at("3"))
  before, after, later = (checkpointing.saved_state(tmp_path / f"ckpt-{n}")
                          for n in (2, 3, 4))
  assert int(after["optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE"]) == 2
  assert int(after["step/.ATTRIBUTES/VARIABLE_VALUE"]) == 3
  for k in before:
    if not k.startswith(("step/", "skipped_steps/", "consecutive_skips/")):
      np.testing.assert_array_equal(before[k], after[k], err_msg=k)
  assert not np.array_equal(  # Training goes on after the skipped step.
      after["optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE"],
      later["optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE"])
  with open(tmp_path / "metrics.jsonl") as f:
    records = {r["step"]: r for r in map(json.loads, f) if "loss" in r}
  assert [records[s]["skipped_steps"] for s in (1, 2, 3, 4)] == [0, 0, 1, 0]
  assert records[4]["skipped_steps_total"] == 1


def test_consecutive_nonfinite_steps_stop_the_run(data_dir, tmp_path):
  with pytest.raises(train_lib.TrainingError,
                     match=r"3 consecutive non-finite steps \(steps 3 to 5\)"
                     r".*at step 5.*ckpt-4"):
    run(tmp_path, data_dir, "train.steps_per_loop = 1",
        "train.checkpoint_every_steps = 2", "train.max_consecutive_skips = 3",
        gradient_hook=_nan_at("3-100"))
  kept = checkpointing.saved_state(tmp_path / "ckpt-4")
  assert all(np.isfinite(v).all() for k, v in kept.items()
             if k.startswith("model/"))


def test_damaged_latest_checkpoint_falls_back(
    data_dir, reference, tmp_path, capsys):
  run_dir = tmp_path / "run"
  shutil.copytree(reference, run_dir)
  (run_dir / "metrics.jsonl").unlink()
  data_file = glob.glob(str(run_dir / "ckpt-8.data-*"))[0]
  with open(data_file, "r+b") as f:
    f.truncate(os.path.getsize(data_file) // 2)
  run(run_dir, data_dir, *EXACT)
  warnings = [l for l in capsys.readouterr().out.splitlines()
              if l.startswith("warning:")]
  assert len(warnings) == 1 and "ckpt-8" in warnings[0], warnings
  assert warnings[0].endswith("ckpt-6"), warnings
  assert_identical(reference, run_dir, check_losses=False)
  # When no checkpoint is intact, the run stops instead of starting afresh.
  for path in glob.glob(str(run_dir / "ckpt-*.data-*")):
    with open(path, "r+b") as f:
      f.truncate(10)
  with pytest.raises(checkpointing.CheckpointError, match="no intact"):
    checkpointing.newest_intact(str(run_dir), warn=print)
  # A lost pointer file does not mean starting from scratch either.
  shutil.rmtree(run_dir)
  shutil.copytree(reference, run_dir)
  for garbage in ("garbage {", ""):
    (run_dir / "checkpoint").write_text(garbage)
    assert checkpointing.newest_intact(str(run_dir),
                                       warn=print).endswith("ckpt-8")


def test_failed_save_is_clear_and_keeps_checkpoints(tmp_path):
  weights = tf.Variable(tf.zeros([300_000]))  # 1.2 MB.
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(weights=weights), str(tmp_path), max_to_keep=2)
  checkpointing.save([manager], 1)
  weights.assign_add(tf.ones_like(weights))
  # A disk that takes no more than 200 kB per file, like a full one: the
  # write of checkpoint 2 fails with EFBIG.
  soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
  resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, hard))
  try:
    with pytest.raises(checkpointing.CheckpointError,
                       match=r"cannot save checkpoint 2 .*intact: .*ckpt-1"):
      checkpointing.save([manager], 2)
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
  assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-1")
  assert checkpointing.damage(str(tmp_path / "ckpt-1")) is None
  assert not glob.glob(str(tmp_path / "ckpt-2*")), os.listdir(tmp_path)


def test_lost_worker_ends_the_job_in_bounded_time(data_dir, tmp_path):
  ports = [free_port(), free_port()]
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  args = [sys.executable, "-u", "-m", "trainer.main", "--worker_timeout=5",
          *cli_args(tmp_path, data_dir, "train.total_steps = 1000",
                     "train.steps_per_loop = 1")]
  procs = [subprocess.Popen(
      args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True, env={**os.environ, "TF_CONFIG": json.dumps(
          {"cluster": cluster, "task": {"type": "worker", "index": i}})})
           for i in range(2)]
  try:
    for line in procs[0].stdout:
      if line.startswith("step 2/"):
        break
    procs[1].kill()
    killed = time.time()
    out = procs[0].communicate(timeout=60)[0]
    elapsed = time.time() - killed
  finally:
    for p in procs:
      p.kill()
      p.wait()
  assert procs[0].returncode == 1, out
  assert elapsed < 5 + 20, elapsed
  errors = [l for l in out.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "Traceback" not in out, out
  assert f"lost worker 1 (127.0.0.1:{ports[1]})" in errors[0], errors


def _two_workers(model_dir, data_dir, *bindings):
  """Runs a two-worker job on 127.0.0.1 to the end; returns both outputs.
  The heartbeat timeout is long: on a busy machine a worker can be starved
  for a minute."""
  ports = [free_port(), free_port()]
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  procs = [subprocess.Popen(
      [sys.executable, "-u", "-m", "trainer.main", "--worker_timeout=600",
       *cli_args(model_dir, data_dir, *bindings)],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      env={**os.environ, "TF_CONFIG": json.dumps(
          {"cluster": cluster, "task": {"type": "worker", "index": i}})})
           for i in range(2)]
  try:
    outs = [p.communicate(timeout=600)[0] for p in procs]
  finally:
    for p in procs:
      p.kill()
      p.wait()
  assert all(p.returncode == 0 for p in procs), outs
  return outs


def _crash_after(model_dir, step):
  """Leaves `model_dir` as a crash after checkpoint `step` would have: no
  later checkpoint or record."""
  for path in glob.glob(str(model_dir / "ckpt-*")):
    if checkpointing.checkpoint_step(path.split(".")[0]) > step:
      os.remove(path)
  tf.compat.v1.train.update_checkpoint_state(
      str(model_dir), str(model_dir / f"ckpt-{step}"))
  with open(model_dir / "metrics.jsonl") as f:
    kept = [line for line in f if json.loads(line)["step"] <= step]
  with open(model_dir / "metrics.jsonl", "w") as f:
    f.writelines(kept)


@pytest.fixture(scope="module")
def two_worker_reference(data_dir, tmp_path_factory):
  """An uninterrupted two-worker run with the `EXACT` settings."""
  path = tmp_path_factory.mktemp("two_workers")
  outs = _two_workers(path, data_dir, *EXACT)
  assert "2 replica(s)" in outs[0]
  # Each host saved its input position; worker 1's scratch copy is gone.
  assert glob.glob(str(path / "input_of_2_hosts" / "host1" / "ckpt-8.index"))
  return path


def test_two_workers_resume_without_a_workers_input_position(
    data_dir, two_worker_reference, tmp_path):
  # The chief saved checkpoint 4 and worker 1 died before saving its input
  # position of step 4: the restart resumes from 4 anyway.
  run_dir = tmp_path / "run"
  shutil.copytree(two_worker_reference, run_dir)
  _crash_after(run_dir, 4)
  for path in glob.glob(str(run_dir / "input_of_2_hosts" / "host1" /
                            "ckpt-4*")):
    os.remove(path)
  outs = _two_workers(run_dir, data_dir, *EXACT)
  assert all("resumed from" in o and "at step 4" in o for o in outs), outs
  assert "reading its batches again" in outs[1], outs[1]
  assert "reading its batches again" not in outs[0], outs[0]
  assert_identical(two_worker_reference, run_dir)


def test_float16_overflows_do_not_stop_the_run(data_dir, tmp_path):
  # NaN gradients with finite losses are what a loss-scale overflow looks
  # like: three in a row, with a limit of two, are skipped and counted but
  # do not stop the run; the LossScaleOptimizer advances its iterations on
  # a skipped step (its contract) and halves the loss scale each time. (The
  # initial scale, 2**15, also overflows at step 1 here: 4 skips in all.)
  run(tmp_path, data_dir, 'train.mixed_precision = "float16"',
      "train.steps_per_loop = 1", "train.max_consecutive_skips = 2",
      gradient_hook=_nan_at("3-5"))
  state = checkpointing.saved_state(tf.train.latest_checkpoint(
      str(tmp_path)))
  assert int(state["skipped_steps/.ATTRIBUTES/VARIABLE_VALUE"]) >= 3
  assert int(state["consecutive_skips/.ATTRIBUTES/VARIABLE_VALUE"]) == 0
  iterations = [v for k, v in state.items() if k.endswith("iter/.ATTRIBUTES/"
                                                          "VARIABLE_VALUE")]
  assert [int(v) for v in iterations] == [8], state.keys()


def test_accelerators_check_skips_at_loop_ends(data_dir, tmp_path,
                                               monkeypatch):
  # As on a TPU or GPU: the host does not wait on each step, so a run of
  # skips is seen at the end of the host loop (steps 5 to 8 here).
  monkeypatch.setattr(train_lib, "_has_accelerator", lambda strategy: True)
  with pytest.raises(train_lib.TrainingError,
                     match=r"6 consecutive non-finite steps \(steps 3 to 8\)"):
    run(tmp_path, data_dir, "train.steps_per_loop = 4",
        "train.checkpoint_every_steps = 4", "train.max_consecutive_skips = 3",
        gradient_hook=_nan_at("3-100"))
