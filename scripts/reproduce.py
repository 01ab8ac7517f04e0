r"""The LAMB paper's claims at reduced scale: batch scaling and the two phases.

  python -m scripts.reproduce                   # the study, results/
  python -m scripts.reproduce --quick --out_dir=/tmp/quick

You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76
Minutes" (arXiv:1904.00962), claim that LAMB keeps BERT's accuracy as the
batch grows (512 to 32K) in proportionally fewer steps, while AdamW falls
behind, and that a two-phase, mixed-sequence-length recipe saves time. This
script runs both experiments on a small BERT (configs/reduced/):

1. Batch scaling (scaling.gin): LAMB and AdamW at k x B0 for k = 1, 4 and
   16 (--multipliers to change them) on the same examples: k x the batch in
   1/k of the steps, the warmup the same fraction of the steps, and peak
   learning rates of x0.5, x1 and x2 the paper's rule, base x sqrt(k),
   where base is B0's best rate. A batch of k x B0 is k micro-batches of
   B0 summed by gradient accumulation. Every run logs the gradient noise
   scale (trainer/noise_scale.py), which places the batches.
2. Two phases (two_phase_1.gin, two_phase_2.gin, long.gin): LAMB at B0,
   90% of the examples at a short sequence then the rest at 4 x it,
   warm-started with a fresh optimizer, against the long sequence
   throughout on the same examples.
3. Downstream: the B0 and 16 x B0 LAMB encoders (best learning rate of
   each) and the two-phase one, exported and fine-tuned on the offline task
   (configs/finetune.gin, tweet_sentiment) with seeds 0, 1, 2.

Every run is a subprocess (`python -m trainer.main`, `trainer.export`,
`trainer.finetune`) with its own directory under --runs_dir and its output
in DIR.log; --parallel of them run at once, each pinned to a core of its
own when there are several (two single-thread runs on one core each train
faster together than one run on both cores). A run is finished when its
DIR/result.json exists; it is not run again, and an interrupted one resumes
from its checkpoints, so running the same command again completes a study.
Outputs in --out_dir, written from the finished runs now and then and at the
end (marked partial until every run has finished): scaling.csv (a row per
pretraining run), scaling_downstream.csv (a row per fine-tune), scaling.md
and four plots (scripts/scaling_report.py).

--quick (tiny model and corpus, a few steps, fewer runs, one fine-tune of a
few steps) exercises every path; its numbers mean nothing. Measured alone
on a 2-core Intel Xeon with avx512_bf16 (inside `pytest tests`): 150 s of
wall time for its 11 subprocesses, most of it TensorFlow start-up.
"""

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags

from scripts import scaling_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_string("out_dir", os.path.join(ROOT, "results"),
                    "Where scaling.csv, scaling.md and the plots go.")
flags.DEFINE_string("runs_dir", None, "One directory per run under here "
                    "(default: runs/reproduce/<default|quick>).")
flags.DEFINE_string("data_dir", None, "Where the datasets are built once and "
                    "read (default ~/bert_lamb_data, as the trainer's).")
flags.DEFINE_boolean("quick", False, "Tiny model, tiny corpus, a few steps: "
                     "checks the whole path in a few minutes.")
flags.DEFINE_list("multipliers", None, "Batches as multiples k of B0 "
                  "(default: 1,4,16; --quick: 1,4).")
flags.DEFINE_integer("parallel", None, "Runs at once (default: the usable "
                     "cores, each run pinned to one).")

FLAGS = flags.FLAGS

OPTIMIZERS = scaling_report.OPTIMIZERS
# Evaluations (and checkpoints) and logged loops per run: the points of the
# loss and noise-scale curves.
EVAL_POINTS = 8
LOG_POINTS = 40
# Phase 1's share of the two-phase study's examples (the paper: 9/10).
PHASE1_FRACTION = 0.9
# Fine-tuning: the encoders, the seeds, the steps and the rate. Nine runs of
# configs/finetune.gin's 1,500 steps of 32 are cut to 500 (16,000 of the
# 33,444 training tweets) to keep the study short; every encoder gets the
# same steps, at the rate results/scaling_downstream.csv was measured with
# (then configs/finetune.gin's; its split had 24 more training tweets).
DOWNSTREAM_ENCODERS = ("lamb_b0", "lamb_16b0", "two_phase")
FINETUNE_SEEDS = (0, 1, 2)
FINETUNE_STEPS = 500
FINETUNE_LEARNING_RATE = 1e-4
FINETUNE_CONFIG = "configs/finetune.gin"
# Outputs are rewritten from the finished runs at most this often.
SUMMARY_EVERY_S = 300


