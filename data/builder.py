r"""The TFDS dataset of BERT sentence pairs: `BertPretraining`.

Examples are sentence pairs of WordPiece ids without special tokens, with
next-sentence labels; `pipeline.build_dataset` adds [CLS]/[SEP], pads and
masks. A config (`make_config`) names what the dataset is made of: the
corpus, the vocab, the sequence length, the pairing seed and the dupe factor.
`prepared.prepare_dataset` builds it once under a data dir::

  DATA_DIR/bert_pretraining/CONFIG/1.0.0 the TFDS dataset (train, validation)

TFDS writes to a temporary folder and renames it when complete, so a build
that is killed halfway is redone, never taken for complete.

The TFDS command line (`tfds build data/builder.py`) also knows the two
predefined configs (``embedded-v8192-l128`` and ``embedded-v8192-l512``), but
it needs apache-beam, which requirements.txt does not install (see the
README); `python -m data.prepare` makes the same folders without it.
"""

import dataclasses
import os
import random
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from etils import epath
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from data import assets as assets_lib
from data import corpus as corpus_lib
from data import defaults
from data import files
from data import pairs as pairs_lib
from data import vocab as vocab_lib

NAME = "bert_pretraining"
VALIDATION_EVERY = assets_lib.VALIDATION_EVERY
# Documents are paired and tokenized this many at a time, bounding memory on
# large corpora; random "next" segments come from the same group.
_DOCUMENTS_PER_GROUP = 20_000
_MIN_SEQ_LENGTH = 5  # [CLS] A [SEP] B [SEP] with one token in A and in B.


@dataclasses.dataclass
class BertPretrainingConfig(tfds.core.BuilderConfig):
  """What a prepared dataset is made of; see `make_config`."""
  corpus: str = defaults.CORPUS
  vocab_size: int = defaults.VOCAB_SIZE
  vocab_file: Optional[str] = None
  max_seq_length: int = defaults.MAX_SEQ_LENGTH
  seed: int = 0
  dupe_factor: int = defaults.DUPE_FACTOR
  short_seq_prob: float = 0.1
  tfds_data_dir: Optional[str] = None


def make_config(*, corpus: str = defaults.CORPUS,
                vocab_size: int = defaults.VOCAB_SIZE,
                vocab_file: Optional[str] = None,
                max_seq_length: int = defaults.MAX_SEQ_LENGTH,
                seed: int = 0, dupe_factor: int = defaults.DUPE_FACTOR,
                tfds_data_dir: Optional[str] = None,
                name: Optional[str] = None) -> BertPretrainingConfig:
  """Checks the arguments and names the dataset config they define.

  Args:
    corpus: ``"embedded"``, ``"tweets"``, both joined by ``+``, a glob of
      text files, or ``"tfds:NAME"``.
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
    raise ValueError(f"corpus={corpus!r} must be 'embedded', 'tweets', "
                     "'embedded+tweets', a glob of text files or 'tfds:NAME'")
  if max_seq_length < _MIN_SEQ_LENGTH:
    raise ValueError(f"max_seq_length={max_seq_length} is too small to hold a "
                     f"sentence pair: [CLS] A [SEP] B [SEP] needs at least "
                     f"{_MIN_SEQ_LENGTH} tokens")
  if dupe_factor < 1:
    raise ValueError(f"dupe_factor={dupe_factor} must be at least 1")
  if vocab_file is not None:
    vocab_file = files.resolve(vocab_file)
    vocab_lib.load_vocab(vocab_file)  # Fails early on a bad vocab.
    vocab_part = "vocab" + assets_lib.file_digest(vocab_file)
  else:
    if vocab_size < len(vocab_lib.RESERVED_TOKENS) + 1:
      raise ValueError(f"vocab_size={vocab_size} is too small to hold the "
                       f"{len(vocab_lib.RESERVED_TOKENS)} special tokens")
    vocab_part = f"v{vocab_size}"
  if name is None:
    name = f"{assets_lib.corpus_slug(corpus)}-{vocab_part}-l{max_seq_length}"
    name += f"-s{seed}" if seed else ""
    name += (f"-d{dupe_factor}" if dupe_factor != defaults.DUPE_FACTOR
             else "")
  return BertPretrainingConfig(
      name=name, corpus=corpus, vocab_size=vocab_size, vocab_file=vocab_file,
      max_seq_length=max_seq_length, seed=seed, dupe_factor=dupe_factor,
      tfds_data_dir=tfds_data_dir,
      description=f"BERT sentence pairs of {max_seq_length} tokens from the "
                  f"{corpus!r} corpus.")


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
  BUILDER_CONFIGS = [make_config(max_seq_length=defaults.MAX_SEQ_LENGTH),
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

  # `prepare.prepare_dataset` builds in a scratch dir and sets the assets it
  # prepared in the real data dir; `tfds build` prepares them in its own.
  assets: Optional[assets_lib.Assets] = None

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing is downloaded.
    assets = self.assets or assets_lib.prepare_assets(
        os.fspath(self.data_dir_root), self.builder_config,
        progress=assets_lib.progress_bars_shown())
    return {
        "train": self._generate_examples(assets, "train"),
        "validation": self._generate_examples(assets, "validation"),
    }

  def _split_documents(self, assets: assets_lib.Assets, split: str
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

  def _generate_examples(self, assets: assets_lib.Assets, split: str
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
