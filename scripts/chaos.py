r"""Fault injection: kills, preemption, damaged checkpoints, non-finite steps.

Trains the tiny config (`configs/tiny.gin` on tests/testdata/tiny_corpus.txt,
12 steps, dropout on, `train.deterministic=True`, a checkpoint every step)
again and again under faults, restarts each faulted run with the same command
until it finishes, and compares the result with an uninterrupted reference:

  python -m scripts.chaos --trials 25

took 19.5 minutes on 2 shared CPU cores (two reference runs, then ~45 s a
trial: 1-2 starts of `python -m trainer.main`, ~20 s of CPU each) and printed
one line per trial, then this table, with exit code 0:

  | fault | trials | delivered | resumed exactly | lost work | failed checks |
  |---|---|---|---|---|---|
  | sigkill | 5 | 5 | 5 | 0 | 0 |
  | sigkill_save | 5 | 5 | 5 | 0 | 0 |
  | sigterm | 5 | 5 | 5 | 0 | 0 |
  | corrupt | 5 | 5 | 5 | 0 | 0 |
  | nonfinite | 5 | 5 | 5 | 0 | 0 |
  | all | 25 | 25 | 25 | 0 | 0 |

The faults, taken in turn:

  sigkill       SIGKILL at a random moment: during start-up (a quarter of
                the trials) or shortly after a random step's log line, i.e.
                in the next step, an eval or a save.
  sigkill_save  SIGKILL while a checkpoint is being written (seen as the
                temporary files of TensorFlow's writer: `ckpt-N_temp`,
                `*.tempstate*`, `checkpoint.tmp*`).
  sigterm       SIGTERM at such a moment: expect exit 143 after a
                checkpoint at the step it was in (or -15 during start-up,
                before training, or 0 when it came after the end).
  corrupt       SIGKILL mid-run, then damage the newest checkpoint (truncate
                or flip a byte of its data, truncate its index, delete its
                data, or garble the `checkpoint` pointer file); the restart
                must say so in a line and resume from the newest intact one.
  nonfinite     NaN gradients at steps 3 and 7 (the test entry point
                `python -m tests.faulty_main --nonfinite_steps=3,7`) plus a
                SIGKILL; compared with a reference run with the same NaN
                steps.

With `--workers 2` each run is a two-worker job on 127.0.0.1
(MultiWorkerMirroredStrategy, `--worker_timeout` from the flag of that
name), compared with an
uninterrupted two-worker run, and the faults are:

  kill_chief          SIGKILL worker 0 (the chief) at a random moment.
  kill_worker         SIGKILL worker 1 at a random moment.
  kill_between_saves  SIGKILL worker 1 as soon as the chief has written a
                      random checkpoint N: usually before worker 1 has saved
                      its input position of N (the line says which).
  kill_worker_save    SIGKILL worker 1 while it writes its input position.
  sigterm_worker      SIGTERM to worker 1: both must stop after the same
                      step with exit 143.

After a fault the other worker must end too (it loses its peer); then both
are restarted with the same command until the job finishes.

A trial "resumed exactly" when its final checkpoint (weights, m/v slots,
iterations, dropout RNG, step) and every logged loss equal the reference's
bit for bit. It "lost work" when they differ, when it does not finish, or
when a restart began earlier than the newest intact checkpoint it had.
Other failed checks (a wrong exit code, a damaged checkpoint not reported)
are counted under "failed checks". Exits 1 on any loss or failed check.
"""

import collections
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import tensorflow as tf

import data
from trainer import checkpointing

flags.DEFINE_integer("trials", 20, "Faulted runs, the fault kinds in turn.")
flags.DEFINE_integer("workers", 1, "1: one process; 2: a two-worker job "
                     "on 127.0.0.1 (MultiWorkerMirroredStrategy), faults at "
                     "either worker.")
flags.DEFINE_float("worker_timeout", 30, "With --workers 2: the jobs' "
                   "--worker_timeout, seconds (a worker starved of CPU for "
                   "longer is taken for lost).")
flags.DEFINE_integer("seed", 0, "Seeds the choice of fault moments.")
flags.DEFINE_string("work_dir", None, "Where runs go (default: a temporary "
                    "directory, removed at the end unless --keep).")
