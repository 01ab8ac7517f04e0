"""Smoke test of scripts/bench_train.py: both trainers run, the report is whole.

No timing is asserted: `--quick` numbers mean nothing, only that each
trainer trained, logged its loops and evaluated, and that the report says
what the runs recorded.
"""

import json
import re
import subprocess
import sys

from conftest import ROOT
from scripts import bench_ours
from scripts import bench_report
from scripts import bench_theirs
from scripts import bench_work


def test_quick_run_reports_both_trainers(tmp_path):
  out = tmp_path / "report.md"
  result = subprocess.run(
      [sys.executable, "-m", "scripts.bench_train", "--quick", f"--data_dir={tmp_path / 'data'}",
       f"--work_dir={tmp_path / 'work'}", f"--out={out}"],
      cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert re.search(r"tiny ours run 1/1: [\d.]+ examples/s", result.stdout)
  assert re.search(r"tiny theirs run 1/1: [\d.]+ examples/s", result.stdout)
  report = out.read_text()
  header = "| " + " | ".join(bench_report.COLUMNS) + " |"
  assert header in report
  row = next(line for line in report.splitlines()
             if line.startswith("| tiny |"))
  cells = [c.strip() for c in row.strip("|").split("|")]
  assert len(cells) == len(bench_report.COLUMNS)
  ours, theirs, ratio = (float(c.rstrip("x")) for c in cells[1:4])
  assert ours > 0 and theirs > 0
  assert abs(ratio - ours / theirs) < 0.01
  assert all(c.endswith(" GiB") and float(c.split()[0]) > 0.1
             for c in cells[4:6])
  # The accuracies are the ones the runs recorded: ours in metrics.jsonl,
  # theirs in orbit's log.
  work = tmp_path / "work"
  with open(work / "tiny-ours-0" / "model" / "metrics.jsonl") as f:
    ours_eval = [r["eval_mlm_accuracy"] for r in map(json.loads, f)
                 if "eval_mlm_accuracy" in r][-1]
  assert cells[6] == f"{ours_eval:.4f}", (cells[6], ours_eval)
  _, eval_text = bench_theirs.parse_orbit_log(
      (work / "tiny-theirs-0" / "stderr.txt").read_text())
  theirs_eval = float(re.search(
      r"'masked_lm_accuracy': (?:np\.float\d+\()?([-+0-9.eE]+)",
      eval_text)[1])
  assert cells[7] == f"{theirs_eval:.4f}", (cells[7], theirs_eval)
  # Our run recorded the parts it computed each micro-batch in.
  assert bench_ours.operative_value(
      work / "tiny-ours-0" / "model" / "operative_config.gin",
      "train.parallel_micro_batches") in ("1", "2")
  # Each trainer wrote its own run directory, with its own config.
  assert (work / "tiny-ours-0" / "bench.gin").exists()
  assert (work / "tiny-theirs-0" / "experiment.yaml").exists()


def test_parse_orbit_log():
  log = "\n".join([
      "I1125 23:59:58.500000 1401 controller.py:278] train | step:      0 | "
      "training until step 4...",
      "I1125 23:59:59.000000 1401 controller.py:535] train | step:      2 | "
      "steps/sec:    0.2 | output: ",
      "    {'learning_rate': 0.001,",
      "     'masked_lm_accuracy': 0.01}",
      "I1126 00:00:01.000000 1401 controller.py:535] train | step:      4 | "
      "steps/sec:    1.0 | output: {'masked_lm_accuracy': 0.02}",
      "I1126 00:00:02.000000 1401 controller.py:343]  eval | step:      4 | "
      "steps/sec:    2.0 | eval time:    2.0 sec | output: ",
      "    {'masked_lm_accuracy': np.float32(0.125),",
      "     'next_sentence_accuracy': 0.5}",
      "W1126 00:00:03.000000 1401 other.py:1] unrelated",
  ])
  loops, eval_text = bench_theirs.parse_orbit_log(log)
  # The second loop ends 2 s after the first, across midnight.
  assert [s for s, _ in loops] == [2, 4]
  assert abs(loops[1][1] - loops[0][1] - 2.0) < 1e-6
  assert bench_work.loop_rate(loops, batch_size=8) == 8.0
  assert "np.float32(0.125)" in eval_text and "unrelated" not in eval_text
