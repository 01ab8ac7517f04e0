"""Progress lines, TensorBoard summaries and `metrics.jsonl`, written together.

Only the chief writes files; every task prints its progress line so a
multi-host job shows life on each host.
"""

import datetime
import json
import os
import sys
import time

import tensorflow as tf

from data import files


def forget_after(model_dir, step):
  """Drops the metrics.jsonl records after `step`, e.g. on resuming there.

  They belong to work that was lost with the process and is done again, so
  keeping them would log those steps twice. A line cut short by a crash goes
  too. The file is replaced by an atomic rename, so a crash here loses
  nothing.
  """
  path = os.path.join(model_dir, "metrics.jsonl")
  if not tf.io.gfile.exists(path):
    return
  with tf.io.gfile.GFile(path) as f:
    lines = f.read().splitlines(keepends=True)
  kept = []
  for line in lines:
    try:
      if line.endswith("\n") and json.loads(line)["step"] <= step:
        kept.append(line)
    except (ValueError, KeyError, TypeError):
      pass  # A torn or foreign line.
  if len(kept) == len(lines):
    return
  files.write_atomically(path, "".join(kept))


class Reporter:
  """Writes one record per logged step to stdout, TensorBoard and jsonl."""

  def __init__(self, model_dir, total_steps, chief, stream=None):
    self._total = total_steps
    self._chief = chief
    self._stream = stream or sys.stdout
    self._jsonl = None
    self._writers = {}
    if chief:
      self._jsonl = tf.io.gfile.GFile(
          os.path.join(model_dir, "metrics.jsonl"), "a")
      for split in ("train", "eval"):
        self._writers[split] = tf.summary.create_file_writer(
            os.path.join(model_dir, split))
    self._rate_window = []  # (steps, seconds) of recent loops, for the ETA.

  def train(self, step, metrics, steps, seconds, examples):
    """Reports a training loop of `steps` steps that took `seconds`."""
    rate = examples / max(seconds, 1e-9)
    self._rate_window = (self._rate_window + [(steps, seconds)])[-5:]
    per_step = (sum(s for _, s in self._rate_window) /
                max(sum(n for n, _ in self._rate_window), 1))
    eta = datetime.timedelta(seconds=int(per_step * (self._total - step)))
    record = dict(step=step, examples_per_second=rate, **metrics)
    line = (f"step {step}/{self._total} | loss {metrics['loss']:.4f} | "
            f"mlm_acc {metrics['mlm_accuracy']:.4f} | "
            f"nsp_acc {metrics['nsp_accuracy']:.3f} | "
            f"lr {metrics['learning_rate']:.3e} | {rate:.1f} ex/s | ETA {eta}")
    if "gradient_noise_scale" in metrics:
      line += f" | noise scale {metrics['gradient_noise_scale']:.0f}"
    if metrics.get("skipped_steps"):
      line += f" | skipped {int(metrics['skipped_steps'])} non-finite step(s)"
      if "skipped_steps_total" in metrics:
        line += f" ({int(metrics['skipped_steps_total'])} in all)"
    self._emit("train", step, record, line)

  def eval(self, step, metrics):
    record = dict(step=step, **{f"eval_{k}": v for k, v in metrics.items()})
    line = (f"eval step {step} | loss {metrics['loss']:.4f} | "
            f"mlm_loss {metrics['mlm_loss']:.4f} | "
            f"mlm_acc {metrics['mlm_accuracy']:.4f} | "
            f"nsp_acc {metrics['nsp_accuracy']:.3f}")
    self._emit("eval", step, record, line)

  def info(self, message):
    print(message, file=self._stream, flush=True)

  def _emit(self, split, step, record, line):
    self.info(line)
    if not self._chief:
      return
    record["time"] = time.time()
    self._jsonl.write(json.dumps(record, sort_keys=True) + "\n")
    self._jsonl.flush()
    with self._writers[split].as_default(step=step):
      for key, value in record.items():
        if key not in ("step", "time"):
          tf.summary.scalar(key.removeprefix("eval_"), value)
    self._writers[split].flush()

  def close(self):
    if self._jsonl:
      self._jsonl.close()
    for writer in self._writers.values():
      writer.close()
