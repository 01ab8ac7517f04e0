"""`prepare_dataset`: build a dataset once, then describe what was built.

A data dir holds, once prepared, the corpus and vocab (`assets`) and::

  DATA_DIR/bert_pretraining/CONFIG/1.0.0 the TFDS dataset (train, validation)

One process builds; in a job of several, the others wait for the result
(``build=False``), since concurrent TFDS builds in one folder would overwrite
each other's files. The build happens in a scratch folder and is committed
whole: renamed into place in a local data dir, so a build killed halfway
leaves nothing where readers look and is redone.

The data dir may be on any `tf.io.gfile` file system (``gs://...``). TFDS
writes through `etils.epath`, which knows local paths and ``gs://`` but not
every file system TensorFlow knows (``ram://``), and ``gs://`` cannot rename
a folder, so a data dir that is not local is built in a local scratch folder
and then copied with `tf.io.gfile`, ``dataset_info.json`` last: readers take
a dataset as complete only once that file is there. `PreparedDataset`
describes the result: the vocab, the record files of each split and their
sizes.
"""

import dataclasses
import json
import os
import shutil
import tempfile
import time
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
# Builds happen in DATA_DIR/bert_pretraining/.building-CONFIG-XXXX.
_SCRATCH_PREFIX = ".building-"
# How long a process that does not build waits for the one that does (the
# default corpus takes ~3 minutes; a large one should be prepared first),
# and how often it looks.
WAIT_S = 2 * 3600.0
_POLL_S = 2.0

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


def _shards(dataset_dir: str) -> Dict[str, List[Tuple[str, int]]]:
  """Per split, the record files TFDS wrote and their numbers of examples.

  Listed from dataset_info.json directly rather than through TFDS's reader,
  which fails to restore dataset info under protobuf >= 7 (TFDS 4.9.9 reads
  `FieldDescriptor.label`).
  """
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
  return shards


def _read_prepared(data_dir: str, config: builder_lib.BertPretrainingConfig
                  ) -> PreparedDataset:
  """Describes a prepared dataset from the files TFDS wrote."""
  dataset_dir = _dataset_dir(data_dir, config)
  shards = _shards(dataset_dir)
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
  # `_commit` renames the dataset's folder into place once it is complete;
  # a copy to a remote data dir writes the marker last.
  return _is_complete(_dataset_dir(data_dir, config))


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


def _commit(built: str, target: str) -> None:
  """Moves a complete dataset folder into place, all at once if possible.

  A local folder is renamed: readers see all of it or nothing. Elsewhere
  (``gs://`` has no folder rename) the files are copied, the completion
  marker last.
  """
  if files.is_local(target):
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.isdir(target) and not os.path.exists(
        os.path.join(target, _COMPLETE_MARKER)):
      shutil.rmtree(target)  # An incomplete folder from older code.
    try:
      os.rename(built, target)
    except OSError:
      if not _is_complete(target):
        raise
      # Another build of the same dataset finished first: use it.
  else:
    _copy_dataset(built, target)


def _is_complete(dataset_dir: str) -> bool:
  return tf.io.gfile.exists(os.path.join(dataset_dir, _COMPLETE_MARKER))


def _scratch_root(data_dir: str,
                  config: builder_lib.BertPretrainingConfig) -> str:
  """Where a build happens before `_commit`: beside its target when local
  (so the commit is a rename), else in a local temporary folder."""
  if files.is_local(data_dir):
    return tempfile.mkdtemp(prefix=f"{_SCRATCH_PREFIX}{config.name}-",
                            dir=os.path.join(data_dir, builder_lib.NAME))
  return tempfile.mkdtemp(prefix=f"{builder_lib.NAME}_build_")


