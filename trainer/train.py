"""BERT pretraining with LAMB under any `tf.distribute` strategy.

`train` reads top to bottom: check and resolve the settings (`_plan`), set
up the run's process-wide settings (`runtime.training_settings`), build the
data (`data.batching`), build and restore the state (`_build_state`,
`_restore`), then alternate host loops of `steps_per_loop` optimizer steps
(`trainer/step.py`, where the gradients are computed, all-reduced and
applied) with logging, evaluation and checkpointing at loop boundaries
(`_run_loop`).

Checkpoint contents and restore order: `tf.train.Checkpoint(model, optimizer,
step, dropout_rng, consecutive_skips, skipped_steps)`, plus `train_iterator`
with one input pipeline; with several hosts each saves its input position
apart (`checkpointing.input_dir`). On start the chief picks the newest intact
checkpoint in `model_dir` (a damaged one is reported and skipped, see
`checkpointing`) and every worker restores that one: model weights, the
dropout layers' random generators and the skip counters at once, the
optimizer's iterations and hyperparameters at once, and its `m`/`v` slots
when the first step creates them (TensorFlow's deferred restoration), so the
first resumed step uses the saved moments; then the input position, from
its saved iterator or, where none was saved for this number of hosts, by
reading the first `step` batches again. Without a
checkpoint in `model_dir`, `init_checkpoint` warm-starts the model weights
only (fresh optimizer, schedule and data position), as phase 2 of the paper's
recipe does.

Nothing here reads gin: `trainer/configurables.py` registers `train` and the
pieces it is given (`encoder`, `dataset`, `learning_rate_schedule`,
`optimizer`) for the configs.
"""

import contextlib
import dataclasses
import functools
import json
import os
import tempfile
import time
import uuid
from typing import Optional

import numpy as np
import tensorflow as tf
import tf_keras

import data
from data import batching
from data import defaults
from data import files
from lamb import LAMB
from trainer import checkpointing
from trainer import distribute
from trainer import model as model_lib
from trainer import noise_scale
from trainer import preemption
from trainer import reporting
from trainer import runtime
from trainer import step as step_lib


class TrainingError(RuntimeError):
  """A run that cannot go on (e.g. too many non-finite steps in a row)."""


@dataclasses.dataclass(frozen=True)
class DatasetSettings:
  """What the model is trained on (gin: `dataset.*`).

  Attributes:
    corpus: "embedded", "tweets" or "embedded+tweets" (built offline), a
      glob of text files, or "tfds:NAME".
    vocab_size: WordPiece vocabulary size learned from the corpus.
    vocab_file: a user vocab.txt instead of learning one.
    max_seq_length: tokens per example (128 phase 1, 512 phase 2).
    max_predictions_per_seq: masked positions per example (20 at 128, 80 at
      512: 15% of the tokens, as in BERT).
    masking: "dynamic" (new masks every epoch) or "static".
    bucket_width: group training examples by length in buckets of this many
      tokens and cut each host batch to its longest example, so that padding
      is not computed: the same examples and losses for less work, in
      another order. None: every batch is `max_seq_length` long (static
      shapes, as TPUs need).
    dupe_factor: times the training documents were paired, differently
      (`python -m data.prepare --dupe_factor`); part of the dataset's name.
    pairing_seed: seeds which sentences are paired (`python -m data.prepare
      --seed`); part of the dataset's name. Apart from `train.seed`, so that
      runs of several seeds train on one dataset and are evaluated on the
      same validation pairs.
  """
  corpus: str = defaults.CORPUS
  vocab_size: int = defaults.VOCAB_SIZE
  vocab_file: Optional[str] = None
  max_seq_length: int = defaults.MAX_SEQ_LENGTH
  max_predictions_per_seq: int = defaults.MAX_PREDICTIONS_PER_SEQ
  masking: str = "dynamic"
  bucket_width: Optional[int] = None
  dupe_factor: int = defaults.DUPE_FACTOR
  pairing_seed: int = 0

  def identity(self):
    """The arguments that name the prepared dataset."""
    return dict(corpus=self.corpus, vocab_size=self.vocab_size,
                vocab_file=self.vocab_file,
                max_seq_length=self.max_seq_length,
                dupe_factor=self.dupe_factor, seed=self.pairing_seed)


