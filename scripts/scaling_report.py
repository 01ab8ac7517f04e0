"""scripts/reproduce.py's outputs: csv files, scaling.md and four plots.

Written from whichever runs have finished (their DIR/result.json and
metrics.jsonl), so a study in progress gives partial outputs, marked so.
Pretraining runs and fine-tunes go into two csv files because their columns
differ (a fine-tune has an encoder and a seed, no batch or learning rate).
"""

import csv
import json
import os
import statistics
from typing import Dict, List, Optional, Sequence, Tuple


OPTIMIZERS = ("LAMB", "AdamW")
CSV_COLUMNS = ("study", "run", "optimizer", "seq_length", "global_batch",
               "batch_multiplier", "grad_accumulation", "steps", "examples",
               "peak_lr", "lr_factor", "warmup_steps", "eval_mlm_accuracy",
               "eval_mlm_loss", "eval_nsp_accuracy", "eval_loss",
               "wall_minutes", "examples_per_second", "noise_scale_median")
DOWNSTREAM_COLUMNS = ("encoder", "pretrain_run", "task", "seed", "steps",
                      "eval_accuracy", "eval_loss", "wall_minutes")
PLOTS = ("mlm_accuracy_vs_batch.png", "eval_mlm_loss_vs_examples.png",
         "noise_scale_vs_step.png", "two_phase_vs_single.png")
# LAMB's best at 16 x B0 over its best at B0: the paper's claim as a target.
TARGET_RETENTION = 0.95
# B0's run must end well past the MLM plateau (predicting frequent tokens).
PAST_PLATEAU = 0.30

# You et al. (arXiv:1904.00962), Table 1: BERT-large with LAMB, SQuAD v1.1
# dev F1 after pretraining for the same number of epochs at each batch size
# (the baseline, Devlin et al. with AdamW at batch 512: 1M steps, F1 90.395).
PAPER_LAMB = ((512, 1000000, 91.752), (1024, 500000, 91.761),
              (2048, 250000, 91.946), (4096, 125000, 91.137),
              (8192, 62500, 91.263), (16384, 31250, 91.345),
              (32768, 15625, 91.475), ("64K/32K", 8599, 90.584))


def result_path(runs_dir: str, name: str) -> str:
  return os.path.join(runs_dir, name, "result.json")


