"""BERT pretraining with LAMB under any `tf.distribute` strategy.

`train` builds the data, the model, the optimizer and the checkpoint, then
alternates host loops of `steps_per_loop` optimizer steps (`trainer/step.py`,
where the gradients are computed, all-reduced and applied) with logging,
evaluation and checkpointing at loop boundaries.

Checkpoint contents and restore order: `tf.train.Checkpoint(model, optimizer,
step, train_iterator, dropout_rng, consecutive_skips, skipped_steps)`. On
start the newest intact checkpoint in `model_dir` is restored (a damaged one
is reported and skipped, see `checkpointing`): model weights, the input
iterator's position, the dropout layers' random generators and the skip
counters at once, the optimizer's iterations and hyperparameters at once, and
its `m`/`v` slots when the first step creates them (TensorFlow's deferred
restoration), so the first resumed step uses the saved moments. Without a
checkpoint in `model_dir`, `init_checkpoint` warm-starts the model weights
only (fresh optimizer, schedule and data position), as phase 2 of the paper's
recipe does.
"""

import functools
import json
import os
import tempfile
import time

import gin
import numpy as np
import tensorflow as tf
import tf_keras

import data
from lamb import LAMB
from trainer import checkpointing
from trainer import distribute
from trainer import model as model_lib
from trainer import noise_scale
from trainer import preemption
from trainer import reporting
from trainer import runtime
from trainer import schedule as schedule_lib
from trainer import step as step_lib

gin.external_configurable(LAMB, "LAMB", module="lamb")


class TrainingError(RuntimeError):
  """A run that cannot go on (e.g. too many non-finite steps in a row)."""


@gin.configurable(module="trainer")
def dataset(corpus="embedded", vocab_size=8192, vocab_file=None,
            max_seq_length=128, max_predictions_per_seq=20,
            masking="dynamic", bucket_width=None):
  """What the model is trained on: keyword arguments for the `data` package.

  Args:
    corpus: "embedded" (built offline), a glob of text files, or "tfds:NAME".
    vocab_size: WordPiece vocabulary size learned from the corpus.
    vocab_file: a user vocab.txt instead of learning one.
    max_seq_length: tokens per example (128 phase 1, 512 phase 2).
    max_predictions_per_seq: masked positions per example (20 at 128, 80 at
      512: 15% of the tokens, as in BERT).
    masking: "dynamic" (new masks every epoch) or "static".
    bucket_width: group training examples by length in buckets of this many
      tokens and cut each batch to its longest example (rounded up to a
      multiple of it), so that padding is not computed: the same examples
      and losses for less work, in another order. None: every batch is
      `max_seq_length` long (static shapes, as TPUs need).
  """
  return dict(corpus=corpus, vocab_size=vocab_size, vocab_file=vocab_file,
              max_seq_length=max_seq_length,
              max_predictions_per_seq=max_predictions_per_seq,
              masking=masking, bucket_width=bucket_width)


def _check_positive(**values):
  for name, value in values.items():
    if value is None or value <= 0:
      raise ValueError(f"train.{name} must be > 0, got {value}")


def _writable_dir(path):
  """Creates `path` and proves it writable, before anything is trained."""
  try:
    tf.io.gfile.makedirs(path)
    probe = os.path.join(path, ".write_test")
    with tf.io.gfile.GFile(probe, "w") as f:
      f.write("ok")
    tf.io.gfile.remove(probe)
  except (tf.errors.OpError, OSError) as e:
    raise PermissionError(f"model_dir {path} is not writable: "
                          f"{str(e).splitlines()[0]}") from None


def _write_run_assets(model_dir, encoder, vocab_file):
  """Writes `encoder_config.json` and `vocab.txt` into `model_dir`."""
  with tf.io.gfile.GFile(os.path.join(model_dir, "encoder_config.json"),
                         "w") as f:
    json.dump(model_lib.encoder_config(encoder), f, indent=2, sort_keys=True)
  tf.io.gfile.copy(vocab_file, os.path.join(model_dir, "vocab.txt"),
                   overwrite=True)


@gin.configurable(module="trainer", denylist=[
    "model_dir", "data_dir", "strategy", "parallel_micro_batches"])
