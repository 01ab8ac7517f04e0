r"""Training throughput: our trainer against the Model Garden's, same work.

  python scripts/bench_train.py --data_dir=~/bert_lamb_data \
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
as theirs are; `--bucket_width=8` times configs/bert_lamb.gin's length
buckets instead, which skip the padding but change how examples are grouped
into batches, and (measured) learn less in these short runs. Our trainer
otherwise runs as it does by default: each batch sorted by length into
`--micro_batches` micro-batches cut to their longest example, each computed
as `--parallel_micro_batches` parts side by side (2 on a CPU with 2+ cores):
the same summed gradient as the padded batch, less padding computed.

Our trainer runs `python -m trainer.main` with configs/bert_lamb.gin and the
bindings above; theirs runs `python -m official.nlp.train
--experiment=bert/pretraining` with a YAML file written here. Each run is a
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
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

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
  flags.DEFINE_integer("parallel_micro_batches", 0, "Our trainer's "
                       "--parallel_micro_batches: parts of each micro-batch "
                       "computed at once; 0: its default (2 on a CPU with "
                       "2+ cores).")
  flags.DEFINE_integer("eval_batches", 20, "Validation batches evaluated at "
                       "the end (fewer if the split is smaller).")
  flags.DEFINE_boolean("quick", False, "Smoke run: the tiny model on the "
                       "tiny test corpus for a few steps, one run each, both "
                       "trainers at once.")
  flags.DEFINE_string("out", None, "Also write the report (markdown) here.")


# Model sizes: (layers, hidden, heads, FFN) and default steps per run.
SIZES = {
    "tiny": dict(layers=2, hidden=128, heads=2, ffn=512, steps=300),
    "mini": dict(layers=4, hidden=256, heads=4, ffn=1024, steps=150),
}
GLOBAL_BATCH_SIZE = 64
# The data both trainers read; --quick swaps in the tiny test corpus.
DATA = dict(corpus="embedded", vocab_size=8192, max_seq_length=128,
            max_predictions_per_seq=20)
QUICK_DATA = dict(corpus=os.path.join(ROOT, "tests", "testdata",
                                      "tiny_corpus.txt"),
                  vocab_size=512, max_seq_length=32,
                  max_predictions_per_seq=5)
QUICK_BATCH_SIZE = 8
SEED = 0
DROPOUT = 0.1
WEIGHT_DECAY_EXCLUDED = ["LayerNorm", "layer_norm", "bias"]
COLUMNS = ("model", "ours ex/s", "theirs ex/s", "ours / theirs",
           "ours peak RSS", "theirs peak RSS", "ours MLM acc",
           "theirs MLM acc")


def run_child(cmd, log_dir):
  """Runs `cmd` to completion; returns its peak RSS in bytes.

  stdout and stderr go to files in `log_dir`. The child is reaped with
  `os.wait4`, whose rusage is that child's alone (RUSAGE_CHILDREN would be
  the largest of all children so far).
  """
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
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


def schedule(steps):
  """Warmup steps and the Model Garden's initial_learning_rate."""
  return max(1, round(FLAGS.warmup_fraction * steps)), FLAGS.peak_learning_rate


