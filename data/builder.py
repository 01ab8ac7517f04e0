r"""The TFDS dataset of BERT sentence pairs, and `prepare_dataset`.

A data dir holds, once prepared::

  DATA_DIR/corpora/SLUG/corpus.txt       the embedded corpus, as text
  DATA_DIR/corpora/SLUG/vocab-8192.txt   the WordPiece vocab learned from it
  DATA_DIR/bert_pretraining/CONFIG/1.0.0 the TFDS dataset (train, validation)

Each step writes to a temporary name and renames when complete (TFDS does the
same for the dataset), so a build that is killed halfway is redone, never
taken for complete. Examples are sentence pairs of WordPiece ids without
special tokens; `pipeline.build_dataset` adds [CLS]/[SEP], pads and masks.

The dataset also builds with the TFDS command line, from the repository root::

  tfds build data/builder.py --config=embedded-v8192-l128 \
      --data_dir=~/bert_lamb_data

(configs ``embedded-v8192-l128`` and ``embedded-v8192-l512``: the embedded
corpus, an 8192-token vocab and sequences of 128 or 512 tokens for the two
phases of the BERT recipe; the same folders `prepare_dataset` makes).
"""

import dataclasses
import hashlib
import itertools
import json
import os
import random
import re
import shutil
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from etils import epath
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from data import corpus as corpus_lib
from data import pairs as pairs_lib
from data import vocab as vocab_lib

DEFAULT_DATA_DIR = os.path.join("~", "bert_lamb_data")
NAME = "bert_pretraining"

# Every 20th document is held out for the validation split (5%).
VALIDATION_EVERY = 20
# Documents are paired and tokenized this many at a time, bounding memory on
# large corpora; random "next" segments come from the same group.
_DOCUMENTS_PER_GROUP = 20_000
_MIN_SEQ_LENGTH = 5  # [CLS] A [SEP] B [SEP] with one token in A and in B.


@dataclasses.dataclass
class BertPretrainingConfig(tfds.core.BuilderConfig):
  """What a prepared dataset is made of; see `make_config`."""
  corpus: str = corpus_lib.EMBEDDED
  vocab_size: int = 8192
  vocab_file: Optional[str] = None
  max_seq_length: int = 128
  seed: int = 0
  dupe_factor: int = 5
  short_seq_prob: float = 0.1
  tfds_data_dir: Optional[str] = None


def corpus_slug(corpus: str) -> str:
  """A short folder name identifying a corpus spec."""
  if corpus == corpus_lib.EMBEDDED:
    return corpus
  if corpus.startswith(corpus_lib.TFDS_PREFIX):
    name = corpus[len(corpus_lib.TFDS_PREFIX):]
    return "tfds_" + re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
  # Files are identified by their names and sizes: a changed corpus is a new
  # corpus.
  digest = hashlib.sha1()
  for path in corpus_lib.text_files(corpus):
    digest.update(f"{os.path.abspath(path)}:{os.path.getsize(path)};".encode())
  return "text_" + digest.hexdigest()[:10]


