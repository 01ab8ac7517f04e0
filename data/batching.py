"""From the input pipeline's batches to the pieces a replica computes on.

The path of one optimizer step's examples, in order:

1. `build_dataset` (pipeline.py) yields this input pipeline's share of each
   global batch as per-replica batches of B examples; `host_batches` stacks
   the local replicas' batches into one host batch [local_replicas, B, ...]
   (a plain iterator that a checkpoint can save) and, with length buckets,
   cuts it to its longest example.
2. On each replica (trainer/step.py), with padding trimmed: `sort_by_length`
   puts examples of similar length together; `micro_batches` reshapes the
   batch into [grad_accumulation_steps, B / k, ...]; `parts` splits each
   micro-batch into runs of consecutive examples computed side by side and
   cuts each run to its longest example.

Every cut rounds the length up to a multiple of `PAD_MULTIPLE`, which bounds
how many shapes (and so traced graphs) there are. Cutting changes no loss:
BERT's outputs at real tokens do not depend on trailing padding.
"""

from typing import Dict, List

import tensorflow as tf

# Per-token features, [..., max_seq_length]; the others are per example.
TOKEN_FEATURES = ("input_word_ids", "input_mask", "input_type_ids")
# Cut lengths are multiples of this many tokens (or the full length).
PAD_MULTIPLE = 8


def cut_to_longest(batch: Dict[str, tf.Tensor],
                   multiple: int = PAD_MULTIPLE) -> Dict[str, tf.Tensor]:
  """Cuts a padded batch to its longest sequence, rounded up to `multiple`.

  BERT's outputs at real tokens do not depend on trailing padding (it is
  masked out of attention, and every other layer works token by token), and
  masked positions and [CLS] lie within the real tokens, so the losses are
  those of the padded batch while the padding is not computed. Shapes become
  dynamic: rounding bounds how many there are.

  Args:
    batch: `build_dataset` features, with any leading dims (e.g. [B, L] or
      [replicas, B, L]).
    multiple: the cut length is a multiple of this (or the full length).

  Returns:
    The same dict, `TOKEN_FEATURES` cut to [..., L'] with L' <= L.
  """
  full = tf.shape(batch["input_mask"])[-1]
  longest = tf.reduce_max(tf.reduce_sum(batch["input_mask"], axis=-1))
  length = tf.minimum((longest + multiple - 1) // multiple * multiple, full)
  return {k: v[..., :length] if k in TOKEN_FEATURES else v
          for k, v in batch.items()}


def host_batches(ds: tf.data.Dataset, local_replicas: int,
                 cut: bool = False) -> tf.data.Dataset:
  """Stacks `local_replicas` consecutive batches into one host batch.

  Args:
    ds: per-replica batches from `build_dataset`.
    local_replicas: replicas this host feeds.
    cut: cut each host batch to its longest example (length buckets), once
      for all its replicas so that their shapes agree; the input pipeline
      makes the cut, off the training step.

  Returns:
    A dataset of [local_replicas, B, ...] batches.
  """
  ds = ds.batch(local_replicas, drop_remainder=True)
  return ds.map(cut_to_longest) if cut else ds


def sort_by_length(batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """Orders a batch's examples from the shortest to the longest."""
  order = tf.argsort(tf.reduce_sum(batch["input_mask"], axis=-1), stable=True)
  return tf.nest.map_structure(lambda x: tf.gather(x, order), batch)


def _dims(x: tf.Tensor) -> List:
  """`x`'s shape: static sizes where known (length buckets leave the
  sequence length to run time), scalar tensors elsewhere."""
  return [d if d is not None else tf.shape(x)[i]
          for i, d in enumerate(x.shape.as_list())]


def micro_batches(batch: Dict[str, tf.Tensor],
                  count: int) -> Dict[str, tf.Tensor]:
  """[B, ...] features as [count, B / count, ...]: consecutive runs."""
  return tf.nest.map_structure(
      lambda x: tf.reshape(x, [count, -1] + _dims(x)[1:]), batch)


def split_rows(batch: Dict[str, tf.Tensor],
               parts: int) -> List[Dict[str, tf.Tensor]]:
  """Cuts a batch into `parts` runs of consecutive examples (sizes differ by
  at most one; no more runs than examples)."""
  rows = batch["input_mask"].shape[0]
  if rows is None or min(parts, rows) <= 1:
    return [batch]
  parts = min(parts, rows)
  sizes = [rows // parts + (i < rows % parts) for i in range(parts)]
  pieces = tf.nest.map_structure(lambda x: tf.split(x, sizes), batch)
  return [{k: v[i] for k, v in pieces.items()} for i in range(parts)]


def parts(micro_batch: Dict[str, tf.Tensor], count: int,
          cut: bool) -> List[Dict[str, tf.Tensor]]:
  """`split_rows(micro_batch, count)`, each run cut to its longest if `cut`."""
  runs = split_rows(micro_batch, count)
  return [cut_to_longest(r) for r in runs] if cut else runs
