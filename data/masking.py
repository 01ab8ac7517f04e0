"""Masked-LM masking with tensorflow-text's ops, driven by stateless randomness.

BERT's procedure: 15% of the tokens (never [CLS], [SEP] or [PAD]) are chosen
for prediction, at most `max_predictions_per_seq` per sequence; a chosen token
becomes [MASK] 80% of the time, a random token 10% of the time and stays
unchanged 10% of the time.

`text.mask_language_model` applies it, with an item selector and a mask-value
chooser. Theirs draw from TensorFlow's stateful random ops, whose state a
tf.data iterator checkpoint does not hold, so a resumed input pipeline would
mask differently from an uninterrupted one. The two subclasses here take their
random numbers as tensors instead. `draw_randomness` makes them per example
with `tf.random.stateless_*` from (seed, example id[, position in stream]), so
masks are reproducible and an iterator restored from a checkpoint continues
with exactly the same masks.
"""

from typing import Dict, Sequence

import tensorflow as tf
import tensorflow_text as text

# Philox on every device, so a seed means the same numbers everywhere.
_ALG = "philox"


class StatelessItemSelector(text.RandomItemSelector):
  """`RandomItemSelector` whose random choice is given, not drawn.

  In each row the selectable items with the highest `priorities` are chosen:
  ``min(ceil(selection_rate * num_selectable), max_selections_per_batch)`` of
  them, as in the parent class. With priorities uniform in [0, 1) this is the
  parent's uniform choice without replacement.
  """

  def __init__(self, priorities: tf.RaggedTensor, max_selections_per_batch: int,
               selection_rate: float, unselectable_ids: Sequence[int]):
    """Creates the selector.

    Args:
      priorities: float32 [B, (L)], one random number per item of the input.
      max_selections_per_batch: the most items chosen in one row.
      selection_rate: the fraction of selectable items chosen.
      unselectable_ids: ids that are never chosen.
    """
    super().__init__(max_selections_per_batch, selection_rate,
                     list(unselectable_ids))
    self._priorities = priorities

  def get_selection_mask(self, input_ids: tf.RaggedTensor,
                         axis: int = 1) -> tf.RaggedTensor:
    """Returns bool [B, (L)]: True for the chosen items of `input_ids`."""
    if axis != 1 or input_ids.ragged_rank != 1:
      raise ValueError("StatelessItemSelector selects along axis 1 of a "
                       "[batch, (items)] RaggedTensor only")
    selectable = self.get_selectable(input_ids, axis)
    # In float64: in float32, 100 * 0.15 is 15.000001 and its ceil 16.
    num_selectable = tf.reduce_sum(tf.cast(selectable, tf.float64), axis=1)
    num_to_select = tf.minimum(
        tf.math.ceil(num_selectable * self.selection_rate),
        float(self.max_selections_per_batch))
    # Unselectable items rank after every selectable one (priorities >= 0).
    priorities = tf.where(selectable.flat_values, self._priorities.flat_values,
                          -1.0)
    dense = input_ids.with_flat_values(priorities).to_tensor(default_value=-2.0)
    order = tf.argsort(dense, axis=1, direction="DESCENDING", stable=True)
    rank = tf.argsort(order, axis=1, stable=True)
    chosen = tf.cast(rank, tf.float64) < num_to_select[:, tf.newaxis]
    chosen = tf.RaggedTensor.from_tensor(chosen,
                                         lengths=input_ids.row_lengths())
    return tf.logical_and(chosen, selectable)


class StatelessMaskValuesChooser(text.MaskValuesChooser):
  """`MaskValuesChooser` whose random numbers are given, not drawn.

  The j-th chosen item of row b (in position order) uses ``decisions[b, j]``
  for [MASK] / random / unchanged and ``random_ids[b, j]`` as its random token.
  """

  def __init__(self, vocab_size: int, mask_token: int, decisions: tf.Tensor,
               random_ids: tf.Tensor, mask_token_rate: float = 0.8,
               random_token_rate: float = 0.1):
    """Creates the chooser.

    Args:
      vocab_size: random tokens are drawn from [0, vocab_size).
      mask_token: the id of [MASK].
      decisions: float32 [B, P], uniform in [0, 1); P is at least the number
        of items chosen in any row.
      random_ids: int [B, P], uniform in [0, vocab_size).
      mask_token_rate: how often a chosen item becomes [MASK].
      random_token_rate: how often it becomes a random token.
    """
    super().__init__(vocab_size, mask_token, mask_token_rate,
                     random_token_rate)
    self._decisions = decisions
    self._random_ids = random_ids
    self._mask_token_rate = mask_token_rate

  def get_mask_values(self, masked_lm_ids: tf.RaggedTensor) -> tf.RaggedTensor:
    """Returns the new values [B, (num_chosen)] of the chosen items."""
    lengths = masked_lm_ids.row_lengths()
    decisions = tf.RaggedTensor.from_tensor(self._decisions,
                                            lengths=lengths).flat_values
    random_ids = tf.RaggedTensor.from_tensor(self._random_ids,
                                             lengths=lengths).flat_values
    ids = masked_lm_ids.flat_values
    values = tf.where(
        decisions < self._mask_token_rate,
        tf.cast(self.mask_token, ids.dtype),
        tf.where(decisions < self._mask_token_rate + self.random_token_rate,
                 tf.cast(random_ids, ids.dtype), ids))
    return masked_lm_ids.with_flat_values(values)


