"""`build_dataset`: batches of masked BERT examples from a prepared dataset.

The stream is an order of the split's example indices: a seeded permutation
per epoch (`records.permutation`), or the stored order without shuffling,
repeated. Position p of the stream is example `order(p mod N)` of epoch
`p // N`; global batch s holds positions s*G .. s*G + G - 1. Input pipeline
i of n holds positions i, i + n, ... of each global batch, so the global
batches, their masks and the training are the same whatever the number of
hosts. A pipeline computes its own positions, reads only those records
(`records.Records`, random access by index) and parses, assembles and masks
them: its cost is its share of the job's. Stages, each a small function:
positions -> example indices (`_plan_window`) -> records -> [CLS] A [SEP] B
[SEP] and each example's stateless randomness -> ragged batches -> masking
with tensorflow-text's ops -> the Model Garden's padded features -> prefetch.

Every random choice comes from the seed, the example id and the position in
the stream, so the same seed gives the same batches, a pipeline started at
step s (`start_step`) gives exactly the batches that come after s steps,
and an iterator saved in a `tf.train.Checkpoint` resumes exactly (its state
is a counter).

Length buckets (`bucket_width`) sort each window of `BUCKET_WINDOW` global
batches by bucket (lengths come from the index, so every host sorts the
window's indices without reading its records), cut the sorted window into
global batches and put those in a seeded order: the same global batches on
any number of hosts, each a narrow range of lengths.
"""

import functools
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from data import builder as builder_lib
from data import defaults
from data import masking as masking_lib
from data import prepared as prepared_lib
from data import records as records_lib
from data import vocab as vocab_lib

MASKING_MODES = ("dynamic", "static")
# Global batches sorted together by length (`bucket_width`). A window of W
# global batches of G examples costs every host W*G lengths looked up,
# permuted and sorted (about 1 us each), against the W*G/n examples it
# parses and masks.
BUCKET_WINDOW = 64
# A stream that repeats has this many positions (more than any run uses).
_ENDLESS = 2**62


