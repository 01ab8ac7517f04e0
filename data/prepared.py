"""`prepare_dataset`: build a dataset once, then describe what was built.

A data dir holds, once prepared, the corpus and vocab (`assets`) and::

  DATA_DIR/bert_pretraining/CONFIG/1.0.0 the TFDS dataset (train, validation)

TFDS writes the dataset to a temporary folder and renames it when complete,
so a build that is killed halfway is redone. `PreparedDataset` describes the
result: the vocab, the record files of each split and their sizes.

The data dir may be on any `tf.io.gfile` file system (``gs://...``). TFDS
writes through `etils.epath`, which knows local paths and ``gs://`` but not
every file system TensorFlow knows (``ram://``), so a data dir that is not
local is built in a local scratch folder and then copied with `tf.io.gfile`,
``dataset_info.json`` last: readers take the dataset as complete only once
that file is there.
"""

import dataclasses
import json
import os
import shutil
import tempfile
from typing import Dict, List, Optional, Tuple

import tensorflow as tf
import tensorflow_datasets as tfds

from data import assets as assets_lib
from data import builder as builder_lib
from data import defaults
from data import files
from data import vocab as vocab_lib

# Written last into a dataset's folder: its presence means complete.
_COMPLETE_MARKER = "dataset_info.json"

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
  """The data dir, resolved, once its file system has answered."""
  data_dir = files.resolve(data_dir or DEFAULT_DATA_DIR)
  files.check_reachable(data_dir)
  return data_dir


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
  with tf.io.gfile.GFile(os.path.join(dataset_dir, _COMPLETE_MARKER)) as f:
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
  if tf.io.gfile.exists(metadata_file):
    with tf.io.gfile.GFile(metadata_file) as f:
      stats = json.load(f)
  return PreparedDataset(
      vocab_file=vocab_file, vocab_size=len(tokens),
      max_seq_length=config.max_seq_length,
      num_examples={k: sum(n for _, n in v) for k, v in shards.items()},
      dataset_dir=dataset_dir, lower_case=vocab_lib.is_lower_case(tokens),
      stats=stats, shards=shards)


def _is_prepared(data_dir: str,
                 config: builder_lib.BertPretrainingConfig) -> bool:
  # TFDS renames the dataset's folder into place once it is complete; a
  # copy to a remote data dir writes the marker last.
  return tf.io.gfile.exists(os.path.join(_dataset_dir(data_dir, config),
                                         _COMPLETE_MARKER))


def _copy_dataset(source: str, target: str) -> None:
  """Copies a built dataset's folder, the completion marker last."""
  if tf.io.gfile.exists(target):
    tf.io.gfile.rmtree(target)  # An earlier copy that did not complete.
  tf.io.gfile.makedirs(target)
  names = sorted(tf.io.gfile.listdir(source), key=lambda n: (
      n == _COMPLETE_MARKER, n))
  for name in names:
    if tf.io.gfile.isdir(os.path.join(source, name)):
      raise ValueError(f"unexpected folder {name} in the built dataset "
                       f"{source}")
    tf.io.gfile.copy(os.path.join(source, name), os.path.join(target, name),
                     overwrite=True)


def _build(data_dir: str, config: builder_lib.BertPretrainingConfig,
           assets: assets_lib.Assets) -> None:
  """Builds the TFDS dataset of `config` into `data_dir`."""
  # A config equal to a predefined one goes by its name: TFDS refuses a
  # custom config named like a predefined one.
  builder_class = builder_lib.BertPretraining
  predefined = {c.name: c for c in builder_class.BUILDER_CONFIGS}
  named = config.name if predefined.get(config.name) == config else config
  if files.is_local(data_dir):
    builder = builder_class(config=named, data_dir=data_dir)
    builder.assets = assets
    builder.download_and_prepare()
    return
  scratch = tempfile.mkdtemp(prefix="bert_pretraining_build_")
  try:
    builder = builder_class(config=named, data_dir=scratch)
    builder.assets = assets
    builder.download_and_prepare()
    _copy_dataset(_dataset_dir(scratch, config),
                  _dataset_dir(data_dir, config))
  finally:
    shutil.rmtree(scratch, ignore_errors=True)


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
    files.UnreachableError: `data_dir` is remote and does not answer.
  """
  data_dir = _data_root(data_dir)
  config = builder_lib.make_config(
      corpus=corpus, vocab_size=vocab_size, vocab_file=vocab_file,
      max_seq_length=max_seq_length, seed=seed, dupe_factor=dupe_factor,
      tfds_data_dir=tfds_data_dir)
  if not _is_prepared(data_dir, config):
    parent = os.path.dirname(_dataset_dir(data_dir, config))
    if tf.io.gfile.isdir(parent) and any(
        d.startswith("incomplete.") for d in tf.io.gfile.listdir(parent)):
      assets_lib.log(progress, f"An earlier build of {config.name} did not "
                     "complete; building it again.")
    # Corpus and vocab first: bad input fails before TFDS starts a build.
    assets = assets_lib.prepare_assets(data_dir, config, progress=progress)
    shown = assets_lib.progress_bars_shown()
    tfds.display_progress_bar(progress)
    try:
      _build(data_dir, config, assets)
    finally:
      tfds.display_progress_bar(shown)
  return _read_prepared(data_dir, config)


def load_prepared(data_dir: Optional[str] = None, **kwargs) -> PreparedDataset:
  """The dataset `prepare_dataset(data_dir, **kwargs)` made, without building.

  Raises:
    FileNotFoundError: it has not been prepared.
    files.UnreachableError: `data_dir` is remote and does not answer.
  """
  data_dir = _data_root(data_dir)
  config = builder_lib.make_config(**kwargs)
  if not _is_prepared(data_dir, config):
    raise FileNotFoundError(
        f"the dataset {config.name} is not prepared in {data_dir}; run "
        "data.prepare_dataset or `python -m data.prepare` with the same "
        "arguments first")
  return _read_prepared(data_dir, config)