@dataclasses.dataclass(frozen=True)
class Plan:
  """Settings checked and resolved once, before anything is built."""
  micro_batch: int
  trim_padding: bool
  precision: Optional[str]
  precision_reason: str
  parallel_micro_batches: int
  parallel_reason: str
  accelerator: bool


def _check_positive(**values):
  for name, value in values.items():
    if value is None or value <= 0:
      raise ValueError(f"train.{name} must be > 0, got {value}")


def _has_accelerator(strategy):
  """Whether the replicas are TPU cores or GPUs."""
  return (isinstance(strategy, tf.distribute.TPUStrategy) or
          bool(tf.config.list_logical_devices("GPU")))


def _plan(strategy, dataset, *, total_steps, global_batch_size,
          grad_accumulation_steps, steps_per_loop, checkpoint_every_steps,
          keep_checkpoints, eval_every_steps, eval_examples, jit_compile,
          trim_padding, mixed_precision, parallel_micro_batches):
  """Checks the settings; resolves the automatic ones (`Plan`)."""
  _check_positive(total_steps=total_steps, global_batch_size=global_batch_size,
                  grad_accumulation_steps=grad_accumulation_steps,
                  steps_per_loop=steps_per_loop,
                  checkpoint_every_steps=checkpoint_every_steps,
                  keep_checkpoints=keep_checkpoints,
                  eval_every_steps=eval_every_steps)
  if eval_examples is not None:
    _check_positive(eval_examples=eval_examples)
  replicas = strategy.num_replicas_in_sync
  if global_batch_size % (replicas * grad_accumulation_steps):
    raise ValueError(
        f"train.global_batch_size={global_batch_size} is not divisible by "
        f"{replicas} replicas x {grad_accumulation_steps} accumulation steps")
  tpu = isinstance(strategy, tf.distribute.TPUStrategy)
  if trim_padding and (jit_compile or tpu):
    raise ValueError("train.trim_padding makes shapes vary, which XLA "
                     "(train.jit_compile) and TPUs cannot run; leave it unset")
  if dataset.bucket_width and tpu:
    raise ValueError("dataset.bucket_width makes batches of varying length, "
                     "which TPUs cannot run; leave it unset on TPU")
  precision, precision_reason = runtime.resolve_mixed_precision(
      mixed_precision, tpu=tpu)
  accelerator = _has_accelerator(strategy)
  parts, parts_reason = runtime.resolve_parallel_micro_batches(
      parallel_micro_batches, accelerator=accelerator,
      local_replicas=len(strategy.extended.worker_devices))
  return Plan(micro_batch=global_batch_size // grad_accumulation_steps,
              trim_padding=(not (jit_compile or tpu) if trim_padding is None
                            else trim_padding),
              precision=precision, precision_reason=precision_reason,
              parallel_micro_batches=parts, parallel_reason=parts_reason,
              accelerator=accelerator)


def _writable_dir(path):
  """Creates `path` and proves it writable, before anything is trained."""
  files.check_reachable(path)  # A gs:// model_dir without network: one line.
  try:
    tf.io.gfile.makedirs(path)
    # A name of its own: every host of a job probes the same directory.
    probe = os.path.join(path, f".write_test_{uuid.uuid4().hex}")
    with tf.io.gfile.GFile(probe, "w") as f:
      f.write("ok")
    tf.io.gfile.remove(probe)
  except (tf.errors.OpError, OSError) as e:
    raise PermissionError(f"model_dir {path} is not writable: "
                          f"{str(e).splitlines()[0]}") from None


@contextlib.contextmanager
def _checkpoint_dir(strategy, model_dir, chief):
  """Where this worker saves: `model_dir` on the chief. The other workers
  must take part in each save (it may run collectives) but their copy is
  thrown away: it goes to a scratch directory of their own, removed at the
  end."""
  if chief:
    yield model_dir
    return
  scratch = tempfile.mkdtemp(
      prefix=f"worker{distribute.worker_index(strategy)}_ckpt_")
  try:
    yield scratch
  finally:
    try:
      tf.io.gfile.rmtree(scratch)
    except (tf.errors.OpError, OSError):
      pass  # Scratch in the system's temp directory: not worth an error.


