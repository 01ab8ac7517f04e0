r"""Examples/s of the input pipeline alone, next to what the trainer consumes.

  python scripts/bench_input.py --data_dir=~/bert_lamb_data \
      [--trainer_examples_per_sec=N]

Default config: the embedded corpus, 128 tokens, 20 predictions, batch 64,
dynamic masking. The dataset is prepared first if missing (~2-3 minutes on 2
cores). After `--warmup_batches`, batches are pulled for `--seconds` and the
rate printed. Measured on 2 shared CPU cores: ~5,800 examples/s. The input is
not the bottleneck while this exceeds the trainer's examples/s.
"""

import os
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Data dir (default ~/bert_lamb_data).")
flags.DEFINE_integer("batch_size", 64, "Global batch size.")
flags.DEFINE_integer("max_seq_length", 128, "Tokens per example.")
flags.DEFINE_integer("max_predictions_per_seq", 20, "Masked positions.")
flags.DEFINE_string("masking", "dynamic", "dynamic or static.")
flags.DEFINE_integer("warmup_batches", 50, "Batches before timing starts.")
flags.DEFINE_float("seconds", 10.0, "How long to time.")
flags.DEFINE_float("trainer_examples_per_sec", None,
                   "The trainer's throughput, to print beside the pipeline's.")


def main(argv):
  del argv
  data.prepare_dataset(FLAGS.data_dir, max_seq_length=FLAGS.max_seq_length)
  ds = data.build_dataset(
      data_dir=FLAGS.data_dir, global_batch_size=FLAGS.batch_size,
      max_seq_length=FLAGS.max_seq_length,
      max_predictions_per_seq=FLAGS.max_predictions_per_seq,
      masking=FLAGS.masking)
  it = iter(ds)
  for _ in range(FLAGS.warmup_batches):
    next(it)
  batches, start = 0, time.perf_counter()
  while time.perf_counter() - start < FLAGS.seconds:
    next(it)
    batches += 1
  rate = batches * FLAGS.batch_size / (time.perf_counter() - start)
  print(f"input pipeline: {rate:,.0f} examples/s "
        f"(batch {FLAGS.batch_size}, seq {FLAGS.max_seq_length}, "
        f"{FLAGS.masking} masking, {os.cpu_count()} CPUs)")
  if FLAGS.trainer_examples_per_sec:
    ratio = rate / FLAGS.trainer_examples_per_sec
    print(f"trainer:        {FLAGS.trainer_examples_per_sec:,.0f} examples/s "
          f"-> the input is {ratio:.1f}x faster"
          + ("" if ratio > 1 else "  (INPUT-BOUND)"))


if __name__ == "__main__":
  app.run(main)
