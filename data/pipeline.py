"""`build_dataset`: batches of masked BERT examples from a prepared dataset.

Stages, each a small function: read a split, shuffle with an explicit seed,
repeat, number the stream, optionally group it by length, keep this input
pipeline's share (every n-th example), assemble [CLS] A [SEP] B [SEP] and
draw each example's stateless randomness, batch (ragged), mask with
tensorflow-text's ops, pad to the Model Garden's features, prefetch.

Every random choice comes from the seed, the example id and the position in
the stream, so the same seed gives the same batches and an iterator saved in a
`tf.train.Checkpoint` resumes with exactly the batches that would have come.
(The shuffle takes `seed` as its op seed, which TF combines with the global
seed when `tf.random.set_seed` was called: set both alike to compare runs.)
"""

import functools
from typing import Dict, Optional

import tensorflow as tf

from data import builder as builder_lib
from data import defaults
from data import masking as masking_lib
from data import prepared as prepared_lib
from data import vocab as vocab_lib

MASKING_MODES = ("dynamic", "static")


def read_examples(prepared: prepared_lib.PreparedDataset,
                  split: str) -> tf.data.Dataset:
  """All examples of a split, in stored order.

  Args:
    prepared: from `prepare_dataset`.
    split: "train" or "validation".

  Returns:
    A dataset of dicts: ``example_id`` int64 [], ``tokens_a`` int32
    [len_a], ``tokens_b`` int32 [len_b], ``next_sentence_label`` int64 []
    (0: B follows A, 1: B is random).
  """
  if split not in prepared.shards:
    raise ValueError(f"split {split!r} does not exist; the dataset has "
                     f"{', '.join(sorted(prepared.shards))}")
  # TFDS permuted the examples when writing them, so the stored order is not
  # document order.
  paths = [path for path, _ in prepared.shards[split]]
  return tf.data.TFRecordDataset(paths).map(
      builder_lib.features().deserialize_example,
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _length_bucket(width: int):
  """Key of a numbered example: its length [CLS] A [SEP] B [SEP], in buckets
  of `width` tokens (1..width -> 0, width+1..2*width -> 1, ...)."""
  def key(position, example):
    del position
    length = tf.size(example["tokens_a"]) + tf.size(example["tokens_b"]) + 3
    return tf.cast((length - 1) // width, tf.int64)
  return key


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
                  seed: int = 0, pairing_seed: Optional[int] = None,
                  masking: str = "dynamic", shuffle: bool = True,
                  repeat: bool = True,
                  drop_remainder: bool = True,
                  shuffle_buffer_size: int = 10_000,
                  masked_lm_prob: float = 0.15,
                  dupe_factor: int = defaults.DUPE_FACTOR,
                  tfds_data_dir: Optional[str] = None,
                  bucket_width: Optional[int] = None) -> tf.data.Dataset:
  """Batches of masked sentence pairs for BERT pretraining.

  The dataset must have been prepared with `prepare_dataset` and the same
  `data_dir`, `corpus`, `vocab_size`, `vocab_file`, `max_seq_length`,
  `dupe_factor` and, as its `seed`, `pairing_seed`.

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
    seed: seeds shuffling and masking.
    pairing_seed: the seed the dataset was paired with (`prepare_dataset`'s
      `seed`), which identifies it; None: `seed`. Runs that differ only in
      `seed` then read the same examples and validation split.
    masking: "dynamic" (a fresh mask each time an example comes back) or
      "static" (one fixed mask per example, as in TFRecords written once).
    shuffle: shuffle examples (buffer `shuffle_buffer_size`), differently
      each epoch. The stored order is already a random permutation.
    repeat: repeat forever.
    drop_remainder: drop a last partial batch (keeps shapes static).
    shuffle_buffer_size: examples in the shuffle buffer.
    masked_lm_prob: the fraction of tokens predicted (BERT: 0.15).
    bucket_width: if set, group the stream by length: every run of
      `global_batch_size` examples has lengths in one bucket of this many
      tokens, so each global batch can be cut to its longest example
      (`batching.cut_to_longest`) instead of computing padding (27% of the
      tokens of the embedded corpus at 128). The order of the examples changes; the
      examples, their masks and the padded shapes do not. Grouping holds up
      to `global_batch_size` examples per bucket in memory.

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
  if masking not in MASKING_MODES:
    raise ValueError(f"masking={masking!r} must be one of {MASKING_MODES}")
  if global_batch_size < 1:
    raise ValueError(f"global_batch_size={global_batch_size} must be >= 1")
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
      max_seq_length=max_seq_length,
      seed=seed if pairing_seed is None else pairing_seed,
      dupe_factor=dupe_factor, tfds_data_dir=tfds_data_dir)
  special = vocab_lib.special_ids(vocab_lib.load_vocab(prepared.vocab_file))
  batch_size = (input_context.get_per_replica_batch_size(global_batch_size)
                if input_context else global_batch_size)

  ds = read_examples(prepared, split)
  if shuffle:
    ds = ds.shuffle(shuffle_buffer_size, seed=seed,
                    reshuffle_each_iteration=True)
  if repeat:
    ds = ds.repeat()
  ds = ds.enumerate()  # The position seeds dynamic masks.
  if bucket_width:
    # On the whole stream, before sharding: each global batch is one bucket
    # and the same one whatever the number of hosts.
    ds = ds.group_by_window(key_func=_length_bucket(bucket_width),
                            reduce_func=lambda _, window: window,
                            window_size=global_batch_size)
  if input_context and input_context.num_input_pipelines > 1:
    # Every pipeline reads the same seeded stream and keeps every n-th
    # example. Pipeline i's k-th batch then holds examples i, i+n, ... of the
    # stream's k-th global batch: the global batches, and so the training,
    # are the same whatever the number of hosts. Reading (cheap) is
    # repeated on every host; parsing and masking (the costly part) is not.
    ds = ds.shard(input_context.num_input_pipelines,
                  input_context.input_pipeline_id)
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
