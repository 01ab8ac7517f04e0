r"""Pretrains BERT with LAMB: `python -m trainer.main --gin_file=...`.

Flags say where and how the job runs; gin files say what is trained.

  python -m trainer.main --gin_file=configs/bert_lamb.gin \
      --model_dir=runs/bert_lamb

Run again with the same --model_dir to resume from its latest checkpoint.

Exit codes: 0 done; 1 error (one line on stderr; --verbose for the
traceback); 143 stopped on SIGTERM after saving a checkpoint at the step it
was in (run the same command to resume); 130 interrupted.
"""

import datetime
import os
import sys

from absl import app
from absl import flags
from absl import logging

from trainer import allocator
from trainer import preemption

flags.DEFINE_multi_string("gin_file", [], "Gin files; later ones override "
                          "earlier ones.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. "
                          "'train.total_steps = 100'; applied after files.")
flags.DEFINE_string("model_dir", None, "Checkpoints, summaries and "
                    "metrics.jsonl; an existing run here is resumed. Default: "
                    "a new directory under ./runs/.")
flags.DEFINE_string("data_dir", None, "Where the dataset is built once and "
                    "read (default ~/bert_lamb_data). gs:// paths work.")
flags.DEFINE_enum("strategy", "auto", ["auto", "one_device", "mirrored",
                                       "multi_worker", "tpu"],
                  "Distribution strategy; auto picks tpu when --tpu is set, "
                  "multi_worker when TF_CONFIG names several tasks, mirrored "
                  "for several GPUs or --cpu_replicas>1, else one_device.")
flags.DEFINE_string("tpu", None, "Cloud TPU name or grpc:// address.")
flags.DEFINE_float("tpu_timeout", 300.0, "Seconds to wait for the TPU to "
                   "answer before giving up.")
flags.DEFINE_float("worker_timeout", 60.0, "Multi-worker: seconds a worker "
                   "may go without a heartbeat before the others stop with "
                   "an error naming it.")
flags.DEFINE_integer("cpu_replicas", 1, "Split the CPU into this many logical "
                     "devices so mirrored training runs without a GPU.")
flags.DEFINE_integer("parallel_micro_batches", 0, "On CPU: compute this "
                     "many parts of each micro-batch at once, each op on "
                     "cores/N threads (faster for small models). 0: 2 on a "
                     "host with 2+ cores, no GPU or TPU and one replica, "
                     "else 1.")
flags.DEFINE_boolean("verbose", False, "Show tracebacks and TensorFlow logs.")

FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.verbose:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.set_verbosity(logging.WARNING)
  # Before TensorFlow starts its threads (see trainer/allocator.py).
  allocator.limit_arenas()
  try:
    return run()
  except preemption.Preempted as e:
    print(e, flush=True)
    return preemption.EXIT_CODE
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    return 130
  except Exception as e:  # pylint: disable=broad-except
    if FLAGS.verbose:
      raise
    message = str(e).strip().splitlines()[0] if str(e).strip() else ""
    print(f"error: {type(e).__name__}: {message}", file=sys.stderr)
    return 1


def run():
  """Parses the config, picks the strategy and trains."""
  if not FLAGS.gin_file:
    raise ValueError("give at least one --gin_file, e.g. "
                     "--gin_file=configs/bert_lamb.gin")
  for path in FLAGS.gin_file:  # Checked before the slow TensorFlow import.
    if "://" not in path and not os.path.exists(path):
      raise FileNotFoundError(f"gin file {path} does not exist")
  import gin  # pylint: disable=g-import-not-at-top
  from trainer import distribute  # pylint: disable=g-import-not-at-top
  # Op threads, devices and the strategy come first: they (and multi-worker
  # collectives) must be configured before anything starts TensorFlow's
  # runtime.
  parallel_parts = distribute.cpu_parallelism(
      FLAGS.parallel_micro_batches, FLAGS.tpu, FLAGS.cpu_replicas)
  distribute.split_cpu(FLAGS.cpu_replicas)
  strategy = distribute.create_strategy(FLAGS.strategy, FLAGS.tpu,
                                       FLAGS.tpu_timeout, FLAGS.worker_timeout)
  from trainer import train as train_lib  # pylint: disable=g-import-not-at-top
  # `include` lines in configs resolve from the repository root too.
  gin.add_config_file_search_path(
      os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  gin.parse_config_files_and_bindings(FLAGS.gin_file, FLAGS.gin_bindings)
  model_dir = FLAGS.model_dir or os.path.join(
      "runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
  print(f"model_dir: {model_dir}\n--- gin config ---\n{gin.config_str()}"
        f"------------------", flush=True)
  try:
    metrics = train_lib.train(model_dir=model_dir, data_dir=FLAGS.data_dir,
                              strategy=strategy,
                              parallel_micro_batches=parallel_parts)
  except Exception as e:  # pylint: disable=broad-except
    lost = distribute.lost_worker(strategy, e)
    if lost is None:
      raise
    raise lost from e
  print(f"done: eval mlm_accuracy {metrics['mlm_accuracy']:.4f}, "
        f"eval loss {metrics['loss']:.4f}; model_dir {model_dir}")
  return 0


if __name__ == "__main__":
  app.run(main)
