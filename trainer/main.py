r"""Pretrains BERT with LAMB: `python -m trainer.main --gin_file=...`.

Flags say where the job runs; gin files say what is trained and how it is
computed (every such setting is a `train.*`, `dataset.*`, ... binding and is
written to model_dir/operative_config.gin).

  python -m trainer.main --gin_file=configs/bert_lamb.gin \
      --model_dir=runs/bert_lamb

Run again with the same --model_dir to resume from its latest checkpoint.

Exit codes: 0 done; 1 error (one line on stderr; --verbose for the
traceback); 143 stopped on SIGTERM after saving a checkpoint at the step it
was in (run the same command to resume); 130 interrupted.
"""

import datetime
import os

from absl import app
from absl import flags
from absl import logging

from trainer import allocator
from trainer import cli

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
flags.DEFINE_boolean("verbose", False, "Show tracebacks and TensorFlow logs.")

FLAGS = flags.FLAGS


def main(argv, gradient_hook=None):
  """Runs `run`, turning errors into one line and an exit code.

  `gradient_hook` is for the fault-injection entry point
  (`tests/faulty_main.py`) only.
  """
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.verbose:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.set_verbosity(logging.WARNING)
  # Before TensorFlow starts its threads (see trainer/allocator.py).
  allocator.limit_arenas()
  return cli.run_command(lambda: run(gradient_hook), verbose=FLAGS.verbose)


def parse_config():
  """Parses --gin_file and --gin_bindings, then resolves and binds
  `train.parallel_micro_batches` (recorded in operative_config.gin).

  Returns:
    (parts, why): the resolved value and the reason for it.
  """
  import gin  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from trainer import configurables  # pylint: disable=g-import-not-at-top
  from trainer import runtime  # pylint: disable=g-import-not-at-top
  # `include` lines in configs resolve from the repository root too.
  gin.add_config_file_search_path(
      os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  gin.parse_config_files_and_bindings(FLAGS.gin_file, FLAGS.gin_bindings,
                                      finalize_config=False)
  accelerator = bool(FLAGS.tpu or tf.config.list_physical_devices("GPU"))
  parts, reason = runtime.resolve_parallel_micro_batches(
      configurables.bound_value("train.parallel_micro_batches"),
      accelerator=accelerator, local_replicas=FLAGS.cpu_replicas)
  gin.bind_parameter("train.parallel_micro_batches", parts)
  gin.finalize()
  return parts, reason


def run(gradient_hook=None):
  """Parses the config, sets up the runtime, picks the strategy and trains."""
  if not FLAGS.gin_file:
    raise ValueError("give at least one --gin_file, e.g. "
                     "--gin_file=configs/bert_lamb.gin")
  for path in FLAGS.gin_file:  # Checked before the slow TensorFlow import.
    if "://" not in path and not os.path.exists(path):
      raise FileNotFoundError(f"gin file {path} does not exist")
  parts, parts_reason = parse_config()
  from trainer import distribute  # pylint: disable=g-import-not-at-top
  if not FLAGS.model_dir and distribute.several_hosts(FLAGS.strategy,
                                                      FLAGS.tpu):
    # The default is a new directory per host and per start: the workers
    # would not share it, and a restart could not resume.
    raise ValueError("a multi-worker job needs --model_dir, the same on "
                     "every worker (e.g. gs://BUCKET/runs/NAME)")
  import gin  # pylint: disable=g-import-not-at-top
  from trainer import configurables  # pylint: disable=g-import-not-at-top
  from trainer import runtime  # pylint: disable=g-import-not-at-top
  # Op threads, devices and the strategy come before anything starts
  # TensorFlow's runtime (so do multi-worker collectives).
  runtime.set_cpu_threads(parts)
  distribute.split_cpu(FLAGS.cpu_replicas)
  strategy = distribute.create_strategy(FLAGS.strategy, FLAGS.tpu,
                                       FLAGS.tpu_timeout, FLAGS.worker_timeout)
  model_dir = FLAGS.model_dir or os.path.join(
      "runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
  print(f"model_dir: {model_dir}\n--- gin config ---\n{gin.config_str()}"
        f"------------------\ntrain.parallel_micro_batches = {parts} "
        f"({parts_reason})", flush=True)
  try:
    metrics = configurables.train(model_dir=model_dir,
                                  data_dir=FLAGS.data_dir, strategy=strategy,
                                  gradient_hook=gradient_hook)
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
