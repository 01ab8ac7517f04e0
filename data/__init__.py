"""BERT pretraining data: corpus -> WordPiece vocab -> TFDS dataset -> batches.

  prepared = data.prepare_dataset(data_dir)              # once, then cached
  ds = data.build_dataset(ctx, data_dir=data_dir, global_batch_size=256)

`python -m data.prepare --help` does the first step from the command line.
Modules: `defaults` (the default dataset's settings), `corpus` and `vocab`
(text and WordPiece), `assets` (the corpus and vocab files of a data dir),
`pairs` (sentence pairs), `builder` (the TFDS dataset), `prepared` (build
once, describe the result), `masking` and `pipeline` (batches of masked
examples), `batching` (host batches, micro-batches, parts, padding cuts),
`export` (Model Garden TFRecords), `files` (atomic writes).
"""

from data.batching import cut_to_longest
from data.export import export_tfrecords
from data.pipeline import build_dataset
from data.prepared import DEFAULT_DATA_DIR
from data.prepared import PreparedDataset
from data.prepared import prepare_dataset

__all__ = ["DEFAULT_DATA_DIR", "PreparedDataset", "build_dataset",
           "cut_to_longest", "export_tfrecords", "prepare_dataset"]