def _write_run_assets(model_dir, encoder, vocab_file):
  """Writes `encoder_config.json` and `vocab.txt` into `model_dir`."""
  with tf.io.gfile.GFile(os.path.join(model_dir, "encoder_config.json"),
                         "w") as f:
    json.dump(model_lib.encoder_config(encoder), f, indent=2, sort_keys=True)
  tf.io.gfile.copy(vocab_file, os.path.join(model_dir, "vocab.txt"),
                   overwrite=True)


def _write_operative_config(model_dir, operative_config):
  """Writes `operative_config()` to model_dir/operative_config.gin."""
  if operative_config:
    files.write_atomically(os.path.join(model_dir, "operative_config.gin"),
                           operative_config())


def _eval_batches(eval_examples, validation_examples, micro_batch):
  """Eval batches of `micro_batch` examples: `eval_examples` of them (None:
  the whole split), rounded down to whole batches."""
  available = validation_examples // micro_batch
  wanted = available if eval_examples is None else eval_examples // micro_batch
  if min(available, wanted) < 1:
    raise ValueError(
        f"train.eval_examples={eval_examples} with the validation split's "
        f"{validation_examples} examples makes no eval batch of "
        f"{micro_batch} (global batch / accumulation steps)")
  return min(available, wanted)


def _datasets(strategy, data_dir, dataset, *, seed, global_batch_size,
              micro_batch):
  """Host batches [local_replicas, B, ...] of training and validation.

  Each host reads its own shard into a plain tf.data iterator holding the
  batches of its local replicas; unlike `distribute_datasets_from_function`'s
  iterators it can be saved in a checkpoint, so a resumed run reads exactly
  the batches it would have. Only training is grouped by length; evaluation
  reads the validation split in its stored order, in micro-batches.

  Returns:
    (train_batches, eval_data): `train_batches()` builds the training
    batches anew (a second iterator of one shuffled dataset would get
    another order, see `_input_iterator`); `eval_data` is a dataset.
  """
  context = distribute.input_context(strategy)
  local_replicas = len(strategy.extended.worker_devices)
  kwargs = dict(dataclasses.asdict(dataset), data_dir=data_dir, seed=seed,
                repeat=True)

  def train_batches():
    return batching.host_batches(
        data.build_dataset(context, split="train", shuffle=True,
                           global_batch_size=global_batch_size, **kwargs),
        local_replicas, cut=bool(dataset.bucket_width))
  eval_ds = data.build_dataset(context, split="validation", shuffle=False,
                               global_batch_size=micro_batch,
                               **dict(kwargs, bucket_width=None))
  return train_batches, batching.host_batches(eval_ds, local_replicas)


@dataclasses.dataclass
class State:
  """Everything a run trains and saves.

  Attributes:
    checkpoint: the trained state (what every worker restores).
    train_iterator: this host's input position; set by `_input_iterator`.
    saved: what this host's checkpoint manager saves: `checkpoint`, plus
      `train_iterator` with one input pipeline.
    input_checkpoint: `train_iterator` alone, saved by every host of a job
      with several input pipelines (None with one).
  """
  model: tf_keras.Model
  optimizer: tf_keras.optimizers.legacy.Optimizer
  counters: step_lib.Counters
  items: dict
  checkpoint: tf.train.Checkpoint
  train_iterator: object = None
  saved: Optional[tf.train.Checkpoint] = None
  input_checkpoint: Optional[tf.train.Checkpoint] = None