def _file_digest(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.sha1(f.read()).hexdigest()[:10]


def make_config(*, corpus: str = corpus_lib.EMBEDDED, vocab_size: int = 8192,
                vocab_file: Optional[str] = None, max_seq_length: int = 128,
                seed: int = 0, dupe_factor: int = 5,
                tfds_data_dir: Optional[str] = None,
                name: Optional[str] = None) -> BertPretrainingConfig:
  """Checks the arguments and names the dataset config they define.

  Args:
    corpus: ``"embedded"``, a glob of text files, or ``"tfds:NAME"``.
    vocab_size: size of the vocab learned from the corpus (ignored when
      `vocab_file` is given).
    vocab_file: a BERT-style vocab.txt to use instead of learning one.
    max_seq_length: tokens per example, [CLS] and [SEP]s included.
    seed: seeds sentence pairing.
    dupe_factor: how many times the training documents are paired, each time
      differently (BERT's `dupe_factor`).
    tfds_data_dir: where ``tfds:`` corpora live (TFDS's default if None).
    name: the config name; derived from the arguments when None.

  Returns:
    A `BertPretrainingConfig`.

  Raises:
    ValueError, FileNotFoundError: an argument is invalid.
  """
  if not isinstance(corpus, str) or not corpus:
    raise ValueError(f"corpus={corpus!r} must be 'embedded', a glob of text "
                     "files or 'tfds:NAME'")
  if max_seq_length < _MIN_SEQ_LENGTH:
    raise ValueError(f"max_seq_length={max_seq_length} is too small to hold a "
                     f"sentence pair: [CLS] A [SEP] B [SEP] needs at least "
                     f"{_MIN_SEQ_LENGTH} tokens")
  if dupe_factor < 1:
    raise ValueError(f"dupe_factor={dupe_factor} must be at least 1")
  if vocab_file is not None:
    vocab_file = os.path.abspath(os.path.expanduser(vocab_file))
    vocab_lib.load_vocab(vocab_file)  # Fails early on a bad vocab.
    vocab_part = "vocab" + _file_digest(vocab_file)
  else:
    if vocab_size < len(vocab_lib.RESERVED_TOKENS) + 1:
      raise ValueError(f"vocab_size={vocab_size} is too small to hold the "
                       f"{len(vocab_lib.RESERVED_TOKENS)} special tokens")
    vocab_part = f"v{vocab_size}"
  if name is None:
    name = f"{corpus_slug(corpus)}-{vocab_part}-l{max_seq_length}"
    name += f"-s{seed}" if seed else ""
    name += f"-d{dupe_factor}" if dupe_factor != 5 else ""
  return BertPretrainingConfig(
      name=name, corpus=corpus, vocab_size=vocab_size, vocab_file=vocab_file,
      max_seq_length=max_seq_length, seed=seed, dupe_factor=dupe_factor,
      tfds_data_dir=tfds_data_dir,
      description=f"BERT sentence pairs of {max_seq_length} tokens from the "
                  f"{corpus!r} corpus.")


@dataclasses.dataclass(frozen=True)
class Assets:
  """The corpus and vocab a dataset is built from.

  Attributes:
    corpus: the corpus spec to read documents from (the embedded corpus is
      read from its cached text file).
    vocab_file: path of the vocab.
    lower_case: whether the vocab is uncased.
  """
  corpus: str
  vocab_file: str
  lower_case: bool


def prepare_assets(data_dir: str, config: BertPretrainingConfig, *,
                   progress: bool = False) -> Assets:
  """Writes the corpus text and vocab under `data_dir` unless already there.

  Args:
    data_dir: the root data dir.
    config: the dataset config.
    progress: show progress bars and messages.

  Returns:
    The `Assets`.

  Raises:
    FileNotFoundError: the corpus is missing.
    ValueError: the corpus is empty, unreadable or too small.
  """
  assets_dir = os.path.join(data_dir, "corpora", corpus_slug(config.corpus))
  source = config.corpus
  if config.corpus == corpus_lib.EMBEDDED:
    source = os.path.join(assets_dir, "corpus.txt")
    if not os.path.exists(source):
      _log(progress, "Gathering the embedded corpus from docstrings...")
      files = corpus_lib.embedded_source_files()
      if progress:
        files = tfds.core.utils.tqdm(files, desc="Docstrings", unit=" files")
      corpus_lib.write_documents(corpus_lib.embedded_documents(files), source)
  first = list(itertools.islice(corpus_lib.read_documents(
      source, tfds_data_dir=config.tfds_data_dir), 2 * VALIDATION_EVERY))
  if not first:
    raise ValueError(f"corpus {config.corpus!r} has no text")
  if len(first) < 2 * VALIDATION_EVERY:
    raise ValueError(
        f"corpus {config.corpus!r} has only {len(first)} documents; at least "
        f"{2 * VALIDATION_EVERY} are needed (every {VALIDATION_EVERY}th is held"
        " out for validation; documents are separated by blank lines)")
  if config.vocab_file:
    tokens = vocab_lib.load_vocab(config.vocab_file)
    vocab_file = os.path.join(assets_dir,
                              f"vocab-{_file_digest(config.vocab_file)}.txt")
    if not os.path.exists(vocab_file):
      vocab_lib.write_vocab(tokens, vocab_file)
    return Assets(source, vocab_file, vocab_lib.is_lower_case(tokens))
  vocab_file = os.path.join(assets_dir, f"vocab-{config.vocab_size}.txt")
  if not os.path.exists(vocab_file):
    _log(progress, f"Learning a {config.vocab_size}-token WordPiece vocab...")
    start = time.time()
    sentences = (s for doc in corpus_lib.read_documents(
        source, tfds_data_dir=config.tfds_data_dir) for s in doc)
    tokens = vocab_lib.learn_vocab(sentences, vocab_size=config.vocab_size)
    vocab_lib.write_vocab(tokens, vocab_file)
    _log(progress, f"Vocab learned in {time.time() - start:.0f} s")
  return Assets(source, vocab_file, True)


def _progress_bars_shown() -> bool:
  """Whether TFDS shows progress bars (it has no public getter)."""
  return tfds.core.utils.tqdm_utils._active  # pylint: disable=protected-access


def _log(enabled: bool, message: str) -> None:
  if enabled:
    print(message, flush=True)


def tokenize_documents(documents: Sequence[corpus_lib.Document],
                       tokenizer, batch_size: int = 4096
                      ) -> List[List[np.ndarray]]:
  """Tokenizes documents sentence by sentence.

  Args:
    documents: lists of sentences.
    tokenizer: a `FastBertTokenizer` from `vocab.make_tokenizer`.
    batch_size: sentences per tokenizer call.

  Returns:
    The documents as lists of int32 id arrays, one per sentence.
  """
  sentences = [s for doc in documents for s in doc]
  ids = []
  for start in range(0, len(sentences), batch_size):
    batch = sentences[start:start + batch_size]
    ragged = tokenizer.tokenize(tf.constant(batch))
    flat = ragged.flat_values.numpy().astype(np.int32)
    ids += np.split(flat, ragged.row_splits.numpy()[1:-1])
  result, start = [], 0
  for doc in documents:
    result.append(ids[start:start + len(doc)])
    start += len(doc)
  return result


def features() -> tfds.features.FeaturesDict:
  """The features of an example as stored."""
  ids = tfds.features.Tensor(shape=(None,), dtype=np.int32)
  return tfds.features.FeaturesDict({
      # Position in generation order: seeds the example's masks.
      "example_id": np.int64,
      "tokens_a": ids,  # [len_a] WordPiece ids, no special tokens.
      "tokens_b": ids,  # [len_b]
      "next_sentence_label": tfds.features.ClassLabel(
          names=["is_next", "random_next"]),
  })


class BertPretraining(tfds.core.GeneratorBasedBuilder):
  """BERT pretraining sentence pairs (NSP label, WordPiece ids)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Sentence pairs with next-sentence labels."}
  # The defaults of `prepare_dataset` for the two phases, under the names it
  # gives them, so `tfds build` and `prepare_dataset` make the same folders.
  BUILDER_CONFIGS = [make_config(max_seq_length=128),
                     make_config(max_seq_length=512)]

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS finds this file through `importlib_resources`, which its pinned
    # dependencies do not always install; the answer is known.
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__.split("\n\n")[0], features=features(),
        # Per split: documents, sentences, tokens, examples (metadata.json).
        metadata=tfds.core.MetadataDict())

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing is downloaded.
    assets = prepare_assets(os.fspath(self.data_dir_root), self.builder_config,
                            progress=_progress_bars_shown())
    return {
        "train": self._generate_examples(assets, "train"),
        "validation": self._generate_examples(assets, "validation"),
    }

  def _split_documents(self, assets: Assets, split: str
                      ) -> Iterator[List[corpus_lib.Document]]:
    """Groups of the split's documents, in corpus order."""
    group, previous = [], None
    for i, doc in enumerate(corpus_lib.read_documents(
        assets.corpus, tfds_data_dir=self.builder_config.tfds_data_dir)):
      held_out = i % VALIDATION_EVERY == VALIDATION_EVERY - 1
      if held_out == (split == "validation"):
        group.append(doc)
        if len(group) == _DOCUMENTS_PER_GROUP:
          if previous:
            yield previous
          previous, group = group, []
    # A last group too small to pair within joins the one before it.
    if previous and len(group) < _DOCUMENTS_PER_GROUP // 2:
      previous, group = previous + group, []
    for last in (previous, group):
      if last:
        yield last

  def _generate_examples(self, assets: Assets, split: str
                        ) -> Iterator[Tuple[int, Dict[str, object]]]:
    config = self.builder_config
    tokens = vocab_lib.load_vocab(assets.vocab_file)
    tokenizer = vocab_lib.make_tokenizer(tokens, lower_case=assets.lower_case)
    # Pairing is reproducible: one generator per seed and split.
    rng = random.Random(f"{NAME}/{config.seed}/{split}")
    # Validation documents are paired once: duplicates add nothing there.
    dupe_factor = config.dupe_factor if split == "train" else 1
    example_id = 0
    stats = {"documents": 0, "sentences": 0, "tokens": 0}
    for group in self._split_documents(assets, split):
      documents = tokenize_documents(group, tokenizer)
      stats["documents"] += len(documents)
      stats["sentences"] += sum(len(doc) for doc in documents)
      stats["tokens"] += sum(len(s) for doc in documents for s in doc)
      for _ in range(dupe_factor):
        for pair in pairs_lib.create_pairs(
            documents, max_num_tokens=config.max_seq_length - 3, rng=rng,
            short_seq_prob=config.short_seq_prob):
          yield example_id, {
              "example_id": example_id,
              "tokens_a": np.asarray(pair.tokens_a, np.int32),
              "tokens_b": np.asarray(pair.tokens_b, np.int32),
              "next_sentence_label": int(pair.is_random_next),
          }
          example_id += 1
    self.info.metadata[split] = dict(stats, examples=example_id)


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


def _dataset_dir(data_dir: str, config: BertPretrainingConfig) -> str:
  return os.path.join(data_dir, NAME, config.name,
                      str(BertPretraining.VERSION))


def _read_prepared(data_dir: str,
                   config: BertPretrainingConfig) -> PreparedDataset:
  """Describes a prepared dataset from the files TFDS wrote.

  The record files are listed from dataset_info.json directly rather than
  through TFDS's reader, which fails to restore dataset info under
  protobuf >= 7 (TFDS 4.9.9 reads `FieldDescriptor.label`).
  """
  dataset_dir = _dataset_dir(data_dir, config)
  with open(os.path.join(dataset_dir, "dataset_info.json")) as f:
    info = json.load(f)
  shards = {}
  for split in info["splits"]:
    lengths = [int(n) for n in split["shardLengths"]]
    shards[split["name"]] = [
        (os.path.join(dataset_dir, f"{NAME}-{split['name']}."
                      f"{info.get('fileFormat', 'tfrecord')}-"
                      f"{i:05d}-of-{len(lengths):05d}"), n)
        for i, n in enumerate(lengths)]
  assets_dir = os.path.join(data_dir, "corpora", corpus_slug(config.corpus))
  if config.vocab_file:
    vocab_file = os.path.join(assets_dir,
                              f"vocab-{_file_digest(config.vocab_file)}.txt")
  else:
    vocab_file = os.path.join(assets_dir, f"vocab-{config.vocab_size}.txt")
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


def _is_prepared(data_dir: str, config: BertPretrainingConfig) -> bool:
  # TFDS renames the dataset's folder into place once it is complete.
  return os.path.exists(os.path.join(_dataset_dir(data_dir, config),
                                     "dataset_info.json"))


def prepare_dataset(data_dir: Optional[str] = None, *,
                    corpus: str = corpus_lib.EMBEDDED, vocab_size: int = 8192,
                    vocab_file: Optional[str] = None,
                    max_seq_length: int = 128, seed: int = 0,
                    dupe_factor: int = 5,
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
  config = make_config(corpus=corpus, vocab_size=vocab_size,
                       vocab_file=vocab_file, max_seq_length=max_seq_length,
                       seed=seed, dupe_factor=dupe_factor,
                       tfds_data_dir=tfds_data_dir)
  if not _is_prepared(data_dir, config):
    parent = os.path.dirname(_dataset_dir(data_dir, config))
    if os.path.isdir(parent) and any(
        d.startswith("incomplete.") for d in os.listdir(parent)):
      _log(progress, f"An earlier build of {config.name} did not complete; "
           "building it again.")
    # Corpus and vocab first: bad input fails before TFDS starts a build.
    prepare_assets(data_dir, config, progress=progress)
    shown = _progress_bars_shown()
    tfds.display_progress_bar(progress)
    try:
      # A config equal to a predefined one goes by its name: TFDS refuses a
      # custom config named like a predefined one.
      predefined = {c.name: c for c in BertPretraining.BUILDER_CONFIGS}
      named = config.name if predefined.get(config.name) == config else config
      BertPretraining(config=named, data_dir=data_dir).download_and_prepare()
    finally:
      tfds.display_progress_bar(shown)
  return _read_prepared(data_dir, config)


def load_prepared(data_dir: Optional[str] = None, **kwargs) -> PreparedDataset:
  """The dataset `prepare_dataset(data_dir, **kwargs)` made, without building.

  Raises:
    FileNotFoundError: it has not been prepared.
  """
  data_dir = _data_root(data_dir)
  config = make_config(**kwargs)
  if not _is_prepared(data_dir, config):
    raise FileNotFoundError(
        f"the dataset {config.name} is not prepared in {data_dir}; run "
        "data.prepare_dataset or `python -m data.prepare` with the same "
        "arguments first")
  return _read_prepared(data_dir, config)
