"""`prepare_dataset`: build a dataset once, then describe what was built.

A data dir holds, once prepared, the corpus and vocab (`assets`) and::

  DATA_DIR/bert_pretraining/CONFIG/1.0.0 the TFDS dataset (train, validation)

TFDS writes the dataset to a temporary folder and renames it when complete,
so a build that is killed halfway is redone. `PreparedDataset` describes the
result: the vocab, the record files of each split and their sizes.
"""

import dataclasses
import json
import os
from typing import Dict, List, Optional, Tuple

import tensorflow_datasets as tfds

from data import assets as assets_lib
from data import builder as builder_lib
from data import defaults
from data import vocab as vocab_lib

DEFAULT_DATA_DIR = defaults.DATA_DIR


@dataclasses.dataclass(frozen=True)
class PreparedDataset:
  """A prepared dataset, as returned by `prepare_dataset`.

  Attributes:
    vocab_file: path of the vocab.txt (one token a line).
    vocab_size: number of tokens in it: the model's vocab size.
    max_seq_length: tokens per example.
    num_examples: examples per split, e.g. {"train": ..., "validation": ...}.
    dataset_dir: the TFDS dataset's folder.
    lower_case: whether text is lower-cased before tokenizing.
    stats: per split, the numbers of documents, sentences, tokens (WordPiece,
      counted once) and examples.
    shards: per split, the record files and their numbers of examples.
  """
  vocab_file: str
  vocab_size: int
  max_seq_length: int
  num_examples: Dict[str, int]
  dataset_dir: str
  lower_case: bool
  stats: Dict[str, Dict[str, int]] = dataclasses.field(repr=False)
  shards: Dict[str, List[Tuple[str, int]]] = dataclasses.field(repr=False)


def _data_root(data_dir: Optional[str]) -> str:
  return os.path.abspath(os.path.expanduser(data_dir or DEFAULT_DATA_DIR))


def _dataset_dir(data_dir: str,
                 config: builder_lib.BertPretrainingConfig) -> str:
  return os.path.join(data_dir, builder_lib.NAME, config.name,
                      str(builder_lib.BertPretraining.VERSION))


def _read_prepared(data_dir: str, config: builder_lib.BertPretrainingConfig
                  ) -> PreparedDataset:
  """Describes a prepared dataset from the files TFDS wrote.

  The record files are listed from dataset_info.json directly rather than
  through TFDS's reader, which fails to restore dataset info under
  protobuf >= 7 (TFDS 4.9.9 reads `FieldDescriptor.label`).
  """
  dataset_dir = _dataset_dir(data_dir, config)
  with open(os.path.join(dataset_dir, "dataset_info.json")) as f:
    dataset_info = json.load(f)
  shards = {}
  for split in dataset_info["splits"]:
    lengths = [int(n) for n in split["shardLengths"]]
    shards[split["name"]] = [
        (os.path.join(dataset_dir, f"{builder_lib.NAME}-{split['name']}."
                      f"{dataset_info.get('fileFormat', 'tfrecord')}-"
                      f"{i:05d}-of-{len(lengths):05d}"), n)
        for i, n in enumerate(lengths)]
  vocab_file = assets_lib.vocab_path(data_dir, config)
  tokens = vocab_lib.load_vocab(vocab_file)
  stats = {}
  metadata_file = os.path.join(dataset_dir, "metadata.json")
  if os.path.exists(metadata_file):
    with open(metadata_file) as f:
      stats = json.load(f)
  return PreparedDataset(
      vocab_file=vocab_file, vocab_size=len(tokens),
      max_seq_length=config.max_seq_length,
      num_examples={k: sum(n for _, n in v) for k, v in shards.items()},
      dataset_dir=dataset_dir, lower_case=vocab_lib.is_lower_case(tokens),
      stats=stats, shards=shards)


def _is_prepared(data_dir: str,
                 config: builder_lib.BertPretrainingConfig) -> bool:
  # TFDS renames the dataset's folder into place once it is complete.
  return os.path.exists(os.path.join(_dataset_dir(data_dir, config),
                                     "dataset_info.json"))


def prepare_dataset(data_dir: Optional[str] = None, *,
                    corpus: str = defaults.CORPUS,
                    vocab_size: int = defaults.VOCAB_SIZE,
                    vocab_file: Optional[str] = None,
                    max_seq_length: int = defaults.MAX_SEQ_LENGTH,
                    seed: int = 0, dupe_factor: int = defaults.DUPE_FACTOR,
                    tfds_data_dir: Optional[str] = None,
                    progress: bool = True) -> PreparedDataset:
  """Builds the dataset once (corpus, vocab, TFDS splits); then returns at once.

  Args:
    data_dir: where everything is cached; ``~/bert_lamb_data`` when None.
    corpus: ``"embedded"``, a glob of text files (a sentence a line, a blank
      line between documents, ``.gz`` allowed) or ``"tfds:NAME"``.
    vocab_size: tokens in the vocab learned from the corpus.
    vocab_file: a vocab.txt to use instead (it must hold [PAD], [UNK], [CLS],
      [SEP] and [MASK]); lower-casing follows it (uncased if it has no capital
      letters).
    max_seq_length: tokens per example (128 for phase 1, 512 for phase 2).
    seed: seeds sentence pairing; part of the dataset's identity.
    dupe_factor: times the training documents are paired, differently.
    tfds_data_dir: where ``tfds:`` corpora live (TFDS's default if None).
    progress: show progress bars and a line per step.

  Returns:
    A `PreparedDataset`.

  Raises:
    ValueError, FileNotFoundError: bad input, with a one-line message.
  """
  data_dir = _data_root(data_dir)
  config = builder_lib.make_config(
      corpus=corpus, vocab_size=vocab_size, vocab_file=vocab_file,
      max_seq_length=max_seq_length, seed=seed, dupe_factor=dupe_factor,
      tfds_data_dir=tfds_data_dir)
  if not _is_prepared(data_dir, config):
    parent = os.path.dirname(_dataset_dir(data_dir, config))
    if os.path.isdir(parent) and any(
        d.startswith("incomplete.") for d in os.listdir(parent)):
      assets_lib.log(progress, f"An earlier build of {config.name} did not "
                     "complete; building it again.")
    # Corpus and vocab first: bad input fails before TFDS starts a build.
    assets_lib.prepare_assets(data_dir, config, progress=progress)
    shown = assets_lib.progress_bars_shown()
    tfds.display_progress_bar(progress)
    try:
      # A config equal to a predefined one goes by its name: TFDS refuses a
      # custom config named like a predefined one.
      builder_class = builder_lib.BertPretraining
      predefined = {c.name: c for c in builder_class.BUILDER_CONFIGS}
      named = config.name if predefined.get(config.name) == config else config
      builder_class(config=named, data_dir=data_dir).download_and_prepare()
    finally:
      tfds.display_progress_bar(shown)
  return _read_prepared(data_dir, config)


def load_prepared(data_dir: Optional[str] = None, **kwargs) -> PreparedDataset:
  """The dataset `prepare_dataset(data_dir, **kwargs)` made, without building.

  Raises:
    FileNotFoundError: it has not been prepared.
  """
  data_dir = _data_root(data_dir)
  config = builder_lib.make_config(**kwargs)
  if not _is_prepared(data_dir, config):
    raise FileNotFoundError(
        f"the dataset {config.name} is not prepared in {data_dir}; run "
        "data.prepare_dataset or `python -m data.prepare` with the same "
        "arguments first")
  return _read_prepared(data_dir, config)