def _build_state(strategy, encoder, prepared, dataset, optimizer,
                 learning_rate, precision):
  """The model, optimizer and counters, and their checkpoint (see the
  module docstring for what is saved)."""
  with strategy.scope():
    model = model_lib.build_pretrainer(
        encoder(vocab_size=prepared.vocab_size), dataset.max_seq_length,
        dataset.max_predictions_per_seq)
    opt = optimizer(learning_rate=learning_rate)
    if precision == "float16":
      opt = tf_keras.mixed_precision.LossScaleOptimizer(opt)
    counters = step_lib.new_counters()
    # Dropout draws from tf.random.Generators whose state tf_keras leaves out
    # of checkpoints; saving them makes a resumed run continue each random
    # stream instead of restarting it.
    dropout_rng = checkpointing.dropout_generators(model)
  items = dict(model=model, optimizer=opt, step=counters.step,
               dropout_rng=dropout_rng,
               consecutive_skips=counters.consecutive_skips,
               skipped_steps=counters.skipped_total)
  return State(model, opt, counters, items, tf.train.Checkpoint(**items))


def _pipelines(strategy):
  return distribute.input_context(strategy).num_input_pipelines


def _checkpoint_managers(state, strategy, model_dir, ckpt_dir,
                         keep_checkpoints):
  """The managers that save `state`; created after `_restore`, which may
  move the checkpoint pointer past damaged checkpoints."""
  chief = distribute.is_chief(strategy)
  # A non-chief's share of the checkpoint is thrown away: one is enough.
  managers = [tf.train.CheckpointManager(
      state.saved, ckpt_dir, max_to_keep=keep_checkpoints if chief else 1)]
  if state.input_checkpoint is not None:
    managers.append(tf.train.CheckpointManager(
        state.input_checkpoint, checkpointing.input_dir(
            model_dir, _pipelines(strategy),
            distribute.worker_index(strategy)),
        max_to_keep=keep_checkpoints))
  return managers


def _resume_point(strategy, model_dir):
  """The checkpoint every worker resumes from: the newest intact one, as
  the chief alone finds it (None: start afresh)."""
  found, error = None, None
  if distribute.is_chief(strategy):
    try:
      found = checkpointing.newest_intact(
          model_dir, warn=lambda line: print(line, flush=True))
    except checkpointing.CheckpointError as e:
      error = e
  # -1: no checkpoint; -2: none intact (the chief reports which).
  step = distribute.chief_value(
      strategy, -2 if error else checkpointing.checkpoint_step(found)
      if found else -1)
  if error:
    raise error
  if step == -2:
    raise checkpointing.CheckpointError(
        f"the chief found no intact checkpoint in {model_dir}; see its error")
  if step == -1:
    return None
  return found or os.path.join(model_dir, f"ckpt-{step}")


def _input_iterator(state, strategy, model_dir, latest, train_batches):
  """Sets `state.train_iterator` at the position of checkpoint `latest`.

  From the iterator saved with it for this number of hosts, if any; else
  by reading (and dropping) this host's share of the first `step` global
  batches: the input pipeline yields the same global batches for any
  number of hosts, so the batches that follow are those an uninterrupted
  run would read. Reading them through the same iterator, rather than
  `Dataset.skip`, keeps the pipeline's saved form the same as an
  uninterrupted run's.
  """
  pipelines = _pipelines(strategy)
  host = distribute.worker_index(strategy)
  step = int(state.counters.step.numpy())
  saved = latest and checkpointing.input_position(model_dir, latest,
                                                  pipelines, host)
  iterator = iter(train_batches())
  if saved:
    try:
      tf.train.Checkpoint(train_iterator=iterator).restore(
          saved).expect_partial()
    except (tf.errors.OpError, ValueError) as e:
      print(f"warning: the input position saved in {saved} cannot be "
            f"restored ({checkpointing._reason(e)}); reading the first "  # pylint: disable=protected-access
            f"{step} batches again instead", flush=True)
      saved, iterator = None, iter(train_batches())
  if latest and not saved and step:
    start = time.time()
    _advance(iterator, tf.constant(step, tf.int64))
    print(f"input position of step {step} reached by reading its batches "
          f"again ({time.time() - start:.1f} s): none was saved for "
          f"{pipelines} host(s) at {os.path.basename(latest)}", flush=True)
  state.train_iterator = iterator
  if pipelines == 1:
    state.saved = tf.train.Checkpoint(train_iterator=iterator, **state.items)
  else:
    state.saved = state.checkpoint
    state.input_checkpoint = tf.train.Checkpoint(train_iterator=iterator)


