"""The compiled work: a host loop of optimizer steps, and evaluation.

One optimizer step sees the global batch: each replica gets its share in one
batch from the input pipeline, splits it into `grad_accumulation_steps`
micro-batches (and each of those into parts, `data/batching.py`) and sums
their gradients; then the replicas' gradients are all-reduced once, clipped,
checked for NaN/Inf and applied. `train_loop` runs up to `num_steps` such
steps in one `tf.function` call (the TPU host-loop pattern), so the host only
wakes up at logging boundaries.
"""

import dataclasses

import tensorflow as tf
import tf_keras

from data import batching
from trainer import model as model_lib
from trainer import noise_scale


@dataclasses.dataclass
class Counters:
  """The training-state counters the loop updates; all are checkpointed.

  Attributes:
    step: optimizer steps taken or skipped.
    consecutive_skips: non-finite steps in a row, up to now.
    skipped_total: non-finite steps since the start of the run.
  """
  step: tf.Variable
  consecutive_skips: tf.Variable
  skipped_total: tf.Variable


def new_counters():
  """`Counters` at zero, kept by the first replica (call in scope)."""
  def counter():
    return tf.Variable(0, dtype=tf.int64, trainable=False,
                       aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
  return Counters(counter(), counter(), counter())


def to_replicas(strategy, host_batch):
  """Hands each local replica its row of a [local_replicas, ...] batch."""
  local_replicas = len(strategy.extended.worker_devices)
  return strategy.experimental_distribute_values_from_function(
      lambda ctx: tf.nest.map_structure(
          lambda x: x[ctx.replica_id_in_sync_group % local_replicas],
          host_batch))


def _stacked_sums(sums):
  return tf.stack([sums[k] for k in model_lib.METRIC_SUMS])


def make_grad_fn(model, optimizer, variables, *, global_batch_size,
                 trim_padding, jit_compile):
  """`grad_fn(batch, mlm_denominator)`: one piece's gradients and sums.

  Normalizers of the global batch's loss, known before the backward pass:
  the MLM loss is averaged over all masked positions of the global batch and
  NSP over its examples. Each replica divides its (micro-)batch sums by these
  global counts, so the SUM of all replicas' and micro-batches' gradients is
  exactly the gradient of the global-batch loss, however the batch is split.
  That is why gradients are summed, not averaged, across replicas.
  """
  loss_scaled = isinstance(optimizer,
                           tf_keras.mixed_precision.LossScaleOptimizer)

  def grad_fn(batch, mlm_denominator):
    with tf.GradientTape() as tape:
      outputs = model_lib.forward(model, batch, training=True,
                                  compact=trim_padding)
      sums = model_lib.metric_sums(batch, outputs)
      loss = (sums["mlm_loss_sum"] / mlm_denominator +
              sums["nsp_loss_sum"] / global_batch_size)
      if loss_scaled:
        loss = optimizer.get_scaled_loss(loss)
    # Embedding gradients come as IndexedSlices; dense sums accumulate
    # across micro-batches and all-reduce as one list.
    grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]
    return grads, _stacked_sums(sums)

  return tf.function(grad_fn, jit_compile=True) if jit_compile else grad_fn


def apply_if(optimizer, variables, ok, grads):
  """Applies `grads` only where `ok`: a skipped step changes nothing."""
  def apply(grads):
    return optimizer.apply_gradients(zip(grads, variables),
                                     experimental_aggregate_gradients=False)

  if isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer):
    return apply(grads)  # Skips non-finite steps itself, rescaling.
  if tf.__internal__.distribute.strategy_supports_no_merge_call():
    return tf.cond(ok, lambda: tf.group(apply(grads)), tf.no_op)

  # MirroredStrategy cannot `merge_call` (as apply_gradients does) inside a
  # cond branch in replica context, so the cond runs in cross-replica
  # context, as tf_keras's LossScaleOptimizer does.
  def cross_replica(distribution, ok, grads):
    ok = distribution.experimental_local_results(ok)[0]
    return tf.cond(ok, lambda: tf.group(
        distribution.extended.call_for_each_replica(apply, args=(grads,))),
                   tf.no_op)
  return tf.distribute.get_replica_context().merge_call(
      cross_replica, args=(ok, grads))


