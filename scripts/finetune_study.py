r"""Does pretraining help? Fine-tunes a run's encoder and a random-init twin.

  python -m scripts.finetune_study --pretrained_run=runs/bert_lamb

Exports --pretrained_run (trainer.export), then fine-tunes on the offline
task (tweet_sentiment, configs/finetune.gin) (a) the exported encoder and
(b) the same architecture from random initialization, with --seeds seeds
each, on every training-set size of --train_examples (a fixed subset of the
labelled tweets; 0: all of them). A subset trains for at most
SUBSET_PASSES passes over it (fewer steps than the config's). Writes
results/finetune.csv (task, init, seed, train_examples, accuracy, loss,
steps, seconds) and results/finetune.md (medians, spreads, the setup). Runs
that finished in --work_dir are reused, so a stopped study resumes.

Expected time and result: see results/finetune.md.
"""

import concurrent.futures
import csv
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

flags.DEFINE_string("pretrained_run", None, "Required: a pretraining "
                    "run's model_dir (checkpoints, encoder_config.json, "
                    "vocab.txt).")
flags.DEFINE_string("work_dir", "/tmp/finetune_study", "Where the export "
                    "and the fine-tuning runs go.")
flags.DEFINE_string("results_dir", "results", "Where finetune.csv and "
                    "finetune.md go.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Fine-tuning seeds.")
flags.DEFINE_list("train_examples", ["1000", "0"], "Training-set sizes: "
                  "labelled tweets fine-tuned on (0: all).")
flags.DEFINE_integer("jobs", os.cpu_count() or 1, "Fine-tuning runs at "
                     "a time, one op thread each.")
flags.DEFINE_multi_string("gin_bindings", [], "Extra finetune.* bindings "
                          "for every run, after configs/finetune.gin.")

FLAGS = flags.FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "finetune.gin")
TASK = "tweet_sentiment"
# A subset of the labels trains for at most this many passes over it: 1,000
# tweets for 313 steps of 32 rather than the config's 1,500 (48 passes).
SUBSET_PASSES = 10


def final_eval(model_dir):
  """The last eval record of a finished run, or None."""
  path = os.path.join(model_dir, "metrics.jsonl")
  if not os.path.exists(path):
    return None
  records = [json.loads(line) for line in open(path, encoding="utf-8")]
  evals = [r for r in records if "eval_accuracy" in r]
  return evals[-1] if evals else None