@tf.function
def _advance(iterator, count):
  for _ in tf.range(count):
    next(iterator)


def _restore(state, strategy, model_dir, init_checkpoint, train_batches):
  """Resumes from the newest intact checkpoint, or warm-starts the model
  from `init_checkpoint`; returns the step training starts at."""
  latest = _resume_point(strategy, model_dir)
  if latest:
    state.checkpoint.restore(latest).expect_partial()
    if distribute.is_chief(strategy):
      checkpointing.point_to(model_dir, latest)  # Past damaged ones, if any.
    print(f"resumed from {latest} at step "
          f"{int(state.counters.step.numpy())}", flush=True)
  _input_iterator(state, strategy, model_dir, latest, train_batches)
  if not latest and init_checkpoint:
    path = (tf.train.latest_checkpoint(init_checkpoint)
            if tf.io.gfile.isdir(init_checkpoint) else init_checkpoint)
    if not path:
      raise FileNotFoundError(f"train.init_checkpoint {init_checkpoint} "
                              f"holds no checkpoint")
    tf.train.Checkpoint(model=state.model).restore(path).expect_partial()
    print(f"warm-started model weights from {path}", flush=True)
  return int(state.counters.step.numpy())


def _start_files(state, strategy, model_dir, ckpt_dir, keep_checkpoints,
                 vocab_file, current):
  """Writes what a started run writes, once restored (so that a run that
  fails to start leaves no trace); returns the checkpoint managers."""
  if distribute.is_chief(strategy):
    # Records after the restored step belong to work done again.
    reporting.forget_after(model_dir, current)
    # What an export needs besides the weights (trainer/export.py).
    _write_run_assets(model_dir, state.model.encoder_network, vocab_file)
  return _checkpoint_managers(state, strategy, model_dir, ckpt_dir,
                              keep_checkpoints)


def _evaluator(strategy, model, plan, eval_data, eval_batches, reporter):
  """`evaluate(at_step, report=True)`: the eval metrics, reported."""
  eval_loop = step_lib.make_eval_loop(strategy, model, plan.trim_padding,
                                      plan.parallel_micro_batches)

  def evaluate(at_step, report=True):
    totals = eval_loop(iter(eval_data), tf.constant(eval_batches))
    metrics = model_lib.summarize(
        dict(zip(model_lib.METRIC_SUMS, totals.numpy())))
    if report:
      reporter.eval(at_step, metrics)
    return metrics
  return evaluate


def _loop_metrics(outputs, done, learning_rate, skipped_total):
  """A host loop's metrics from `train_loop`'s outputs (`done` steps)."""
  totals, norm_sum, skipped, norms, _ = outputs
  skipped = int(skipped)
  metrics = model_lib.summarize(
      dict(zip(model_lib.METRIC_SUMS, totals.numpy())))
  # Trust ratios describe the loop's last update; a loop of skipped steps
  # has none (and LAMB's record of earlier ones is not saved).
  norms = {k: v for k, v in norms.items()
           if done > skipped or not k.startswith("trust_ratio_")}
  if "noise_trace_sum" in norms:
    noise = noise_scale.ratio(norms.pop("noise_trace_sum"),
                              norms.pop("noise_grad_sq_sum"))
    if np.isfinite(noise):
      norms["gradient_noise_scale"] = noise
  metrics.update(learning_rate=learning_rate,
                 grad_norm=float(norm_sum) / max(done - skipped, 1),
                 skipped_steps=skipped, skipped_steps_total=skipped_total,
                 **{k: float(v) for k, v in norms.items()})
  return metrics


def _start_line(total_steps, global_batch_size, replicas,
                grad_accumulation_steps, plan, variables, vocab_size, start):
  parallel = (f", each as {plan.parallel_micro_batches} parts computed at "
              "once" if plan.parallel_micro_batches > 1 else "")
  return (f"training {total_steps} steps of {global_batch_size} examples on "
          f"{replicas} replica(s), {grad_accumulation_steps} micro-batch(es) "
          f"per step{parallel} (train.parallel_micro_batches="
          f"{plan.parallel_micro_batches}, {plan.parallel_reason}); "
          f"{sum(int(np.prod(v.shape)) for v in variables):,} parameters; "
          f"vocab {vocab_size}; starting at step {start}")


