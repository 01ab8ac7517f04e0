r"""The LAMB paper's claims at reduced scale: batch scaling and the two phases.

  python -m scripts.reproduce                   # default study, results/
  python -m scripts.reproduce --quick --out_dir=/tmp/quick
  python -m scripts.reproduce --full --out_dir=results/full

You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76
Minutes" (arXiv:1904.00962), claim that LAMB keeps BERT's accuracy as the
batch grows (512 to 32K, then 64K/32K in a two-phase, mixed-sequence-length
recipe of 8,599 steps) with proportionally fewer steps, while AdamW falls
behind at large batches. This script runs both experiments on a small BERT:

1. Batch scaling (configs/reduced/scaling.gin): the same model trained on
   the same number of examples at batch B0, 4 x B0 and 16 x B0, with LAMB and
   with AdamW, each under the paper's rules: k x B0 takes 1/k of the steps, a
   sqrt(k) x higher peak learning rate and the same warmup fraction. The k x
   B0 batch is k micro-batches of B0 summed by gradient accumulation.
2. Two phases (configs/reduced/phase2.gin): the 16 x B0 LAMB run at sequence
   64 is phase 1; phase 2 trains at sequence 256 and half the batch,
   warm-started from phase 1's weights with a fresh optimizer and warmup.

Every run evaluates on the held-out split and writes its own model_dir under
--runs_dir; a finished run leaves `result.json` there and is not trained
again, and an interrupted one resumes from its last checkpoint, so running
the same command again completes a study. Outputs in --out_dir: scaling.csv,
scaling.md and three plots (eval MLM loss vs examples seen, final MLM
accuracy vs batch size, the two-phase loss curve).

Expected: the default study took 46 minutes of training (7 runs) on a
2-core CPU shared with other jobs (load average 8 to 10), plus a one-time
build of the embedded corpus's dataset at sequence 64 and 256 (about 4 and
1 minutes). It ends with held-out MLM accuracy 0.136 / 0.113 / 0.079 for
LAMB and 0.159 / 0.114 / 0.072 for AdamW at B0 / 4 x B0 / 16 x B0 (0.072 is
the unigram plateau), and 0.081 after phase 2; see results/scaling.md.
--quick (tiny model and corpus, a few steps; about 100 s of CPU) exercises
the whole path and its numbers mean nothing. --full adds 64 x B0 and a
learning-rate sweep (x0.5, x1, x2 of the rule's value) at every batch size for
both optimizers: 25 runs, roughly 3 hours.
"""

import csv
import dataclasses
import json
import math
import os
import time
from typing import Dict, List, Optional, Sequence

from absl import app
from absl import flags
from absl import logging

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_string("out_dir", os.path.join(ROOT, "results"),
                    "Where scaling.csv, scaling.md and the plots go.")
flags.DEFINE_string("runs_dir", None, "One model_dir per run under here "
                    "(default: runs/reproduce/<default|quick|full>).")
flags.DEFINE_string("data_dir", None, "Where the datasets are built once and "
                    "read (default ~/bert_lamb_data, as the trainer's).")
flags.DEFINE_boolean("quick", False, "Tiny model, tiny corpus, a few steps: "
                     "checks the whole path in a couple of minutes.")
flags.DEFINE_boolean("full", False, "Adds 64 x B0 and a learning-rate sweep "
                     "at every batch size: hours.")

FLAGS = flags.FLAGS

# The study's design; what is trained is in the gin files.
MULTIPLIERS = (1, 4, 16)
FULL_MULTIPLIERS = (1, 4, 16, 64)
FULL_LR_FACTORS = (0.5, 1.0, 2.0)
# Evaluations (and checkpoints) and logged training loops per run: the points
# of the loss curves. --quick makes few, its runs being mostly overhead.
EVAL_POINTS = 8
LOG_POINTS = 20
QUICK_POINTS = 2
OPTIMIZERS = ("LAMB", "AdamW")

CSV_COLUMNS = ("study", "run", "optimizer", "seq_length", "global_batch",
               "batch_multiplier", "grad_accumulation", "steps", "examples",
               "peak_lr", "lr_factor", "warmup_steps", "eval_mlm_accuracy",
               "eval_mlm_loss", "eval_nsp_accuracy", "eval_loss",
               "wall_seconds")

