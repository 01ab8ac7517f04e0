"""The report of `scripts.bench_train`: a markdown table, and the machine."""

import os
import statistics

COLUMNS = ("model", "ours ex/s", "theirs ex/s", "ours / theirs",
           "ours peak RSS", "theirs peak RSS", "ours MLM acc",
           "theirs MLM acc")


def gb(value):
  return f"{value / 2**30:.2f} GiB"


def settings_line(batch_size, data_cfg, steps_of, steps_per_loop, repeats, *,
                  bucket_width, micro_batches, parts, eval_batches, quick):
  """The report's "Settings:" line: the work and how ours ran."""
  return (
      f"batch {batch_size}, sequence {data_cfg['max_seq_length']}, "
      f"{data_cfg['max_predictions_per_seq']} predictions, "
      + ", ".join(f"{s}: {n} steps" for s, n in steps_of.items())
      + f", {steps_per_loop} steps per loop, {repeats} run(s) each, "
      + (f"ours with length buckets of {bucket_width}, "
         if bucket_width else "")
      + (f"ours in {micro_batches} length-sorted micro-batches, "
         if micro_batches > 1 else "")
      + (f"each in {parts} parts computed at once, " if parts > 1 else "")
      + f"{eval_batches} eval batches" + (" (--quick)" if quick else ""))


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