def _run_loop(state, train_loop, evaluate, reporter, managers, *, current,
              total_steps, global_batch_size, steps_per_loop,
              checkpoint_every_steps, eval_every_steps,
              max_consecutive_skips, learning_rate, after_first_loop):
  """Host loops until `total_steps`: log, evaluate, save, stop on request.

  Returns the last evaluation's metrics (None if none was due).
  """
  counters, opt = state.counters, state.optimizer
  metrics = None
  first_loop = True
  while current < total_steps:
    boundary = min(total_steps,
                   (current // checkpoint_every_steps + 1) *
                   checkpoint_every_steps,
                   (current // eval_every_steps + 1) * eval_every_steps)
    start = time.time()
    outputs = train_loop(state.train_iterator, tf.constant(
        min(steps_per_loop, boundary - current)))
    outputs[0].numpy()  # Waits for the loop, for the timing.
    seconds = time.time() - start
    done = int(counters.step.numpy()) - current
    current += done
    loop_metrics = _loop_metrics(
        outputs, done,
        float(learning_rate(tf.maximum(opt.iterations - 1, 0))),
        int(counters.skipped_total.numpy()))
    if not np.isfinite(loop_metrics["param_norm"]):
      raise TrainingError(f"parameters became non-finite at step {current}")
    reporter.train(current, loop_metrics, done, seconds,
                   examples=done * global_batch_size)
    in_a_row = int(counters.consecutive_skips.numpy())
    if in_a_row >= max_consecutive_skips:
      raise TrainingError(
          f"{in_a_row} consecutive non-finite steps (steps "
          f"{current - in_a_row + 1} to {current}); stopping "
          f"at step {current}, the last good checkpoint is kept: "
          f"{managers[0].latest_checkpoint or 'none was saved yet'}")
    if first_loop:
      after_first_loop()
      first_loop = False
    if current % eval_every_steps == 0 or current == total_steps:
      metrics = evaluate(current)
    stopped = bool(outputs[4]) and current < total_steps
    if (current % checkpoint_every_steps == 0 or current == total_steps or
        stopped):
      checkpointing.save(managers, current)
    if stopped:
      raise preemption.Preempted(
          f"stopped on SIGTERM after step {current}/{total_steps}; saved "
          f"{managers[0].latest_checkpoint}; run the same command to resume")
  return metrics


def train(model_dir, data_dir=None, strategy=None, gradient_hook=None,
          operative_config=None, *, encoder, dataset, learning_rate_schedule,
          total_steps, global_batch_size, grad_accumulation_steps=1,
          steps_per_loop=100, checkpoint_every_steps=1000, keep_checkpoints=3,
          eval_every_steps=1000, eval_examples=None, seed=0,
          init_checkpoint=None, optimizer=LAMB, clip_global_norm=None,
          jit_compile=False, trim_padding=None, mixed_precision="auto",
          parallel_micro_batches=None, deterministic=False,
          max_consecutive_skips=10):
  """Pretrains BERT and returns the final eval metrics.

  Args:
    model_dir: where checkpoints, summaries and metrics.jsonl go; a run
      resumes from the latest checkpoint found here.
    data_dir: where the dataset is built (once) and read.
    strategy: a `tf.distribute.Strategy` (default: the current one).
    gradient_hook: `hook(grads, steps_done) -> grads` on the all-reduced
      gradients; fault injection in tests (`tests/faulty_main.py`), None in
      training.
    operative_config: a callable returning the text of the run's
      configuration, written to model_dir/operative_config.gin by the chief
      after the first loop (`trainer.configurables.train` passes gin's).
    encoder: builds the encoder network: called with `vocab_size=` (the
      dataset's), e.g. `networks.BertEncoderV2` or gin's `@BertEncoder`.
    dataset: a `DatasetSettings`: what is trained on.
    learning_rate_schedule: `f(total_steps)` -> the learning-rate schedule,
      e.g. `schedule.learning_rate_schedule` with its arguments bound.
    total_steps: optimizer steps to train.
    global_batch_size: examples per optimizer step, over all replicas and
      micro-batches.
    grad_accumulation_steps: micro-batches summed into one optimizer step.
    steps_per_loop: optimizer steps per `tf.function` call (and per log line).
    checkpoint_every_steps: save period, in steps (also saved at the end).
    keep_checkpoints: how many recent checkpoints to keep.
    eval_every_steps: eval period, in steps (also evaluated at the end).
    eval_examples: validation examples per evaluation, in batches of
      `global_batch_size / grad_accumulation_steps` (rounded down to whole
      batches; None: the whole split), so that how much is evaluated does
      not depend on the accumulation.
    seed: seeds weight init, data order, masking and dropout (not the
      pairing: `dataset.pairing_seed`).
    init_checkpoint: checkpoint (or directory) whose model weights start a
      fresh run, e.g. phase 1's for phase 2.
    optimizer: optimizer class, called with `learning_rate=<schedule>`;
      `@LAMB` (configured with `LAMB.<arg>`) or any tf_keras legacy optimizer.
    clip_global_norm: clip the aggregated gradient to this global norm.
    jit_compile: XLA-compile the forward and backward pass.
    trim_padding: sort each replica's batch by length, cut each micro-batch
      to its longest sequence and run the masked-LM head on the real
      predictions only: the same loss and gradient as the padded batch,
      less padding computed (more micro-batches, less padding). It makes
      shapes vary, so None (the default) turns it on except on TPU and
      under `jit_compile`.
    mixed_precision: "auto" (bfloat16 on TPUs, GPUs of compute capability
      8.0+ and CPUs with native bfloat16; float16 with dynamic loss scaling
      on GPUs of compute capability 7.x; float32 elsewhere, see
      `runtime.resolve_mixed_precision`), or explicitly None / "float32",
      "bfloat16", "float16".
    parallel_micro_batches: parts of each micro-batch computed side by side
      (the same sum, rounded differently); None: automatic, see
      `runtime.resolve_parallel_micro_batches` (`trainer.main` resolves it
      before TensorFlow starts, sizes the op thread pool to match and
      records the value in operative_config.gin).
    deterministic: make ops deterministic so that a run killed at any moment
      (even SIGKILL during a checkpoint write) and restarted with the same
      command ends with the same weights, optimizer state and logged losses
      as an uninterrupted run, bit for bit on CPU, dropout included. Without
      it the resumed run still continues from the same data position,
      dropout random stream and optimizer state, but some kernels (CPU and
      GPU reductions split across threads, GPU atomics, autotuned
      convolutions) may sum in a different order from run to run, so the
      weights agree only to float rounding, and the difference grows as
      training goes on; it is not a loss of work. It costs some speed.
    max_consecutive_skips: stop after this many non-finite steps in a row.
      A step whose loss or gradients hold NaN/Inf is skipped: weights, the
      optimizer's slots and its iteration count stay exactly as they were
      (the step counter and the data position move on). Skips are counted
      in metrics.jsonl and TensorBoard (`skipped_steps` per log line,
      `skipped_steps_total` since the start). In float16, the
      `LossScaleOptimizer` skips the step itself and, by its contract,
      still advances the iteration count (and so the learning-rate
      schedule) by one; a loss-scale overflow (finite losses, non-finite
      gradients, loss scale above 1) is skipped and counted but does not
      count toward this limit, since halving the scale is its cure. On CPU
      the run stops right after the step that reaches the limit; on TPUs
      and GPUs at the end of that host loop (`steps_per_loop`).

  Returns:
    A dict of the final evaluation's metrics.

  Raises:
    preemption.Preempted: SIGTERM arrived. The trainer finished the step it
      was in on CPU (within one step, plus the checkpoint write; an eval or
      save under way finishes first), or the host loop it was in on TPUs and
      GPUs (up to `steps_per_loop` steps: keep them shorter than the
      scheduler's grace period), saved a checkpoint at that step and
      stopped; `trainer.main` then exits with code 143
      (`preemption.EXIT_CODE`), and the same command resumes.
    TrainingError: `max_consecutive_skips` non-finite steps in a row, or the
      parameters became non-finite; the last checkpoint written is kept.
    checkpointing.CheckpointError: a checkpoint cannot be saved (the previous
      ones stay intact), or `model_dir` holds checkpoints of which none is
      intact.
  """
  strategy = strategy or tf.distribute.get_strategy()
  plan = _plan(strategy, dataset, total_steps=total_steps,
               global_batch_size=global_batch_size,
               grad_accumulation_steps=grad_accumulation_steps,
               steps_per_loop=steps_per_loop,
               checkpoint_every_steps=checkpoint_every_steps,
               keep_checkpoints=keep_checkpoints,
               eval_every_steps=eval_every_steps, eval_examples=eval_examples,
               jit_compile=jit_compile, trim_padding=trim_padding,
               mixed_precision=mixed_precision,
               parallel_micro_batches=parallel_micro_batches)
  chief = distribute.is_chief(strategy)
  _writable_dir(model_dir)
  with _checkpoint_dir(strategy, model_dir, chief) as ckpt_dir, \
      runtime.training_settings(seed=seed, deterministic=deterministic,
                                precision=plan.precision):
    # The chief builds a missing dataset; the other workers wait for it.
    prepared = data.prepare_dataset(data_dir, build=chief,
                                    **dataset.identity())
    eval_batches = _eval_batches(eval_examples,
                                 prepared.num_examples["validation"],
                                 plan.micro_batch)
    train_batches, eval_data = _datasets(
        strategy, data_dir, dataset, seed=seed,
        global_batch_size=global_batch_size, micro_batch=plan.micro_batch)
    lr = learning_rate_schedule(total_steps)
    state = _build_state(strategy, encoder, prepared, dataset, optimizer, lr,
                         plan.precision)
    current = _restore(state, strategy, model_dir, init_checkpoint,
                       train_batches)
    managers = _start_files(state, strategy, model_dir, ckpt_dir,
                            keep_checkpoints, prepared.vocab_file, current)
    variables = model_lib.trained_variables(state.model)
    # Set from a watcher thread on SIGTERM and read before every step; a
    # plain host variable, outside the strategy, since each worker has its
    # own.
    stop_requested = tf.Variable(False, trainable=False)
    train_loop = step_lib.make_train_loop(
        strategy, state.model, state.optimizer, variables, state.counters,
        stop_requested, global_batch_size=global_batch_size,
        grad_accumulation_steps=grad_accumulation_steps,
        clip_global_norm=clip_global_norm, jit_compile=jit_compile,
        trim_padding=plan.trim_padding,
        parallel_micro_batches=plan.parallel_micro_batches,
        max_consecutive_skips=max_consecutive_skips,
        gradient_hook=gradient_hook,
        # On TPUs and GPUs stop requests and runs of skips are acted on at
        # the end of each host loop, so the host never waits on a step.
        check_every_step=not plan.accelerator)
    reporter = reporting.Reporter(model_dir, total_steps, chief)
    evaluate = _evaluator(strategy, state.model, plan, eval_data,
                          eval_batches, reporter)
    # From here on SIGTERM means: stop after the current step and save
    # (before, nothing has been trained yet, so it simply ends the process).
    with preemption.stop_on_signal(lambda: stop_requested.assign(True)):
      try:
        reporter.info(_start_line(
            total_steps, global_batch_size, strategy.num_replicas_in_sync,
            grad_accumulation_steps, plan, variables, prepared.vocab_size,
            current))
        reporter.info(runtime.describe_precision(plan.precision,
                                                 plan.precision_reason))
        metrics = _run_loop(
            state, train_loop, evaluate, reporter, managers, current=current,
            total_steps=total_steps, global_batch_size=global_batch_size,
            steps_per_loop=steps_per_loop,
            checkpoint_every_steps=checkpoint_every_steps,
            eval_every_steps=eval_every_steps,
            max_consecutive_skips=max_consecutive_skips, learning_rate=lr,
            after_first_loop=functools.partial(
                _write_operative_config, model_dir,
                operative_config if chief else None))
      finally:
        reporter.close()
    if metrics is None:  # Finished before this start; logged then.
      metrics = evaluate(current, report=False)
  return metrics