flags.DEFINE_boolean("keep", False, "Keep the temporary work directory.")

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CORPUS = os.path.join(ROOT, "tests", "testdata", "tiny_corpus.txt")
BINDINGS = [
    f'dataset.corpus = "{CORPUS}"', "dataset.vocab_size = 512",
    "dataset.max_seq_length = 32", "dataset.max_predictions_per_seq = 5",
    "train.total_steps = 12", "train.steps_per_loop = 1",
    "train.checkpoint_every_steps = 1", "train.eval_every_steps = 6",
    "train.deterministic = True", "BertEncoder.output_dropout = 0.1",
    "BertEncoder.attention_dropout = 0.1"]
KINDS = ("sigkill", "sigkill_save", "sigterm", "corrupt", "nonfinite")
DAMAGE = ("truncate_data", "flip_data", "truncate_index", "delete_data",
          "garble_pointer")
NONFINITE = "3,7"  # tests.faulty_main --nonfinite_steps.
STEPS = 12  # train.total_steps above.
MAX_STARTS = 4
# Two workers (--workers=2): faults at either worker.
WORKER_KINDS = ("kill_chief", "kill_worker", "kill_between_saves",
                "kill_worker_save", "sigterm_worker")
# A worker that outlives the other by this much counts as hung.
LOST_WORKER_S = 120


class Run:
  """One `python -m trainer.main` process (`tests.faulty_main` with
  `faults`), its output going to a log file."""

  def __init__(self, model_dir, data_dir, log, faults=None, env=None,
               flags_=()):
    self.log = log
    self.started = time.time()
    entry = (["tests.faulty_main", f"--nonfinite_steps={faults}"] if faults
             else ["trainer.main"])
    with open(log, "w") as out:
      self.proc = subprocess.Popen(
          [sys.executable, "-m", *entry,
           f"--gin_file={os.path.join(ROOT, 'configs', 'tiny.gin')}",
           f"--model_dir={model_dir}", f"--data_dir={data_dir}", *flags_] +
          [f"--gin_bindings={b}" for b in BINDINGS],
          cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
          env={**os.environ, **(env or {})})

  def wait_for(self, marker):
    """Seconds from the start until the log shows `marker` (None: ended)."""
    while self.proc.poll() is None:
      with open(self.log) as f:
        if marker in f.read():
          return time.time() - self.started
      time.sleep(0.01)
    return None

  def signal_after(self, marker, seconds, signum, watch=None):
    """Sends `signum` `seconds` after the log of `watch` (default: this
    run) shows `marker` (None: after the start); returns False when the run
    had ended by then."""
    if marker and (watch or self).wait_for(marker) is None:
      return False
    deadline = time.time() + seconds
    while time.time() < deadline and self.proc.poll() is None:
      time.sleep(0.005)
    if self.proc.poll() is not None:
      return False
    self.proc.send_signal(signum)
    return True

  def kill_during_save(self, model_dir):
    """SIGKILLs the run as soon as a checkpoint write is seen under way."""
    while self.proc.poll() is None:
      try:
        names = os.listdir(model_dir) if os.path.isdir(model_dir) else []
      except FileNotFoundError:
        names = []
      if any(m in n for n in names for m in ("_temp", "tempstate", ".tmp")):
        self.proc.kill()
        return True
      time.sleep(0.0005)
    return False

  def wait(self):
    self.proc.wait(timeout=900)
    with open(self.log) as f:
      return self.proc.returncode, f.read()


class Job:
  """A two-worker job on 127.0.0.1: `runs[0]` is worker 0, the chief."""

  def __init__(self, model_dir, data_dir, log_prefix):
    cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(2)]}
    self.runs = [Run(
        model_dir, data_dir, f"{log_prefix}.w{i}.log",
        env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {
            "type": "worker", "index": i}})},
        flags_=[f"--worker_timeout={FLAGS.worker_timeout}"])
                 for i in range(2)]

  def wait(self):
    """Exit codes and outputs of both workers. A worker still running
    `LOST_WORKER_S` seconds after the other ended is killed (code None)."""
    ended = None
    while any(r.proc.poll() is None for r in self.runs):
      if ended is None and any(r.proc.poll() is not None for r in self.runs):
        ended = time.time()
      if ended and time.time() - ended > LOST_WORKER_S:
        for r in self.runs:
          if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait()
            r.hung = True
      time.sleep(0.05)
    codes = [None if getattr(r, "hung", False) else r.proc.returncode
             for r in self.runs]
    outs = []
    for r in self.runs:
      with open(r.log) as f:
        outs.append(f.read())
    return codes, outs


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _checkpoint_steps(model_dir):
  """Steps of the checkpoints the pointer file lists (all, if unreadable)."""
  return {checkpointing.checkpoint_step(p): p
          for p in checkpointing.candidates(model_dir)}


