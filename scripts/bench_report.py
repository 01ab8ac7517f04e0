"""The report of `scripts.bench_train`: a markdown table, and the machine."""

import os
import statistics

COLUMNS = ("model", "ours ex/s", "theirs ex/s", "ours / theirs",
           "ours peak RSS", "theirs peak RSS", "ours MLM acc",
           "theirs MLM acc")


def gb(value):
  return f"{value / 2**30:.2f} GiB"


def report(results, machine, settings):
  """The results as a markdown table with a line per model size."""
  lines = [f"Machine: {machine}", f"Settings: {settings}", "",
           "| " + " | ".join(COLUMNS) + " |",
           "|" + "---|" * len(COLUMNS)]
  for size, runs in results.items():
    ours = statistics.median(r["rate"] for r in runs["ours"])
    theirs = statistics.median(r["rate"] for r in runs["theirs"])
    row = [size, f"{ours:.1f}", f"{theirs:.1f}", f"{ours / theirs:.2f}x",
           gb(max(r["rss"] for r in runs["ours"])),
           gb(max(r["rss"] for r in runs["theirs"])),
           f"{statistics.mean(r['mlm_accuracy'] for r in runs['ours']):.4f}",
           f"{statistics.mean(r['mlm_accuracy'] for r in runs['theirs']):.4f}"]
    lines.append("| " + " | ".join(row) + " |")
  lines += ["", "Examples/s: median over runs, first loop (compilation) "
            "excluded; peak RSS: the largest run's; MLM accuracy: eval on "
            "the same validation batches after the last step, mean over "
            "runs.", "", "Runs in order (examples/s):"]
  for size, runs in results.items():
    order = [f"{who} {r['rate']:.1f}" for pair in zip(runs["ours"],
                                                      runs["theirs"])
             for who, r in zip(("ours", "theirs"), pair)]
    lines.append(f"- {size}: " + ", ".join(order))
  return "\n".join(lines) + "\n"


def machine_description():
  model = "unknown CPU"
  try:
    with open("/proc/cpuinfo") as f:
      names = [line.split(":", 1)[1].strip() for line in f
               if line.startswith("model name")]
    model = names[0] if names else model
  except OSError:
    pass
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import official  # pylint: disable=g-import-not-at-top,unused-import
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  return (f"{os.cpu_count()} CPU cores ({model}), no accelerator; "
          f"TensorFlow {tf.__version__}, tf-models-official "
          f"{metadata.version('tf-models-official')}")
