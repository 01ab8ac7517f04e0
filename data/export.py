"""Export to the Model Garden's pretraining TFRecords.

The records have the features `official/nlp/data/create_pretraining_data.py`
writes (``input_ids``, ``input_mask``, ``segment_ids``,
``masked_lm_positions``, ``masked_lm_ids``, ``masked_lm_weights``,
``next_sentence_labels``) and are read by
`official.nlp.data.pretrain_dataloader.BertPretrainDataLoader`, so the Model
Garden's trainer can run on the very examples `build_dataset` gives: the split
is exported unshuffled with static masking, and
``build_dataset(..., masking="static", shuffle=False, repeat=False)`` yields
the same tensors in the same order.
"""

from typing import Optional

import numpy as np
import tensorflow as tf

from data import defaults
from data import files
from data import pipeline


def _int64s(values: np.ndarray) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=values.tolist()))


def _floats(values: np.ndarray) -> tf.train.Feature:
  return tf.train.Feature(float_list=tf.train.FloatList(value=values.tolist()))


def export_tfrecords(path: str, *, data_dir: Optional[str],
                     split: str = "train",
                     corpus: str = defaults.CORPUS,
                     vocab_size: int = defaults.VOCAB_SIZE,
                     vocab_file: Optional[str] = None,
                     max_seq_length: int = defaults.MAX_SEQ_LENGTH,
                     max_predictions_per_seq: int = (
                         defaults.MAX_PREDICTIONS_PER_SEQ),
                     seed: int = 0, dupe_factor: int = defaults.DUPE_FACTOR,
                     tfds_data_dir: Optional[str] = None) -> int:
  """Writes a prepared split as Model Garden pretraining TFRecords.

  Args:
    path: the TFRecord file to write; it appears only once complete.
    data_dir, corpus, vocab_size, vocab_file, max_seq_length, seed,
      dupe_factor, tfds_data_dir: identify the prepared dataset, as for
      `build_dataset`; `seed` also seeds the static masks.
    split: the split to export.
    max_predictions_per_seq: P, the length of the masked-LM features.

  Returns:
    The number of examples written.
  """
  ds = pipeline.build_dataset(
      None, data_dir=data_dir, split=split, global_batch_size=256,
      corpus=corpus, vocab_size=vocab_size, vocab_file=vocab_file,
      max_seq_length=max_seq_length,
      max_predictions_per_seq=max_predictions_per_seq, seed=seed,
      masking="static", shuffle=False, repeat=False, drop_remainder=False,
      dupe_factor=dupe_factor, tfds_data_dir=tfds_data_dir)
  # The Model Garden's original feature names.
  names = {"input_ids": "input_word_ids", "input_mask": "input_mask",
           "segment_ids": "input_type_ids",
           "masked_lm_positions": "masked_lm_positions",
           "masked_lm_ids": "masked_lm_ids",
           "masked_lm_weights": "masked_lm_weights",
           "next_sentence_labels": "next_sentence_labels"}
  count = 0
  with files.atomic_path(path) as tmp_path, \
      tf.io.TFRecordWriter(tmp_path) as writer:
    for batch in ds.as_numpy_iterator():
      for i in range(len(batch["next_sentence_labels"])):
        feature = {
            name: (_floats if name == "masked_lm_weights" else _int64s)(
                batch[key][i])
            for name, key in names.items()}
        writer.write(tf.train.Example(
            features=tf.train.Features(feature=feature)).SerializeToString())
        count += 1
  return count