def make_replica_step(optimizer, variables, grad_fn, *, pieces,
                      global_batch_size, grad_accumulation_steps,
                      parallel_micro_batches, trim_padding,
                      clip_global_norm=None, gradient_hook=None):
  """`replica_step(batch, stop, step)`, run on each replica by `strategy.run`.

  Returns the step's summed metrics, the gradient norm, whether the step
  was applied (finite), whether it was a loss-scale overflow (below),
  whether any replica was asked to stop, and the gradient noise scale's two
  terms (`noise_scale.step_terms`).

  Under float16's dynamic loss scaling a step is an overflow, not a
  failure, when every replica's loss is finite, its gradients are not and
  the loss scale was above 1: the optimizer halves the scale and the next
  step usually succeeds. Overflows are skipped and counted like any
  non-finite step, but do not count toward `max_consecutive_skips`.
  """
  loss_scaled = isinstance(optimizer,
                           tf_keras.mixed_precision.LossScaleOptimizer)

  def sq_norm(grads):
    if pieces < 2:
      return tf.constant(0.0)
    return tf.square(tf.cast(tf.linalg.global_norm(grads), tf.float32))

  def micro_batch_grads(batch, mlm_denominator):
    """`grad_fn` summed over the micro-batch's parts, the sums of their
    metrics and of their squared gradient norms."""
    results = [grad_fn(p, mlm_denominator) for p in batching.parts(
        batch, parallel_micro_batches, cut=trim_padding)]
    piece_sq = tf.add_n([sq_norm(r[0]) for r in results])
    if len(results) == 1:
      return results[0] + (piece_sq,)
    grads = [tf.add_n(list(g)) for g in zip(*(r[0] for r in results))]
    return grads, tf.add_n([r[1] for r in results]), piece_sq

  def accumulated_grads(batch, mlm_denominator):
    k = grad_accumulation_steps
    if trim_padding:
      # Similar lengths share a micro-batch (the sum over micro-batches does
      # not depend on which examples go together).
      batch = batching.sort_by_length(batch)
    if k == 1:
      return micro_batch_grads(batch, mlm_denominator)
    micro = batching.micro_batches(batch, k)
    grads = [tf.zeros_like(v) for v in variables]
    sums = tf.zeros([len(model_lib.METRIC_SUMS)])
    piece_sq = tf.constant(0.0)
    for i in tf.range(k):
      # One micro-batch at a time: with overlapping iterations, Grappler's
      # rewrite of the gradient sums intermittently failed here
      # ("AlreadyExistsError ... AddOpsRewrite .../tmp_var", as in
      # tensorflow#33713). Turning its arithmetic optimizer off instead
      # costs 25% of the step on CPU.
      tf.autograph.experimental.set_loop_options(parallel_iterations=1)
      g, s, sq = micro_batch_grads(
          tf.nest.map_structure(lambda x: x[i], micro), mlm_denominator)
      grads = [a + b for a, b in zip(grads, g)]
      sums += s
      piece_sq += sq
    return grads, sums, piece_sq

  def replica_step(batch, stop, step):
    ctx = tf.distribute.get_replica_context()
    # One small all-reduce gives every replica the global count of masked
    # positions and how many replicas were asked to stop (SIGTERM on any
    # worker), so that all of them stop after this same step.
    counts = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.stack([
        tf.reduce_sum(tf.cast(batch["masked_lm_weights"], tf.float32)),
        tf.cast(stop, tf.float32)]))
    grads, sums, piece_sq = accumulated_grads(batch, counts[0])
    # The one cross-replica all-reduce of the step (a SUM, see
    # `make_grad_fn`); the pieces' squared norms ride along.
    extra = [piece_sq]
    if loss_scaled:  # How many replicas' losses are not finite.
      extra.append(1.0 - tf.cast(tf.reduce_all(tf.math.is_finite(sums)),
                                 tf.float32))
      scale = tf.cast(optimizer.loss_scale, tf.float32)  # Before this step.
    reduced = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads + extra)
    grads, (piece_sq, *bad_losses) = (reduced[:len(grads)],
                                      reduced[len(grads):])
    if gradient_hook is not None:  # Fault injection, in tests only.
      grads = gradient_hook(grads, step)
    if loss_scaled:
      grads = optimizer.get_unscaled_gradients(grads)
      piece_sq /= tf.square(tf.cast(optimizer.loss_scale, tf.float32))
    grad_norm = tf.linalg.global_norm(grads)
    noise = tf.stack(noise_scale.step_terms(
        piece_sq, tf.square(tf.cast(grad_norm, tf.float32)), pieces,
        global_batch_size))
    if clip_global_norm:
      grads, _ = tf.clip_by_global_norm(grads, clip_global_norm,
                                        use_norm=grad_norm)
    # The norm is computed from the all-reduced gradients, so every replica
    # takes the same branch. A NaN/Inf loss makes the gradients non-finite.
    ok = tf.math.is_finite(grad_norm)
    overflow = (tf.logical_and(tf.logical_not(ok), tf.logical_and(
        tf.equal(bad_losses[0], 0.0), scale > 1.0)) if loss_scaled
                else tf.constant(False))
    apply_if(optimizer, variables, ok, grads)
    return sums, grad_norm, ok, overflow, counts[1] > 0, noise

  return replica_step


