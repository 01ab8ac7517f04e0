"""scripts/reproduce.py: the study's arithmetic, its job runner, and --quick
end to end (runs, csv, markdown, plots, resume)."""

import csv
import os

import pytest

from scripts import reproduce
from scripts import scaling_report
from trainer import schedule

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _recipe():
  """The provisional default recipe, written out (not read from gin)."""
  config = lambda name, seq, warmup: reproduce.Config(
      f"configs/reduced/{name}.gin", seq, warmup)
  return reproduce.Recipe(
      b0=32, steps_at_b0=6000, peak_lr={"LAMB": 1e-2, "AdamW": 2e-3},
      configs={"scaling": config("scaling", 64, 0.05),
               "two_phase_1": config("two_phase_1", 32, 0.05),
               "two_phase_2": config("two_phase_2", 128, 0.128),
               "long": config("long", 128, 0.05)})


def test_plan_arithmetic_exact():
  runs = {r.name: r for r in reproduce.plan(_recipe(), (1, 4, 16),
                                            (0.5, 1.0, 2.0))}
  # Each sweep's 3 rates, its 2 edge extensions, and the two-phase runs.
  assert len(runs) == 2 * 3 * (3 + 2) + 3
  # (steps, batch, micro-batches, warmup, eval period, steps per loop) at k.
  expected = {1: (6000, 32, 1, 300, 750, 150),
              4: (1500, 128, 4, 75, 187, 37),
              16: (375, 512, 16, 19, 46, 9)}   # 0.05 x 375 = 18.75 -> 19.
  for optimizer, base in (("LAMB", 1e-2), ("AdamW", 2e-3)):
    for k, (steps, batch, accum, warmup, every, loop) in expected.items():
      for f in (0.5, 1.0, 2.0):
        r = runs[f"{optimizer.lower()}_b0x{k}_lrx{f:g}"]
        assert (r.steps, r.global_batch, r.grad_accumulation, r.warmup_steps,
                r.eval_every, r.steps_per_loop) == (
                    steps, batch, accum, warmup, every, loop)
        assert r.examples == 192_000
        assert r.seq_length == 64 and r.study == "scaling"
        assert r.peak_lr == pytest.approx(base * {1: 1, 4: 2, 16: 4}[k] * f,
                                          rel=1e-12)
  assert runs["lamb_b0x16_lrx2"].peak_lr == pytest.approx(0.08, rel=1e-12)
  # Half the lowest and twice the highest rate, made if the sweep's best is
  # at that edge.
  assert [r.name for r in runs.values() if r.if_best] == [
      f"{o}_b0x{k}_lrx{f}" for o in ("lamb", "adamw") for k in (1, 4, 16)
      for f in ("0.25", "4")]
  low, high = runs["adamw_b0x4_lrx0.25"], runs["adamw_b0x4_lrx4"]
  assert (low.if_best, high.if_best) == ("adamw_b0x4_lrx0.5",
                                         "adamw_b0x4_lrx2")
  assert low.peak_lr == pytest.approx(2e-3 * 2 * 0.25, rel=1e-12)
  assert high.peak_lr == pytest.approx(2e-3 * 2 * 4, rel=1e-12)
  assert (high.steps, high.warmup_steps) == (1500, 75)
  assert reproduce.plan(_recipe(), (1,), (1.0,))[0].if_best is None
  # Two phases: 90% of the examples at 32, the rest at 128, warm-started.
  one, two, long = (runs["two_phase_1"], runs["two_phase_2"],
                    runs["single_phase_long"])
  assert (one.steps, one.seq_length, one.warmup_steps) == (5400, 32, 270)
  assert (two.steps, two.seq_length, two.warmup_steps) == (600, 128, 77)
  assert (long.steps, long.seq_length, long.warmup_steps) == (6000, 128, 300)
  assert two.init_from == "two_phase_1" and one.init_from is None
  assert {r.peak_lr for r in (one, two, long)} == {1e-2}
  assert {r.global_batch for r in (one, two, long)} == {32}


def test_warmup_rounds_as_the_schedule_does():
  for fraction, steps in ((0.05, 375), (0.05, 1500), (0.128, 600),
                          (0.05, 6000), (0.1, 25), (0.05, 10)):
    built = schedule.learning_rate_schedule(
        steps, peak_learning_rate=1.0, warmup_fraction=fraction)
    assert reproduce.warmup_steps(fraction, steps) == built.warmup_steps


