"""Per-replica batches from an iterator that a checkpoint can hold.

The iterator of `strategy.distribute_datasets_from_function(...)` cannot be
saved in a `tf.train.Checkpoint` (TF 2.20: "expecting a trackable object";
tensorflow/tensorflow#56372): it prefetches to the devices through a
MultiDeviceIterator whose state TF does not checkpoint. `ReplicaIterator`
gives the same per-replica batches from a plain `tf.data` iterator on the
host, which a checkpoint saves and restores exactly:

  it = data.ReplicaIterator(strategy, lambda ctx: data.build_dataset(ctx, ...))
  checkpoint = tf.train.Checkpoint(model=..., optimizer=..., data=it)
  batch = next(it)  # PerReplica values, also inside a tf.function
  strategy.run(step_fn, args=(batch,))
"""

from typing import Callable

import tensorflow as tf


class ReplicaIterator(tf.Module):
  """Distributes a dataset_fn's batches over the replicas, checkpointably.

  As `distribute_datasets_from_function` does on one worker, `dataset_fn` is
  called once with an `InputContext` of one input pipeline and this
  strategy's replicas, and returns per-replica batches; each step takes the
  next `num_replicas_in_sync` of them, one per replica, in replica order.
  """

  def __init__(self, strategy: tf.distribute.Strategy,
               dataset_fn: Callable[[tf.distribute.InputContext],
                                    tf.data.Dataset]):
    """Creates the iterator.

    Args:
      strategy: a single-worker strategy (Mirrored, OneDevice, default).
      dataset_fn: InputContext -> dataset of per-replica batches.

    Raises:
      ValueError: `strategy` spans several workers.
    """
    super().__init__(name="replica_iterator")
    num_replicas = strategy.num_replicas_in_sync
    if len(strategy.extended.worker_devices) != num_replicas:
      raise ValueError(
          f"ReplicaIterator needs a single-worker strategy; this one has "
          f"{num_replicas} replicas on "
          f"{len(strategy.extended.worker_devices)} local devices")
    self._strategy = strategy
    context = tf.distribute.InputContext(num_input_pipelines=1,
                                         input_pipeline_id=0,
                                         num_replicas_in_sync=num_replicas)
    # [num_replicas, per-replica batch, ...]: one step's batches.
    groups = dataset_fn(context).batch(num_replicas, drop_remainder=True)
    self._iterator = iter(groups.prefetch(tf.data.AUTOTUNE))

  def __iter__(self):
    return self

  def __next__(self):
    """The next step's batches, as `tf.distribute` PerReplica values."""
    group = next(self._iterator)
    return self._strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.nest.map_structure(
            lambda t: t[ctx.replica_id_in_sync_group], group))

  def get_next(self):
    return self.__next__()