@dataclasses.dataclass(frozen=True)
class Mode:
  """What a study runs, beyond its gin files."""
  config_dir: str
  multipliers: Tuple[int, ...]
  lr_factors: Tuple[float, ...]
  encoders: Tuple[str, ...]
  seeds: Tuple[int, ...]
  finetune_steps: int
  eval_points: int
  log_points: int


MODES = {
    # B0 below the measured noise scale, 4 x B0 near it, 16 x B0 above it.
    "default": Mode("configs/reduced", (1, 4, 16), (0.5, 1.0, 2.0),
                    DOWNSTREAM_ENCODERS, FINETUNE_SEEDS, FINETUNE_STEPS,
                    EVAL_POINTS, LOG_POINTS),
    # The fewest runs that still take every path: two batches, one learning
    # rate, one fine-tune.
    "quick": Mode("configs/reduced/quick", (1, 4), (1.0,), ("lamb_b0",),
                  (0,), 4, 2, 4),
}


@dataclasses.dataclass(frozen=True)
class Config:
  """What the script reads from one gin file.

  Attributes:
    path: the gin file, relative to the repository root.
    seq_length: `dataset.max_seq_length`.
    warmup_fraction: `learning_rate_schedule.warmup_fraction`.
    dataset: `data.prepare` flags naming its dataset (corpus, vocab size,
      length, seed, dupe factor), to build it before its runs start.
  """
  path: str
  seq_length: int
  warmup_fraction: float
  dataset: Tuple[Tuple[str, object], ...] = ()


@dataclasses.dataclass(frozen=True)
class Recipe:
  """The study's macros (configs/reduced/scaling.gin) and its configs.

  Attributes:
    b0: B0, the smallest batch.
    steps_at_b0: optimizer steps at B0; k x B0 gets 1/k of them.
    peak_lr: the peak learning rate at B0 per optimizer name.
    configs: "scaling", "two_phase_1", "two_phase_2" and "long".
  """
  b0: int
  steps_at_b0: int
  peak_lr: Dict[str, float]
  configs: Dict[str, Config]


@dataclasses.dataclass(frozen=True)
class Run:
  """One pretraining run, its arithmetic done (see `plan`)."""
  name: str
  study: str                 # "scaling" or "two_phase".
  config: str                # A key of `Recipe.configs`.
  optimizer: str
  seq_length: int
  multiplier: int            # k of k x B0.
  lr_factor: float           # On top of the sqrt(k) rule.
  global_batch: int
  grad_accumulation: int
  steps: int
  peak_lr: float
  warmup_steps: int
  eval_every: int
  steps_per_loop: int
  init_from: Optional[str] = None
  # A run beyond the sweep's edge: made only if this run of the sweep is its
  # best (see `plan`).
  if_best: Optional[str] = None

  @property
  def examples(self):
    return self.steps * self.global_batch


def warmup_steps(fraction: float, steps: int) -> int:
  """As `trainer.schedule.learning_rate_schedule` rounds it."""
  return int(round(fraction * steps))


