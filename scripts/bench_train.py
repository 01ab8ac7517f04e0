r"""Training throughput: our trainer against the Model Garden's, same work.

  python -m scripts.bench_train --data_dir=~/bert_lamb_data \
      --out=results/bench_train.md

Both trainers train the same BERT (tiny: 2 layers, hidden 128, 2 heads, FFN
512; mini: 4 layers, hidden 256, 4 heads, FFN 1024; sequence 128, 20
predictions) on the same examples with the same LAMB (weight decay 0.01, not
on LayerNorm and biases), the same warmup + linear decay and the same global
batch of 64, for the same number of steps, one after the other: ours, theirs,
ours, theirs. The data are our pipeline's examples with static masking: the
train and validation splits are exported as Model Garden TFRecords, and our
trainer reads the same split with `dataset.masking = "static"`, which gives
each example the very mask it was exported with (checked on our first
batches before anything is timed). Our batches are full length by default,
as theirs are, although configs/bert_lamb.gin groups its batches in length
buckets of 8 tokens; `--bucket_width=8` times those buckets instead, which
skip the padding but change how examples are grouped into batches, and
(measured, results/bench_train_buckets8.md) learn less in these short runs. Our trainer
otherwise runs as it does by default: each batch sorted by length into
`--micro_batches` micro-batches cut to their longest example, each computed
as `train.parallel_micro_batches` parts side by side (automatic: 2 on a CPU
with 2+ cores; the value each run resolved is read from its
operative_config.gin):
the same summed gradient as the padded batch, less padding computed.

Our trainer runs `python -m trainer.main` with configs/bert_lamb.gin and the
bindings above (scripts/bench_ours.py); theirs runs `python -m
official.nlp.train --experiment=bert/pretraining` with a YAML file written
here (scripts/bench_theirs.py); scripts/bench_report.py writes the table. Each run is a
child process, so its peak RSS comes from its own rusage. Examples/s are
measured the same way for both: from the wall-clock stamps of the first and
the last loop's log record (our metrics.jsonl, their absl log lines; orbit
rounds its own steps/sec to one decimal), so the first loop, which traces
and compiles, is left out. At the end each evaluates MLM accuracy on the same
validation batches.

Expected: about 35 minutes on an idle 2-core CPU for both sizes and 2 runs
each (`--sizes=tiny` alone: about 15 minutes), plus the one-time dataset
build. `--quick` (tiny model, tiny corpus, a few steps; about a minute)
checks that everything runs, and its numbers mean nothing.
"""

import concurrent.futures
import os
import shutil
import tempfile
import time

from absl import app
from absl import flags

from scripts import bench_ours
from scripts import bench_report
from scripts import bench_theirs
from scripts import bench_work

FLAGS = flags.FLAGS


def define_flags():
  """Defines the script's flags.

  Called only when run as a script: importing this module (as its test does)
  must not clash with other scripts' flags of the same names.
  """
  flags.DEFINE_string("data_dir", None,
                      "Where the dataset is built once and read (default "
                      "~/bert_lamb_data).")
  flags.DEFINE_string("work_dir", None, "Exported TFRecords and the runs' "
                      "model dirs; a temporary directory, removed at the end, "
                      "when unset.")
  flags.DEFINE_list("sizes", ["tiny", "mini"], "Model sizes to compare.")
  flags.DEFINE_integer("steps", None, "Training steps per run (default: "
                       "300 for tiny, 150 for mini).")
  flags.DEFINE_integer("steps_per_loop", 50, "Steps per host loop and log "
                       "record, for both trainers.")
  flags.DEFINE_integer("repeats", 2, "Runs of each trainer, alternating.")
  flags.DEFINE_float("peak_learning_rate", 1e-2,
                     "The Model Garden's initial_learning_rate of the decay "
                     "(configs/bert_lamb.gin's peak).")
  flags.DEFINE_float("warmup_fraction", 0.05, "Warmup steps / total steps.")
  flags.DEFINE_integer("bucket_width", 0, "Our trainer's dataset.bucket_width "
                       "(length buckets, batches cut to their longest); 0: "
                       "full-length batches, the very work the Model Garden "
                       "trainer does.")
  flags.DEFINE_integer("micro_batches", 4, "Our trainer's micro-batches per "
                       "batch of 64 (train.grad_accumulation_steps), sorted "
                       "by length and cut to their longest.")
  flags.DEFINE_integer("parallel_micro_batches", None, "Our trainer's "
                       "train.parallel_micro_batches: parts of each "
                       "micro-batch computed at once; unset: automatic (2 "
                       "on a CPU with 2+ cores).")
  flags.DEFINE_integer("eval_batches", 20, "Validation batches evaluated at "
                       "the end (fewer if the split is smaller).")
  flags.DEFINE_boolean("quick", False, "Smoke run: the tiny model on the "
                       "tiny test corpus for a few steps, one run each, both "
                       "trainers at once.")
  flags.DEFINE_string("out", None, "Also write the report (markdown) here.")