def ours_bindings(size, data_cfg, batch_size, steps, eval_batches):
  """Gin bindings over configs/bert_lamb.gin that set the shared work."""
  warmup, lr = schedule(steps)
  model = SIZES[size]
  return [
      f"dataset.corpus = {json.dumps(data_cfg['corpus'])}",
      f"dataset.vocab_size = {data_cfg['vocab_size']}",
      f"dataset.max_seq_length = {data_cfg['max_seq_length']}",
      "dataset.max_predictions_per_seq = "
      f"{data_cfg['max_predictions_per_seq']}",
      'dataset.masking = "static"',
      f"dataset.bucket_width = {FLAGS.bucket_width or None}",
      f"BertEncoder.num_layers = {model['layers']}",
      f"BertEncoder.hidden_size = {model['hidden']}",
      f"BertEncoder.num_attention_heads = {model['heads']}",
      f"BertEncoder.inner_dim = {model['ffn']}",
      "BertEncoder.max_sequence_length = 512",
      "BertEncoder.type_vocab_size = 2",
      "BertEncoder.norm_first = False",  # Post-LN, as the Model Garden's.
      f"BertEncoder.output_dropout = {DROPOUT}",
      f"BertEncoder.attention_dropout = {DROPOUT}",
      "train.optimizer = @LAMB",
      "LAMB.beta_1 = 0.9",
      "LAMB.beta_2 = 0.999",
      "LAMB.epsilon = 1e-6",
      "LAMB.weight_decay_rate = 0.01",
      f"LAMB.exclude_from_weight_decay = {WEIGHT_DECAY_EXCLUDED}",
      # The Model Garden's polynomial warmup ends at the decay's value at the
      # end of warmup, lr * (1 - W / T), and its decay counts from step 0.
      # Our decay counts from the end of warmup, so a peak of lr * (1 - W / T)
      # gives the very same decay line and a warmup that differs by one step.
      "learning_rate_schedule.peak_learning_rate = "
      f"{lr * (1 - warmup / steps)!r}",
      "learning_rate_schedule.warmup_fraction = None",
      f"learning_rate_schedule.warmup_steps = {warmup}",
      "learning_rate_schedule.warmup_power = 1.0",
      "learning_rate_schedule.decay_power = 1.0",
      "learning_rate_schedule.end_learning_rate = 0.0",
      f"train.total_steps = {steps}",
      f"train.global_batch_size = {batch_size}",
      f"train.grad_accumulation_steps = {FLAGS.micro_batches}",
      f"train.trim_padding = {FLAGS.micro_batches > 1}",
      f"train.steps_per_loop = {FLAGS.steps_per_loop}",
      f"train.checkpoint_every_steps = {steps}",
      f"train.eval_every_steps = {steps}",
      # Our eval batches are micro-batches: the same examples in all.
      f"train.eval_steps = {eval_batches * FLAGS.micro_batches}",
      f"train.seed = {SEED}",
      "train.clip_global_norm = None",
      "train.mixed_precision = None",
  ]


def theirs_config(size, data_cfg, batch_size, steps, eval_batches, vocab_size,
                  train_path, eval_path):
  """The Model Garden experiment overrides: the same work as ours."""
  warmup, lr = schedule(steps)
  model = SIZES[size]
  data_common = dict(
      global_batch_size=batch_size, seq_length=data_cfg["max_seq_length"],
      max_predictions_per_seq=data_cfg["max_predictions_per_seq"],
      use_next_sentence_label=True, seed=SEED)
  return dict(
      runtime=dict(distribution_strategy="one_device", num_gpus=0,
                   mixed_precision_dtype="float32"),
      task=dict(
          model=dict(
              encoder=dict(type="bert", bert=dict(
                  vocab_size=vocab_size, hidden_size=model["hidden"],
                  num_layers=model["layers"],
                  num_attention_heads=model["heads"],
                  intermediate_size=model["ffn"],
                  max_position_embeddings=512, type_vocab_size=2,
                  dropout_rate=DROPOUT, attention_dropout_rate=DROPOUT)),
              # The default NSP head has inner_dim 768 (BERT-base); ours
              # pools to the hidden size.
              cls_heads=[dict(inner_dim=model["hidden"], num_classes=2,
                              dropout_rate=DROPOUT, name="next_sentence")]),
          train_data=dict(input_path=train_path, is_training=True,
                          **data_common),
          validation_data=dict(input_path=eval_path, is_training=False,
                               **data_common)),
      trainer=dict(
          train_steps=steps, steps_per_loop=FLAGS.steps_per_loop,
          summary_interval=FLAGS.steps_per_loop, checkpoint_interval=steps,
          validation_interval=steps, validation_steps=eval_batches,
          optimizer_config=dict(
              optimizer=dict(type="lamb", lamb=dict(
                  beta_1=0.9, beta_2=0.999, epsilon=1e-6,
                  weight_decay_rate=0.01,
                  exclude_from_weight_decay=WEIGHT_DECAY_EXCLUDED)),
              learning_rate=dict(type="polynomial", polynomial=dict(
                  initial_learning_rate=lr, decay_steps=steps,
                  end_learning_rate=0.0, power=1.0)),
              warmup=dict(type="polynomial", polynomial=dict(
                  warmup_steps=warmup, power=1.0)))))