def test_bindings_exact():
  runs = {r.name: r for r in reproduce.plan(_recipe(), (1, 16), (2.0,))}
  assert reproduce.bindings(runs["adamw_b0x16_lrx2"], "/r") == [
      "train.optimizer = @AdamW",
      "train.global_batch_size = 512",
      "train.grad_accumulation_steps = 16",
      "train.total_steps = 375",
      "learning_rate_schedule.peak_learning_rate = 0.016",
      "train.eval_every_steps = 46",
      "train.checkpoint_every_steps = 46",
      "train.steps_per_loop = 9",
      "train.parallel_micro_batches = 1"]
  assert not any("parallel" in b for b in
                 reproduce.bindings(runs["lamb_b0x1_lrx2"], "/r"))
  assert reproduce.bindings(runs["two_phase_2"], "/r")[-1] == (
      "train.init_checkpoint = '/r/two_phase_1'")
  assert not any("optimizer" in b for b in
                 reproduce.bindings(runs["lamb_b0x1_lrx2"], "/r"))


def test_every_batch_gets_every_rate():
  runs = reproduce.plan(_recipe(), (1, 16), (0.25, 1.0))
  names = sorted(r.name for r in runs
                 if r.study == "scaling" and not r.if_best)
  assert names == ["adamw_b0x16_lrx0.25", "adamw_b0x16_lrx1",
                   "adamw_b0x1_lrx0.25", "adamw_b0x1_lrx1",
                   "lamb_b0x16_lrx0.25", "lamb_b0x16_lrx1",
                   "lamb_b0x1_lrx0.25", "lamb_b0x1_lrx1"]
  lamb = {r.name: r for r in runs}["lamb_b0x16_lrx0.25"]
  assert lamb.peak_lr == pytest.approx(_recipe().peak_lr["LAMB"] * 4 * 0.25)


def test_train_minutes_sum_the_loops_not_the_evals():
  records = [dict(step=10, examples_per_second=2.0),
             dict(step=10, eval_mlm_accuracy=0.1),
             dict(step=20, examples_per_second=4.0)]
  # (10 x 4 / 2 + 10 x 4 / 4) seconds.
  assert scaling_report.train_minutes(records, 4) == 30.0 / 60


def test_noise_scales_last_half_and_quarters():
  records = [dict(step=s, gradient_noise_scale=float(s)) for s in
             range(1, 9)] + [dict(step=8, eval_mlm_accuracy=0.3)]
  median, quarters = scaling_report.noise_scales(records, steps=8)
  assert median == 6.5  # Steps 5-8.
  assert quarters == [1.5, 3.5, 5.5, 7.5]
  assert scaling_report.noise_scales(records[:3], steps=8) == (None, [])


def test_examples_to_reach_interpolates_the_evaluations():
  records = [dict(step=10, eval_mlm_accuracy=0.1),
             dict(step=15, examples_per_second=9.0),
             dict(step=20, eval_mlm_accuracy=0.3),
             dict(step=30, eval_mlm_accuracy=0.5)]
  reach = lambda a: scaling_report.examples_to_reach(records, 4, a)
  assert reach(0.05) == pytest.approx(20.0)  # From 0 at step 0.
  assert reach(0.2) == pytest.approx(60.0)  # Halfway from 40 to 80.
  assert reach(0.5) == pytest.approx(120.0)
  assert reach(0.6) is None


def test_predicted_b0_examples_per_quarter():
  predict = scaling_report.predicted_b0_examples
  # At B0 itself an example is worth one.
  assert predict([5.0, 50.0, 500.0, 5e3], 400, b0=32, k=1) == 400
  # B_noise = B0 at 3 x B0: each example worth (1 + 1) / (1 + 3) = 1/2.
  assert predict([32.0] * 4, 400, b0=32, k=3) == pytest.approx(200)
  # A quarter (100 examples) worth 1/2 each, three worth
  # (1 + 1/3) / (1 + 1) = 2/3 each.
  assert predict([32.0, 96.0, 96.0, 96.0], 400, b0=32, k=3) == (
      pytest.approx(50 + 3 * 200 / 3))