def _run(recipe, name, study, config, optimizer, k, factor, steps,
         eval_points, log_points, init_from=None, if_best=None):
  eval_every = max(1, steps // eval_points)
  return Run(
      name=name, study=study, config=config, optimizer=optimizer,
      seq_length=recipe.configs[config].seq_length, multiplier=k,
      lr_factor=factor, global_batch=recipe.b0 * k, grad_accumulation=k,
      steps=steps,
      peak_lr=recipe.peak_lr[optimizer] * math.sqrt(k) * factor,
      warmup_steps=warmup_steps(recipe.configs[config].warmup_fraction,
                                steps),
      eval_every=eval_every,
      steps_per_loop=max(1, min(eval_every, steps // log_points)),
      init_from=init_from, if_best=if_best)


def run_name(optimizer: str, k: int, factor: float) -> str:
  return f"{optimizer.lower()}_b0x{k}_lrx{factor:g}"


def plan(recipe: Recipe, multipliers: Sequence[int],
         lr_factors: Sequence[float], eval_points: int = EVAL_POINTS,
         log_points: int = LOG_POINTS) -> List[Run]:
  """Every pretraining run of a study.

  Scaling: for each optimizer, k and learning-rate factor f, batch k x B0 as
  k micro-batches of B0, STEPS_AT_B0 // k steps, peak learning rate
  base x sqrt(k) x f. A sweep of several rates gets two more runs, half its
  lowest and twice its highest rate, each made only if the sweep's best is
  at that edge (`Run.if_best`): a best rate is then one with a worse rate
  measured on both sides, or at the end of one more step. Two phases, LAMB
  at B0 at the rule's learning rate: phase 1 takes
  round(PHASE1_FRACTION x STEPS_AT_B0) steps, phase 2 the rest, warm-started
  from phase 1; the long run all of them.
  """
  runs = []
  for optimizer in OPTIMIZERS:
    for k in multipliers:
      if recipe.steps_at_b0 // k < 1:
        raise ValueError(f"{recipe.steps_at_b0} steps at B0 leave none at "
                         f"{k} x B0")
      scaling = lambda f, edge=None: _run(
          recipe, run_name(optimizer, k, f), "scaling", "scaling", optimizer,
          k, f, recipe.steps_at_b0 // k, eval_points, log_points,
          if_best=edge and run_name(optimizer, k, edge))
      runs += [scaling(f) for f in lr_factors]
      if len(lr_factors) > 1:
        low, high = min(lr_factors), max(lr_factors)
        runs += [scaling(low / 2, edge=low), scaling(high * 2, edge=high)]
  phase1 = int(round(PHASE1_FRACTION * recipe.steps_at_b0))
  two_phase = dict(study="two_phase", optimizer="LAMB", k=1, factor=1.0,
                   eval_points=eval_points, log_points=log_points)
  runs += [
      _run(recipe, "two_phase_1", config="two_phase_1", steps=phase1,
           **two_phase),
      _run(recipe, "two_phase_2", config="two_phase_2",
           steps=recipe.steps_at_b0 - phase1, init_from="two_phase_1",
           **two_phase),
      _run(recipe, "single_phase_long", config="long",
           steps=recipe.steps_at_b0, **two_phase)]
  return runs


def bindings(run: Run, runs_dir: str) -> List[str]:
  """The gin bindings that make `run` out of its config (at B0)."""
  lines = [] if run.optimizer == "LAMB" else ["train.optimizer = @AdamW"]
  lines += [
      f"train.global_batch_size = {run.global_batch}",
      f"train.grad_accumulation_steps = {run.grad_accumulation}",
      f"train.total_steps = {run.steps}",
      f"learning_rate_schedule.peak_learning_rate = {run.peak_lr!r}",
      f"train.eval_every_steps = {run.eval_every}",
      f"train.checkpoint_every_steps = {run.eval_every}",
      f"train.steps_per_loop = {run.steps_per_loop}",
  ]
  if run.grad_accumulation > 1:
    # The k micro-batches already are the pieces the noise scale is estimated
    # from; halving each as well only costs time on one op thread (k = 16 on
    # the AVX512_BF16 Xeon: 240 examples/s with whole micro-batches against
    # 195 with halves).
    lines.append("train.parallel_micro_batches = 1")
  if run.init_from:
    lines.append(f"train.init_checkpoint = "
                 f"{os.path.join(runs_dir, run.init_from)!r}")
  return lines


def read_recipe(config_dir: str) -> Recipe:
  """Parses the study's gin files for what `plan` needs."""
  import gin  # pylint: disable=g-import-not-at-top
  from trainer import configurables  # pylint: disable=g-import-not-at-top
  gin.add_config_file_search_path(ROOT)
  value = configurables.bound_value
  configs, macros = {}, {}
  for key, name in (("scaling", "scaling"), ("two_phase_1", "two_phase_1"),
                    ("two_phase_2", "two_phase_2"), ("long", "long")):
    path = os.path.join(config_dir, name + ".gin")
    gin.clear_config()
    gin.parse_config_file(os.path.join(ROOT, path))
    dataset = (("corpus", value("dataset.corpus")),
               ("vocab_size", value("dataset.vocab_size")),
               ("max_seq_length", value("dataset.max_seq_length")),
               ("seed", value("train.seed", 0)))
    if value("dataset.dupe_factor") is not None:
      dataset += (("dupe_factor", value("dataset.dupe_factor")),)
    configs[key] = Config(path, value("dataset.max_seq_length"),
                          value("learning_rate_schedule.warmup_fraction"),
                          dataset)
    if key == "scaling":
      macros = {m: gin.query_parameter(f"%{m}") for m in (
          "B0", "STEPS_AT_B0", "LAMB_PEAK_LR", "ADAMW_PEAK_LR")}
  gin.clear_config()
  return Recipe(b0=macros["B0"], steps_at_b0=macros["STEPS_AT_B0"],
                peak_lr={"LAMB": macros["LAMB_PEAK_LR"],
                         "AdamW": macros["ADAMW_PEAK_LR"]},
                configs=configs)


# --- Jobs: subprocesses with dependencies -----------------------------------


@dataclasses.dataclass
class Job:
  """One subprocess of the study.

  Attributes:
    name: its directory under the runs dir (and NAME.log beside it).
    kind: "prepare", "pretrain", "export" or "finetune".
    command: called when the job starts (its dependencies' results known),
      returns the arguments after `python` (["-m", MODULE, ...]).
    finish: called after the subprocess exits 0; returns the result that
      goes into DIR/result.json.
    needs: names of jobs that must finish first.
    before: called before the subprocess starts (e.g. clears a partial
      export); None for nothing.
    any_need: start once every need has ended and one of them finished
      (an export picks the best of the runs that finished).
    only_if: called once the needs are done: False skips the job (it counts
      as ended, not failed); None: always run.
  """
  name: str
  kind: str
  command: Callable[[], List[str]]
  finish: Callable[[float], Dict]
  needs: Tuple[str, ...] = ()
  before: Optional[Callable[[], None]] = None
  any_need: bool = False
  only_if: Optional[Callable[[], bool]] = None


def pretrain_row(run: Run, model_dir: str, wall_seconds: float) -> Dict:
  """The csv row of a finished run, from its metrics.jsonl."""
  records = scaling_report.read_metrics(model_dir)
  evals = [r for r in records if "eval_mlm_accuracy" in r]
  if not evals or evals[-1]["step"] != run.steps:
    raise RuntimeError(f"{model_dir}: no final evaluation in metrics.jsonl")
  row = dict(study=run.study, run=run.name, optimizer=run.optimizer,
             seq_length=run.seq_length, global_batch=run.global_batch,
             batch_multiplier=run.multiplier,
             grad_accumulation=run.grad_accumulation, steps=run.steps,
             examples=run.examples, peak_lr=run.peak_lr,
             lr_factor=run.lr_factor, warmup_steps=run.warmup_steps,
             process_minutes=round(wall_seconds / 60, 2),
             init_from=run.init_from)
  row.update({k: evals[-1][k] for k in ("eval_mlm_accuracy", "eval_mlm_loss",
                                        "eval_nsp_accuracy", "eval_loss")})
  return row


def best_run(runs_dir: str, runs: Sequence[Run], optimizer: str,
             k: int, sweep_only: bool = False) -> Optional[str]:
  """The finished scaling run of (optimizer, k) with the best eval MLM
  accuracy (`sweep_only`: of the sweep, not its extensions)."""
  done = [(scaling_report.read_result(runs_dir, r.name), r.name) for r in runs
          if r.study == "scaling" and r.optimizer == optimizer and
          r.multiplier == k and not (sweep_only and r.if_best)]
  done = [(row["eval_mlm_accuracy"], name) for row, name in done if row]
  return max(done)[1] if done else None


def encoder_sources(runs: Sequence[Run]) -> Dict[str, Tuple[str, ...]]:
  """The pretraining runs each downstream encoder is chosen from."""
  top = max(r.multiplier for r in runs if r.study == "scaling")
  pick = lambda k: tuple(r.name for r in runs if r.study == "scaling" and
                         r.optimizer == "LAMB" and r.multiplier == k)
  return {"lamb_b0": pick(1), "lamb_16b0": pick(top),
          "two_phase": ("two_phase_2",)}


def names(runs: Sequence[Run], study: str) -> Tuple[str, ...]:
  return tuple(r.name for r in runs if r.study == study)


def make_jobs(runs: Sequence[Run], mode: Mode, runs_dir: str,
              data_dir: Optional[str], recipe: Recipe) -> List[Job]:
  """Dataset builds, pretraining runs, exports and fine-tunes, with their
  dependencies."""
  jobs = []
  data_flags = [f"--data_dir={data_dir}"] if data_dir else []
  prepare = {}
  for key, config in recipe.configs.items():
    name = f"prepare_seq{config.seq_length}"
    prepare[key] = name
    if any(j.name == name for j in jobs):
      continue
    argv = ["-m", "data.prepare"] + data_flags + [
        f"--{flag}={value}" for flag, value in config.dataset]
    jobs.append(Job(name, "prepare", (lambda a=argv: a),
                    lambda seconds: dict(wall_minutes=seconds / 60)))
  # The two-phase chain and the long runs first: they finish last otherwise.
  # Then the scaling runs by batch: B0, the largest, the ones between (the
  # claim compares the first two), each at the rule's learning rate first.
  top = max(r.multiplier for r in runs)
  order = lambda r: (r.study != "two_phase",
                     (r.multiplier != 1, r.multiplier != top, r.multiplier),
                     r.lr_factor != 1, r.optimizer, r.lr_factor)
  pretrain = []
  for run in sorted(runs, key=order):
    model_dir = os.path.join(runs_dir, run.name)
    argv = ["-m", "trainer.main",
            f"--gin_file={recipe.configs[run.config].path}",
            f"--model_dir={model_dir}"] + data_flags + [
                f"--gin_bindings={b}" for b in bindings(run, runs_dir)]
    sweep = () if not run.if_best else tuple(
        r.name for r in runs if r.study == "scaling" and not r.if_best and
        (r.optimizer, r.multiplier) == (run.optimizer, run.multiplier))
    pretrain.append(Job(
        run.name, "pretrain", (lambda a=argv: a),
        (lambda seconds, r=run, d=model_dir: pretrain_row(r, d, seconds)),
        needs=(prepare[run.config],) + ((run.init_from,) if run.init_from
                                        else ()) + sweep,
        only_if=run.if_best and (
            lambda r=run: best_run(runs_dir, runs, r.optimizer, r.multiplier,
                                   sweep_only=True) == r.if_best)))
  sources = encoder_sources(runs)
  downstream = []
  chosen = {}  # encoder -> the run its export was made from.
  for encoder in mode.encoders:
    export = f"export_{encoder}"
    export_dir = os.path.join(runs_dir, export)

    def export_command(encoder=encoder, export_dir=export_dir):
      chosen[encoder] = (
          sources[encoder][0] if len(sources[encoder]) == 1 else
          best_run(runs_dir, runs, "LAMB", 1 if encoder == "lamb_b0" else
                   max(mode.multipliers)))
      return ["-m", "trainer.export",
              f"--model_dir={os.path.join(runs_dir, chosen[encoder])}",
              f"--export_dir={export_dir}"]

    def export_finish(seconds, encoder=encoder):
      return dict(encoder=encoder, pretrain_run=chosen[encoder],
                  wall_minutes=round(seconds / 60, 2))

    downstream.append(Job(export, "export", export_command, export_finish,
                    needs=sources[encoder], any_need=True,
                    before=lambda d=export_dir: shutil.rmtree(
                        d, ignore_errors=True)))
    for seed in mode.seeds:
      name = f"finetune_{encoder}_seed{seed}"
      model_dir = os.path.join(runs_dir, name)
      argv = ["-m", "trainer.finetune", f"--export_dir={export_dir}",
              f"--model_dir={model_dir}", f"--gin_file={FINETUNE_CONFIG}",
              f"--gin_bindings=finetune.seed = {seed}",
              f"--gin_bindings=finetune.total_steps = {mode.finetune_steps}",
              "--gin_bindings=finetune.learning_rate = "
              f"{FINETUNE_LEARNING_RATE}"]
      downstream.append(Job(name, "finetune", (lambda a=argv: a),
                      (lambda seconds, e=encoder, s=seed, d=model_dir:
                       finetune_row(e, s, d, runs_dir, seconds)),
                      needs=(export,)))
  # A job starts as soon as its needs are done, the first in this order: the
  # exports and fine-tunes (short) ahead of the scaling runs still waiting.
  first = names(runs, "two_phase")
  return (jobs + [j for j in pretrain if j.name in first] + downstream +
          [j for j in pretrain if j.name not in first])


def finetune_row(encoder, seed, model_dir, runs_dir, seconds):
  from scripts import finetune_study  # pylint: disable=g-import-not-at-top
  record = finetune_study.final_eval(model_dir)
  if record is None:
    raise RuntimeError(f"{model_dir}: no evaluation in metrics.jsonl")
  export = scaling_report.read_result(runs_dir, f"export_{encoder}") or {}
  return dict(encoder=encoder, pretrain_run=export.get("pretrain_run"),
              task=finetune_study.TASK, seed=seed, steps=record["step"],
              eval_accuracy=record["eval_accuracy"],
              eval_loss=record["eval_loss"],
              wall_minutes=round(seconds / 60, 2))


def _say(start, message):
  print(f"[reproduce {(time.time() - start) / 60:5.1f} min] {message}",
        flush=True)


def run_jobs(jobs: Sequence[Job], runs_dir: str, parallel: int,
             on_progress: Optional[Callable[[], None]] = None,
             poll_seconds: float = 0.5) -> Dict[str, str]:
  """Runs the unfinished jobs, `parallel` at a time, dependencies first.

  With several at a time and `taskset` present, each job is pinned to a core
  of its own with one op thread; a job whose dependency failed is not
  started. `on_progress` is called after each job that finishes.

  Returns:
    name -> "done" (now or before), "skipped" (`Job.only_if`), "failed" or
    "blocked".
  """
  start = time.time()
  cores = scaling_report.usable_cores()
  pin = parallel > 1 and shutil.which("taskset") is not None
  threads = max(1, len(cores) // parallel)
  status = {j.name: "done" for j in jobs
            if scaling_report.read_result(runs_dir, j.name)}
  total, skipped = len(jobs), len(status)
  if skipped:
    _say(start, f"{skipped} of {total} runs finished before; skipped")
  pending = [j for j in jobs if j.name not in status]
  running = {}  # name -> (job, process, log file, core, start time).
  while pending or running:
    for job in list(pending):
      ended = [status.get(n) for n in job.needs
               if status.get(n) in ("failed", "blocked")]
      if ended and (not job.any_need or len(ended) == len(job.needs)):
        status[job.name] = "blocked"
        pending.remove(job)
        _say(start, f"{job.name}: not started, a run it needs failed")
    free = [c for c in cores if c not in {v[3] for v in running.values()}]
    for job in list(pending):
      if len(running) >= parallel:
        break
      if any(n not in status for n in job.needs):
        continue  # A need has not ended yet (failed ones blocked it above).
      pending.remove(job)
      if job.only_if and not job.only_if():
        status[job.name] = "skipped"
        _say(start, f"{job.name}: not needed")
        continue
      core = free.pop(0) if pin and free else None
      env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
      prefix = []
      if pin:
        prefix = ["taskset", "-c", str(core)]
      if parallel > 1:
        env.update(TF_NUM_INTRAOP_THREADS=str(threads),
                   TF_NUM_INTEROP_THREADS=str(threads))
      if job.before:
        job.before()
      log_path = os.path.join(runs_dir, job.name + ".log")
      log = open(log_path, "a")
      argv = prefix + [sys.executable] + job.command()
      log.write(f"\n$ {' '.join(argv)}\n")
      log.flush()
      process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log,
                                 stderr=subprocess.STDOUT)
      running[job.name] = (job, process, log, core, time.time())
      _say(start, f"{job.name}: started" + (
          f" on core {core}" if core is not None else ""))
    if pending and not running:  # Needs that are no job: nothing can start.
      for job in pending:
        status[job.name] = "blocked"
        _say(start, f"{job.name}: not started, needs {job.needs}")
      break
    time.sleep(poll_seconds)
    for name, (job, process, log, _, began) in list(running.items()):
      if process.poll() is None:
        continue
      log.close()
      del running[name]
      seconds = time.time() - began
      outcome = None
      if process.returncode == 0:
        try:
          outcome = job.finish(seconds)
        except (OSError, RuntimeError, KeyError, ValueError) as e:
          print(f"{name}: {e}", file=open(log.name, "a"))
      if outcome is None:
        status[name] = "failed"
        _say(start, f"{name}: FAILED (exit {process.returncode}); see "
             f"{log.name}")
      else:
        outcome.update(started=began, ended=time.time())
        os.makedirs(os.path.join(runs_dir, name), exist_ok=True)
        with open(scaling_report.result_path(runs_dir, name), "w") as f:
          json.dump(outcome, f, indent=1, sort_keys=True)
        status[name] = "done"
        metric = next((f"{k} {outcome[k]:.4f}" for k in (
            "eval_mlm_accuracy", "eval_accuracy") if k in outcome), "")
        _say(start, f"{name}: finished in {seconds / 60:.1f} min {metric}")
      finished = sum(s == "done" for s in status.values())
      _say(start, f"{finished}/{total} runs done")
      if on_progress:
        on_progress()
  return status


def reproduce(out_dir: str, runs_dir: str, data_dir: Optional[str] = None,
              mode: str = "default", parallel: Optional[int] = None,
              command: str = "",
              multipliers: Optional[Sequence[int]] = None) -> Dict[str, str]:
  """Runs (or resumes) the study of `mode` and writes its outputs.

  Args:
    out_dir: where scaling.csv, scaling.md and the PNGs go.
    runs_dir: one directory per run under here.
    data_dir: the datasets' directory (None: the trainer's default).
    mode: "default" or "quick".
    parallel: runs at once (None: the usable cores).
    command: the command line, quoted in scaling.md.
    multipliers: the batches as multiples of B0 (None: the mode's).

  Returns:
    Each job's status: "done", "skipped", "failed" or "blocked".
  """
  settings = MODES[mode]
  if multipliers:
    settings = dataclasses.replace(settings,
                                   multipliers=tuple(sorted(multipliers)))
  recipe = read_recipe(settings.config_dir)
  runs = plan(recipe, settings.multipliers, settings.lr_factors,
              settings.eval_points, settings.log_points)
  os.makedirs(out_dir, exist_ok=True)
  os.makedirs(runs_dir, exist_ok=True)
  jobs = make_jobs(runs, settings, runs_dir, data_dir, recipe)
  command = command or "python -m scripts.reproduce" + (
      "" if mode == "default" else f" --{mode}") + (
          f" --multipliers={','.join(map(str, settings.multipliers))}"
          if multipliers else "")
  last = [time.time()]

  def summarize(final=False):
    if final or time.time() - last[0] > SUMMARY_EVERY_S:
      last[0] = time.time()
      try:
        scaling_report.write_outputs(
            runs, jobs, recipe, settings, runs_dir, out_dir, command)
      except Exception as e:  # pylint: disable=broad-except
        if final:
          raise
        # A partial summary must not stop the runs; the final one says.
        print(f"[reproduce] partial outputs not written: {e}", flush=True)

  status = run_jobs(jobs, runs_dir,
                    parallel or len(scaling_report.usable_cores()), summarize)
  summarize(final=True)
  return status


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  mode = "quick" if FLAGS.quick else "default"
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  start = time.time()
  absolute = lambda p: p and os.path.abspath(os.path.expanduser(p))
  runs_dir = absolute(FLAGS.runs_dir or os.path.join(
      ROOT, "runs", "reproduce", mode))
  status = reproduce(
      out_dir=absolute(FLAGS.out_dir), runs_dir=runs_dir,
      data_dir=absolute(FLAGS.data_dir), mode=mode, parallel=FLAGS.parallel,
      multipliers=[int(k) for k in FLAGS.multipliers or ()])
  bad = sorted(n for n, s in status.items() if s not in ("done", "skipped"))
  print(f"[reproduce] {len(status) - len(bad)}/{len(status)} runs done in "
        f"{(time.time() - start) / 60:.1f} minutes; outputs in "
        f"{FLAGS.out_dir}" + (f"; not done: {', '.join(bad)}" if bad else ""),
        flush=True)
  return 1 if bad else 0


if __name__ == "__main__":
  app.run(main)
