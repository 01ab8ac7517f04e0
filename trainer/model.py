"""BERT for pretraining, from tf-models-official, and its loss.

The network is the Model Garden's `BertEncoderV2` (gin name `BertEncoder`, so
model size is set with its own argument names: `BertEncoder.num_layers`,
`.hidden_size`, `.num_attention_heads`, `.inner_dim`, `.output_dropout`,
`.attention_dropout`, `.max_sequence_length`) inside `BertPretrainerV2` with a
masked-LM head tied to the word embeddings and a next-sentence head, as in
`official/nlp/tasks/masked_lm.py`. Nothing here reads gin: the encoder is
passed in (`trainer/configurables.py` registers it for configs).
"""

import json

import tensorflow as tf
import tf_keras
from official.modeling import tf_utils
from official.nlp.modeling import layers
from official.nlp.modeling import models

# Sums a step reduces across micro-batches and replicas; ratios of them give
# the losses and accuracies of the whole global batch, whatever its split.
METRIC_SUMS = ("mlm_loss_sum", "mlm_weight_sum", "mlm_correct_sum",
               "nsp_loss_sum", "nsp_correct_sum", "num_examples")


def build_pretrainer(encoder, max_seq_length, max_predictions_per_seq):
  """Builds BertPretrainerV2 (MLM + next-sentence heads) around `encoder`.

  Args:
    encoder: a `networks.BertEncoderV2`, e.g.
      `networks.BertEncoderV2(vocab_size=512, num_layers=2, hidden_size=64)`.
    max_seq_length: longest input the data holds; checked against the
      encoder's position table (`BertEncoder.max_sequence_length`).
    max_predictions_per_seq: masked positions per example.

  Returns:
    A `tf_keras.Model` mapping the Model Garden feature dict to a dict with
    `mlm_logits` [batch, predictions, vocab] and `next_sentence` [batch, 2].
  """
  positions = encoder.get_config()["max_sequence_length"]
  if max_seq_length > positions:
    raise ValueError(
        f"data max_seq_length={max_seq_length} exceeds the model's position "
        f"table BertEncoder.max_sequence_length={positions}")
  cfg = encoder.get_config()
  # The next-sentence head keeps ClassificationHead's own Glorot-uniform
  # initialization, as the Model Garden's pretraining task does. LAMB scales
  # each layer's step by its weight norm, so a head started at stddev 0.02
  # (3.5x smaller at hidden 256) learns slowly, and so, measured, does the
  # masked LM: eval MLM accuracy 0.080 instead of 0.105 after 150 steps of
  # 64 (4 layers, hidden 256).
  nsp_head = layers.ClassificationHead(
      inner_dim=cfg["hidden_size"], num_classes=2,
      dropout_rate=cfg["output_dropout"], name="next_sentence")
  pretrainer = models.BertPretrainerV2(
      encoder_network=encoder,
      mlm_activation=tf_utils.get_activation("gelu"),
      mlm_initializer=tf_keras.initializers.TruncatedNormal(stddev=0.02),
      classification_heads=[nsp_head])
  # Build every layer now (the MLM head is built lazily on first call), so
  # that the variables are complete before the optimizer sees them.
  ids = tf.zeros([1, max_seq_length], tf.int32)
  pretrainer(dict(input_word_ids=ids, input_mask=ids, input_type_ids=ids,
                  masked_lm_positions=tf.zeros([1, max_predictions_per_seq],
                                               tf.int32)))
  return pretrainer


def encoder_config(encoder):
  """`BertEncoderV2`'s constructor arguments as plain JSON values, so that
  `networks.BertEncoderV2(**encoder_config(encoder))` rebuilds the network.

  The Model Garden's default activation (GELU, tanh approximation) is a
  lambda that does not serialize; it is left out, so the default applies.
  """
  config = dict(encoder.get_config())
  if config.get("embedding_layer") is not None:
    raise ValueError("an encoder with a custom embedding layer has no JSON "
                     "config")
  config.pop("embedding_layer", None)
  if config.get("inner_activation") == "<lambda>":
    config.pop("inner_activation")
  config["initializer"] = tf_keras.initializers.serialize(
      tf_keras.initializers.get(config["initializer"]))
  return json.loads(json.dumps(config, default=dict))


def trained_variables(pretrainer):
  """The variables pretraining updates: all trainable ones but the encoder's
  pooler, which BertPretrainerV2 does not use (the next-sentence head pools
  the [CLS] token itself), so it gets no gradient and no weight decay."""
  pooler = {id(v) for v in pretrainer.encoder_network.pooler_layer.weights}
  return [v for v in pretrainer.trainable_variables if id(v) not in pooler]