# You et al. (arXiv:1904.00962), Table 1: BERT-large with LAMB, SQuAD v1.1
# dev F1 after pretraining for the same number of epochs at each batch size
# (the baseline, Devlin et al. with AdamW at batch 512: 1M steps, F1 90.395).
PAPER_LAMB = ((512, 1000000, 91.752), (1024, 500000, 91.761),
              (2048, 250000, 91.946), (4096, 125000, 91.137),
              (8192, 62500, 91.263), (16384, 31250, 91.345),
              (32768, 15625, 91.475), ("64K/32K", 8599, 90.584))


@dataclasses.dataclass
class Run:
  """One training run of the study.

  Attributes:
    name: its model_dir's name under the runs dir.
    study: "scaling" or "two_phase".
    gin_file: the config, relative to the repository root.
    optimizer: "LAMB" or "AdamW".
    multiplier: k of k x B0 (scaling runs; 1 for phase 2).
    lr_factor: multiplies the rule's peak learning rate (the sweep).
    init_from: the run whose weights start this one (phase 2).
  """
  name: str
  study: str
  gin_file: str
  optimizer: str = "LAMB"
  multiplier: int = 1
  lr_factor: float = 1.0
  init_from: Optional[str] = None


def plan(config_dir: str, multipliers: Sequence[int],
         lr_factors: Sequence[float]) -> List[Run]:
  """The runs of a study, in training order (phase 1 before phase 2)."""
  scaling = os.path.join(config_dir, "scaling.gin")
  runs = []
  for optimizer in OPTIMIZERS:
    for k in multipliers:
      for f in lr_factors:
        suffix = "" if f == 1.0 else f"_lrx{f:g}"
        runs.append(Run(f"{optimizer.lower()}_b0x{k}{suffix}", "scaling",
                        scaling, optimizer, k, f))
  phase1 = f"lamb_b0x{max(multipliers)}"
  runs.append(Run("two_phase_phase2", "two_phase",
                  os.path.join(config_dir, "phase2.gin"), init_from=phase1))
  return runs


def _value(name):
  """A gin parameter's value, with macros (e.g. %B0) resolved."""
  import gin  # pylint: disable=g-import-not-at-top
  v = gin.query_parameter(name)
  return v.scoped_configurable_fn() if hasattr(v, "selector") else v