def test_job_order():
  """Two phases, then exports and fine-tunes as soon as they can start, then
  the scaling runs: B0, the largest batch, the rest; the rule's rate first."""
  recipe = reproduce.read_recipe("configs/reduced")
  runs = reproduce.plan(recipe, (1, 4, 16), (0.5, 1.0, 2.0))
  jobs = reproduce.make_jobs(runs, reproduce.MODES["default"], "/r", None,
                             recipe)
  pretrain = [j.name for j in jobs if j.kind == "pretrain"]
  assert pretrain[:3] == ["two_phase_1", "two_phase_2", "single_phase_long"]
  assert pretrain[3:13] == [
      "adamw_b0x1_lrx1", "lamb_b0x1_lrx1", "adamw_b0x1_lrx0.25",
      "adamw_b0x1_lrx0.5", "adamw_b0x1_lrx2", "adamw_b0x1_lrx4",
      "lamb_b0x1_lrx0.25", "lamb_b0x1_lrx0.5", "lamb_b0x1_lrx2",
      "lamb_b0x1_lrx4"]
  assert [j.name for j in jobs][-10:] == [
      "adamw_b0x4_lrx1", "lamb_b0x4_lrx1", "adamw_b0x4_lrx0.25",
      "adamw_b0x4_lrx0.5", "adamw_b0x4_lrx2", "adamw_b0x4_lrx4",
      "lamb_b0x4_lrx0.25", "lamb_b0x4_lrx0.5", "lamb_b0x4_lrx2",
      "lamb_b0x4_lrx4"]
  assert pretrain[13:15] == ["adamw_b0x16_lrx1", "lamb_b0x16_lrx1"]
  # An extension waits for its sweep and runs only if the edge is best.
  edge = {j.name: j for j in jobs}["lamb_b0x1_lrx4"]
  assert edge.needs == ("prepare_seq32", "lamb_b0x1_lrx0.5", "lamb_b0x1_lrx1",
                        "lamb_b0x1_lrx2")
  assert edge.only_if is not None
  names = [j.name for j in jobs]
  assert names.index("finetune_two_phase_seed2") < names.index(
      "adamw_b0x1_lrx1")


@pytest.mark.parametrize("config_dir", ["configs/reduced",
                                        "configs/reduced/quick"])
def test_configs_read(config_dir):
  recipe = reproduce.read_recipe(config_dir)
  c = recipe.configs
  # Phase 2 and the single-phase run at 4 x phase 1's length.
  assert c["two_phase_2"].seq_length == 4 * c["two_phase_1"].seq_length
  assert c["long"].seq_length == c["two_phase_2"].seq_length
  assert c["two_phase_2"].warmup_fraction == 0.128
  assert set(recipe.peak_lr) == {"LAMB", "AdamW"}
  assert dict(c["long"].dataset)["max_seq_length"] == c["long"].seq_length


def _job(name, code, needs=(), log=None):
  """A job that appends its name to `log`, then runs `code`."""
  script = f"open({log!r}, 'a').write({name!r} + '\\n'); {code}"
  return reproduce.Job(name, "test", lambda: ["-c", script],
                       lambda seconds: {"name": name}, needs=tuple(needs))


def test_run_jobs_dependencies_failures_and_resume(tmp_path):
  runs_dir, log = str(tmp_path), str(tmp_path / "ran.txt")
  jobs = [_job("a", "pass", log=log),
          _job("b", "raise SystemExit(3)", ["a"], log=log),
          _job("c", "pass", ["b"], log=log),
          _job("d", "pass", ["a"], log=log),
          _job("e", "pass", ["b", "d"], log=log),  # Starts once one did.
          _job("f", "pass", ["b", "c"], log=log),  # Neither will.
          _job("g", "pass", ["no_such_job"], log=log),
          _job("h", "pass", ["a"], log=log),  # Not needed: skipped.
          _job("i", "pass", ["a"], log=log),  # Needed.
          _job("j", "pass", ["h"], log=log)]  # A skipped need has ended.
  jobs[4].any_need = jobs[5].any_need = True
  jobs[7].only_if, jobs[8].only_if = (lambda: False), (lambda: True)
  status = reproduce.run_jobs(jobs, runs_dir, parallel=2, poll_seconds=0.05)
  assert status == {"a": "done", "b": "failed", "c": "blocked", "d": "done",
                    "e": "done", "f": "blocked", "g": "blocked",
                    "h": "skipped", "i": "done", "j": "done"}
  with open(log) as f:
    assert sorted(f.read().split()) == ["a", "b", "d", "e", "i", "j"]
  assert scaling_report.read_result(runs_dir, "a")["name"] == "a"
  assert scaling_report.read_result(runs_dir, "b") is None
  # Again: the finished jobs are skipped, the failed one is tried again.
  status = reproduce.run_jobs(jobs, runs_dir, parallel=2, poll_seconds=0.05)
  assert status["a"] == "done" and status["b"] == "failed"
  with open(log) as f:
    assert sorted(f.read().split()) == ["a", "b", "b", "d", "e", "i", "j"]


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("quick")
  dirs = dict(out_dir=str(tmp / "out"), runs_dir=str(tmp / "runs"),
              data_dir=str(tmp / "data"))
  status = reproduce.reproduce(mode="quick", parallel=2, **dirs)
  return status, dirs