def _last_update_norms(optimizer, variables):
  """The parameter norm and LAMB's trust-ratio statistics, if it has them."""
  norms = dict(param_norm=tf.linalg.global_norm(variables))
  lamb = getattr(optimizer, "inner_optimizer", optimizer)
  if hasattr(lamb, "trust_ratio_stats"):
    norms.update({f"trust_ratio_{k}": v
                  for k, v in lamb.trust_ratio_stats().items()})
  return norms


def make_train_loop(strategy, model, optimizer, variables, counters,
                    stop_requested, *, global_batch_size,
                    grad_accumulation_steps, clip_global_norm=None,
                    jit_compile=False, trim_padding=False,
                    parallel_micro_batches=1, max_consecutive_skips=10,
                    gradient_hook=None, check_every_step=True):
  """Builds `train_loop(iterator, num_steps)`, a `tf.function`.

  With `trim_padding`, each replica sorts its batch by length before
  splitting it into micro-batches, cuts each micro-batch to its longest
  sequence (`data.batching`) and runs the masked-LM head on the real
  predictions only: the same examples, loss and summed gradient as the
  padded batch, with less padding computed; the more micro-batches, the
  less padding (shapes vary, so not under XLA or on TPU).

  With `parallel_micro_batches` > 1, each micro-batch is computed as that
  many parts (runs of consecutive examples) whose forward and backward
  passes are independent, so TensorFlow's executor runs them side by side,
  one per inter-op thread; their gradients are summed in a fixed order. On
  a CPU whose op thread pool is split the same way
  (`runtime.set_cpu_threads`) this beats running each small op across all
  cores.

  Args:
    strategy: the `tf.distribute.Strategy` the model was built under.
    model: the `model.build_pretrainer` model.
    optimizer: its optimizer (possibly a `LossScaleOptimizer`).
    variables: the variables to train.
    counters: `Counters`, updated by every step.
    stop_requested: a host boolean variable (set from a signal handler) that
      stops the loop after the current step; each worker has its own.
    global_batch_size: examples per optimizer step.
    grad_accumulation_steps: micro-batches per replica and step.
    clip_global_norm: clip the all-reduced gradient to this norm.
    jit_compile: XLA-compile each piece's forward and backward pass.
    trim_padding: see above.
    parallel_micro_batches: parts of each micro-batch, see above.
    max_consecutive_skips: stop after this many non-finite steps in a row.
    gradient_hook: `hook(grads, steps_done) -> grads` applied to the
      all-reduced gradients (fault injection in tests; None in training).
    check_every_step: end the loop early, after the step where a stop was
      requested or `max_consecutive_skips` was reached. The check makes the
      host wait for each step's result before it starts the next one; on
      CPU that costs nothing (the host is the device), on TPUs and GPUs it
      would keep the host from queuing steps ahead, so there it is False
      and the caller checks both at the end of the loop, after up to
      `num_steps` steps (a skipped step changes no weight, so finishing the
      loop loses nothing but time).

  Returns:
    `train_loop(iterator, num_steps)`, which runs up to `num_steps`
    optimizer steps (fewer on a stop request or `max_consecutive_skips`,
    with `check_every_step`) and
    returns the summed `model_lib.METRIC_SUMS` of the steps, the sum of
    their gradient norms, how many were skipped, the parameter norm and
    LAMB's trust-ratio statistics after the last one (and, with two or more
    gradient pieces, the gradient noise scale's two terms summed over the
    applied steps: `noise_trace_sum`, `noise_grad_sq_sum`), and whether it
    stopped on request.
  """
  # The step's gradient is the sum of `pieces` independently computed
  # gradients (parts x micro-batches x replicas); the squared norms of the
  # pieces and of their sum give the gradient noise scale (noise_scale.py).
  replicas = strategy.num_replicas_in_sync
  micro_rows = global_batch_size // (replicas * grad_accumulation_steps)
  pieces = replicas * grad_accumulation_steps * min(parallel_micro_batches,
                                                     micro_rows)
  grad_fn = make_grad_fn(model, optimizer, variables,
                         global_batch_size=global_batch_size,
                         trim_padding=trim_padding, jit_compile=jit_compile)
  replica_step = make_replica_step(
      optimizer, variables, grad_fn, pieces=pieces,
      global_batch_size=global_batch_size,
      grad_accumulation_steps=grad_accumulation_steps,
      parallel_micro_batches=parallel_micro_batches,
      trim_padding=trim_padding, clip_global_norm=clip_global_norm,
      gradient_hook=gradient_hook)

  def first(value):
    return strategy.experimental_local_results(value)[0]

  @tf.function
  def train_loop(iterator, num_steps):
    totals = tf.zeros([len(model_lib.METRIC_SUMS)])
    norm_sum = tf.constant(0.0)
    skipped = tf.constant(0, tf.int64)
    stopped = tf.constant(False)
    noise_sums = tf.zeros([2])
    for _ in tf.range(num_steps):
      sums, grad_norm, ok, overflow, stop, noise = strategy.run(
          replica_step, args=(to_replicas(strategy, next(iterator)),
                              stop_requested.read_value(),
                              counters.step.read_value()))
      totals += strategy.reduce("SUM", sums, axis=None)
      ok, grad_norm = first(ok), first(grad_norm)
      counters.step.assign_add(1)
      skip = 1 - tf.cast(ok, tf.int64)
      skipped += skip
      counters.skipped_total.assign_add(skip)
      # A loss-scale overflow neither adds to nor ends a run of skips.
      counted = skip * (1 - tf.cast(first(overflow), tf.int64))
      counters.consecutive_skips.assign(
          (counters.consecutive_skips + counted) * skip)
      norm_sum += tf.where(ok, grad_norm, 0.0)
      noise_sums += tf.where(ok, first(noise), 0.0)
      stopped = tf.logical_or(stopped, first(stop))
      if check_every_step:
        if counters.consecutive_skips >= max_consecutive_skips:
          break
        if stopped:
          break
    norms = _last_update_norms(optimizer, variables)
    if pieces > 1:
      norms.update(noise_trace_sum=noise_sums[0],
                   noise_grad_sq_sum=noise_sums[1])
    return totals, norm_sum, skipped, norms, stopped

  return train_loop


def make_eval_loop(strategy, model, trim_padding=False,
                   parallel_micro_batches=1):
  """Builds `eval_loop(iterator, num_steps)`: summed `METRIC_SUMS`.

  `trim_padding` and `parallel_micro_batches` as in `make_train_loop`.
  """

  def part_sums(batch):
    outputs = model_lib.forward(model, batch, training=False,
                                compact=trim_padding)
    return _stacked_sums(model_lib.metric_sums(batch, outputs))

  def eval_step(batch):
    return tf.add_n([part_sums(p) for p in batching.parts(
        batch, parallel_micro_batches, cut=trim_padding)])

  @tf.function
  def eval_loop(iterator, num_steps):
    totals = tf.zeros([len(model_lib.METRIC_SUMS)])
    for _ in tf.range(num_steps):
      totals += strategy.reduce("SUM", strategy.run(
          eval_step, args=(to_replicas(strategy, next(iterator)),)),
                                axis=None)
    return totals

  return eval_loop
