"""The compiled work: a host loop of optimizer steps, and evaluation.

One optimizer step sees the global batch: each replica gets its share in one
batch from the input pipeline, splits it into `grad_accumulation_steps`
micro-batches and sums their gradients; then the replicas' gradients are
all-reduced once, clipped, checked for NaN/Inf and applied. `train_loop` runs
up to `num_steps` such steps in one `tf.function` call (the TPU host-loop
pattern), so the host only wakes up at logging boundaries.
"""

import dataclasses

import tensorflow as tf
import tf_keras

import data
from trainer import faults
from trainer import model as model_lib
from trainer import noise_scale


@dataclasses.dataclass
class Counters:
  """Training-state variables the loop updates (all but `stop` are saved).

  Attributes:
    step: optimizer steps taken or skipped.
    consecutive_skips: non-finite steps in a row, up to now.
    skipped_total: non-finite steps since the start of the run.
    stop: set (from a signal handler) to stop after the current step; a
      plain host variable, outside the strategy, since each worker has its
      own.
  """
  step: tf.Variable
  consecutive_skips: tf.Variable
  skipped_total: tf.Variable
  stop: tf.Variable


def new_counter():
  """A step counter at zero, kept by the first replica (call in scope)."""
  return tf.Variable(0, dtype=tf.int64, trainable=False,
                     aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


def to_replicas(strategy, host_batch):
  """Hands each local replica its row of a [local_replicas, ...] batch."""
  local_replicas = len(strategy.extended.worker_devices)
  return strategy.experimental_distribute_values_from_function(
      lambda ctx: tf.nest.map_structure(
          lambda x: x[ctx.replica_id_in_sync_group % local_replicas],
          host_batch))


def trim_to_longest(batch, enabled=True):
  """`data.trim_padding` to a multiple of 8 tokens, when `enabled`."""
  return data.trim_padding(batch, multiple=8) if enabled else batch


def split_rows(batch, parts):
  """Cuts a batch into `parts` runs of consecutive examples (sizes differ by
  at most one; no more runs than examples)."""
  rows = batch["input_mask"].shape[0]
  if rows is None or min(parts, rows) <= 1:
    return [batch]
  parts = min(parts, rows)
  sizes = [rows // parts + (i < rows % parts) for i in range(parts)]
  pieces = tf.nest.map_structure(lambda x: tf.split(x, sizes), batch)
  return [{k: v[i] for k, v in pieces.items()} for i in range(parts)]


def sort_by_length(batch):
  """Orders a batch's examples from the shortest to the longest."""
  order = tf.argsort(tf.reduce_sum(batch["input_mask"], axis=-1), stable=True)
  return tf.nest.map_structure(lambda x: tf.gather(x, order), batch)


def dims(x):
  """`x`'s shape: static sizes where known (length buckets leave the
  sequence length to run time), scalar tensors elsewhere."""
  return [d if d is not None else tf.shape(x)[i]
          for i, d in enumerate(x.shape.as_list())]


def make_train_loop(strategy, model, optimizer, variables, counters, *,
                    global_batch_size, grad_accumulation_steps,
                    clip_global_norm=None, jit_compile=False,
                    trim_padding=False, parallel_parts=1,
                    max_consecutive_skips=10):
  """Builds `train_loop(iterator, num_steps)`, a `tf.function`.

  With `trim_padding`, each replica sorts its batch by length before
  splitting it into micro-batches, cuts each micro-batch to its longest
  sequence (rounded up to 8 tokens) and runs the masked-LM head on the real
  predictions only: the same examples, loss and summed gradient as the
  padded batch, with less padding computed; the more micro-batches, the
  less padding (shapes vary, so not under XLA or on TPU).

  With `parallel_parts` > 1, each micro-batch is computed as that many
  parts (runs of consecutive examples) whose forward and backward passes are
  independent, so TensorFlow's executor runs them side by side, one per
  inter-op thread; their gradients are summed in a fixed order. On a CPU
  whose op thread pool is split the same way (`distribute.cpu_parallelism`)
  this beats running each small op across all cores.

  It runs up to `num_steps` optimizer steps (fewer when `counters.stop` is
  set or `max_consecutive_skips` is reached) and returns the summed
  `model_lib.METRIC_SUMS` of the steps, the sum of their gradient norms,
  how many were skipped, the parameter norm and LAMB's trust-ratio
  statistics after the last one (and, with two or more gradient pieces, the
  gradient noise scale's two terms summed over the applied steps:
  `noise_trace_sum`, `noise_grad_sq_sum`), and whether it stopped on
  request.
  """
  loss_scaled = isinstance(optimizer,
                           tf_keras.mixed_precision.LossScaleOptimizer)

  # Normalizers of the global batch's loss, known before the backward pass:
  # the MLM loss is averaged over all masked positions of the global batch
  # and NSP over its examples. Each replica divides its (micro-)batch sums by
  # these global counts, so the SUM of all replicas' and micro-batches'
  # gradients is exactly the gradient of the global-batch loss, however the
  # batch is split. That is why gradients are summed, not averaged, below.
  def compute_grads(batch, mlm_denominator):
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
    return grads, tf.stack([sums[k] for k in model_lib.METRIC_SUMS])

  if jit_compile:
    compute_grads = tf.function(compute_grads, jit_compile=True)

  # The step's gradient is the sum of `pieces` independently computed
  # gradients (parts x micro-batches x replicas); the squared norms of the
  # pieces and of their sum give the gradient noise scale (noise_scale.py).
  replicas = strategy.num_replicas_in_sync
  micro_rows = global_batch_size // (replicas * grad_accumulation_steps)
  pieces = replicas * grad_accumulation_steps * min(parallel_parts,
                                                     micro_rows)

  def sq_norm(grads):
    if pieces < 2:
      return tf.constant(0.0)
    return tf.square(tf.cast(tf.linalg.global_norm(grads), tf.float32))

  def micro_batch_grads(batch, mlm_denominator):
    """`compute_grads` of one micro-batch, as `parallel_parts` parts, and
    the sum of the parts' squared gradient norms."""
    parts = [trim_to_longest(p, trim_padding)
             for p in split_rows(batch, parallel_parts)]
    results = [compute_grads(p, mlm_denominator) for p in parts]
    piece_sq = tf.add_n([sq_norm(r[0]) for r in results])
    if len(results) == 1:
      return results[0] + (piece_sq,)
    grads = [tf.add_n(list(g)) for g in zip(*(r[0] for r in results))]
    return grads, tf.add_n([r[1] for r in results]), piece_sq

  def apply(grads):
    return optimizer.apply_gradients(zip(grads, variables),
                                     experimental_aggregate_gradients=False)

  def apply_if(ok, grads):
    """Applies `grads` only where `ok`: a skipped step changes nothing."""
    if loss_scaled:
      return apply(grads)  # Skips non-finite steps itself, rescaling.
    if tf.__internal__.distribute.strategy_supports_no_merge_call():
      return tf.cond(ok, lambda: tf.group(apply(grads)), tf.no_op)

    # MirroredStrategy cannot `merge_call` (as apply_gradients does) inside
    # a cond branch in replica context, so the cond runs in cross-replica
    # context, as tf_keras's LossScaleOptimizer does.
    def cross_replica(distribution, ok, grads):
      ok = distribution.experimental_local_results(ok)[0]
      return tf.cond(ok, lambda: tf.group(
          distribution.extended.call_for_each_replica(apply, args=(grads,))),
                     tf.no_op)
    return tf.distribute.get_replica_context().merge_call(
        cross_replica, args=(ok, grads))

  def replica_step(batch, stop):
    ctx = tf.distribute.get_replica_context()
    # One small all-reduce gives every replica the global count of masked
    # positions and how many replicas were asked to stop (SIGTERM on any
    # worker), so that all of them stop after this same step.
    counts = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.stack([
        tf.reduce_sum(tf.cast(batch["masked_lm_weights"], tf.float32)),
        tf.cast(stop, tf.float32)]))
    mlm_denominator = counts[0]
    k = grad_accumulation_steps
    if trim_padding:
      # Similar lengths share a micro-batch (the sum over micro-batches does
      # not depend on which examples go together).
      batch = sort_by_length(batch)
    if k == 1:
      grads, sums, piece_sq = micro_batch_grads(batch, mlm_denominator)
    else:
      micro = tf.nest.map_structure(
          lambda x: tf.reshape(x, [k, -1] + dims(x)[1:]), batch)
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
    # The one cross-replica all-reduce of the step (a SUM, see above); the
    # pieces' squared norms ride along.
    *grads, piece_sq = ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                                      grads + [piece_sq])
    grads = faults.poison_gradients(grads, counters.step)  # Only under test.
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
    apply_if(ok, grads)
    return sums, grad_norm, ok, counts[1] > 0, noise

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
      sums, grad_norm, ok, stop, noise = strategy.run(
          replica_step, args=(to_replicas(strategy, next(iterator)),
                              counters.stop.read_value()))
      totals += strategy.reduce("SUM", sums, axis=None)
      ok, grad_norm = first(ok), first(grad_norm)
      counters.step.assign_add(1)
      skip = 1 - tf.cast(ok, tf.int64)
      skipped += skip
      counters.skipped_total.assign_add(skip)
      counters.consecutive_skips.assign(
          (counters.consecutive_skips + skip) * skip)
      norm_sum += tf.where(ok, grad_norm, 0.0)
      noise_sums += tf.where(ok, first(noise), 0.0)
      if counters.consecutive_skips >= max_consecutive_skips:
        break
      stopped = first(stop)
      if stopped:
        break
    norms = dict(param_norm=tf.linalg.global_norm(variables))
    lamb = getattr(optimizer, "inner_optimizer", optimizer)
    if hasattr(lamb, "trust_ratio_stats"):
      norms.update({f"trust_ratio_{k}": v
                    for k, v in lamb.trust_ratio_stats().items()})
    if pieces > 1:
      norms.update(noise_trace_sum=noise_sums[0],
                   noise_grad_sq_sum=noise_sums[1])
    return totals, norm_sum, skipped, norms, stopped

  return train_loop


def make_eval_loop(strategy, model, trim_padding=False, parallel_parts=1):
  """Builds `eval_loop(iterator, num_steps)`: summed `METRIC_SUMS`.

  `trim_padding` and `parallel_parts` as in `make_train_loop`.
  """

  def part_sums(batch):
    batch = trim_to_longest(batch, trim_padding)
    outputs = model_lib.forward(model, batch, training=False,
                                compact=trim_padding)
    sums = model_lib.metric_sums(batch, outputs)
    return tf.stack([sums[k] for k in model_lib.METRIC_SUMS])

  def eval_step(batch):
    return tf.add_n([part_sums(p) for p in split_rows(batch, parallel_parts)])

  @tf.function
  def eval_loop(iterator, num_steps):
    totals = tf.zeros([len(model_lib.METRIC_SUMS)])
    for _ in tf.range(num_steps):
      totals += strategy.reduce("SUM", strategy.run(
          eval_step, args=(to_replicas(strategy, next(iterator)),)),
                                axis=None)
    return totals

  return eval_loop