def read_examples(prepared: prepared_lib.PreparedDataset,
                  split: str) -> tf.data.Dataset:
  """All examples of a split, in stored order, read front to back.

  Args:
    prepared: from `prepare_dataset`.
    split: "train" or "validation".

  Returns:
    A dataset of dicts: ``example_id`` int64 [], ``tokens_a`` int32
    [len_a], ``tokens_b`` int32 [len_b], ``next_sentence_label`` int64 []
    (0: B follows A, 1: B is random).
  """
  _check_split(prepared, split)
  # TFDS permuted the examples when writing them, so the stored order is not
  # document order.
  paths = [path for path, _ in prepared.shards[split]]
  return tf.data.TFRecordDataset(paths).map(
      builder_lib.features().deserialize_example,
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _check_split(prepared: prepared_lib.PreparedDataset, split: str) -> None:
  if split not in prepared.shards:
    raise ValueError(f"split {split!r} does not exist; the dataset has "
                     f"{', '.join(sorted(prepared.shards))}")


def _records(prepared: prepared_lib.PreparedDataset,
             split: str) -> records_lib.Records:
  """Random access to a split's serialized examples, by stored index."""
  _check_split(prepared, split)
  return records_lib.Records(prepared.dataset_dir, split,
                             prepared.shards[split])


def _order(positions: np.ndarray, n: int, seed: int,
           shuffle: bool) -> np.ndarray:
  """The example index at each stream position: epoch by epoch, a seeded
  permutation of [0, n) (TFDS already permuted the stored order, so
  without shuffling the stored order is used)."""
  if not shuffle:
    return positions % n
  epochs = positions // n
  indices = np.empty_like(positions)
  for epoch in np.unique(epochs):
    at = epochs == epoch
    indices[at] = records_lib.permutation(positions[at] % n, n, seed,
                                          int(epoch))
  return indices


def _plan_window(window, *, num_examples, lengths, global_batch_size,
                 num_pipelines, pipeline_id, seed, shuffle, stop,
                 bucket_width):
  """A pipeline's positions and example indices for one window of the
  stream, in the order it yields them.

  Without buckets a window is one global batch; with buckets it is
  `BUCKET_WINDOW` global batches, sorted by length bucket (stably: ties keep
  stream order), cut into global batches, which are then put in an order
  seeded by (seed, window) so that lengths do not rise within each window.
  """
  size = global_batch_size * (BUCKET_WINDOW if bucket_width else 1)
  start = int(window) * size
  positions = np.arange(start, min(start + size, stop), dtype=np.int64)
  indices = _order(positions, num_examples, seed, shuffle)
  if bucket_width:
    keys = (lengths[indices].astype(np.int64) - 1) // bucket_width
    by_length = np.argsort(keys, kind="stable")
    positions, indices = positions[by_length], indices[by_length]
    batches = -(-len(positions) // global_batch_size)
    full = len(positions) // global_batch_size
    order = np.arange(batches)
    # Only whole windows are reordered: a window cut short by the end of
    # the stream keeps its last, partial batch last.
    if full == batches == BUCKET_WINDOW:
      order = np.random.default_rng([seed, int(window)]).permutation(batches)
    chunks = [np.arange(b * global_batch_size,
                        min((b + 1) * global_batch_size, len(positions)))
              for b in order]
  else:
    chunks = [np.arange(len(positions))]
  # Pipeline i of n: rows i, i + n, ... of each global batch.
  mine = np.concatenate([c[pipeline_id::num_pipelines] for c in chunks]
                        + [np.zeros([0], np.int64)])
  return positions[mine], indices[mine]


def _stream(examples: records_lib.Records, *, global_batch_size: int,
            num_pipelines: int, pipeline_id: int, seed: int, shuffle: bool,
            repeat: bool, start_step: int,
            bucket_width: Optional[int]) -> tf.data.Dataset:
  """(position, serialized example) of this pipeline, from `start_step`."""
  stop = _ENDLESS if repeat else len(examples)
  window_batches = BUCKET_WINDOW if bucket_width else 1
  plan = functools.partial(
      _plan_window, num_examples=len(examples), lengths=examples.lengths,
      global_batch_size=global_batch_size, num_pipelines=num_pipelines,
      pipeline_id=pipeline_id, seed=seed, shuffle=shuffle, stop=stop,
      bucket_width=bucket_width)
  first_window, skip = divmod(start_step, window_batches)
  last_window = -(-stop // (global_batch_size * window_batches))
  ds = tf.data.Dataset.range(first_window, last_window)

  def plan_window(window):
    positions, indices = tf.numpy_function(plan, [window],
                                           (tf.int64, tf.int64),
                                           stateful=False)
    return tf.ensure_shape(positions, [None]), tf.ensure_shape(indices, [None])

  # Stateless: a checkpointed iterator replays a window from its number.
  ds = ds.map(plan_window).unbatch()
  if skip:  # Steps of the first window before `start_step`.
    ds = ds.skip(skip * (global_batch_size // num_pipelines))
  # A step's share of records at a time.
  ds = ds.batch(max(global_batch_size // num_pipelines, 1))

  def read(positions, indices):
    serialized = tf.numpy_function(examples.read, [indices], tf.string,
                                   stateful=False)
    return positions, tf.ensure_shape(serialized, [None])

  ds = ds.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.unbatch()


def _assemble(position: tf.Tensor, example: Dict[str, tf.Tensor], *,
              special: vocab_lib.SpecialIds, seed: int, static: bool,
              max_predictions_per_seq: int,
              vocab_size: int) -> Dict[str, tf.Tensor]:
  """[CLS] A [SEP] B [SEP], its segment ids and its masking randomness."""
  tokens_a, tokens_b = example["tokens_a"], example["tokens_b"]
  cls = tf.constant([special.cls], tf.int32)
  sep = tf.constant([special.sep], tf.int32)
  input_word_ids = tf.concat([cls, tokens_a, sep, tokens_b, sep], axis=0)
  input_type_ids = tf.concat([
      tf.zeros([tf.size(tokens_a) + 2], tf.int32),
      tf.ones([tf.size(tokens_b) + 1], tf.int32)], axis=0)
  seed_pair = masking_lib.example_seed(seed, example["example_id"],
                                   None if static else position)
  features = masking_lib.draw_randomness(
      seed_pair, num_tokens=tf.size(input_word_ids),
      max_predictions_per_seq=max_predictions_per_seq, vocab_size=vocab_size)
  features.update({
      "input_word_ids": input_word_ids,
      "input_type_ids": input_type_ids,
      "next_sentence_labels": tf.cast(
          tf.reshape(example["next_sentence_label"], [1]), tf.int32),
  })
  return features


def _mask_and_pad(batch: Dict[str, tf.Tensor], *,
                  special: vocab_lib.SpecialIds, vocab_size: int,
                  max_seq_length: int, max_predictions_per_seq: int,
                  masked_lm_prob: float) -> Dict[str, tf.Tensor]:
  """Masks a ragged batch and pads it to the Model Garden's features."""
  ids = batch["input_word_ids"]
  masked = masking_lib.mask_batch(
      ids, priorities=batch["priorities"], decisions=batch["decisions"],
      random_ids=batch["random_ids"], vocab_size=vocab_size,
      mask_id=special.mask, unmaskable_ids=[special.cls, special.sep,
                                            special.pad],
      max_predictions_per_seq=max_predictions_per_seq,
      masked_lm_prob=masked_lm_prob)
  batch_size = tf.shape(batch["next_sentence_labels"])[0]
  tokens_shape = [batch_size, max_seq_length]
  predictions_shape = [batch_size, max_predictions_per_seq]
  labels = masked["masked_lm_ids"]
  return {
      "input_word_ids": masked["input_word_ids"].to_tensor(
          default_value=special.pad, shape=tokens_shape),
      "input_mask": tf.ones_like(ids).to_tensor(shape=tokens_shape),
      "input_type_ids": batch["input_type_ids"].to_tensor(shape=tokens_shape),
      "masked_lm_positions": tf.cast(
          masked["masked_lm_positions"], tf.int32).to_tensor(
              shape=predictions_shape),
      "masked_lm_ids": labels.to_tensor(shape=predictions_shape),
      "masked_lm_weights": tf.ones_like(labels, tf.float32).to_tensor(
          shape=predictions_shape),
      "next_sentence_labels": batch["next_sentence_labels"],
  }


def build_dataset(input_context: Optional[tf.distribute.InputContext] = None,
                  *, data_dir: Optional[str], global_batch_size: int,
                  split: str = "train", corpus: str = defaults.CORPUS,
                  vocab_size: int = defaults.VOCAB_SIZE,
                  vocab_file: Optional[str] = None,
                  max_seq_length: int = defaults.MAX_SEQ_LENGTH,
                  max_predictions_per_seq: int = (
                      defaults.MAX_PREDICTIONS_PER_SEQ),
                  seed: int = 0, masking: str = "dynamic",
                  shuffle: bool = True, repeat: bool = True,
                  drop_remainder: bool = True,
                  masked_lm_prob: float = 0.15,
                  dupe_factor: int = defaults.DUPE_FACTOR,
                  tfds_data_dir: Optional[str] = None,
                  bucket_width: Optional[int] = None,
                  start_step: int = 0) -> tf.data.Dataset:
  """Batches of masked sentence pairs for BERT pretraining.

  The dataset must have been prepared with `prepare_dataset` and the same
  `data_dir`, `corpus`, `vocab_size`, `vocab_file`, `max_seq_length`, `seed`
  and `dupe_factor`.

  Args:
    input_context: shards the data per input pipeline and sets the
      per-replica batch size (`tf.distribute` passes it to a dataset_fn);
      None for one pipeline and the global batch.
    data_dir: the data dir given to `prepare_dataset` (None: its default).
    global_batch_size: examples per step, summed over replicas.
    split: "train" or "validation".
    corpus, vocab_size, vocab_file, max_seq_length, dupe_factor,
      tfds_data_dir: identify the prepared dataset (see `prepare_dataset`).
    max_predictions_per_seq: P, the most masked tokens per sequence (BERT: 20
      at 128 tokens, 80 at 512).
    seed: seeds shuffling and masking (and identified the pairing).
    masking: "dynamic" (a fresh mask each time an example comes back) or
      "static" (one fixed mask per example, as in TFRecords written once).
    shuffle: a seeded permutation of the split each epoch, a different one
      every epoch; False: the stored order, which TFDS already permuted.
    repeat: repeat forever.
    drop_remainder: drop a last partial batch (keeps shapes static).
    masked_lm_prob: the fraction of tokens predicted (BERT: 0.15).
    bucket_width: if set, sort each window of `BUCKET_WINDOW` global
      batches by length in buckets of this many tokens, so each global batch
      spans a narrow range of lengths and can be cut to its longest example
      (`batching.cut_to_longest`) instead of computing padding (27% of the
      tokens of the embedded corpus at 128). The order of the examples
      changes; the examples, their masks and the padded shapes do not.
    start_step: begin with global batch `start_step` (the position after
      that many steps, the same for any number of pipelines).

  Returns:
    A `tf.data.Dataset` of dicts, B the per-replica batch size, L
    `max_seq_length`: ``input_word_ids``, ``input_mask``, ``input_type_ids``
    int32 [B, L]; ``masked_lm_positions``, ``masked_lm_ids`` int32 [B, P];
    ``masked_lm_weights`` float32 [B, P] (1.0 at real predictions, else 0.0);
    ``next_sentence_labels`` int32 [B, 1] (0: B follows A, 1: random) -- the
    features, dtypes and shapes of the Model Garden's BertPretrainDataLoader.

  Raises:
    FileNotFoundError: the dataset has not been prepared.
    ValueError: an argument is invalid.
  """
  num_pipelines = input_context.num_input_pipelines if input_context else 1
  if masking not in MASKING_MODES:
    raise ValueError(f"masking={masking!r} must be one of {MASKING_MODES}")
  if global_batch_size < 1:
    raise ValueError(f"global_batch_size={global_batch_size} must be >= 1")
  if global_batch_size % num_pipelines:
    raise ValueError(f"global_batch_size={global_batch_size} is not divisible"
                     f" by the {num_pipelines} input pipelines")
  if start_step < 0:
    raise ValueError(f"start_step={start_step} must be >= 0")
  if not 1 <= max_predictions_per_seq <= max_seq_length:
    raise ValueError(f"max_predictions_per_seq={max_predictions_per_seq} must "
                     f"be in [1, max_seq_length={max_seq_length}]")
  if not 0.0 < masked_lm_prob < 1.0:
    raise ValueError(f"masked_lm_prob={masked_lm_prob} must be in (0, 1)")
  if bucket_width is not None and not 1 <= bucket_width <= max_seq_length:
    raise ValueError(f"bucket_width={bucket_width} must be in "
                     f"[1, max_seq_length={max_seq_length}]")
  prepared = prepared_lib.load_prepared(
      data_dir, corpus=corpus, vocab_size=vocab_size, vocab_file=vocab_file,
      max_seq_length=max_seq_length, seed=seed, dupe_factor=dupe_factor,
      tfds_data_dir=tfds_data_dir)
  special = vocab_lib.special_ids(vocab_lib.load_vocab(prepared.vocab_file))
  batch_size = (input_context.get_per_replica_batch_size(global_batch_size)
                if input_context else global_batch_size)

  ds = _stream(_records(prepared, split),
               global_batch_size=global_batch_size,
               num_pipelines=num_pipelines,
               pipeline_id=(input_context.input_pipeline_id if input_context
                            else 0),
               seed=seed, shuffle=shuffle, repeat=repeat,
               start_step=start_step, bucket_width=bucket_width)
  deserialize = builder_lib.features().deserialize_example
  ds = ds.map(lambda position, serialized: (position, deserialize(serialized)),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.map(
      functools.partial(_assemble, special=special, seed=seed,
                        static=masking == "static",
                        max_predictions_per_seq=max_predictions_per_seq,
                        vocab_size=prepared.vocab_size),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.ragged_batch(batch_size, drop_remainder=drop_remainder)
  ds = ds.map(
      functools.partial(_mask_and_pad, special=special,
                        vocab_size=prepared.vocab_size,
                        max_seq_length=max_seq_length,
                        max_predictions_per_seq=max_predictions_per_seq,
                        masked_lm_prob=masked_lm_prob),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.prefetch(tf.data.AUTOTUNE)
