"""BERT pretraining data: corpus -> WordPiece vocab -> TFDS dataset -> batches.

  info = data.prepare_dataset(data_dir)                  # once, then cached
  ds = data.build_dataset(ctx, data_dir=data_dir, global_batch_size=256)

`python -m data.prepare --help` does the first step from the command line.
"""

from data.builder import DEFAULT_DATA_DIR
from data.builder import PreparedDataset
from data.builder import prepare_dataset
from data.export import export_tfrecords
from data.pipeline import build_dataset
from data.pipeline import trim_padding

__all__ = ["DEFAULT_DATA_DIR", "PreparedDataset", "build_dataset",
           "export_tfrecords", "prepare_dataset", "trim_padding"]