def test_quick_study_end_to_end(quick_study):
  status, dirs = quick_study
  out_dir, runs_dir = dirs["out_dir"], dirs["runs_dir"]
  assert set(status.values()) == {"done"}, status

  with open(os.path.join(out_dir, "scaling.csv")) as f:
    reader = csv.DictReader(f)
    assert tuple(reader.fieldnames) == scaling_report.CSV_COLUMNS
    table = list(reader)
  mode = reproduce.MODES["quick"]
  runs = reproduce.plan(reproduce.read_recipe(mode.config_dir),
                        mode.multipliers, mode.lr_factors, mode.eval_points,
                        mode.log_points)
  assert sorted(r["run"] for r in table) == sorted(r.name for r in runs)
  for r in table:
    records = scaling_report.read_metrics(os.path.join(runs_dir, r["run"]))
    last = [e for e in records if "eval_mlm_accuracy" in e][-1]
    assert int(last["step"]) == int(r["steps"])
    for key in ("eval_mlm_accuracy", "eval_mlm_loss", "eval_nsp_accuracy"):
      assert abs(float(r[key]) - last[key]) < 1e-6, (r["run"], key)
    # The noise scale is logged by every run (two pieces a step at least).
    assert any("gradient_noise_scale" in e for e in records), r["run"]
    assert float(r["wall_minutes"]) > 0
  scaling = [r for r in table if r["study"] == "scaling"]
  for r in scaling:
    assert int(r["examples"]) == int(scaling[0]["examples"])
    assert int(r["grad_accumulation"]) == int(r["batch_multiplier"])

  with open(os.path.join(out_dir, "scaling_downstream.csv")) as f:
    downstream = list(csv.DictReader(f))
  assert [(r["encoder"], r["seed"]) for r in downstream] == [("lamb_b0", "0")]
  assert 0.0 <= float(downstream[0]["eval_accuracy"]) <= 1.0
  assert downstream[0]["pretrain_run"] == "lamb_b0x1_lrx1"

  with open(os.path.join(out_dir, "scaling.md")) as f:
    markdown = f.read()
  for section in ("## Setup", "## Best learning rate per optimizer and batch",
                  "## Retention", "## Gradient noise scale against batch",
                  "## Every scaling run", "## Two phases against one",
                  "## Downstream", "90.584", "avx512_bf16"):
    assert section in markdown, section
  assert "Partial" not in markdown
  for name in scaling_report.PLOTS:
    path = os.path.join(out_dir, name)
    with open(path, "rb") as f:
      assert f.read(8) == PNG_MAGIC, name
    assert os.path.getsize(path) > 10_000, name


def test_quick_study_resume_skips_finished_runs(quick_study):
  _, dirs = quick_study
  runs_dir = dirs["runs_dir"]
  logs = sorted(f for f in os.listdir(runs_dir) if f.endswith(".log"))
  before = {f: os.path.getmtime(os.path.join(runs_dir, f)) for f in logs}
  jsonl = os.path.join(runs_dir, "lamb_b0x1_lrx1", "metrics.jsonl")
  stamp = os.path.getmtime(jsonl)
  with open(os.path.join(dirs["out_dir"], "scaling.csv")) as f:
    table = f.read()
  status = reproduce.reproduce(mode="quick", parallel=2, **dirs)
  assert set(status.values()) == {"done"}
  # Nothing started: no log written to, no record added, the same rows.
  assert {f: os.path.getmtime(os.path.join(runs_dir, f))
          for f in logs} == before
  assert os.path.getmtime(jsonl) == stamp
  with open(os.path.join(dirs["out_dir"], "scaling.csv")) as f:
    assert f.read() == table


def test_partial_outputs_are_marked(quick_study, tmp_path):
  _, dirs = quick_study
  mode = reproduce.MODES["quick"]
  recipe = reproduce.read_recipe(mode.config_dir)
  runs = reproduce.plan(recipe, mode.multipliers, mode.lr_factors,
                        mode.eval_points, mode.log_points)
  # One more run than have finished.
  runs.append(runs[0].__class__(**dict(vars(runs[0]), name="not_run_yet")))
  jobs = reproduce.make_jobs(runs, mode, dirs["runs_dir"], None, recipe)
  scaling_report.write_outputs(runs, jobs, recipe, mode, dirs["runs_dir"],
                               str(tmp_path), "cmd")
  with open(tmp_path / "scaling.md") as f:
    assert "Partial" in f.read()
  with open(tmp_path / "scaling.csv") as f:
    assert len(list(csv.DictReader(f))) == len(runs) - 1
