"""Smoke test of scripts/bench_train.py: both trainers run, the report is whole.

No timing is asserted: `--quick` numbers mean nothing, only that each
trainer trained, logged its loops and evaluated.
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import bench_train  # noqa: E402  pylint: disable=g-import-not-at-top


def test_quick_run_reports_both_trainers(tmp_path):
  out = tmp_path / "report.md"
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "scripts", "bench_train.py"),
       "--quick", f"--data_dir={tmp_path / 'data'}",
       f"--work_dir={tmp_path / 'work'}", f"--out={out}"],
      cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert re.search(r"tiny ours run 1/1: [\d.]+ examples/s", result.stdout)
  assert re.search(r"tiny theirs run 1/1: [\d.]+ examples/s", result.stdout)
  report = out.read_text()
  header = "| " + " | ".join(bench_train.COLUMNS) + " |"
  assert header in report
  row = next(line for line in report.splitlines()
             if line.startswith("| tiny |"))
  cells = [c.strip() for c in row.strip("|").split("|")]
  assert len(cells) == len(bench_train.COLUMNS)
  ours, theirs, ratio = (float(c.rstrip("x")) for c in cells[1:4])
  assert ours > 0 and theirs > 0
  assert abs(ratio - ours / theirs) < 0.01
  assert all(c.endswith(" GiB") and float(c.split()[0]) > 0.1
             for c in cells[4:6])
  assert all(0.0 <= float(c) <= 1.0 for c in cells[6:8])
  # Each trainer wrote its own run directory, with its own config.
  work = tmp_path / "work"
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
  loops, eval_text = bench_train.parse_orbit_log(log)
  # The second loop ends 2 s after the first, across midnight.
  assert [s for s, _ in loops] == [2, 4]
  assert abs(loops[1][1] - loops[0][1] - 2.0) < 1e-6
  assert bench_train.loop_rate(loops, batch_size=8) == 8.0
  assert "np.float32(0.125)" in eval_text and "unrelated" not in eval_text