def forward(pretrainer, batch, training, compact=True):
  """The pretrainer's outputs, with the masked-LM head on flat predictions.

  The same layers and math as `pretrainer(batch)`, but the MLM head runs on
  the predictions as one flat list, [N, vocab] logits instead of [batch,
  predictions, vocab]. With `compact`, N counts only the real predictions
  (`masked_lm_weights > 0`): at sequence 128 about 30% of the 20 slots per
  example are padding, and each costs the vocab-sized output layer for a
  loss of weight zero. `compact` makes N vary from batch to batch, so it is
  off where shapes must be static (XLA, TPU).

  Args:
    pretrainer: the `build_pretrainer` model.
    batch: the data feature dict.
    training: run dropout.
    compact: keep only the real predictions.

  Returns:
    A dict: `mlm_logits` [N, vocab], `mlm_ids` [N] and `mlm_weights` [N]
    (the targets and weights of those predictions), `next_sentence` [B, 2].
  """
  encoder_outputs = pretrainer.encoder_network(
      {k: batch[k] for k in ("input_word_ids", "input_mask",
                             "input_type_ids")}, training=training)
  sequence = encoder_outputs["sequence_output"]
  ids, weights = batch["masked_lm_ids"], batch["masked_lm_weights"]
  # As one sequence of B x L tokens, the head's own gather takes flat
  # positions: example b's position p is b * L + p.
  offsets = tf.range(tf.shape(ids)[0]) * tf.shape(sequence)[1]
  positions = (tf.cast(batch["masked_lm_positions"], tf.int32) +
               offsets[:, None])
  if compact:
    real = weights > 0
    positions, ids, weights = (tf.boolean_mask(x, real)
                               for x in (positions, ids, weights))
  else:
    positions, ids, weights = (tf.reshape(x, [-1])
                               for x in (positions, ids, weights))
  mlm_logits = pretrainer.masked_lm(
      tf.reshape(sequence, [1, -1, sequence.shape[-1]]),
      masked_positions=positions[None])[0]
  nsp_head, = pretrainer.classification_heads
  return dict(mlm_logits=mlm_logits, mlm_ids=ids, mlm_weights=weights,
              next_sentence=nsp_head(sequence, training=training))


def metric_sums(batch, outputs):
  """Unnormalized losses and counts of one (micro-)batch.

  Args:
    batch: the data feature dict (`next_sentence_labels` [B] or [B, 1]).
    outputs: `forward`'s output dict.

  Returns:
    A dict of float32 scalars keyed by `METRIC_SUMS`.
  """
  mlm_logits = tf.cast(outputs["mlm_logits"], tf.float32)
  mlm_ids = outputs["mlm_ids"]
  weights = tf.cast(outputs["mlm_weights"], tf.float32)
  mlm_losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=mlm_ids, logits=mlm_logits)
  mlm_hits = tf.cast(
      tf.equal(tf.argmax(mlm_logits, -1, output_type=mlm_ids.dtype), mlm_ids),
      tf.float32)
  nsp_logits = tf.cast(outputs["next_sentence"], tf.float32)
  nsp_labels = tf.reshape(batch["next_sentence_labels"], [-1])
  nsp_losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=nsp_labels, logits=nsp_logits)
  nsp_hits = tf.cast(
      tf.equal(tf.argmax(nsp_logits, -1, output_type=nsp_labels.dtype),
               nsp_labels), tf.float32)
  return dict(
      mlm_loss_sum=tf.reduce_sum(mlm_losses * weights),
      mlm_weight_sum=tf.reduce_sum(weights),
      mlm_correct_sum=tf.reduce_sum(mlm_hits * weights),
      nsp_loss_sum=tf.reduce_sum(nsp_losses),
      nsp_correct_sum=tf.reduce_sum(nsp_hits),
      num_examples=tf.cast(tf.size(nsp_labels), tf.float32))


def summarize(sums):
  """Turns reduced `METRIC_SUMS` (numpy or tensors) into reported metrics."""
  mlm_w = max(float(sums["mlm_weight_sum"]), 1e-12)
  n = max(float(sums["num_examples"]), 1e-12)
  mlm_loss = float(sums["mlm_loss_sum"]) / mlm_w
  nsp_loss = float(sums["nsp_loss_sum"]) / n
  return dict(loss=mlm_loss + nsp_loss, mlm_loss=mlm_loss,
              mlm_accuracy=float(sums["mlm_correct_sum"]) / mlm_w,
              nsp_loss=nsp_loss,
              nsp_accuracy=float(sums["nsp_correct_sum"]) / n)