def example_seed(seed: int, example_id: tf.Tensor,
                 stream_position: tf.Tensor = None) -> tf.Tensor:
  """The stateless seed [2] of one example's mask.

  Args:
    seed: the run's seed.
    example_id: int64 scalar, the example's id in its split.
    stream_position: int64 scalar, the element's position in the (repeated)
      stream, for a fresh mask each time an example comes back (dynamic
      masking); None for one fixed mask per example (static masking).

  Returns:
    int64 [2].
  """
  key = tf.constant([seed, 0x5EED], tf.int64)
  key = tf.random.experimental.stateless_fold_in(key, example_id, alg=_ALG)
  if stream_position is not None:
    key = tf.random.experimental.stateless_fold_in(key, stream_position,
                                                   alg=_ALG)
  return key


def draw_randomness(seed: tf.Tensor, *, num_tokens: tf.Tensor,
                    max_predictions_per_seq: int,
                    vocab_size: int) -> Dict[str, tf.Tensor]:
  """The random numbers masking one example needs.

  Args:
    seed: int64 [2], from `example_seed`.
    num_tokens: int32 scalar, the example's length.
    max_predictions_per_seq: P, the most predictions per sequence.
    vocab_size: random tokens are drawn from [0, vocab_size).

  Returns:
    ``priorities`` float32 [num_tokens], ``decisions`` float32 [P] and
    ``random_ids`` int32 [P].
  """
  seeds = tf.random.experimental.stateless_split(seed, 3, alg=_ALG)
  return {
      "priorities": tf.random.stateless_uniform([num_tokens], seeds[0],
                                                alg=_ALG),
      "decisions": tf.random.stateless_uniform([max_predictions_per_seq],
                                               seeds[1], alg=_ALG),
      "random_ids": tf.random.stateless_uniform(
          [max_predictions_per_seq], seeds[2], minval=0, maxval=vocab_size,
          dtype=tf.int32, alg=_ALG),
  }


def mask_batch(input_word_ids: tf.RaggedTensor, *, priorities: tf.RaggedTensor,
               decisions: tf.Tensor, random_ids: tf.Tensor, vocab_size: int,
               mask_id: int, unmaskable_ids: Sequence[int],
               max_predictions_per_seq: int, masked_lm_prob: float = 0.15
              ) -> Dict[str, tf.RaggedTensor]:
  """Masks a batch of token sequences.

  Args:
    input_word_ids: int32 [B, (L)], token ids with special tokens.
    priorities: float32 [B, (L)], from `draw_randomness`.
    decisions: float32 [B, P], from `draw_randomness`.
    random_ids: int32 [B, P], from `draw_randomness`.
    vocab_size: the vocab size.
    mask_id: the id of [MASK].
    unmaskable_ids: ids never masked ([CLS], [SEP], [PAD]).
    max_predictions_per_seq: P.
    masked_lm_prob: the fraction of maskable tokens predicted.

  Returns:
    ``input_word_ids`` int32 [B, (L)] after masking, ``masked_lm_positions``
    int64 [B, (num_masked)] in increasing order and ``masked_lm_ids`` int32
    [B, (num_masked)], the original tokens there.
  """
  selector = StatelessItemSelector(priorities, max_predictions_per_seq,
                                   masked_lm_prob, unmaskable_ids)
  chooser = StatelessMaskValuesChooser(vocab_size, mask_id, decisions,
                                       random_ids)
  masked, positions, labels = text.mask_language_model(input_word_ids,
                                                       selector, chooser)
  return {"input_word_ids": masked, "masked_lm_positions": positions,
          "masked_lm_ids": labels}