def _remove_stale_scratch(data_dir: str, config, progress: bool) -> None:
  """Removes scratch folders of earlier builds of `config` that were killed.

  Only one process builds a dataset (the chief, see `prepare_dataset`), so a
  scratch folder found when a build starts is left over from a dead one.
  """
  parent = os.path.join(data_dir, builder_lib.NAME)
  if not files.is_local(data_dir) or not os.path.isdir(parent):
    return
  for name in os.listdir(parent):
    if name.startswith(f"{_SCRATCH_PREFIX}{config.name}-"):
      assets_lib.log(progress, f"An earlier build of {config.name} did not "
                     "complete; building it again.")
      shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def _build(data_dir: str, config: builder_lib.BertPretrainingConfig,
           assets: assets_lib.Assets) -> None:
  """Builds the TFDS dataset of `config` in a scratch folder, then commits
  it to its place in `data_dir` (`_commit`): no incomplete dataset is ever
  where readers look."""
  # A config equal to a predefined one goes by its name: TFDS refuses a
  # custom config named like a predefined one.
  builder_class = builder_lib.BertPretraining
  predefined = {c.name: c for c in builder_class.BUILDER_CONFIGS}
  named = config.name if predefined.get(config.name) == config else config
  if files.is_local(data_dir):
    os.makedirs(os.path.join(data_dir, builder_lib.NAME), exist_ok=True)
  scratch = _scratch_root(data_dir, config)
  try:
    builder = builder_class(config=named, data_dir=scratch)
    builder.assets = assets
    builder.download_and_prepare()
    # Where TFDS wrote it: the scratch folder, unless a TFDS test context
    # (`tfds.testing.mock_data`) pins every builder's data dir, in which case
    # it is already in place.
    built = str(builder.data_dir)
    target = _dataset_dir(data_dir, config)
    if os.path.normpath(built) != os.path.normpath(target):
      _commit(built, target)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)


def _wait_until_prepared(data_dir: str,
                         config: builder_lib.BertPretrainingConfig,
                         wait_s: float, progress: bool) -> None:
  """Polls for the dataset another process builds, at most `wait_s`."""
  if _is_prepared(data_dir, config):
    return
  assets_lib.log(progress, f"Waiting up to {wait_s:.0f} s for the chief to "
                 f"build {config.name} in {data_dir}...")
  deadline = time.monotonic() + wait_s
  while not _is_prepared(data_dir, config):
    if time.monotonic() > deadline:
      raise TimeoutError(
          f"the dataset {config.name} did not appear in {data_dir} within "
          f"{wait_s:.0f} s; the chief builds it there, so data_dir must be "
          "shared by all workers (e.g. gs://), or run `python -m "
          "data.prepare` with the same arguments first")
    time.sleep(min(_POLL_S, max(deadline - time.monotonic(), 0.01)))


def prepare_dataset(data_dir: Optional[str] = None, *,
                    corpus: str = defaults.CORPUS,
                    vocab_size: int = defaults.VOCAB_SIZE,
                    vocab_file: Optional[str] = None,
                    max_seq_length: int = defaults.MAX_SEQ_LENGTH,
                    seed: int = 0, dupe_factor: int = defaults.DUPE_FACTOR,
                    tfds_data_dir: Optional[str] = None,
                    progress: bool = True, build: bool = True,
                    wait_s: float = WAIT_S) -> PreparedDataset:
  """Builds the dataset once (corpus, vocab, TFDS splits); then returns at once.

  In a job of several processes sharing `data_dir`, one builds
  (``build=True``: the chief) and the others wait for its result
  (``build=False``), so the dataset is never built twice at once. The build
  happens in a scratch folder and is committed whole (see `_commit`).

  Args:
    data_dir: where everything is cached; ``~/bert_lamb_data`` when None.
      Local or any `tf.io.gfile` file system (``gs://bucket/dir``).
    corpus: ``"embedded"``, ``"tweets"``, ``"embedded+tweets"``, a glob of
      text files (a sentence a line, a blank line between documents, ``.gz``
      allowed) or ``"tfds:NAME"``.
    vocab_size: tokens in the vocab learned from the corpus.
    vocab_file: a vocab.txt to use instead (it must hold [PAD], [UNK], [CLS],
      [SEP] and [MASK]); lower-casing follows it (uncased if it has no capital
      letters).
    max_seq_length: tokens per example (128 for phase 1, 512 for phase 2).
    seed: seeds sentence pairing; part of the dataset's identity.
    dupe_factor: times the training documents are paired, differently.
    tfds_data_dir: where ``tfds:`` corpora live (TFDS's default if None).
    progress: show progress bars and a line per step.
    build: build the dataset if missing; False: wait for another process to
      build it.
    wait_s: with ``build=False``, how long to wait, in seconds.

  Returns:
    A `PreparedDataset`.

  Raises:
    ValueError, FileNotFoundError: bad input, with a one-line message.
    files.UnreachableError: `data_dir` is remote and does not answer.
    TimeoutError: ``build=False`` and the dataset did not appear in time.
  """
  data_dir = _data_root(data_dir)
  config = builder_lib.make_config(
      corpus=corpus, vocab_size=vocab_size, vocab_file=vocab_file,
      max_seq_length=max_seq_length, seed=seed, dupe_factor=dupe_factor,
      tfds_data_dir=tfds_data_dir)
  if not build:
    _wait_until_prepared(data_dir, config, wait_s, progress)
  elif not _is_prepared(data_dir, config):
    _remove_stale_scratch(data_dir, config, progress)
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