def train(model_dir, data_dir=None, strategy=None, parallel_micro_batches=1, *,
          total_steps=gin.REQUIRED, global_batch_size=gin.REQUIRED,
          grad_accumulation_steps=1, steps_per_loop=100,
          checkpoint_every_steps=1000, keep_checkpoints=3,
          eval_every_steps=1000, eval_steps=50, seed=0, init_checkpoint=None,
          optimizer=LAMB, clip_global_norm=None, jit_compile=False,
          trim_padding=None, mixed_precision="auto", deterministic=False,
          max_consecutive_skips=10):
  """Pretrains BERT and returns the final eval metrics.

  Args:
    model_dir: where checkpoints, summaries and metrics.jsonl go; a run
      resumes from the latest checkpoint found here.
    data_dir: where the dataset is built (once) and read.
    strategy: a `tf.distribute.Strategy` (default: the current one).
    parallel_micro_batches: parts of each micro-batch computed side by side
      (the same sum; see `distribute.cpu_parallelism`).
    total_steps: optimizer steps to train.
    global_batch_size: examples per optimizer step, over all replicas and
      micro-batches.
    grad_accumulation_steps: micro-batches summed into one optimizer step.
    steps_per_loop: optimizer steps per `tf.function` call (and per log line).
    checkpoint_every_steps: save period, in steps (also saved at the end).
    keep_checkpoints: how many recent checkpoints to keep.
    eval_every_steps: eval period, in steps (also evaluated at the end).
    eval_steps: most eval batches per evaluation.
    seed: seeds weight init, data order, masking and dropout.
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
      `skipped_steps_total` since the start).

  Returns:
    A dict of the final evaluation's metrics.

  Raises:
    preemption.Preempted: SIGTERM arrived. The trainer finished the step it
      was in (within one step, plus the checkpoint write; an eval or save
      under way finishes first), saved a checkpoint at that step and
      stopped; `trainer.main` then exits with code 143
      (`preemption.EXIT_CODE`), and the same command resumes.
    TrainingError: `max_consecutive_skips` non-finite steps in a row, or the
      parameters became non-finite; the last checkpoint written is kept.
    checkpointing.CheckpointError: a checkpoint cannot be saved (the previous
      ones stay intact), or `model_dir` holds checkpoints of which none is
      intact.
  """
  strategy = strategy or tf.distribute.get_strategy()
  if parallel_micro_batches < 1:
    raise ValueError(f"parallel_micro_batches must be >= 1, got "
                     f"{parallel_micro_batches}")
  _check_positive(total_steps=total_steps, global_batch_size=global_batch_size,
                  grad_accumulation_steps=grad_accumulation_steps,
                  steps_per_loop=steps_per_loop,
                  checkpoint_every_steps=checkpoint_every_steps,
                  keep_checkpoints=keep_checkpoints,
                  eval_every_steps=eval_every_steps, eval_steps=eval_steps)
  replicas = strategy.num_replicas_in_sync
  if global_batch_size % (replicas * grad_accumulation_steps):
    raise ValueError(
        f"train.global_batch_size={global_batch_size} is not divisible by "
        f"{replicas} replicas x {grad_accumulation_steps} accumulation steps")
  static_shapes = jit_compile or isinstance(strategy,
                                           tf.distribute.TPUStrategy)
  if trim_padding and static_shapes:
    raise ValueError("train.trim_padding makes shapes vary, which XLA "
                     "(train.jit_compile) and TPUs cannot run; leave it unset")
  if trim_padding is None:
    trim_padding = not static_shapes
  mixed_precision, precision_reason = runtime.resolve_mixed_precision(
      mixed_precision,
      tpu=isinstance(strategy, tf.distribute.TPUStrategy))
  chief = distribute.is_chief(strategy)
  # Non-chief workers write their (required) share of a checkpoint to a
  # scratch directory, which is thrown away.
  ckpt_dir = model_dir if chief else os.path.join(
      tempfile.gettempdir(), f"worker{distribute.worker_index(strategy)}_ckpt")
  _writable_dir(ckpt_dir)

  if deterministic:
    tf.config.experimental.enable_op_determinism()
  tf_keras.utils.set_random_seed(seed)
  # Dropout draws from a tf.random.Generator whose state is a variable that
  # the checkpoint saves, so a resumed run continues the same random stream.
  tf_keras.backend.experimental.enable_tf_random_generator()
  runtime.set_precision_policy(mixed_precision)

  data_kwargs = dataset()
  if data_kwargs["bucket_width"] and isinstance(
      strategy, tf.distribute.TPUStrategy):
    raise ValueError("dataset.bucket_width makes batches of varying length, "
                     "which TPUs cannot run; leave it unset on TPU")
  info = data.prepare_dataset(data_dir, seed=seed, **{
      k: data_kwargs[k] for k in ("corpus", "vocab_size", "vocab_file",
                                  "max_seq_length")})
  micro_batch = global_batch_size // grad_accumulation_steps
  eval_batches = min(eval_steps,
                     info.num_examples["validation"] // micro_batch)
  if eval_batches < 1:
    raise ValueError(
        f"the validation split has {info.num_examples['validation']} "
        f"examples, fewer than one eval batch of {micro_batch}")

  # Each host reads its own shard into a plain tf.data iterator holding the
  # batches of its local replicas, [local_replicas, per_replica_batch, ...];
  # unlike `distribute_datasets_from_function`'s iterators it can be saved in
  # a checkpoint, so a resumed run reads exactly the batches it would have.
  local_replicas = len(strategy.extended.worker_devices)
  context = distribute.input_context(strategy)

  def make_dataset(split, batch_size):
    # Only training is grouped by length; evaluation reads the validation
    # split in its stored order.
    bucket_width = data_kwargs["bucket_width"] if split == "train" else None
    ds = data.build_dataset(
        context, data_dir=data_dir, split=split, global_batch_size=batch_size,
        seed=seed, shuffle=(split == "train"), repeat=True,
        **dict(data_kwargs, bucket_width=bucket_width)).batch(
            local_replicas, drop_remainder=True)
    if bucket_width:
      # One cut for the host batch, so that all its replicas' batches agree
      # in shape; the input pipeline makes it, off the training step.
      ds = ds.map(functools.partial(data.trim_padding,
                                    multiple=bucket_width))
    return ds

  train_data = make_dataset("train", global_batch_size)
  eval_data = make_dataset("validation", micro_batch)

  with strategy.scope():
    model = model_lib.build_pretrainer(
        info.vocab_size, data_kwargs["max_seq_length"],
        data_kwargs["max_predictions_per_seq"])
    lr_schedule = schedule_lib.learning_rate_schedule(total_steps)
    opt = optimizer(learning_rate=lr_schedule)
    if mixed_precision == "float16":
      opt = tf_keras.mixed_precision.LossScaleOptimizer(opt)
    step, consecutive_skips, skipped_total = (
        step_lib.new_counter() for _ in range(3))
    # Dropout draws from tf.random.Generators whose state tf_keras leaves out
    # of checkpoints; saving them makes a resumed run continue each random
    # stream instead of restarting it.
    dropout_rng = checkpointing.dropout_generators(model)
  if chief:  # What an export needs besides the weights (trainer/export.py).
    _write_run_assets(model_dir, model.encoder_network, info.vocab_file)
  # Set from a watcher thread on SIGTERM and read before every step; a plain
  # host variable, outside the strategy, because each worker has its own.
  stop_requested = tf.Variable(False, trainable=False)
  variables = model_lib.trained_variables(model)
  train_iter = iter(train_data)
  # The chief's checkpoint holds its input position; other hosts keep theirs
  # in model_dir/input_worker<i>, saved under the same checkpoint numbers.
  worker = distribute.worker_index(strategy)
  ckpt = tf.train.Checkpoint(model=model, optimizer=opt, step=step,
                             dropout_rng=dropout_rng,
                             consecutive_skips=consecutive_skips,
                             skipped_steps=skipped_total)
  if worker == 0:
    ckpt.train_iterator = train_iter
  input_ckpt = tf.train.Checkpoint(train_iterator=train_iter)
  input_dir = os.path.join(model_dir, f"input_worker{worker}")
  latest = checkpointing.newest_intact(
      model_dir, warn=lambda line: print(line, flush=True))
  if latest:
    ckpt.restore(latest).expect_partial()
    if worker > 0:
      input_ckpt.restore(os.path.join(
          input_dir, os.path.basename(latest))).expect_partial()
    if chief:
      checkpointing.point_to(model_dir, latest)  # Past damaged ones, if any.
    print(f"resumed from {latest} at step {int(step.numpy())}", flush=True)
  elif init_checkpoint:
    path = (tf.train.latest_checkpoint(init_checkpoint)
            if tf.io.gfile.isdir(init_checkpoint) else init_checkpoint)
    if not path:
      raise FileNotFoundError(f"train.init_checkpoint {init_checkpoint} "
                              f"holds no checkpoint")
    tf.train.Checkpoint(model=model).restore(path).expect_partial()
    print(f"warm-started model weights from {path}", flush=True)
  # Created only now, so that a run that fails to start leaves no trace.
  if chief:  # Records after the restored step belong to work done again.
    reporting.forget_after(model_dir, int(step.numpy()))
  managers = [tf.train.CheckpointManager(ckpt, ckpt_dir,
                                         max_to_keep=keep_checkpoints)]
  if worker > 0:
    managers.append(tf.train.CheckpointManager(
        input_ckpt, input_dir, max_to_keep=keep_checkpoints))
  manager = managers[0]
  reporter = reporting.Reporter(model_dir, total_steps, chief)

  counters = step_lib.Counters(step, consecutive_skips, skipped_total,
                               stop_requested)
  train_loop = step_lib.make_train_loop(
      strategy, model, opt, variables, counters,
      global_batch_size=global_batch_size,
      grad_accumulation_steps=grad_accumulation_steps,
      clip_global_norm=clip_global_norm, jit_compile=jit_compile,
      trim_padding=trim_padding, parallel_parts=parallel_micro_batches,
      max_consecutive_skips=max_consecutive_skips)
  eval_loop = step_lib.make_eval_loop(strategy, model, trim_padding,
                                      parallel_micro_batches)

  def evaluate(at_step, report=True):
    totals = eval_loop(iter(eval_data), tf.constant(eval_batches))
    metrics = model_lib.summarize(
        dict(zip(model_lib.METRIC_SUMS, totals.numpy())))
    if report:
      reporter.eval(at_step, metrics)
    return metrics

  # From here on SIGTERM means: stop after the current step and save (before,
  # nothing has been trained yet, so it simply ends the process).
  with preemption.stop_on_signal(lambda: stop_requested.assign(True)):
    current = int(step.numpy())
    parallel_note = (f", each as {parallel_micro_batches} parts computed "
                     "at once" if parallel_micro_batches > 1 else "")
    reporter.info(f"training {total_steps} steps of {global_batch_size} "
                  f"examples on {replicas} replica(s), "
                  f"{grad_accumulation_steps} micro-batch(es) per step"
                  f"{parallel_note}; "
                  f"{sum(int(np.prod(v.shape)) for v in variables):,} "
                  f"parameters; vocab "
                  f"{info.vocab_size}; starting at step {current}")
    reporter.info(runtime.describe_precision(mixed_precision,
                                             precision_reason))
    metrics = None
    wrote_config = False
    while current < total_steps:
      boundary = min(total_steps,
                     (current // checkpoint_every_steps + 1) *
                     checkpoint_every_steps,
                     (current // eval_every_steps + 1) * eval_every_steps)
      num_steps = min(steps_per_loop, boundary - current)
      start = time.time()
      totals, norm_sum, skipped, norms, stopped = train_loop(
          train_iter, tf.constant(num_steps))
      totals = totals.numpy()
      seconds = time.time() - start
      done = int(step.numpy()) - current
      current += done
      skipped = int(skipped)
      loop_metrics = model_lib.summarize(
          dict(zip(model_lib.METRIC_SUMS, totals)))
      # Trust ratios describe the loop's last update; a loop of skipped
      # steps has none (and LAMB's record of earlier ones is not saved).
      norms = {k: v for k, v in norms.items()
               if done > skipped or not k.startswith("trust_ratio_")}
      if "noise_trace_sum" in norms:
        noise = noise_scale.ratio(norms.pop("noise_trace_sum"),
                                  norms.pop("noise_grad_sq_sum"))
        if np.isfinite(noise):
          norms["gradient_noise_scale"] = noise
      loop_metrics.update(
          learning_rate=float(lr_schedule(tf.maximum(opt.iterations - 1, 0))),
          grad_norm=float(norm_sum) / max(done - skipped, 1),
          skipped_steps=skipped,
          skipped_steps_total=int(skipped_total.numpy()),
          **{k: float(v) for k, v in norms.items()})
      if not np.isfinite(loop_metrics["param_norm"]):
        raise TrainingError(f"parameters became non-finite at step {current}")
      reporter.train(current, loop_metrics, done, seconds,
                     examples=done * global_batch_size)
      if int(consecutive_skips.numpy()) >= max_consecutive_skips:
        raise TrainingError(
            f"{max_consecutive_skips} consecutive non-finite steps (steps "
            f"{current - max_consecutive_skips + 1} to {current}); stopping "
            f"at step {current}, the last good checkpoint is kept: "
            f"{manager.latest_checkpoint or 'none was saved yet'}")
      if chief and not wrote_config:
        with tf.io.gfile.GFile(
            os.path.join(model_dir, "operative_config.gin"), "w") as f:
          f.write(gin.operative_config_str())
        wrote_config = True
      if current % eval_every_steps == 0 or current == total_steps:
        metrics = evaluate(current)
      stopped = bool(stopped) and current < total_steps
      if (current % checkpoint_every_steps == 0 or current == total_steps or
          stopped):
        checkpointing.save(managers, current)
      if stopped:
        reporter.close()
        raise preemption.Preempted(
            f"stopped on SIGTERM after step {current}/{total_steps}; saved "
            f"{manager.latest_checkpoint}; run the same command to resume")
  if metrics is None:  # Finished before this start, its eval logged then.
    metrics = evaluate(current, report=False)
  reporter.close()
  return metrics