def _damage(model_dir, how, rng):
  """Damages the newest checkpoint; returns its step (None: the pointer)."""
  steps = _checkpoint_steps(model_dir)
  step = max(steps)
  prefix = os.path.join(model_dir, f"ckpt-{step}")
  data = prefix + ".data-00000-of-00001"
  if how == "truncate_data":
    os.truncate(data, os.path.getsize(data) // 2)
  elif how == "flip_data":
    with open(data, "r+b") as f:
      f.seek(rng.randrange(os.path.getsize(data)))
      byte = f.read(1)
      f.seek(-1, os.SEEK_CUR)
      f.write(bytes([byte[0] ^ 0xFF]))
  elif how == "truncate_index":
    os.truncate(prefix + ".index", os.path.getsize(prefix + ".index") // 2)
  elif how == "delete_data":
    os.remove(data)
  else:
    with open(os.path.join(model_dir, "checkpoint"), "w") as f:
      f.write("model_checkpoint_path: \"ckpt-")  # Cut short.
    return None
  return step


def _records(model_dir):
  with open(os.path.join(model_dir, "metrics.jsonl")) as f:
    return [{k: v for k, v in r.items()
             if k not in ("time", "examples_per_second")}
            for r in map(json.loads, f)]


def _same(model_dir, reference):
  """Whether a finished run equals the reference bit for bit."""
  return (checkpointing.state_difference(
      tf.train.latest_checkpoint(model_dir),
      tf.train.latest_checkpoint(reference)) is None and
          _records(model_dir) == _records(reference))


def _resumed_step(out):
  match = re.search(r"resumed from \S+ at step (\d+)", out)
  return int(match.group(1)) if match else 0


def trial(kind, index, work, data_dir, references, rng):
  """Runs one faulted run to the end and checks it against its reference.

  Returns:
    (delivered, exact, lost, note, problems, starts).
  """
  model_dir = os.path.join(work, f"trial{index:03d}_{kind}")
  faults = NONFINITE if kind == "nonfinite" else None
  reference, (start_s, train_s) = references[faults]
  run = Run(model_dir, data_dir, model_dir + ".0.log", faults)
  problems = []
  expected = 0  # The step the next start must resume from, at least.
  signum = signal.SIGTERM if kind == "sigterm" else signal.SIGKILL
  # A moment while it trains, evaluates or saves: a random time into the
  # step after a random one (the time of a step is measured by the
  # reference run; the first one includes tracing).
  after = f"step {rng.randint(3 if kind == 'corrupt' else 1, STEPS)}/"
  delay = rng.uniform(0, 2 * train_s / STEPS)
  if kind == "sigkill_save":
    delivered = run.kill_during_save(model_dir)
  elif kind != "corrupt" and rng.random() < 0.25:  # During start-up.
    delivered = run.signal_after(None, rng.uniform(0, start_s), signum)
  else:
    delivered = run.signal_after(after, delay, signum)
  code, out = run.wait()
  note = ""
  if kind == "sigterm" and delivered:
    stop = re.search(r"stopped on SIGTERM after step (\d+)", out)
    if code == 143 and stop:
      expected = int(stop.group(1))
      note = f"exit 143 at step {expected}"
    elif code in (0, -signal.SIGTERM):
      note = f"exit {code} (outside training)"
    else:
      problems.append(f"SIGTERM gave exit {code}")
  damaged = None
  if kind == "corrupt" and code != 0:
    if len(_checkpoint_steps(model_dir)) >= 2:
      how = DAMAGE[index // len(KINDS) % len(DAMAGE)]
      damaged = _damage(model_dir, how, rng)
      note = how
      if damaged and checkpointing.damage(
          os.path.join(model_dir, f"ckpt-{damaged}")) is None:
        note += " (landed where no check can see it: harmless)"
        damaged, delivered = None, False
    else:
      delivered = False
  starts = 1
  while code != 0 and starts < MAX_STARTS:
    # The newest listed checkpoint that TensorFlow's reader accepts in full.
    expected = max([expected] + [
        s for s, prefix in _checkpoint_steps(model_dir).items()
        if s != damaged and checkpointing.damage(prefix) is None])
    run = Run(model_dir, data_dir, f"{model_dir}.{starts}.log", faults)
    code, out = run.wait()
    starts += 1
    if _resumed_step(out) < expected:
      problems.append(f"restart {starts - 1} began at step "
                      f"{_resumed_step(out)}, not {expected}")
    if starts == 2 and kind == "corrupt" and delivered:
      if not any(l.startswith("warning:") for l in out.splitlines()):
        problems.append("damage not reported")
  finished = code == 0
  exact = finished and _same(model_dir, reference)
  lost = not exact or any("began at step" in p for p in problems)
  if not finished:
    problems.append(f"did not finish: exit {code}, see {run.log}")
  elif not exact:
    problems.append("result differs from the reference")
  return delivered, exact and not lost, lost, note, problems, starts


def _kill_between_saves(model_dir, chief, worker, rng):
  """SIGKILLs worker 1 as soon as the chief has written a random
  checkpoint N. Returns (delivered, note): the note says whether worker 1
  had saved its input position of N yet."""
  step = rng.randint(2, STEPS - 1)
  index = os.path.join(model_dir, f"ckpt-{step}.index")
  own = os.path.join(model_dir, "input_of_2_hosts", "host1",
                     f"ckpt-{step}.index")
  while not os.path.exists(index):
    if chief.proc.poll() is not None or worker.proc.poll() is not None:
      return False, ""
    time.sleep(0.0005)
  saved = os.path.exists(own)
  worker.proc.kill()
  return True, f"ckpt-{step}: " + ("after both saves" if saved else
                                   "between the chief's save and worker 1's")


def worker_trial(kind, index, work, data_dir, reference, rng):
  """`trial` for a two-worker job: a fault at one worker, then restarts of
  both until the job finishes. Returns what `trial` returns."""
  model_dir = os.path.join(work, f"trial{index:03d}_{kind}")
  _, (start_s, train_s) = reference
  job = Job(model_dir, data_dir, f"{model_dir}.0")
  chief, worker = job.runs
  target = chief if kind == "kill_chief" else worker
  signum = signal.SIGTERM if kind == "sigterm_worker" else signal.SIGKILL
  note, problems, expected = "", [], 0
  if kind == "kill_between_saves":
    delivered, note = _kill_between_saves(model_dir, chief, worker, rng)
  elif kind == "kill_worker_save":
    delivered = worker.kill_during_save(
        os.path.join(model_dir, "input_of_2_hosts", "host1"))
  elif rng.random() < 0.25:  # During start-up.
    delivered = target.signal_after(None, rng.uniform(0, start_s), signum)
  else:  # In the step after a random step's log line (the chief's).
    delivered = target.signal_after(
        f"step {rng.randint(1, STEPS)}/",
        rng.uniform(0, 2 * train_s / STEPS), signum, watch=chief)
  codes, outs = job.wait()
  if kind == "sigterm_worker" and delivered:
    stop = re.search(r"stopped on SIGTERM after step (\d+)", outs[0])
    if codes == [143, 143] and stop:
      expected = int(stop.group(1))
      note = f"both exit 143 at step {expected}"
    elif codes[1] in (0, -signal.SIGTERM):
      note = f"exits {codes} (outside training)"
    else:
      problems.append(f"SIGTERM gave exits {codes}")
  if None in codes:
    problems.append(f"a worker outlived the other by {LOST_WORKER_S} s")
  starts = 1
  while codes != [0, 0] and starts < MAX_STARTS:
    expected = max([expected] + [
        s for s, prefix in _checkpoint_steps(model_dir).items()
        if checkpointing.damage(prefix) is None])
    job = Job(model_dir, data_dir, f"{model_dir}.{starts}")
    codes, outs = job.wait()
    starts += 1
    resumed = [_resumed_step(o) for o in outs]
    if min(resumed) < expected or resumed[0] != resumed[1]:
      problems.append(f"restart {starts - 1} began at steps {resumed}, not "
                      f"{expected}")
  finished = codes == [0, 0]
  exact = finished and _same(model_dir, reference[0])
  lost = not exact or any("began at step" in p for p in problems)
  if not finished:
    problems.append(f"did not finish: exits {codes}, see "
                    f"{job.runs[0].log}")
  elif not exact:
    problems.append("result differs from the reference")
  return delivered, exact and not lost, lost, note, problems, starts


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.trials < 1:
    raise app.UsageError("--trials must be >= 1")
  if FLAGS.workers not in (1, 2):
    raise app.UsageError("--workers must be 1 or 2")
  rng = random.Random(FLAGS.seed)
  work = FLAGS.work_dir or tempfile.mkdtemp(prefix="chaos_")
  os.makedirs(work, exist_ok=True)
  data_dir = os.path.join(work, "data")
  data.prepare_dataset(data_dir, corpus=CORPUS, vocab_size=512,
                       max_seq_length=32)

  references = {}
  two = FLAGS.workers == 2
  kinds = WORKER_KINDS if two else KINDS
  for faults in (None,) if two else (None, NONFINITE):
    path = os.path.join(work, f"reference{'_nonfinite' if faults else ''}")
    shutil.rmtree(path, ignore_errors=True)
    if two:
      job = Job(path, data_dir, path)
      run = job.runs[0]
      start_s = run.wait_for("step 1/")
      codes, _ = job.wait()
      code = max(abs(c if c is not None else 1) for c in codes)
    else:
      run = Run(path, data_dir, path + ".log", faults)
      start_s = run.wait_for("step 1/")
      code, _ = run.wait()
    if code != 0 or start_s is None:
      sys.exit(f"error: the reference run failed (exit {code}); see "
               f"{run.log}")
    train_s = time.time() - run.started - start_s
    references[faults] = (path, (start_s, train_s))
    print(f"reference{' with NaN steps' if faults else ''}: first step "
          f"after {start_s:.0f} s, then {train_s:.1f} s", flush=True)

  rows = collections.defaultdict(collections.Counter)
  failures = []
  for i in range(FLAGS.trials):
    kind = kinds[i % len(kinds)]
    if two:
      delivered, exact, lost, note, problems, starts = worker_trial(
          kind, i, work, data_dir, references[None], rng)
    else:
      delivered, exact, lost, note, problems, starts = trial(
          kind, i, work, data_dir, references, rng)
    row = rows[kind]
    row["trials"] += 1
    row["delivered"] += delivered
    row["exact"] += exact
    row["lost"] += lost
    row["failed"] += bool(problems) and not lost
    failures += [f"trial {i} ({kind}): {p}" for p in problems]
    status = "exact" if exact else "LOST" if lost else "FAILED"
    print(f"trial {i:3d} {kind:18s} {'fault' if delivered else 'missed':6s} "
          f"{starts} start(s)  {status}  {note}", flush=True)

  header = ("fault", "trials", "delivered", "resumed exactly", "lost work",
            "failed checks")
  print("\n| " + " | ".join(header) + " |")
  print("|" + "|".join("---" for _ in header) + "|")
  total = collections.Counter()
  for kind in kinds:
    if kind in rows:
      total.update(rows[kind])
      r = rows[kind]
      print(f"| {kind} | {r['trials']} | {r['delivered']} | {r['exact']} | "
            f"{r['lost']} | {r['failed']} |")
  print(f"| all | {total['trials']} | {total['delivered']} | "
        f"{total['exact']} | {total['lost']} | {total['failed']} |")
  for line in failures:
    print(line)
  if not FLAGS.keep and not FLAGS.work_dir:
    shutil.rmtree(work, ignore_errors=True)
  return 1 if total["lost"] or total["failed"] else 0


if __name__ == "__main__":
  app.run(main)