def export_data(data_dir, work_dir, data_cfg):
  """Prepares the dataset and exports both splits; returns (prepared,
  paths)."""
  import data  # pylint: disable=g-import-not-at-top
  prepare = {k: data_cfg[k] for k in ("corpus", "vocab_size",
                                      "max_seq_length")}
  prepared = data.prepare_dataset(data_dir, seed=bench_work.SEED,
                                  progress=False, **prepare)
  paths = {}
  for split in ("train", "validation"):
    paths[split] = os.path.join(
        work_dir, f"{split}-{data_cfg['max_seq_length']}-"
        f"{data_cfg['max_predictions_per_seq']}.tfrecord")
    if not os.path.exists(paths[split]):
      data.export_tfrecords(
          paths[split], data_dir=data_dir, split=split, seed=bench_work.SEED,
          max_predictions_per_seq=data_cfg["max_predictions_per_seq"],
          **prepare)
  return prepared, paths


def check_same_examples(data_dir, data_cfg, batch_size, train_path,
                        num_batches=2):
  """Checks our trainer's first batches are examples of the export, verbatim.

  Our trainer shuffles differently from the Model Garden's reader, but with
  static masking every example keeps the mask it was exported with.

  Returns:
    The number of examples checked.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  import data  # pylint: disable=g-import-not-at-top
  from official.nlp.data import pretrain_dataloader  # pylint: disable=g-import-not-at-top

  keys = ("input_word_ids", "input_type_ids", "input_mask",
          "masked_lm_positions", "masked_lm_ids", "masked_lm_weights",
          "next_sentence_labels")

  def fingerprint(batch, i):
    return b"".join(np.asarray(batch[k][i], np.float64).tobytes()
                    for k in keys)

  # The trainer's own call (trainer/train.py), on one input pipeline.
  ours = data.build_dataset(
      None, data_dir=data_dir, split="train", global_batch_size=batch_size,
      seed=bench_work.SEED, shuffle=True, repeat=True, masking="static",
      **data_cfg)
  theirs = pretrain_dataloader.BertPretrainDataLoader(
      pretrain_dataloader.BertPretrainDataConfig(
          input_path=train_path, global_batch_size=1024, is_training=False,
          drop_remainder=False, seq_length=data_cfg["max_seq_length"],
          max_predictions_per_seq=data_cfg["max_predictions_per_seq"])).load()
  exported = {fingerprint(b, i) for b in theirs.as_numpy_iterator()
              for i in range(len(b["next_sentence_labels"]))}
  checked = 0
  for batch in ours.take(num_batches).as_numpy_iterator():
    for i in range(batch_size):
      if fingerprint(batch, i) not in exported:
        raise AssertionError("an example of our training stream is not in "
                             f"the export {train_path}")
      checked += 1
  return checked


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  for size in FLAGS.sizes:
    if size not in bench_work.SIZES:
      raise app.UsageError(f"unknown size {size!r}; choose from "
                           f"{', '.join(bench_work.SIZES)}")
  quick = FLAGS.quick
  data_cfg = bench_work.QUICK_DATA if quick else bench_work.DATA
  batch_size = (bench_work.QUICK_BATCH_SIZE if quick else
                bench_work.GLOBAL_BATCH_SIZE)
  sizes = ["tiny"] if quick else FLAGS.sizes
  repeats = 1 if quick else FLAGS.repeats
  steps_per_loop = 2 if quick else FLAGS.steps_per_loop
  steps_of = {s: 4 if quick else FLAGS.steps or bench_work.SIZES[s]["steps"]
              for s in sizes}
  work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="bench_train_")
  os.makedirs(work_dir, exist_ok=True)
  start = time.time()
  try:
    prepared, paths = export_data(FLAGS.data_dir, work_dir, data_cfg)
    checked = check_same_examples(FLAGS.data_dir, data_cfg, batch_size,
                                  paths["train"])
    print(f"data: {prepared.num_examples['train']} train examples exported; "
          f"our first {checked} training examples are found verbatim in the "
          "export", flush=True)
    eval_batches = min(FLAGS.eval_batches,
                       prepared.num_examples["validation"] // batch_size)
    results = {}
    for size in sizes:
      steps = steps_of[size]
      warmup, lr = bench_work.schedule(steps, FLAGS.warmup_fraction,
                                       FLAGS.peak_learning_rate)
      runs = results[size] = {"ours": [], "theirs": []}
      for i in range(repeats):

        def run(who, size=size, steps=steps, i=i, warmup=warmup, lr=lr):
          run_dir = os.path.join(work_dir, f"{size}-{who}-{i}")
          shutil.rmtree(run_dir, ignore_errors=True)
          os.makedirs(run_dir)
          if who == "ours":
            return bench_ours.run_ours(run_dir, bench_ours.ours_bindings(
                size, data_cfg, batch_size, steps, eval_batches,
                warmup=warmup, peak_learning_rate=lr,
                bucket_width=FLAGS.bucket_width or None,
                micro_batches=FLAGS.micro_batches,
                steps_per_loop=steps_per_loop,
                parallel_micro_batches=FLAGS.parallel_micro_batches),
                                       FLAGS.data_dir, batch_size)
          return bench_theirs.run_theirs(run_dir, bench_theirs.theirs_config(
              size, data_cfg, batch_size, steps, eval_batches,
              prepared.vocab_size, paths["train"], paths["validation"],
              warmup=warmup, peak_learning_rate=lr,
              steps_per_loop=steps_per_loop))

        # Timed runs take turns on the CPU; a smoke run needs no fair
        # timing, so both trainers run at once.
        with concurrent.futures.ThreadPoolExecutor(2 if quick else 1) as pool:
          done = dict(zip(("ours", "theirs"),
                          pool.map(run, ("ours", "theirs"))))
        for who, result in done.items():
          runs[who].append(result)
          print(f"{size} {who} run {i + 1}/{repeats}: {result['rate']:.1f} "
                f"examples/s, peak RSS {bench_report.gb(result['rss'])}, "
                f"eval MLM accuracy {result['mlm_accuracy']:.4f}", flush=True)
    settings = bench_report.settings_line(
        batch_size, data_cfg, steps_of, steps_per_loop, repeats,
        bucket_width=FLAGS.bucket_width, micro_batches=FLAGS.micro_batches,
        parts=max(r["parts"] for size_runs in results.values()
                  for r in size_runs["ours"]),
        eval_batches=eval_batches, quick=quick)
    text = bench_report.report(results, bench_report.machine_description(),
                               settings)
    print(text + f"\n(total {time.time() - start:.0f} s)")
    if FLAGS.out:
      os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
      with open(FLAGS.out, "w") as f:
        f.write(text)
  finally:
    if not FLAGS.work_dir:
      shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
  define_flags()
  app.run(main)
