"""The work both trainers of `scripts.bench_train` do, and how a run is timed.

The model sizes, the data, the batch, the seed and the optimizer settings are
defined once here and turned into each trainer's own configuration by
`bench_ours` and `bench_theirs`; `run_child` runs a trainer as a child
process and `loop_rate` turns its loop records into examples/s.
"""

import os
import subprocess

from data import defaults

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Model sizes: (layers, hidden, heads, FFN) and default steps per run.
SIZES = {
    "tiny": dict(layers=2, hidden=128, heads=2, ffn=512, steps=300),
    "mini": dict(layers=4, hidden=256, heads=4, ffn=1024, steps=150),
}
GLOBAL_BATCH_SIZE = 64
# The data both trainers read; --quick swaps in the tiny test corpus.
DATA = dict(corpus=defaults.CORPUS, vocab_size=defaults.VOCAB_SIZE,
            max_seq_length=defaults.MAX_SEQ_LENGTH,
            max_predictions_per_seq=defaults.MAX_PREDICTIONS_PER_SEQ)
QUICK_DATA = dict(corpus=os.path.join(ROOT, "tests", "testdata",
                                      "tiny_corpus.txt"),
                  vocab_size=512, max_seq_length=32,
                  max_predictions_per_seq=5)
QUICK_BATCH_SIZE = 8
SEED = 0
DROPOUT = 0.1
WEIGHT_DECAY_EXCLUDED = ["LayerNorm", "layer_norm", "bias"]


def schedule(steps, warmup_fraction, peak_learning_rate):
  """Warmup steps and the Model Garden's initial_learning_rate."""
  return max(1, round(warmup_fraction * steps)), peak_learning_rate


def run_child(cmd, log_dir):
  """Runs `cmd` to completion; returns its peak RSS in bytes.

  stdout and stderr go to files in `log_dir`. The child is reaped with
  `os.wait4`, whose rusage is that child's alone (RUSAGE_CHILDREN would be
  the largest of all children so far).
  """
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  with open(os.path.join(log_dir, "stdout.txt"), "w") as out, \
      open(os.path.join(log_dir, "stderr.txt"), "w") as err:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
  if proc.returncode:
    with open(os.path.join(log_dir, "stderr.txt")) as f:
      tail = "".join(f.readlines()[-15:])
    raise RuntimeError(f"{cmd[2]} exited with {proc.returncode} "
                       f"(logs in {log_dir}):\n{tail}")
  return usage.ru_maxrss * 1024  # Linux reports kilobytes.


def loop_rate(records, batch_size):
  """Examples/s between the first and the last loop record.

  Args:
    records: (step, wall-clock seconds) at the end of each training loop.
    batch_size: examples per step.

  Returns:
    Examples per second over all loops but the first (which compiles).
  """
  if len(records) < 2:
    raise ValueError(f"need at least 2 loop records, got {len(records)}")
  (step0, t0), (step1, t1) = records[0], records[-1]
  return (step1 - step0) * batch_size / (t1 - t0)