def read_result(runs_dir: str, name: str) -> Optional[Dict]:
  path = result_path(runs_dir, name)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def read_metrics(model_dir: str) -> List[Dict]:
  path = os.path.join(model_dir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def train_minutes(records: List[Dict], global_batch: int) -> float:
  """A run's training time from its metrics: each logged loop's examples
  over its examples/s, summed, so a run resumed after a stop counts every
  part of it once (start-up, evals and the pause between do not count)."""
  seconds, last = 0.0, 0
  for r in records:
    if "examples_per_second" in r:
      seconds += (r["step"] - last) * global_batch / r["examples_per_second"]
      last = r["step"]
  return seconds / 60


def noise_scales(records: List[Dict], steps: int
                 ) -> Tuple[Optional[float], List[float]]:
  """A run's logged gradient noise scale, summed up: the median over the
  last half of its steps, and the medians over each quarter of its logged
  loops (none if fewer than four were logged)."""
  logged = [r for r in records if "gradient_noise_scale" in r]
  last_half = [r["gradient_noise_scale"] for r in logged
               if r["step"] > steps / 2]
  values = [r["gradient_noise_scale"] for r in logged]
  n = len(values)
  quarters = [statistics.median(values[i * n // 4:(i + 1) * n // 4])
              for i in range(4)] if n >= 4 else []
  return (statistics.median(last_half) if last_half else None), quarters


def examples_to_reach(records: List[Dict], global_batch: int,
                      accuracy: float) -> Optional[float]:
  """Examples a run had seen when its eval MLM accuracy first reached
  `accuracy`, interpolated linearly between evaluations (from 0 at step 0);
  None if it never did."""
  before_examples, before = 0.0, 0.0
  for r in records:
    if "eval_mlm_accuracy" not in r:
      continue
    examples, value = r["step"] * global_batch, r["eval_mlm_accuracy"]
    if value >= accuracy:
      if value <= before:
        return float(examples)
      return before_examples + (accuracy - before) / (value - before) * (
          examples - before_examples)
    before_examples, before = float(examples), value
  return None


def predicted_b0_examples(quarters: Sequence[float], examples: int, b0: int,
                          k: int) -> float:
  """How many examples at B0 the progress of `examples` at k x B0 is worth
  in McCandlish et al.'s model (arXiv:1812.06162, eq. 2.11).

  To make a given progress, a batch B needs E_min x (1 + B / B_noise)
  examples, so an example at k x B0 is worth (1 + B0 / B_noise) /
  (1 + k x B0 / B_noise) of one at B0. B_noise is the noise scale the
  large-batch run measured on its own path: `quarters` are its medians
  over the quarters of its examples. (B0's own runs are no proxy for it:
  B_simple falls as the learning rate rises, e.g. LAMB at B0 with 2.5e-3,
  5e-3 and 1e-2 logged 535, 410 and 125 over the last half of the run;
  results/scaling.md.)
  """
  worth = [(1 + b0 / noise) / (1 + k * b0 / noise) for noise in quarters]
  return examples / len(worth) * sum(worth)


def usable_cores() -> List[int]:
  try:
    return sorted(os.sched_getaffinity(0))
  except AttributeError:
    return list(range(os.cpu_count() or 1))


def best_rows(rows: List[Dict]) -> Dict:
  """(optimizer, k) -> the scaling row with the best eval MLM accuracy."""
  best = {}
  for r in rows:
    if r["study"] != "scaling":
      continue
    key = (r["optimizer"], r["batch_multiplier"])
    if key not in best or r["eval_mlm_accuracy"] > best[key][
        "eval_mlm_accuracy"]:
      best[key] = r
  return best


def retention(best: Dict, optimizer: str, k: int) -> Optional[float]:
  """Best eval MLM accuracy at k x B0 over the best at B0."""
  if (optimizer, 1) not in best or (optimizer, k) not in best:
    return None
  if not best[(optimizer, 1)]["eval_mlm_accuracy"]:
    return None  # A B0 that learned nothing (e.g. --quick) has no ratio.
  return (best[(optimizer, k)]["eval_mlm_accuracy"] /
          best[(optimizer, 1)]["eval_mlm_accuracy"])


def machine() -> str:
  model, flags = "unknown CPU", ""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name") and model == "unknown CPU":
          model = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
          flags = line
  except OSError:
    pass
  return (f"{model}, {len(usable_cores())} usable cores, "
          f"{'with' if ' avx512_bf16' in flags else 'without'} avx512_bf16")


def _write_csv(rows, columns, path):
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)


def _fmt(value, spec):
  return "-" if value is None else format(value, spec)


def _table(rows, columns):
  lines = ["| " + " | ".join(h for h, _ in columns) + " |",
           "|" + "|".join("---:" for _ in columns) + "|"]
  lines += ["| " + " | ".join(fmt(r) for _, fmt in columns) + " |"
            for r in rows]
  return lines


RUN_COLUMNS = [
    ("optimizer", lambda r: r["optimizer"]),
    ("batch", lambda r: f"{r['global_batch']:,} ({r['batch_multiplier']} x "
     "B0)"),
    ("steps", lambda r: f"{r['steps']:,}"),
    ("peak lr", lambda r: f"{r['peak_lr']:.3g} (x{r['lr_factor']:g})"),
    ("warmup", lambda r: str(r["warmup_steps"])),
    ("MLM acc", lambda r: f"{r['eval_mlm_accuracy']:.4f}"),
    ("MLM loss", lambda r: f"{r['eval_mlm_loss']:.3f}"),
    ("NSP acc", lambda r: f"{r['eval_nsp_accuracy']:.3f}"),
    ("noise scale", lambda r: _fmt(r["noise_scale_median"], ".0f")),
    ("wall", lambda r: f"{r['wall_minutes']:.1f} min"),
]


def _markdown(rows, downstream, settings, recipe, command, total,
              wall_minutes, span_minutes):
  scaling = [r for r in rows if r["study"] == "scaling"]
  best = best_rows(rows)
  k_top = max(settings.multipliers)
  partial = len(rows) + len(downstream) < total
  lines = ["# Batch scaling and the two-phase recipe at reduced scale", ""]
  if partial:
    lines += [f"**Partial: {len(rows) + len(downstream)} of {total} runs "
              "have finished; the tables below hold those.**", ""]
  lines += [
      "## Setup", "",
      f"`{command}` on {machine()}: {span_minutes:.0f} minutes from the "
      f"first run's start to the last one's end, {wall_minutes:.0f} minutes "
      "of runs in all (several run at once, each on a core of its own; "
      "dataset builds and exports not counted). A pretraining run's wall "
      "time is its training loops' own, from its metrics.jsonl: summed "
      "over restarts, start-up and evals left out. Configs: "
      f"`{settings.config_dir}/` (scaling.gin, two_phase_1.gin, "
      "two_phase_2.gin, long.gin). At k x B0 (B0 = "
      f"{recipe.b0}) a run takes k micro-batches of B0 summed by gradient "
      f"accumulation, {recipe.steps_at_b0:,} / k steps (the same "
      f"{recipe.b0 * recipe.steps_at_b0:,} examples), the warmup the same "
      "fraction of its steps, and a peak learning rate of x"
      f"{', x'.join(f'{f:g}' for f in settings.lr_factors)} the rule's "
      f"base x sqrt(k) (base: LAMB {recipe.peak_lr['LAMB']:g}, AdamW "
      f"{recipe.peak_lr['AdamW']:g}); where a sweep's best is its lowest or "
      "highest rate, one more run at half or twice that rate. Metrics are "
      "the final evaluation on the held-out split. The noise scale is the "
      "median of the logged gradient noise scale (B_simple, in examples; "
      "trainer/noise_scale.py) over the last half of the run.", ""]
  lines += ["## Best learning rate per optimizer and batch", ""]
  lines += _table([best[k] for k in sorted(best)], RUN_COLUMNS)
  lines += ["", "## Retention: best at k x B0 over best at B0", "",
            "| optimizer | " + " | ".join(
                f"{k} x B0" for k in settings.multipliers if k > 1) + " |",
            "|---|" + "---:|" * (len(settings.multipliers) - 1)]
  for optimizer in OPTIMIZERS:
    lines.append(f"| {optimizer} | " + " | ".join(
        _fmt(None if retention(best, optimizer, k) is None else
             100 * retention(best, optimizer, k), ".1f") + "%"
        for k in settings.multipliers if k > 1) + " |")
  lamb, adamw = retention(best, "LAMB", k_top), retention(best, "AdamW", k_top)
  if lamb is not None and adamw is not None:
    met = lamb >= TARGET_RETENTION and adamw < lamb
    lines += ["", f"The paper's claim as the target: LAMB's best at {k_top} "
              f"x B0 keeps at least {TARGET_RETENTION:.0%} of its best at B0 "
              f"and AdamW's keeps less. Measured: LAMB {lamb:.1%}, AdamW "
              f"{adamw:.1%}: {'met' if met else 'not met'}."]
  if ("LAMB", 1) in best:
    lines += ["", f"B0's best LAMB run ends at eval MLM accuracy "
              f"{best[('LAMB', 1)]['eval_mlm_accuracy']:.3f} (the study "
              f"wants at least {PAST_PLATEAU:.2f}, well past the plateau of "
              "predicting frequent tokens)."]
  lines += ["", "## Gradient noise scale against batch", "",
            "Batches below the noise scale are in the regime where k x the "
            "batch buys about 1/k of the steps; above it, less.", ""]
  lines += ["Each batch against the noise scale its own run logged (best "
            "rate): the median over the run's last half, and by quarter of "
            "the run, since the noise scale grows as a run learns (the "
            "medians of the logged values). B_simple also falls as the "
            "learning rate rises (every run: the table further down), so "
            "a batch is placed by its own run's values.", "",
            "| optimizer | batch | noise scale (best lr, last half) | "
            "batch / noise scale | by quarter of the run | batch above it "
            "in quarters |",
            "|---|---:|---:|---:|---|---|"]
  for key in sorted(best):
    r = best[key]
    ns = r["noise_scale_median"]
    quarters = r.get("noise_scale_quarters") or []
    above = [str(i + 1) for i, q in enumerate(quarters)
             if r["global_batch"] > q]
    lines.append(f"| {r['optimizer']} | {r['global_batch']:,} | "
                 f"{_fmt(ns, '.0f')} | "
                 f"{_fmt(ns and r['global_batch'] / ns, '.2f')} | "
                 f"{' / '.join(f'{q:.0f}' for q in quarters)} | "
                 f"{', '.join(above) or ('none' if quarters else '-')} |")
  lines += _worth(best, recipe)
  lines += ["", "## Every scaling run", ""]
  lines += _table(sorted(scaling, key=lambda r: (
      r["optimizer"], r["batch_multiplier"], r["lr_factor"])), RUN_COLUMNS)
  lines += _two_phase(rows)
  lines += _downstream(downstream)
  lines += ["", "## The paper (BERT-large, SQuAD v1.1 dev F1; "
            "arXiv:1904.00962, Table 1)", "",
            "| LAMB batch | steps | F1 |", "|---:|---:|---:|"]
  lines += [f"| {b if isinstance(b, str) else f'{b:,}'} | {s:,} | {f} |"
            for b, s, f in PAPER_LAMB]
  lines += ["", "Baseline (Devlin et al., AdamW, batch 512, 1M steps): "
            "F1 90.395.", "", "Per run: scaling.csv and "
            "scaling_downstream.csv. Plots: " +
            ", ".join(f"`{p}`" for p in PLOTS) + ".", ""]
  return "\n".join(lines)


def _worth(best, recipe):
  """What the examples of the best run at each k x B0 were worth at B0."""
  lines = ["", "## What an example at k x B0 is worth", "",
           "Every batch sees the same examples; the question is how far "
           "they take it. Measured: the examples after which B0's best run "
           "(same optimizer) first reached the larger batch's final eval MLM "
           "accuracy, from its evaluations. Predicted: McCandlish et al.'s "
           "model (arXiv:1812.06162), in which an example at batch B is "
           "worth (1 + B0 / B_noise) / (1 + B / B_noise) of one at B0, with "
           "B_noise the noise scale the larger batch's run logged in each "
           "quarter (`predicted_b0_examples`).", "",
           "| optimizer | batch | final MLM acc | B0 reached it after | "
           "share of the examples | predicted | predicted share |",
           "|---|---:|---:|---:|---:|---:|---:|"]
  examples = recipe.b0 * recipe.steps_at_b0
  for optimizer, k in sorted(best):
    r = best[(optimizer, k)]
    if k == 1 or (optimizer, 1) not in best:
      continue
    measured = r.get("b0_examples_to_reach")
    predicted = r.get("b0_examples_predicted")
    lines.append(
        f"| {optimizer} | {r['global_batch']:,} | "
        f"{r['eval_mlm_accuracy']:.4f} | "
        f"{_fmt(measured, ',.0f') if measured else 'not reached'} | "
        f"{_fmt(measured and measured / examples, '.0%')} | "
        f"{_fmt(predicted, ',.0f')} | "
        f"{_fmt(predicted and predicted / examples, '.0%')} |")
  return lines


def _two_phase(rows):
  named = {r["run"]: r for r in rows if r["study"] == "two_phase"}
  lines = ["", "## Two phases against one (LAMB at B0)", "",
           "| run | sequence | steps | examples | MLM acc | MLM loss | wall | "
           "examples/s (median loop) |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
  for name in ("two_phase_1", "two_phase_2", "single_phase_long"):
    if name in named:
      r = named[name]
      lines.append(f"| {name} | {r['seq_length']} | {r['steps']:,} | "
                   f"{r['examples']:,} | {r['eval_mlm_accuracy']:.4f} | "
                   f"{r['eval_mlm_loss']:.3f} | {r['wall_minutes']:.1f} min | "
                   f"{_fmt(r.get('examples_per_second'), '.0f')} |")
  if "two_phase_1" in named and "two_phase_2" in named:
    total = named["two_phase_1"]["wall_minutes"] + named["two_phase_2"][
        "wall_minutes"]
    lines.append(f"| two phases in all | | | | "
                 f"{named['two_phase_2']['eval_mlm_accuracy']:.4f} | "
                 f"{named['two_phase_2']['eval_mlm_loss']:.3f} | "
                 f"{total:.1f} min | |")
  lines += ["", "Phase 1's metrics are at its short length; phase 2's and "
            "the single-phase run's at the long one."]
  return lines


def _downstream(downstream):
  lines = ["", "## Downstream: fine-tuned on the offline task", "",
           "| encoder | pretraining run | seeds | median accuracy | min - "
           "max | median eval loss |", "|---|---|---:|---:|---:|---:|"]
  for encoder in dict.fromkeys(r["encoder"] for r in downstream):
    mine = [r for r in downstream if r["encoder"] == encoder]
    if not mine:
      continue
    acc = [r["eval_accuracy"] for r in mine]
    lines.append(
        f"| {encoder} | {mine[0]['pretrain_run']} | {len(mine)} | "
        f"{statistics.median(acc):.4f} | {min(acc):.4f} - {max(acc):.4f} | "
        f"{statistics.median(r['eval_loss'] for r in mine):.4f} |")
  if downstream:
    lines += ["", f"Task {downstream[0]['task']} (configs/finetune.gin), "
              f"{downstream[0]['steps']:,} steps a run (scripts/reproduce.py's "
              "FINETUNE_STEPS), seeds as listed in scaling_downstream.csv."]
  return lines


def _plots(rows, runs_dir, out_dir):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  scaling = [r for r in rows if r["study"] == "scaling"]
  best = best_rows(rows)
  is_best = lambda r: best.get((r["optimizer"], r["batch_multiplier"])) is r
  palette = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")
  colors = dict(zip(sorted({r["batch_multiplier"] for r in scaling}),
                    palette))
  styles = {"LAMB": "-", "AdamW": "--"}

  def save(fig, ax, name, **legend):
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(**legend)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, name), dpi=110)
    plt.close(fig)

  # Final eval MLM accuracy against batch: best lr per optimizer, all faint.
  fig, ax = plt.subplots(figsize=(6.5, 4.5))
  for optimizer, marker in zip(OPTIMIZERS, "os"):
    mine = [r for r in scaling if r["optimizer"] == optimizer]
    ax.scatter([r["global_batch"] for r in mine],
               [r["eval_mlm_accuracy"] for r in mine], marker=marker,
               alpha=0.3, color="gray")
    top = sorted((r for r in best.values() if r["optimizer"] == optimizer),
                 key=lambda r: r["global_batch"])
    ax.plot([r["global_batch"] for r in top],
            [r["eval_mlm_accuracy"] for r in top], styles[optimizer],
            marker=marker, label=f"{optimizer} (best lr)")
  batches = sorted({r["global_batch"] for r in scaling})
  if batches:  # A log axis without data fails to draw.
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches)
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
  ax.set_xlabel("global batch (the same examples: steps = examples / batch)")
  ax.set_ylabel("final held-out MLM accuracy")
  ax.set_title("MLM accuracy vs batch (gray: every learning rate)")
  save(fig, ax, PLOTS[0])

  # Eval MLM loss against examples seen.
  fig, ax = plt.subplots(figsize=(7.5, 4.8))
  for r in sorted(scaling, key=lambda r: (r["optimizer"],
                                          r["batch_multiplier"])):
    evals = [m for m in read_metrics(os.path.join(runs_dir,
                                                            r["run"]))
             if "eval_mlm_loss" in m]
    ax.plot([m["step"] * r["global_batch"] for m in evals],
            [m["eval_mlm_loss"] for m in evals],
            styles[r["optimizer"]], color=colors[r["batch_multiplier"]],
            marker="o", markersize=3, alpha=1.0 if is_best(r) else 0.2,
            label=(f"{r['optimizer']} batch {r['global_batch']} lr "
                   f"{r['peak_lr']:.2g}" if is_best(r) else None))
  ax.set_xlabel("examples seen")
  ax.set_ylabel("held-out MLM loss")
  ax.set_title("Eval MLM loss (solid: LAMB, dashed: AdamW; faint: other lrs)")
  save(fig, ax, PLOTS[1], fontsize=7, ncol=2)

  # Gradient noise scale against step, the batch sizes as lines.
  fig, ax = plt.subplots(figsize=(7.5, 4.8))
  for r in sorted(best.values(), key=lambda r: (r["optimizer"],
                                                r["batch_multiplier"])):
    logged = [m for m in read_metrics(os.path.join(runs_dir,
                                                             r["run"]))
              if "gradient_noise_scale" in m]
    ax.plot([m["step"] / r["steps"] for m in logged],
            [m["gradient_noise_scale"] for m in logged],
            styles[r["optimizer"]], color=colors[r["batch_multiplier"]],
            marker=".", label=f"{r['optimizer']} batch {r['global_batch']}")
  for k, color in colors.items():
    b = next(r["global_batch"] for r in scaling if r["batch_multiplier"] == k)
    ax.axhline(b, color=color, linestyle=":", linewidth=1)
    ax.text(1.0, b, f" batch {b}", color=color, fontsize=7, va="bottom",
            ha="right")
  if best:
    ax.set_yscale("log")
  ax.set_xlabel("fraction of the run (step / steps)")
  ax.set_ylabel("gradient noise scale B_simple (examples)")
  ax.set_title("Noise scale (best lr per run) against the batches (dotted)")
  save(fig, ax, PLOTS[2], fontsize=7, ncol=2)

  # Two phases against one: eval MLM accuracy at the long length.
  named = {r["run"]: r for r in rows if r["study"] == "two_phase"}
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for name, style in (("two_phase_1", ":o"), ("two_phase_2", "-o"),
                      ("single_phase_long", "--s")):
    if name not in named:
      continue
    r = named[name]
    offset = (named["two_phase_1"]["examples"] if name == "two_phase_2" and
              "two_phase_1" in named else 0)
    evals = [m for m in read_metrics(os.path.join(runs_dir, name))
             if "eval_mlm_accuracy" in m]
    ax.plot([offset + m["step"] * r["global_batch"] for m in evals],
            [m["eval_mlm_accuracy"] for m in evals], style, markersize=3,
            label=f"{name}: seq {r['seq_length']}, {r['wall_minutes']:.1f} "
            "min")
  ax.set_xlabel("examples seen (both phases)")
  ax.set_ylabel("held-out MLM accuracy (at the run's length)")
  ax.set_title("Two phases vs one long phase (LAMB at B0)")
  save(fig, ax, PLOTS[3], fontsize=8)


