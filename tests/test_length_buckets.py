"""Length bucketing and padding trimming: less work, the same training."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.nlp.modeling import networks

from conftest import mirrored
from conftest import run
from conftest import TINY_CORPUS
from conftest import weights
import data
from trainer import model as model_lib

TINY_ARGS = dict(corpus=TINY_CORPUS, vocab_size=512, max_seq_length=32)


def _examples(batches):
  """Each example of `batches` as bytes, in order."""
  return [b"".join(np.asarray(b[k][i]).tobytes() for k in sorted(b))
          for b in batches for i in range(len(b["next_sentence_labels"]))]


def _stream(data_dir, **kwargs):
  args = dict(TINY_ARGS, data_dir=data_dir, global_batch_size=8,
              max_predictions_per_seq=5, masking="static", shuffle=False,
              repeat=False, drop_remainder=False)
  args.update(kwargs)
  return list(data.build_dataset(**args).as_numpy_iterator())


def test_buckets_reorder_the_same_examples(data_dir):
  plain = _stream(data_dir)
  grouped = _stream(data_dir, bucket_width=8)
  assert sorted(_examples(plain)) == sorted(_examples(grouped))
  lengths = [b["input_mask"].sum(1) for b in grouped]
  # All but the windows flushed at the end of the split are one bucket.
  one_bucket = [len(set((l - 1) // 8)) == 1 for l in lengths]
  assert sum(one_bucket) >= len(lengths) - 4
  assert np.mean([l.max() - l.mean() for l in lengths]) < np.mean(
      [l.max() - l.mean() for l in [b["input_mask"].sum(1) for b in plain]])


def test_buckets_do_not_depend_on_the_number_of_pipelines(data_dir):
  args = dict(TINY_ARGS, data_dir=data_dir, global_batch_size=8,
              max_predictions_per_seq=5, bucket_width=8)
  one = data.build_dataset(**args).take(6)
  shares = [data.build_dataset(tf.distribute.InputContext(2, i, 2),
                               **args).take(6) for i in range(2)]
  for batch, b0, b1 in zip(one.as_numpy_iterator(),
                           *[s.as_numpy_iterator() for s in shares]):
    # Pipeline i holds examples i, i + 2, ... of each global batch.
    for k in batch:
      np.testing.assert_array_equal(batch[k][0::2], b0[k], err_msg=k)
      np.testing.assert_array_equal(batch[k][1::2], b1[k], err_msg=k)


def test_trim_padding_keeps_the_losses():
  tf_keras.utils.set_random_seed(1)
  model = model_lib.build_pretrainer(
      networks.BertEncoderV2(vocab_size=100, num_layers=2, hidden_size=32,
                             num_attention_heads=2, inner_dim=64,
                             max_sequence_length=64),
      max_seq_length=64, max_predictions_per_seq=4)
  rng = np.random.default_rng(0)
  lengths = np.array([9, 17, 30, 12])
  mask = (np.arange(64)[None] < lengths[:, None]).astype(np.int32)
  batch = dict(
      input_word_ids=rng.integers(5, 100, (4, 64)).astype(np.int32) * mask,
      input_mask=mask,
      input_type_ids=(np.arange(64)[None] >= lengths[:, None] // 2
                      ).astype(np.int32) * mask,
      masked_lm_positions=np.stack([rng.choice(l, 4, replace=False)
                                    for l in lengths]).astype(np.int32),
      masked_lm_ids=rng.integers(5, 100, (4, 4)).astype(np.int32),
      # Padding prediction slots (weight 0) hold position 0, as in the data.
      masked_lm_weights=np.array([[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1],
                                  [1, 0, 0, 0]], np.float32),
      next_sentence_labels=rng.integers(0, 2, (4, 1)).astype(np.int32))
  batch["masked_lm_positions"] *= batch["masked_lm_weights"].astype(np.int32)
  trimmed = data.cut_to_longest(batch, multiple=8)
  assert trimmed["input_word_ids"].shape == (4, 32)
  assert trimmed["masked_lm_ids"].shape == (4, 4)
  # The oracle: the Model Garden pretrainer's own [B, P, vocab] logits on the
  # padded batch, with the weighted losses computed in numpy.
  logits = model(batch, training=False)["mlm_logits"].numpy().astype(
      np.float64)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  w = batch["masked_lm_weights"]
  nll = -np.take_along_axis(logp, batch["masked_lm_ids"][..., None], -1)[..., 0]
  hits = logits.argmax(-1) == batch["masked_lm_ids"]
  want = dict(mlm_loss_sum=(nll * w).sum(), mlm_weight_sum=w.sum(),
              mlm_correct_sum=(hits * w).sum())
  for b, compact in ((batch, False), (batch, True), (trimmed, True)):
    outputs = model_lib.forward(model, b, training=False, compact=compact)
    assert outputs["mlm_logits"].shape[0] == (10 if compact else 16)
    got = model_lib.metric_sums(b, outputs)
    for k in want:
      np.testing.assert_allclose(got[k], want[k], rtol=1e-5, err_msg=k)
  full = model_lib.metric_sums(batch, model_lib.forward(model, batch, False))
  cut = model_lib.metric_sums(trimmed,
                              model_lib.forward(model, trimmed, False))
  for k in full:
    np.testing.assert_allclose(full[k], cut[k], rtol=1e-5, err_msg=k)
  # Rounded up to the multiple, but never past the full length.
  assert data.cut_to_longest(batch, multiple=48)["input_mask"].shape == (4, 48)
  assert data.cut_to_longest(batch, multiple=70)["input_mask"].shape == (4, 64)


def _train(model_dir, data_dir, strategy, *bindings):
  run(model_dir, data_dir, "dataset.bucket_width = 8",
      "train.deterministic = True", *bindings, strategy=strategy)
  return weights(model_dir)


def _assert_close(a, b):
  """Two runs' weights agree to float rounding."""
  assert a.keys() == b.keys() and len(a) > 10
  for k in a:
    np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-5, err_msg=k)