def run_study(pretrained_run, work_dir, seeds, sizes, bindings, jobs):
  """Exports, fine-tunes every (size, seed, init); returns the result rows.

  Each fine-tune is a `trainer.finetune` process; with `jobs` > 1 they
  run that many at once, one op thread each (a small model's ops are too
  small to share cores well).
  """
  from trainer import export  # pylint: disable=g-import-not-at-top
  export_dir = os.path.join(work_dir, "export")
  if not os.path.exists(export_dir):
    os.makedirs(work_dir, exist_ok=True)
    export.export(pretrained_run, export_dir)
  _parse_config(bindings)
  config_steps = _setting("finetune.total_steps")
  batch = _setting("finetune.global_batch_size")
  runs = []
  for size in sizes:
    steps = (min(config_steps, -(-SUBSET_PASSES * size // batch)) if size
             else config_steps)
    for seed in seeds:
      for init in ("pretrained", "random"):
        name = f"{init}-n{size or 'all'}-seed{seed}"
        runs.append((name, list(bindings) + [
            f"finetune.seed = {seed}", f"finetune.init = '{init}'",
            f"finetune.train_examples = {size}",
            f"finetune.total_steps = {steps}"], (init, seed, size, steps)))
  pending = [r for r in runs if not os.path.exists(
      os.path.join(work_dir, r[0], "seconds"))]
  pending.sort(key=lambda r: -r[2][3])  # The longest first: they pack best.
  print(f"{len(pending)} of {len(runs)} fine-tuning runs to do, {jobs} "
        "at a time", flush=True)

  def launch(run):
    name, run_bindings, _ = run
    model_dir = os.path.join(work_dir, name)
    env = dict(os.environ)
    if jobs > 1:
      env.update(TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    argv = [sys.executable, "-m", "trainer.finetune",
            f"--export_dir={export_dir}", f"--model_dir={model_dir}",
            f"--task={TASK}", f"--gin_file={CONFIG}"] + [
                f"--gin_bindings={b}" for b in run_bindings]
    log_path = os.path.join(work_dir, name + ".log")
    start = time.time()
    with open(log_path, "w") as log:
      code = subprocess.call(argv, cwd=ROOT, env=env, stdout=log,
                             stderr=subprocess.STDOUT)
    if code:
      raise RuntimeError(f"fine-tuning {name} failed (exit {code}); see "
                         f"{log_path}")
    seconds = time.time() - start
    with open(os.path.join(model_dir, "seconds"), "w") as f:
      f.write(f"{seconds:.1f}\n")
    print(f"{name}: eval accuracy "
          f"{final_eval(model_dir)['eval_accuracy']:.4f} in {seconds:.0f} s",
          flush=True)

  with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
    list(pool.map(launch, pending))
  num_train = len(_task().train.texts)
  rows = []
  for name, _, (init, seed, size, _) in runs:
    model_dir = os.path.join(work_dir, name)
    record = final_eval(model_dir)
    rows.append(dict(task=TASK, init=init, seed=seed,
                     train_examples=size or num_train,
                     accuracy=round(record["eval_accuracy"], 4),
                     loss=round(record["eval_loss"], 4),
                     steps=record["step"],
                     seconds=float(open(os.path.join(model_dir,
                                                     "seconds")).read())))
  return rows, export_dir


def _setting(name):
  """A parsed gin parameter's value, through a %MACRO if it is one."""
  import gin  # pylint: disable=g-import-not-at-top
  value = gin.query_parameter(name)
  if isinstance(value, gin.config.ConfigurableReference):
    value = value.scoped_configurable_fn()
  return value


def _parse_config(bindings):
  """Parses configs/finetune.gin with `bindings`, to read its settings."""
  import gin  # pylint: disable=g-import-not-at-top
  # Registers the finetune.* names.
  # pylint: disable-next=g-import-not-at-top,unused-import
  from trainer import finetune
  gin.clear_config()
  gin.parse_config_files_and_bindings([CONFIG], list(bindings),
                                      finalize_config=False)


@functools.lru_cache(maxsize=None)
def _task():
  from trainer import classifier_data  # pylint: disable=g-import-not-at-top
  return classifier_data.load_task(TASK)


def write_results(rows, export_dir, results_dir, jobs):
  """results/finetune.csv and results/finetune.md."""
  os.makedirs(results_dir, exist_ok=True)
  with open(os.path.join(results_dir, "finetune.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  table = ["| labelled tweets | steps | init | seeds | median accuracy | "
           "min - max | median eval loss | pretrained - random |",
           "|---:|---:|---|---:|---:|---|---:|---:|"]
  for size in sorted({r["train_examples"] for r in rows}):
    medians = {}
    for init in ("pretrained", "random"):
      cell = [r for r in rows
              if r["init"] == init and r["train_examples"] == size]
      acc = [r["accuracy"] for r in cell]
      medians[init] = statistics.median(acc)
      gain = (f"{100 * (medians['pretrained'] - medians['random']):+.1f} "
              "points" if init == "random" else "")
      table.append(
          f"| {size:,} | {cell[0]['steps']:,} | {init} | {len(acc)} | "
          f"{medians[init]:.4f} | {min(acc):.4f} - {max(acc):.4f} | "
          f"{statistics.median(r['loss'] for r in cell):.4f} | {gain} |")
  with open(os.path.join(export_dir, "README.md"), encoding="utf-8") as f:
    source = [line.strip("- \n") for line in f if line.startswith("- ")][:3]
  labels = list(_task().eval.labels)
  majority = max(map(labels.count, set(labels))) / len(labels)
  _parse_config([])
  setting = {k: _setting(f"finetune.{k}") for k in (
      "optimizer", "learning_rate", "global_batch_size", "max_seq_length",
      "dropout", "total_steps")}
  text = f"""# Fine-tuning: pretrained encoder vs random initialization

Command: `python -m scripts.finetune_study --pretrained_run=...`
- runs: {len(rows)}, {sum(r['seconds'] for r in rows) / 60:.1f} minutes of
  fine-tuning in all, {jobs} at a time; {platform.machine()}, \
{os.cpu_count()} cores, {cpu_note()}
- task: {TASK}, 3 classes; the eval split's {len(labels):,} tweets \
(majority class {majority:.1%}); all the labelled training tweets, and a
  fixed random subset of them
- settings, the same for both inits: configs/finetune.gin, \
{setting['optimizer']} at peak {setting['learning_rate']:g}, batch \
{setting['global_batch_size']},
  sequence {setting['max_seq_length']}, dropout {setting['dropout']:g}, \
{setting['total_steps']:,} steps (a subset: at most {SUBSET_PASSES} passes)

Encoder (the export's README):
{chr(10).join('- ' + s for s in source)}

{chr(10).join(table)}

Per run: results/finetune.csv.
"""
  with open(os.path.join(results_dir, "finetune.md"), "w") as f:
    f.write(text)
  return text


def cpu_note():
  flags_line = ""
  try:
    with open("/proc/cpuinfo") as f:
      flags_line = next((l for l in f if l.startswith("flags")), "")
  except OSError:
    pass
  bf16 = "avx512_bf16" in flags_line
  return ("CPU with avx512_bf16" if bf16 else "CPU") + (
      ", shared with other jobs" if os.getloadavg()[0] > os.cpu_count() else
      "")


def main(argv):
  del argv
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  start = time.time()
  rows, export_dir = run_study(FLAGS.pretrained_run, FLAGS.work_dir,
                               [int(s) for s in FLAGS.seeds],
                               [int(n) for n in FLAGS.train_examples],
                               FLAGS.gin_bindings, FLAGS.jobs)
  print(write_results(rows, export_dir, FLAGS.results_dir, FLAGS.jobs))
  print(f"study done in {(time.time() - start) / 60:.1f} minutes", flush=True)


if __name__ == "__main__":
  flags.mark_flag_as_required("pretrained_run")
  app.run(main)
