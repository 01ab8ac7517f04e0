r"""Eval curves of training runs in one PNG, from their metrics.jsonl.

  python -m scripts.plot_runs --out=results/default_run.png \
      --run="seed 0=runs/s0" --run="seed 1=runs/s1" --metric=eval_mlm_accuracy

Each --run is LABEL=MODEL_DIR. The x axis is examples seen (step x the run's
global batch, read from its operative_config.gin), so runs of different
batch sizes line up; --hline draws reference levels (e.g. 0.2,0.3) and
--vline budgets in examples.
"""

import json
import os
import re

from absl import app
from absl import flags

flags.DEFINE_multi_string("run", [], "LABEL=MODEL_DIR, one per curve.")
flags.DEFINE_string("out", None, "The PNG to write.")
flags.DEFINE_string("metric", "eval_mlm_accuracy", "A key of metrics.jsonl.")
flags.DEFINE_string("title", "", "Plot title.")
flags.DEFINE_list("hline", [], "Reference levels drawn as dotted lines.")
flags.DEFINE_multi_string("vline", [], "EXAMPLES=LABEL: a budget drawn as a "
                          "dashed vertical line, e.g. 180000=20 min.")
flags.mark_flag_as_required("out")

FLAGS = flags.FLAGS


def global_batch(model_dir):
  """`train.global_batch_size` from the run's operative config."""
  with open(os.path.join(model_dir, "operative_config.gin")) as f:
    config = f.read()
  name = "train.global_batch_size"
  while True:  # Follows macros: `train.global_batch_size = %BATCH`.
    match = re.search(rf"^{re.escape(name)} = (\S+)", config, re.M)
    if not match:
      raise ValueError(f"{model_dir}: no {name} in operative_config.gin")
    if not match.group(1).startswith("%"):
      return int(match.group(1))
    name = match.group(1)[1:]


def curve(model_dir, metric):
  """[(examples seen, value)] of every record of `metric`, in step order."""
  with open(os.path.join(model_dir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f if line.strip()]
  batch = global_batch(model_dir)
  points = {r["step"]: r[metric] for r in records if metric in r}
  return [(step * batch, points[step]) for step in sorted(points)]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(8, 4.8))
  ax.set_prop_cycle(color=plt.cm.tab20.colors)  # 20 curves before a repeat.
  for spec in FLAGS.run:
    label, sep, model_dir = spec.partition("=")
    if not sep:
      raise app.UsageError(f"--run={spec!r}: expected LABEL=MODEL_DIR")
    points = curve(os.path.expanduser(model_dir), FLAGS.metric)
    ax.plot([x / 1000 for x, _ in points], [y for _, y in points], "-o",
            ms=3, label=label)
  for level in FLAGS.hline:
    ax.axhline(float(level), color="gray", ls=":", lw=1)
  for spec in FLAGS.vline:
    examples, _, label = spec.partition("=")
    ax.axvline(float(examples) / 1000, color="black", ls="--", lw=1)
    ax.text(float(examples) / 1000, ax.get_ylim()[0], f" {label}",
            rotation=90, va="bottom", fontsize=7)
  ax.set_xlabel("thousands of examples seen")
  ax.set_ylabel(FLAGS.metric)
  ax.set_title(FLAGS.title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(FLAGS.out, dpi=110)
  print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