def configure(run: Run, runs_dir: str, eval_points: int = EVAL_POINTS,
              log_points: int = LOG_POINTS) -> Dict[str, object]:
  """Parses `run`'s config plus the scaling rule's bindings; returns facts.

  The gin file describes the run at B0 (or phase 2 as it is); for k x B0 the
  batch and the accumulation grow k-fold, the steps shrink k-fold and the
  peak learning rate grows sqrt(k)-fold, the paper's rule. Eval, checkpoint
  and log periods follow from the step count.
  """
  import gin  # pylint: disable=g-import-not-at-top
  from trainer import configurables  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  gin.add_config_file_search_path(ROOT)
  bindings = []
  if run.optimizer == "AdamW":
    bindings += ["train.optimizer = @AdamW",
                 "learning_rate_schedule.peak_learning_rate = %ADAMW_PEAK_LR"]
  gin.parse_config_files_and_bindings([os.path.join(ROOT, run.gin_file)],
                                      bindings, finalize_config=False)
  k = run.multiplier
  batch = _value("train.global_batch_size") * k
  steps = _value("train.total_steps") // k
  if steps < 1:
    raise ValueError(f"{run.name}: {_value('train.total_steps')} steps at B0 "
                     f"leave none at {k} x B0")
  peak_lr = (_value("learning_rate_schedule.peak_learning_rate") *
             math.sqrt(k) * run.lr_factor)
  eval_every = max(1, steps // eval_points)
  derived = [
      f"train.global_batch_size = {batch}",
      f"train.grad_accumulation_steps = "
      f"{_value('train.grad_accumulation_steps') * k}",
      f"train.total_steps = {steps}",
      f"learning_rate_schedule.peak_learning_rate = {peak_lr!r}",
      f"train.eval_every_steps = {eval_every}",
      f"train.checkpoint_every_steps = {eval_every}",
      f"train.steps_per_loop = {max(1, min(eval_every, steps // log_points))}",
  ]
  if run.init_from:
    derived.append(f"train.init_checkpoint = "
                   f"{os.path.join(runs_dir, run.init_from)!r}")
  gin.parse_config(derived)
  return dict(
      study=run.study, run=run.name, optimizer=run.optimizer,
      seq_length=_value("dataset.max_seq_length"), global_batch=batch,
      batch_multiplier=k, grad_accumulation=_value(
          "train.grad_accumulation_steps"),
      steps=steps, examples=steps * batch, peak_lr=peak_lr,
      lr_factor=run.lr_factor, init_from=run.init_from,
      warmup_steps=configurables.learning_rate_schedule(steps).warmup_steps)


def train_run(run: Run, runs_dir: str, data_dir: Optional[str],
              points: Sequence[int] = (EVAL_POINTS, LOG_POINTS)) -> Dict:
  """Trains `run` unless its result.json exists; returns its csv row."""
  model_dir = os.path.join(runs_dir, run.name)
  done = os.path.join(model_dir, "result.json")
  if os.path.exists(done):
    with open(done) as f:
      row = json.load(f)
    print(f"[reproduce] {run.name}: done before, skipped", flush=True)
    return row
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from data import files  # pylint: disable=g-import-not-at-top
  from trainer import configurables  # pylint: disable=g-import-not-at-top
  row = configure(run, runs_dir, *points)
  stale = os.path.join(model_dir, "metrics.jsonl")
  if os.path.exists(stale) and not tf.train.latest_checkpoint(model_dir):
    os.remove(stale)  # Records of an attempt that saved nothing: starts anew.
  print(f"[reproduce] {run.name}: {row['steps']} steps x "
        f"{row['global_batch']} examples ({row['grad_accumulation']} "
        f"micro-batches), seq {row['seq_length']}, {run.optimizer} peak lr "
        f"{row['peak_lr']:.3g}", flush=True)
  start = time.time()
  metrics = configurables.train(
      model_dir=model_dir, data_dir=data_dir,
      strategy=tf.distribute.OneDeviceStrategy("/cpu:0"))
  row.update({f"eval_{k}": float(metrics[k]) for k in
              ("mlm_accuracy", "mlm_loss", "nsp_accuracy", "loss")})
  # A run resumed after an interruption counts only its last session.
  row["wall_seconds"] = round(time.time() - start, 1)
  files.write_atomically(done, json.dumps(row, indent=1, sort_keys=True))
  return row


def read_metrics(model_dir: str) -> List[Dict]:
  with open(os.path.join(model_dir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


def write_csv(rows: List[Dict], path: str):
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for row in rows:
      writer.writerow({k: row[k] for k in CSV_COLUMNS})


def _table(rows, columns):
  lines = ["| " + " | ".join(h for h, _ in columns) + " |",
           "|" + "|".join("---:" for _ in columns) + "|"]
  for row in rows:
    lines.append("| " + " | ".join(fmt(row) for _, fmt in columns) + " |")
  return lines


def write_markdown(rows: List[Dict], path: str, command: str,
                   total_seconds: float, config_dir: str):
  """The results table, the two-phase rows and the paper's numbers."""
  columns = [
      ("optimizer", lambda r: r["optimizer"]),
      ("global batch", lambda r: f"{r['global_batch']:,} "
       f"({r['batch_multiplier']} x B0)"),
      ("micro-batches", lambda r: str(r["grad_accumulation"])),
      ("steps", lambda r: f"{r['steps']:,}"),
      ("examples", lambda r: f"{r['examples']:,}"),
      ("peak lr", lambda r: f"{r['peak_lr']:.3g}"),
      ("warmup", lambda r: str(r["warmup_steps"])),
      ("MLM acc", lambda r: f"{r['eval_mlm_accuracy']:.4f}"),
      ("MLM loss", lambda r: f"{r['eval_mlm_loss']:.3f}"),
      ("NSP acc", lambda r: f"{r['eval_nsp_accuracy']:.3f}"),
      ("wall", lambda r: f"{r['wall_seconds'] / 60:.1f} min"),
  ]
  scaling = [r for r in rows if r["study"] == "scaling"]
  phase2 = [r for r in rows if r["study"] == "two_phase"]
  phase1 = [r for r in scaling if r["optimizer"] == "LAMB" and
            r["batch_multiplier"] == max(s["batch_multiplier"]
                                         for s in scaling) and
            r["lr_factor"] == 1.0]
  lines = [
      "# Batch scaling and the two-phase recipe at reduced scale", "",
      f"`{command}`: {len(rows)} runs, {total_seconds / 60:.0f} minutes of "
      "training in all (sum of the runs' wall times). Eval metrics are the "
      "final evaluation on the held-out split; LAMB and AdamW at k x B0 get "
      "sqrt(k) x the peak learning rate and 1/k of the steps, on the same "
      "number of examples; a batch of k x B0 is k micro-batches of B0 "
      "whose gradients are summed (gradient accumulation). Configs: "
      f"`{config_dir}/`.", "",
      "## Batch scaling (sequence length "
      f"{scaling[0]['seq_length']})", ""]
  lines += _table(scaling, columns)
  lines += ["", "## Two phases (LAMB)", ""]
  two = ([dict(r, optimizer="phase 1") for r in phase1] +
         [dict(r, optimizer=f"phase 2 (seq {r['seq_length']})")
          for r in phase2])
  lines += _table(two, [("phase", lambda r: r["optimizer"]),
                        ("global batch", lambda r: f"{r['global_batch']:,}")]
                  + columns[2:])
  lines += ["", "Phase 2's metrics are measured on sequences of "
            f"{phase2[0]['seq_length'] if phase2 else '?'} tokens, so they "
            "are not directly comparable with phase 1's.", "",
            "## The paper (BERT-large, SQuAD v1.1 dev F1; arXiv:1904.00962, "
            "Table 1)", "",
            "| LAMB batch | steps | F1 |", "|---:|---:|---:|"]
  lines += [f"| {b if isinstance(b, str) else f'{b:,}'} | {s:,} | {f} |"
            for b, s, f in PAPER_LAMB]
  lines += ["", "Baseline (Devlin et al., AdamW, batch 512, 1M steps): "
            "F1 90.395.", ""]
  with open(path, "w") as f:
    f.write("\n".join(lines))


def write_plots(rows: List[Dict], runs_dir: str, out_dir: str) -> List[str]:
  """The three PNGs; returns their paths."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  scaling = [r for r in rows if r["study"] == "scaling"]
  colors = {k: c for k, c in zip(sorted({r["batch_multiplier"]
                                         for r in scaling}),
                                 ("tab:blue", "tab:orange", "tab:green",
                                  "tab:red", "tab:purple"))}
  paths = []

  def save(fig, ax, name, **legend):
    ax.grid(alpha=0.3)
    ax.legend(**legend)
    paths.append(os.path.join(out_dir, name))
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

  # 1. Eval MLM loss against examples seen, a curve per batch and optimizer.
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for r in scaling:
    evals = [m for m in read_metrics(os.path.join(runs_dir, r["run"]))
             if "eval_mlm_loss" in m]
    ax.plot([m["step"] * r["global_batch"] for m in evals],
            [m["eval_mlm_loss"] for m in evals],
            color=colors[r["batch_multiplier"]],
            linestyle="-" if r["optimizer"] == "LAMB" else "--",
            marker="o" if r["optimizer"] == "LAMB" else "s", markersize=3,
            alpha=1.0 if r["lr_factor"] == 1.0 else 0.4,
            label=f"{r['optimizer']} batch {r['global_batch']}" +
            ("" if r["lr_factor"] == 1.0 else f" lr x{r['lr_factor']:g}"))
  ax.set_xlabel("examples seen")
  ax.set_ylabel("held-out MLM loss")
  ax.set_title("Eval MLM loss vs examples (solid: LAMB, dashed: AdamW)")
  save(fig, ax, "eval_mlm_loss_vs_examples.png", fontsize=7, ncol=2)

  # 2. Final MLM accuracy against batch size, a line per optimizer (the best
  # learning rate of a sweep).
  fig, ax = plt.subplots(figsize=(6, 4))
  for optimizer, style in zip(OPTIMIZERS, ("-o", "--s")):
    best = {}
    for r in scaling:
      if r["optimizer"] == optimizer:
        b = r["global_batch"]
        best[b] = max(best.get(b, 0.0), r["eval_mlm_accuracy"])
    batches = sorted(best)
    ax.plot(batches, [best[b] for b in batches], style, label=optimizer)
  ax.set_xscale("log", base=2)
  ax.set_xticks(sorted({r["global_batch"] for r in scaling}))
  ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
  ax.set_xlabel("global batch (same examples: steps = examples / batch)")
  ax.set_ylabel("final held-out MLM accuracy")
  ax.set_title("MLM accuracy vs batch size")
  save(fig, ax, "mlm_accuracy_vs_batch.png")

  # 3. The two-phase run's training loss, phase boundary marked.
  phase2 = [r for r in rows if r["study"] == "two_phase"]
  fig, ax = plt.subplots(figsize=(7, 4))
  if phase2:
    phase1_name = phase2[0]["init_from"]
    p1 = [m for m in read_metrics(os.path.join(runs_dir, phase1_name))
          if "loss" in m]
    p2 = [m for m in read_metrics(os.path.join(runs_dir, phase2[0]["run"]))
          if "loss" in m]
    boundary = p1[-1]["step"] if p1 else 0
    p1_row = next(r for r in rows if r["run"] == phase1_name)
    ax.plot([m["step"] for m in p1], [m["loss"] for m in p1], "-o",
            markersize=3, label=f"phase 1: seq {p1_row['seq_length']}, "
            f"batch {p1_row['global_batch']}")
    ax.plot([boundary + m["step"] for m in p2], [m["loss"] for m in p2],
            "-o", markersize=3, label=f"phase 2: seq "
            f"{phase2[0]['seq_length']}, batch {phase2[0]['global_batch']}")
    ax.axvline(boundary, color="gray", linestyle=":")
    ax.text(boundary, ax.get_ylim()[1], " phase boundary", va="top",
            fontsize=8, color="gray")
  ax.set_xlabel("optimizer step (both phases)")
  ax.set_ylabel("training loss (MLM + NSP)")
  ax.set_title("Two-phase LAMB run")
  save(fig, ax, "two_phase_loss.png")
  return paths


def reproduce(out_dir: str, runs_dir: str, data_dir: Optional[str] = None,
              mode: str = "default", command: str = "") -> List[Dict]:
  """Runs (or resumes) the study of `mode` and writes its outputs.

  Args:
    out_dir: where scaling.csv, scaling.md and the PNGs go.
    runs_dir: one model_dir per run under here.
    data_dir: the datasets' directory (None: the trainer's default).
    mode: "default", "quick" or "full".
    command: the command line, quoted in scaling.md.

  Returns:
    The csv rows.
  """
  config_dir = os.path.join("configs", "reduced", *(
      ["quick"] if mode == "quick" else []))
  multipliers = FULL_MULTIPLIERS if mode == "full" else MULTIPLIERS
  lr_factors = FULL_LR_FACTORS if mode == "full" else (1.0,)
  points = ((QUICK_POINTS, QUICK_POINTS) if mode == "quick" else
            (EVAL_POINTS, LOG_POINTS))
  os.makedirs(out_dir, exist_ok=True)
  os.makedirs(runs_dir, exist_ok=True)
  rows = []
  runs = plan(config_dir, multipliers, lr_factors)
  for i, run in enumerate(runs):
    print(f"[reproduce] run {i + 1}/{len(runs)}: {run.name}", flush=True)
    rows.append(train_run(run, runs_dir, data_dir, points))
  write_csv(rows, os.path.join(out_dir, "scaling.csv"))
  write_markdown(rows, os.path.join(out_dir, "scaling.md"),
                 command or f"python -m scripts.reproduce --{mode}",
                 sum(r["wall_seconds"] for r in rows), config_dir)
  write_plots(rows, runs_dir, out_dir)
  return rows


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.quick and FLAGS.full:
    raise app.UsageError("--quick and --full exclude each other")
  mode = "quick" if FLAGS.quick else "full" if FLAGS.full else "default"
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  logging.set_verbosity(logging.WARNING)
  # The process-wide settings `trainer.main` makes before TensorFlow starts:
  # malloc arenas and the op threads of the automatic
  # train.parallel_micro_batches (no config of the study sets it), one
  # device.
  from trainer import allocator  # pylint: disable=g-import-not-at-top
  from trainer import runtime  # pylint: disable=g-import-not-at-top
  allocator.limit_arenas()
  runtime.set_cpu_threads(runtime.resolve_parallel_micro_batches(
      None, accelerator=False, local_replicas=1)[0])
  start = time.time()
  absolute = lambda p: p and os.path.abspath(os.path.expanduser(p))
  out_dir = absolute(FLAGS.out_dir)
  runs_dir = absolute(FLAGS.runs_dir or os.path.join(
      ROOT, "runs", "reproduce", mode))
  data_dir = absolute(FLAGS.data_dir)
  os.chdir(ROOT)  # The quick configs name the test corpus by a relative path.
  rows = reproduce(
      out_dir=out_dir, runs_dir=runs_dir, data_dir=data_dir, mode=mode,
      command="python -m scripts.reproduce" + (
          "" if mode == "default" else f" --{mode}"))
  print(f"[reproduce] {len(rows)} runs; {(time.time() - start) / 60:.1f} "
        f"minutes; outputs in {FLAGS.out_dir}", flush=True)


if __name__ == "__main__":
  app.run(main)