def run_ours(run_dir, bindings, data_dir, batch_size):
  """Trains with our trainer; returns examples/s, peak RSS, MLM accuracy."""
  gin_path = os.path.join(run_dir, "bench.gin")
  with open(gin_path, "w") as f:
    f.write("\n".join(bindings) + "\n")
  model_dir = os.path.join(run_dir, "model")
  rss = run_child([sys.executable, "-m", "trainer.main",
                   "--gin_file=configs/bert_lamb.gin",
                   f"--gin_file={gin_path}", f"--model_dir={model_dir}",
                   "--parallel_micro_batches="
                   f"{FLAGS.parallel_micro_batches}"] +
                  ([f"--data_dir={data_dir}"] if data_dir else []), run_dir)
  with open(os.path.join(model_dir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  loops = [(r["step"], r["time"]) for r in records
           if "examples_per_second" in r]
  evals = [r for r in records if "eval_mlm_accuracy" in r]
  with open(os.path.join(run_dir, "stdout.txt")) as f:
    parts = re.search(r"as (\d+) parts computed at once", f.read())
  return dict(rate=loop_rate(loops, batch_size), rss=rss,
              mlm_accuracy=evals[-1]["eval_mlm_accuracy"],
              parts=int(parts[1]) if parts else 1)


# An absl log line: "I1125 13:31:35.373152 140... controller.py:535] msg".
_LOG_LINE = re.compile(r"^[IWEF](\d\d)(\d\d) (\d\d):(\d\d):(\d\d\.\d+) +\d+ "
                       r"[^\]]*\] (.*)$")


def parse_orbit_log(text):
  """Train loop (step, seconds) records and the last eval's output text.

  Orbit logs `train | step: N | steps/sec: X | output: {...}` after each
  loop and ` eval | step: N | ... | output: {...}` after evaluating; the
  output dict may continue over the following lines.
  """
  loops, evals, current = [], [], None
  day, last = 0.0, None
  for line in text.splitlines():
    match = _LOG_LINE.match(line)
    if not match:
      if current is not None:
        current.append(line)
      continue
    current = None
    h, m, s, message = (int(match[3]), int(match[4]), float(match[5]),
                        match[6])
    seconds = h * 3600 + m * 60 + s
    if last is not None and seconds + day < last:
      day += 86400.0  # The run went past midnight.
    last = seconds + day
    train = re.match(r"train \| step: +(\d+) \| steps/sec", message)
    if train:
      loops.append((int(train[1]), last))
    elif re.match(r" ?eval \| step: +\d+ \| .*output:", message):
      current = [message]
      evals.append(current)
  return loops, "\n".join(evals[-1]) if evals else ""


def run_theirs(run_dir, config):
  """Trains with the Model Garden's trainer; same results as `run_ours`."""
  import yaml  # pylint: disable=g-import-not-at-top
  config_path = os.path.join(run_dir, "experiment.yaml")
  with open(config_path, "w") as f:
    yaml.safe_dump(config, f, sort_keys=False)
  rss = run_child([sys.executable, "-m", "official.nlp.train",
                   "--experiment=bert/pretraining", "--mode=train_and_eval",
                   f"--model_dir={os.path.join(run_dir, 'model')}",
                   f"--config_file={config_path}", "--alsologtostderr"],
                  run_dir)
  with open(os.path.join(run_dir, "stderr.txt")) as f:
    loops, eval_text = parse_orbit_log(f.read())
  accuracy = re.search(
      r"'masked_lm_accuracy': (?:np\.float\d+\()?([-+0-9.eE]+)", eval_text)
  if not accuracy:
    raise RuntimeError(f"no eval masked_lm_accuracy in {run_dir}/stderr.txt")
  return dict(rate=loop_rate(loops, config["task"]["train_data"][
      "global_batch_size"]), rss=rss, mlm_accuracy=float(accuracy[1]))


def export_data(data_dir, work_dir, data_cfg):
  """Prepares the dataset and exports both splits; returns (info, paths)."""
  import data  # pylint: disable=g-import-not-at-top
  prepare = {k: data_cfg[k] for k in ("corpus", "vocab_size",
                                      "max_seq_length")}
  info = data.prepare_dataset(data_dir, seed=SEED, progress=False, **prepare)
  paths = {}
  for split in ("train", "validation"):
    paths[split] = os.path.join(
        work_dir, f"{split}-{data_cfg['max_seq_length']}-"
        f"{data_cfg['max_predictions_per_seq']}.tfrecord")
    if not os.path.exists(paths[split]):
      data.export_tfrecords(
          paths[split], data_dir=data_dir, split=split, seed=SEED,
          max_predictions_per_seq=data_cfg["max_predictions_per_seq"],
          **prepare)
  return info, paths


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
      seed=SEED, shuffle=True, repeat=True, masking="static", **data_cfg)
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


def _gb(value):
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
           _gb(max(r["rss"] for r in runs["ours"])),
           _gb(max(r["rss"] for r in runs["theirs"])),
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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  for size in FLAGS.sizes:
    if size not in SIZES:
      raise app.UsageError(f"unknown size {size!r}; choose from "
                           f"{', '.join(SIZES)}")
  quick = FLAGS.quick
  data_cfg = QUICK_DATA if quick else DATA
  batch_size = QUICK_BATCH_SIZE if quick else GLOBAL_BATCH_SIZE
  sizes = ["tiny"] if quick else FLAGS.sizes
  repeats = 1 if quick else FLAGS.repeats
  if quick:
    FLAGS.steps_per_loop = 2
  work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="bench_train_")
  os.makedirs(work_dir, exist_ok=True)
  start = time.time()
  try:
    info, paths = export_data(FLAGS.data_dir, work_dir, data_cfg)
    checked = check_same_examples(FLAGS.data_dir, data_cfg, batch_size,
                                  paths["train"])
    print(f"data: {info.num_examples['train']} train examples exported; our "
          f"first {checked} training examples are found verbatim in the "
          "export", flush=True)
    eval_batches = min(FLAGS.eval_batches,
                       info.num_examples["validation"] // batch_size)
    results = {}
    for size in sizes:
      steps = 4 if quick else FLAGS.steps or SIZES[size]["steps"]
      runs = results[size] = {"ours": [], "theirs": []}
      for i in range(repeats):

        def run(who, size=size, steps=steps, i=i):
          run_dir = os.path.join(work_dir, f"{size}-{who}-{i}")
          shutil.rmtree(run_dir, ignore_errors=True)
          os.makedirs(run_dir)
          if who == "ours":
            return run_ours(run_dir, ours_bindings(
                size, data_cfg, batch_size, steps, eval_batches),
                FLAGS.data_dir, batch_size)
          return run_theirs(run_dir, theirs_config(
              size, data_cfg, batch_size, steps, eval_batches,
              info.vocab_size, paths["train"], paths["validation"]))

        # Timed runs take turns on the CPU; a smoke run needs no fair
        # timing, so both trainers run at once.
        with concurrent.futures.ThreadPoolExecutor(2 if quick else 1) as pool:
          done = dict(zip(("ours", "theirs"),
                          pool.map(run, ("ours", "theirs"))))
        for who, result in done.items():
          runs[who].append(result)
          print(f"{size} {who} run {i + 1}/{repeats}: {result['rate']:.1f} "
                f"examples/s, peak RSS {_gb(result['rss'])}, eval MLM "
                f"accuracy {result['mlm_accuracy']:.4f}", flush=True)
    parts = max(r["parts"] for size_runs in results.values()
                for r in size_runs["ours"])
    settings = (
        f"batch {batch_size}, sequence {data_cfg['max_seq_length']}, "
        f"{data_cfg['max_predictions_per_seq']} predictions, "
        + ", ".join(f"{s}: {4 if quick else FLAGS.steps or SIZES[s]['steps']}"
                    " steps" for s in sizes)
        + f", {FLAGS.steps_per_loop} steps per loop, {repeats} run(s) each, "
        + (f"ours with length buckets of {FLAGS.bucket_width}, "
           if FLAGS.bucket_width else "")
        + (f"ours in {FLAGS.micro_batches} length-sorted micro-batches, "
           if FLAGS.micro_batches > 1 else "")
        + (f"each in {parts} parts computed at once, " if parts > 1 else "")
        + f"{eval_batches} eval batches" + (" (--quick)" if quick else ""))
    text = report(results, machine_description(), settings)
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