def _needed(job, runs_dir):
  """Whether a study makes `job`: not a sweep's extension (`Job.only_if`)
  whose sweep has finished without its best at that edge."""
  if not job.only_if or not all(read_result(runs_dir, n) for n in job.needs):
    return True
  return job.only_if()


def write_outputs(runs: Sequence, jobs: Sequence, recipe, settings,
                  runs_dir: str, out_dir: str, command: str):
  """scaling.csv, scaling_downstream.csv, scaling.md and the plots, from
  the runs finished so far."""
  rows = [row for row in (read_result(runs_dir, r.name)
                          for r in runs) if row]
  metrics = {}  # Run name -> its metrics.jsonl records.
  for row in rows:  # From the metrics, whatever the run's restarts.
    records = metrics[row["run"]] = read_metrics(
        os.path.join(runs_dir, row["run"]))
    row["wall_minutes"] = train_minutes(records, row["global_batch"])
    rates = [r["examples_per_second"] for r in records
             if "examples_per_second" in r]
    row["examples_per_second"] = statistics.median(rates) if rates else None
    row["noise_scale_median"], row["noise_scale_quarters"] = noise_scales(
        records, row["steps"])
  best = best_rows(rows)
  for (optimizer, k), row in best.items():
    if k == 1 or (optimizer, 1) not in best:
      continue
    b0 = best[(optimizer, 1)]
    row["b0_examples_to_reach"] = examples_to_reach(
        metrics[b0["run"]], b0["global_batch"], row["eval_mlm_accuracy"])
    if row["noise_scale_quarters"]:
      row["b0_examples_predicted"] = predicted_b0_examples(
          row["noise_scale_quarters"], row["examples"], b0["global_batch"], k)
  downstream = [row for row in (read_result(runs_dir, j.name)
                                for j in jobs if j.kind == "finetune") if row]
  _write_csv(rows, CSV_COLUMNS, os.path.join(out_dir, "scaling.csv"))
  _write_csv(downstream, DOWNSTREAM_COLUMNS,
             os.path.join(out_dir, "scaling_downstream.csv"))
  total = sum(j.kind in ("pretrain", "finetune") and _needed(j, runs_dir)
              for j in jobs)
  wall = sum(r["wall_minutes"] for r in rows + downstream)
  # From the first run's start to the last one's end: the study's wall time
  # (with any pause between sessions of a resumed study).
  everything = [row for row in (read_result(runs_dir, j.name) for j in jobs)
                if row and "started" in row]
  span = (max(r["ended"] for r in everything) -
          min(r["started"] for r in everything)) / 60 if everything else 0.0
  with open(os.path.join(out_dir, "scaling.md"), "w") as f:
    f.write(_markdown(rows, downstream, settings, recipe, command, total,
                      wall, span))
  _plots(rows, runs_dir, out_dir)