def test_bucketed_training_same_on_one_device_and_mirrored(data_dir,
                                                           tmp_path):
  one = _train(tmp_path / "one", data_dir,
               tf.distribute.OneDeviceStrategy("/cpu:0"))
  two = _train(tmp_path / "two", data_dir, mirrored())
  _assert_close(one, two)


def test_trimmed_micro_batches_train_as_the_padded_batch(data_dir, tmp_path):
  one = tf.distribute.OneDeviceStrategy("/cpu:0")
  padded = _train(tmp_path / "padded", data_dir, one,
                  "dataset.bucket_width = None", "train.trim_padding = False")
  trimmed = _train(tmp_path / "trimmed", data_dir, one,
                   "dataset.bucket_width = None", "train.trim_padding = True",
                   "train.grad_accumulation_steps = 4")
  _assert_close(padded, trimmed)


def test_bucketed_batches_accumulate_as_one_batch(data_dir, tmp_path):
  # Bucketed batches leave the sequence length to run time; micro-batches
  # are cut from them all the same.
  one = tf.distribute.OneDeviceStrategy("/cpu:0")
  whole = _train(tmp_path / "whole", data_dir, one)
  micro = _train(tmp_path / "micro", data_dir, one,
                 "train.grad_accumulation_steps = 4")
  _assert_close(whole, micro)


@pytest.mark.parametrize("binding", ["train.jit_compile = True", None])
def test_trim_padding_is_refused_where_shapes_must_be_static(
    binding, monkeypatch, data_dir, tmp_path):
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  if binding is None:  # On TPU.
    class FakeTPU(tf.distribute.OneDeviceStrategy):
      pass
    monkeypatch.setattr(tf.distribute, "TPUStrategy", FakeTPU)
    strategy = FakeTPU("/cpu:0")
  with pytest.raises(ValueError, match="trim_padding"):
    _train(tmp_path, data_dir, strategy, "dataset.bucket_width = None",
           "train.trim_padding = True", *([binding] if binding else []))


def test_bucket_width_is_refused_on_tpu(monkeypatch, data_dir, tmp_path):
  class FakeTPU(tf.distribute.OneDeviceStrategy):
    pass
  monkeypatch.setattr(tf.distribute, "TPUStrategy", FakeTPU)
  with pytest.raises(ValueError, match="bucket_width"):
    _train(tmp_path, data_dir, FakeTPU("/cpu:0"))
