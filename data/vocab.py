"""WordPiece vocabulary: learning it from a corpus, reading it, tokenizing.

Vocabularies are learned with tensorflow-text's WordPiece learner (the one
behind `bert_vocab_from_dataset`) from words split by tensorflow-text's BERT
`BasicTokenizer`, and text is tokenized with `FastBertTokenizer` using the same
lower-casing, so both sides split and normalize text identically.
"""

import collections
import itertools
from typing import Iterable, List, Sequence

import tensorflow as tf
import tensorflow_text as text
from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset

from data import files

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
RESERVED_TOKENS = (PAD, UNK, CLS, SEP, MASK)

SpecialIds = collections.namedtuple("SpecialIds", ["pad", "unk", "cls", "sep",
                                                   "mask"])

# tensorflow-text's learner stops near 4k tokens on a 5 MB corpus with its
# default lower threshold of 10 occurrences; 2 lets it reach ~8k.
_LOWER_THRESH = 2


def learn_vocab(sentences: Iterable[str], *, vocab_size: int,
                lower_case: bool = True,
                max_sentences: int = 2_000_000) -> List[str]:
  """Learns a WordPiece vocabulary of exactly `vocab_size` tokens.

  Args:
    sentences: the text to learn from.
    vocab_size: the number of tokens wanted, reserved tokens included.
    lower_case: whether text is lower-cased (and accents stripped) first.
    max_sentences: only the first this many sentences are read; the vocab of
      a large corpus is learned on a sample, as the learner is pure Python.

  Returns:
    Tokens: the reserved ones first (``[PAD]`` is 0), then single characters
    and their ``##`` continuations, then learned pieces by decreasing count.
    The learner's result is trimmed of its rarest pieces or padded with
    ``[unusedN]`` tokens to the exact size.

  Raises:
    ValueError: `vocab_size` is too small, or there is no text.
  """
  if vocab_size < len(RESERVED_TOKENS) + 1:
    raise ValueError(f"vocab_size={vocab_size} is too small: it must hold the "
                     f"{len(RESERVED_TOKENS)} special tokens and some text")
  lines = [s for s in itertools.islice(sentences, max_sentences) if s.strip()]
  if not lines:
    raise ValueError("cannot learn a vocabulary from an empty corpus")
  learned = bert_vocab_from_dataset.bert_vocab_from_dataset(
      tf.data.Dataset.from_tensor_slices(lines).batch(1024),
      vocab_size, list(RESERVED_TOKENS),
      bert_tokenizer_params={"lower_case": lower_case},
      learn_params={"lower_thresh": _LOWER_THRESH})
  return _fit_to_size(learned, vocab_size)


def _fit_to_size(tokens: Sequence[str], vocab_size: int) -> List[str]:
  """Trims the rarest learned pieces or pads with unused tokens."""
  chars = {t for t in tokens if len(t) == 1}
  required = set(RESERVED_TOKENS) | chars | {"##" + c for c in chars}
  if len(required) > vocab_size:
    raise ValueError(f"vocab_size={vocab_size} is too small for the corpus's "
                     f"{len(chars)} distinct characters (needs at least "
                     f"{len(required)})")
  budget = vocab_size - len(required)
  fitted = []
  for token in tokens:
    if token in required:
      fitted.append(token)
    elif budget > 0:
      fitted.append(token)
      budget -= 1
  fitted += [f"[unused{i}]" for i in range(vocab_size - len(fitted))]
  return fitted


def write_vocab(tokens: Sequence[str], path: str) -> None:
  """Writes one token a line; the file appears only once complete."""
  files.write_atomically(path, "".join(t + "\n" for t in tokens))


def load_vocab(path: str) -> List[str]:
  """Reads and checks a vocab file (one token a line, as BERT's vocab.txt).

  Args:
    path: the vocab file.

  Returns:
    The tokens; a token's id is its line number, from 0.

  Raises:
    FileNotFoundError: the file does not exist.
    ValueError: the file is unreadable, not UTF-8, has duplicate tokens or
      lacks one of the special tokens.
  """
  if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
    raise FileNotFoundError(f"vocab file {path} does not exist")
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      # Lines end at "\n" only (str.splitlines would also cut at other
      # separators that a token may hold).
      tokens = [line.rstrip("\r") for line in f.read().decode(
          "utf-8").split("\n")]
  except UnicodeDecodeError:
    raise ValueError(f"vocab file {path} is not UTF-8 text") from None
  while tokens and not tokens[-1]:
    tokens.pop()
  missing = [t for t in RESERVED_TOKENS if t not in tokens]
  if missing:
    raise ValueError(f"vocab file {path} lacks the special tokens "
                     f"{' '.join(missing)}")
  duplicates = [t for t, n in collections.Counter(tokens).items() if n > 1]
  if duplicates:
    raise ValueError(f"vocab file {path} has duplicate tokens, e.g. "
                     f"{duplicates[0]!r}")
  return tokens


def special_ids(tokens: Sequence[str]) -> SpecialIds:
  """The ids of [PAD], [UNK], [CLS], [SEP] and [MASK] in a vocab."""
  index = {t: i for i, t in enumerate(tokens)}
  return SpecialIds(*(index[t] for t in RESERVED_TOKENS))


def is_lower_case(tokens: Sequence[str]) -> bool:
  """Whether a vocab is uncased: no upper-case letter outside [SPECIAL]s."""
  return not any(t != t.lower() for t in tokens
                 if not (t.startswith("[") and t.endswith("]")))


def make_tokenizer(tokens: Sequence[str], *,
                   lower_case: bool) -> text.FastBertTokenizer:
  """A WordPiece tokenizer from text to int64 token ids (and back).

  Args:
    tokens: the vocab, as returned by `load_vocab`.
    lower_case: lower-case and strip accents first, as when learning.

  Returns:
    A `FastBertTokenizer`: `tokenize(strings [N]) -> int64 ids [N, (tokens)]`.
  """
  return text.FastBertTokenizer(
      vocab=list(tokens), token_out_type=tf.int64,
      lower_case_nfd_strip_accents=lower_case, unknown_token=UNK,
      support_detokenization=True)
