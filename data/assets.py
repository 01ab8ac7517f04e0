"""The corpus text and the WordPiece vocab a dataset is built from.

Under a data dir::

  DATA_DIR/corpora/SLUG/corpus.txt       an offline corpus (the embedded
                                         docstrings, the tweets, or both),
                                         as text
  DATA_DIR/corpora/SLUG/vocab-8192.txt   the WordPiece vocab learned from it

Both are written once, each to a temporary name renamed when complete
(`files.atomic_path`), so a step killed halfway is redone, never taken for
complete.
"""

import dataclasses
import hashlib
import itertools
import os
import re
import time

import tensorflow as tf
import tensorflow_datasets as tfds

from data import corpus as corpus_lib
from data import files
from data import vocab as vocab_lib

# Every 20th document is held out for the validation split (5%).
VALIDATION_EVERY = 20


def corpus_slug(corpus: str) -> str:
  """A short folder name identifying a corpus spec."""
  parts = corpus_lib.offline_parts(corpus)
  if parts:
    return "_".join(parts)
  if corpus.startswith(corpus_lib.TFDS_PREFIX):
    name = corpus[len(corpus_lib.TFDS_PREFIX):]
    return "tfds_" + re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
  # Files are identified by their names and sizes: a changed corpus is a new
  # corpus.
  digest = hashlib.sha1()
  for path in corpus_lib.text_files(corpus):
    size = tf.io.gfile.stat(path).length
    digest.update(f"{files.resolve(path)}:{size};".encode())
  return "text_" + digest.hexdigest()[:10]


def file_digest(path: str) -> str:
  with tf.io.gfile.GFile(path, "rb") as f:
    return hashlib.sha1(f.read()).hexdigest()[:10]


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


def vocab_path(data_dir: str, config) -> str:
  """Where the vocab of `config` (a `BertPretrainingConfig`) is kept."""
  assets_dir = os.path.join(data_dir, "corpora", corpus_slug(config.corpus))
  if config.vocab_file:
    return os.path.join(assets_dir,
                        f"vocab-{file_digest(config.vocab_file)}.txt")
  return os.path.join(assets_dir, f"vocab-{config.vocab_size}.txt")


def prepare_assets(data_dir: str, config, *,
                   progress: bool = False) -> Assets:
  """Writes the corpus text and vocab under `data_dir` unless already there.

  Args:
    data_dir: the root data dir.
    config: the dataset config (`builder.BertPretrainingConfig`).
    progress: show progress bars and messages.

  Returns:
    The `Assets`.

  Raises:
    FileNotFoundError: the corpus is missing.
    ValueError: the corpus is empty, unreadable or too small.
  """
  source = config.corpus
  if corpus_lib.offline_parts(config.corpus):
    source = offline_text(data_dir, config.corpus, progress=progress)
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
    vocab_file = vocab_path(data_dir, config)
    if not tf.io.gfile.exists(vocab_file):
      vocab_lib.write_vocab(tokens, vocab_file)
    return Assets(source, vocab_file, vocab_lib.is_lower_case(tokens))
  vocab_file = vocab_path(data_dir, config)
  if not tf.io.gfile.exists(vocab_file):
    log(progress, f"Learning a {config.vocab_size}-token WordPiece vocab...")
    start = time.time()
    sentences = (s for doc in corpus_lib.read_documents(
        source, tfds_data_dir=config.tfds_data_dir) for s in doc)
    tokens = vocab_lib.learn_vocab(sentences, vocab_size=config.vocab_size)
    vocab_lib.write_vocab(tokens, vocab_file)
    log(progress, f"Vocab learned in {time.time() - start:.0f} s")
  return Assets(source, vocab_file, True)


def offline_text(data_dir: str, corpus: str, *, progress: bool = False
                 ) -> str:
  """Writes an offline corpus's text under `data_dir` once; returns its path.

  A joined corpus (``"embedded+tweets"``) is its parts' cached texts one
  after the other, so it has the same docstrings as ``"embedded"`` alone.
  """
  path = os.path.join(data_dir, "corpora", corpus_slug(corpus), "corpus.txt")
  if tf.io.gfile.exists(path):
    return path
  parts = corpus_lib.offline_parts(corpus)
  if len(parts) > 1:
    documents = itertools.chain.from_iterable(
        corpus_lib.text_file_documents(offline_text(data_dir, p,
                                                    progress=progress))
        for p in parts)
  elif corpus == corpus_lib.TWEETS:
    log(progress, "Reading the offline tweets' training split...")
    documents = corpus_lib.tweet_documents()
  else:
    log(progress, "Gathering the embedded corpus from docstrings...")
    files = corpus_lib.embedded_source_files()
    if progress:
      files = tfds.core.utils.tqdm(files, desc="Docstrings", unit=" files")
    documents = corpus_lib.embedded_documents(files)
  corpus_lib.write_documents(documents, path)
  return path


def progress_bars_shown() -> bool:
  """Whether TFDS shows progress bars (it has no public getter)."""
  return tfds.core.utils.tqdm_utils._active  # pylint: disable=protected-access


def log(enabled: bool, message: str) -> None:
  if enabled:
    print(message, flush=True)
