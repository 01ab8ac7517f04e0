r"""Examples/s of the input pipeline alone, next to what the trainer consumes.

  python -m scripts.bench_input --data_dir=~/bert_lamb_data \
      [--trainer_model_dir=runs/bert_lamb | --trainer_examples_per_sec=N]

Default config: that of configs/bert_lamb.gin (the embedded corpus, 128
tokens, 20 predictions, batch 64, dynamic masking, length buckets of 8 tokens
with each batch cut to its longest), built as the trainer builds it. The
dataset is prepared first if missing (~2-3 minutes on 2 cores). After
`--warmup_batches`, batches are pulled for `--seconds` and the rate printed.

With `--trainer_model_dir` the trainer's rate is read from that run's
metrics.jsonl: the median examples/s of its training loops after the first
(which compiles). The input is not the bottleneck while it is well above
that; the target is 5x, since the pipeline shares the CPU with training.
Measured on 2 CPU cores while two trainings shared them: 2,277 examples/s,
8.8x the 258 examples/s the trainer consumes on the tiny benchmark (README,
"Performance").
"""

import json
import os
import statistics
import time

from absl import app
from absl import flags

import data
from data import batching
from data import defaults

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Data dir (default ~/bert_lamb_data).")
flags.DEFINE_integer("batch_size", 64, "Global batch size.")
flags.DEFINE_integer("max_seq_length", defaults.MAX_SEQ_LENGTH,
                     "Tokens per example.")
flags.DEFINE_integer("max_predictions_per_seq",
                     defaults.MAX_PREDICTIONS_PER_SEQ, "Masked positions.")
flags.DEFINE_string("masking", "dynamic", "dynamic or static.")
flags.DEFINE_integer("bucket_width", 8, "Length buckets (tokens); 0 for "
                     "full-length batches.")
flags.DEFINE_integer("warmup_batches", 50, "Batches before timing starts.")
flags.DEFINE_float("seconds", 10.0, "How long to time.")
flags.DEFINE_float("trainer_examples_per_sec", None,
                   "The trainer's throughput, to print beside the pipeline's.")
flags.DEFINE_string("trainer_model_dir", None,
                    "A trainer run whose metrics.jsonl gives its throughput.")

TARGET_RATIO = 5.0


def trainer_rate(model_dir):
  """Median examples/s of a run's training loops, the first one left out."""
  with open(os.path.join(model_dir, "metrics.jsonl")) as f:
    rates = [r["examples_per_second"] for r in map(json.loads, f)
             if "examples_per_second" in r]
  if len(rates) < 2:
    raise ValueError(f"{model_dir}/metrics.jsonl has {len(rates)} training "
                     "loops; need at least 2")
  return statistics.median(rates[1:])


def main(argv):
  del argv
  data.prepare_dataset(FLAGS.data_dir, max_seq_length=FLAGS.max_seq_length)
  bucket_width = FLAGS.bucket_width or None
  # As trainer/train.py builds it on one host with one replica.
  ds = data.build_dataset(
      data_dir=FLAGS.data_dir, global_batch_size=FLAGS.batch_size,
      max_seq_length=FLAGS.max_seq_length,
      max_predictions_per_seq=FLAGS.max_predictions_per_seq,
      masking=FLAGS.masking, bucket_width=bucket_width)
  it = iter(batching.host_batches(ds, 1, cut=bool(bucket_width)))
  for _ in range(FLAGS.warmup_batches):
    next(it)
  batches, start = 0, time.perf_counter()
  while time.perf_counter() - start < FLAGS.seconds:
    next(it)
    batches += 1
  rate = batches * FLAGS.batch_size / (time.perf_counter() - start)
  print(f"input pipeline: {rate:,.0f} examples/s "
        f"(batch {FLAGS.batch_size}, seq {FLAGS.max_seq_length}, "
        f"{FLAGS.masking} masking, buckets {bucket_width}, "
        f"{os.cpu_count()} CPUs)")
  consumed = FLAGS.trainer_examples_per_sec
  if FLAGS.trainer_model_dir:
    consumed = trainer_rate(FLAGS.trainer_model_dir)
  if consumed:
    ratio = rate / consumed
    verdict = ("OK" if ratio >= TARGET_RATIO else
               f"below the {TARGET_RATIO:.0f}x target" if ratio > 1 else
               "INPUT-BOUND")
    print(f"trainer:        {consumed:,.0f} examples/s "
          f"-> the input is {ratio:.1f}x faster ({verdict})")


if __name__ == "__main__":
  app.run(main)
