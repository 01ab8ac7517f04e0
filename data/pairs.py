"""Sentence pairs for next-sentence prediction, as in BERT's data creation.

This follows `create_instances_from_document` of google-research/bert's
`create_pretraining_data.py`: sentences of a document are packed into a chunk
of about `max_num_tokens` tokens, the chunk is cut at a random sentence
boundary into segment A and the rest, and segment B is either that rest
("is next", label 0) or, half of the time, text from a random other document
(label 1, and the unused sentences are put back). Two differences: labels are
kept balanced (see `_document_pairs`), and an over-long pair is truncated at
the front of A and at the back of B only, so that in an "is next" pair the
text across the A|B boundary is really consecutive (the original truncates
either end at random).
"""

import dataclasses
import random
from typing import Iterator, List, Sequence

TokenIds = Sequence[int]


@dataclasses.dataclass(frozen=True)
class SentencePair:
  """One next-sentence-prediction example, before special tokens.

  Attributes:
    tokens_a: token ids of segment A, [len_a].
    tokens_b: token ids of segment B, [len_b].
    is_random_next: True when B comes from another document (label 1).
  """
  tokens_a: List[int]
  tokens_b: List[int]
  is_random_next: bool


def _truncate_pair(tokens_a: List[int], tokens_b: List[int],
                   max_num_tokens: int) -> None:
  """Shortens the longer segment until the pair fits, in place."""
  excess = len(tokens_a) + len(tokens_b) - max_num_tokens
  while excess > 0:
    if len(tokens_a) > len(tokens_b):
      del tokens_a[0]
    else:
      tokens_b.pop()
    excess -= 1


def create_pairs(documents: Sequence[Sequence[TokenIds]], *,
                 max_num_tokens: int, rng: random.Random,
                 short_seq_prob: float = 0.1) -> Iterator[SentencePair]:
  """Yields sentence pairs from tokenized documents.

  Args:
    documents: documents, each a list of sentences, each a list of token ids;
      empty sentences are ignored. Random "next" segments are drawn from
      other documents of this same list.
    max_num_tokens: the most tokens in A and B together (the sequence length
      minus 3 for [CLS] and two [SEP]).
    rng: the source of randomness, so pairs are reproducible.
    short_seq_prob: how often a chunk aims at a random shorter length, so the
      model also sees short sequences (BERT uses 0.1).

  Yields:
    `SentencePair`s, document by document. Both segments are non-empty.

  Raises:
    ValueError: `max_num_tokens` < 2 or fewer than 2 non-empty documents.
  """
  if max_num_tokens < 2:
    raise ValueError(f"max_num_tokens={max_num_tokens} cannot hold two "
                     "segments")
  documents = [[list(s) for s in doc if len(s)] for doc in documents]
  documents = [doc for doc in documents if doc]
  if len(documents) < 2:
    raise ValueError("sentence pairs need at least 2 non-empty documents, "
                     f"got {len(documents)}")
  debt = [0]
  for doc_index in range(len(documents)):
    yield from _document_pairs(documents, doc_index, max_num_tokens, rng,
                               short_seq_prob, debt)


def _document_pairs(documents: List[List[List[int]]], doc_index: int,
                    max_num_tokens: int, rng: random.Random,
                    short_seq_prob: float,
                    debt: List[int]) -> Iterator[SentencePair]:
  """The pairs of one document; see `create_pairs`.

  `debt[0]` counts the chunks of one sentence, which can only get a random B
  (in BERT's code they skew the labels towards random); as many later chunks
  that could go either way are made "is next" instead of tossing a coin, so
  the labels stay balanced.
  """
  document = documents[doc_index]

  def target_length():
    # Mostly full sequences; sometimes shorter ones, so that fine-tuning on
    # short inputs does not meet an unseen length distribution.
    if rng.random() < short_seq_prob:
      return rng.randint(2, max_num_tokens)
    return max_num_tokens

  target = target_length()
  chunk, chunk_length, i = [], 0, 0
  while i < len(document):
    chunk.append(document[i])
    chunk_length += len(document[i])
    if i == len(document) - 1 or chunk_length >= target:
      a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
      tokens_a = [t for s in chunk[:a_end] for t in s]
      tokens_b = []
      if len(chunk) == 1:
        is_random_next = True
        debt[0] += 1
      elif debt[0] > 0:
        is_random_next = False
        debt[0] -= 1
      else:
        is_random_next = rng.random() < 0.5
      if is_random_next:
        target_b = max(1, target - len(tokens_a))
        other = rng.randrange(len(documents) - 1)
        other += other >= doc_index  # Any document but this one.
        random_document = documents[other]
        for sentence in random_document[rng.randrange(len(random_document)):]:
          tokens_b += sentence
          if len(tokens_b) >= target_b:
            break
        # The sentences after A were not used: they start the next chunk.
        i -= len(chunk) - a_end
      else:
        tokens_b = [t for s in chunk[a_end:] for t in s]
      _truncate_pair(tokens_a, tokens_b, max_num_tokens)
      yield SentencePair(tokens_a, tokens_b, is_random_next)
      chunk, chunk_length = [], 0
      target = target_length()
    i += 1
