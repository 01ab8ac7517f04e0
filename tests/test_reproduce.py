"""scripts/reproduce.py --quick end to end: runs, csv, markdown, plots, resume."""

import csv
import json
import os

from scripts import reproduce

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_quick_study_end_to_end(tmp_path):
  out_dir, runs_dir = str(tmp_path / "out"), str(tmp_path / "runs")
  rows = reproduce.reproduce(out_dir=out_dir, runs_dir=runs_dir,
                             data_dir=str(tmp_path / "data"), mode="quick")

  with open(os.path.join(out_dir, "scaling.csv")) as f:
    reader = csv.DictReader(f)
    assert tuple(reader.fieldnames) == reproduce.CSV_COLUMNS
    table = list(reader)
  # LAMB and AdamW at 1, 4 and 16 x B0, then phase 2.
  assert [(r["optimizer"], int(r["batch_multiplier"])) for r in table] == [
      ("LAMB", 1), ("LAMB", 4), ("LAMB", 16),
      ("AdamW", 1), ("AdamW", 4), ("AdamW", 16), ("LAMB", 1)]
  assert table[-1]["study"] == "two_phase"
  scaling = table[:-1]
  # The same examples at every batch size, k x the batch in 1/k the steps,
  # k micro-batches, sqrt(k) x the peak learning rate.
  for r in scaling:
    k = int(r["batch_multiplier"])
    base = scaling[0 if r["optimizer"] == "LAMB" else 3]
    assert int(r["examples"]) == int(base["examples"])
    assert int(r["global_batch"]) == k * int(base["global_batch"])
    assert int(r["grad_accumulation"]) == k
    assert abs(float(r["peak_lr"]) - float(base["peak_lr"]) * k ** 0.5) < 1e-9
  for r in table:
    # The table says what each run's last evaluation recorded.
    with open(os.path.join(runs_dir, r["run"], "metrics.jsonl")) as f:
      last = [e for e in map(json.loads, f) if "eval_mlm_accuracy" in e][-1]
    for key in ("eval_mlm_accuracy", "eval_mlm_loss", "eval_nsp_accuracy"):
      assert abs(float(r[key]) - last[key]) < 1e-6, (r["run"], key)
    assert float(r["eval_mlm_loss"]) > 0.0
  # Phase 2: 4 x the sequence, half of phase 1's batch.
  assert int(table[-1]["seq_length"]) == 4 * int(table[2]["seq_length"])
  assert int(table[-1]["global_batch"]) * 2 == int(table[2]["global_batch"])

  with open(os.path.join(out_dir, "scaling.md")) as f:
    markdown = f.read()
  assert "| optimizer | global batch |" in markdown
  assert markdown.count("| LAMB |") == 3 and markdown.count("| AdamW |") == 3
  assert "phase 2" in markdown and "90.584" in markdown

  for name in ("eval_mlm_loss_vs_examples.png", "mlm_accuracy_vs_batch.png",
               "two_phase_loss.png"):
    path = os.path.join(out_dir, name)
    with open(path, "rb") as f:
      assert f.read(8) == PNG_MAGIC, name
    assert os.path.getsize(path) > 10_000, name

  # Finished runs are not trained again: the same rows, no new records.
  jsonl = os.path.join(runs_dir, "lamb_b0x1", "metrics.jsonl")
  stamp = os.path.getmtime(jsonl)
  again = reproduce.reproduce(out_dir=out_dir, runs_dir=runs_dir,
                              data_dir=str(tmp_path / "data"), mode="quick")
  assert again == rows
  assert os.path.getmtime(jsonl) == stamp
