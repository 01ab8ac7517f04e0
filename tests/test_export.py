"""trainer/export.py: what TensorFlow's own loaders make of an export.

A tiny pretraining run is trained once, in-process.
The reference is the run's checkpoint restored into the Model Garden's
`BertPretrainerV2` (masked-LM head included, every object matched), not the
exporter's own restore. Each loader is one the ecosystem uses: TF Hub's
`KerasLayer`, `BertEncoderV2` with `tf.train.Checkpoint(encoder=...)`, and
the Model Garden's `SentencePredictionTask.initialize`.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
from absl import flags
from official.modeling import tf_utils
from official.nlp.configs import encoders
from official.nlp.modeling import layers
from official.nlp.modeling import models
from official.nlp.modeling import networks
from official.nlp.tasks import sentence_prediction

import conftest
from data import vocab as vocab_lib
from trainer import export as export_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CORPUS = os.path.join(ROOT, "tests", "testdata", "tiny_corpus.txt")
SEQ = 32


def train_tiny_run(data_dir, model_dir, steps=4):
  """A real pretraining run of configs/tiny.gin, in-process."""
  conftest.run(model_dir, data_dir, f"train.total_steps = {steps}",
               "train.steps_per_loop = 4", "train.checkpoint_every_steps = 4",
               f"train.eval_every_steps = {steps}")
  return model_dir


@pytest.fixture(scope="session")
def pretrained_run(data_dir, tmp_path_factory):
  return train_tiny_run(data_dir, str(tmp_path_factory.mktemp("run")))


@pytest.fixture(scope="session")
def exported(pretrained_run, tmp_path_factory):
  out = os.path.join(str(tmp_path_factory.mktemp("export")), "bert")
  export_lib.export(pretrained_run, out, max_seq_length=SEQ)
  return out


def _inputs(vocab_size, batch=3, seq=SEQ, seed=0):
  rng = np.random.RandomState(seed)
  ids = rng.randint(5, vocab_size, size=(batch, seq)).astype(np.int32)
  mask = np.ones((batch, seq), np.int32)
  mask[1, seq // 2:] = 0  # A padded example.
  types = np.zeros((batch, seq), np.int32)
  types[:, seq // 2:] = 1
  return dict(input_word_ids=tf.constant(ids), input_mask=tf.constant(mask),
              input_type_ids=tf.constant(types))


def _reference(run, inputs):
  """Pooled and sequence outputs of the run's trained pretrainer: the Model
  Garden's BertPretrainerV2 restored in full from the training checkpoint;
  pooled = its next-sentence head's pooler on [CLS] (the export's choice)."""
  with open(os.path.join(run, "encoder_config.json")) as f:
    config = json.load(f)
  encoder = networks.BertEncoderV2(**config)
  head = layers.ClassificationHead(inner_dim=config["hidden_size"],
                                   num_classes=2, name="next_sentence")
  pretrainer = models.BertPretrainerV2(
      encoder_network=encoder, mlm_activation=tf_utils.get_activation("gelu"),
      classification_heads=[head])
  pretrainer(dict(inputs, masked_lm_positions=tf.zeros([3, 2], tf.int32)))
  prefix = tf.train.latest_checkpoint(run)
  status = tf.train.Checkpoint(model=pretrainer).read(prefix)
  status.expect_partial().assert_existing_objects_matched()
  sequence = encoder(inputs)["sequence_output"]
  return head.dense(sequence[:, 0]).numpy(), sequence.numpy(), config


def _assert_close(actual, expected, what):
  scale = np.max(np.abs(expected))
  np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * scale,
                             err_msg=what)


def test_three_loaders_agree_with_the_pretrainer(pretrained_run, exported):
  inputs = _inputs(512)
  pooled, sequence, config = _reference(pretrained_run, inputs)
  # Not vacuous: the encoder's own (untrained) pooler gives other values.
  untouched = networks.BertEncoderV2(**config)
  untouched(inputs)
  tf.train.Checkpoint(model=tf.train.Checkpoint(
      encoder_network=untouched)).read(
          tf.train.latest_checkpoint(pretrained_run)).expect_partial()
  assert np.max(np.abs(untouched(inputs)["pooled_output"].numpy() -
                       pooled)) > 1e-3

  # 1. TF Hub.
  hub_layer = hub.KerasLayer(os.path.join(exported, "encoder"),
                             trainable=True)
  out = hub_layer(inputs)
  _assert_close(out["pooled_output"].numpy(), pooled, "hub pooled")
  _assert_close(out["sequence_output"].numpy(), sequence, "hub sequence")
  assert len(out["encoder_outputs"]) == config["num_layers"]
  assert hub_layer.trainable_weights

  # 2. BertEncoderV2 from encoder_config.json and checkpoint/.
  with open(os.path.join(exported, "encoder_config.json")) as f:
    net = networks.BertEncoderV2(**json.load(f))
  net(inputs)
  ckpt = tf.train.latest_checkpoint(os.path.join(exported, "checkpoint"))
  tf.train.Checkpoint(encoder=net).read(ckpt).assert_existing_objects_matched()
  out = net(inputs)
  _assert_close(out["pooled_output"].numpy(), pooled, "checkpoint pooled")
  _assert_close(out["sequence_output"].numpy(), sequence,
                "checkpoint sequence")

  # 3. The Model Garden's fine-tuning task, init_checkpoint = checkpoint/,
  # with the next-sentence pooler as the classifier's (init_cls_pooler).
  bert = encoders.BertEncoderConfig(
      vocab_size=config["vocab_size"], hidden_size=config["hidden_size"],
      num_layers=config["num_layers"],
      num_attention_heads=config["num_attention_heads"],
      intermediate_size=config["inner_dim"],
      max_position_embeddings=config["max_sequence_length"],
      type_vocab_size=config["type_vocab_size"],
      dropout_rate=0.0, attention_dropout_rate=0.0)
  for use_encoder_pooler in (True, False):
    task = sentence_prediction.SentencePredictionTask(
        sentence_prediction.SentencePredictionConfig(
            init_checkpoint=os.path.join(exported, "checkpoint"),
            init_cls_pooler=not use_encoder_pooler,
            model=sentence_prediction.ModelConfig(
                num_classes=2, use_encoder_pooler=use_encoder_pooler,
                encoder=encoders.EncoderConfig(type="bert", bert=bert))))
    model = task.build_model()
    model(inputs)
    task.initialize(model)
    out = model.checkpoint_items["encoder"](inputs)
    _assert_close(out["sequence_output"].numpy(), sequence, "task sequence")
    if use_encoder_pooler:
      _assert_close(out["pooled_output"].numpy(), pooled, "task pooled")
    else:
      cls_pooler = model.checkpoint_items["sentence_prediction.pooler_dense"]
      _assert_close(cls_pooler(out["sequence_output"][:, 0]).numpy(), pooled,
                    "task init_cls_pooler")


def test_preprocessor_matches_the_runs_tokenizer(exported):
  tokens = vocab_lib.load_vocab(os.path.join(exported, "vocab.txt"))
  special = vocab_lib.special_ids(tokens)
  tokenizer = vocab_lib.make_tokenizer(
      tokens, lower_case=vocab_lib.is_lower_case(tokens))
  with open(TINY_CORPUS, encoding="utf-8") as f:
    sentences = [line.strip() for line in f if line.strip()][:64]
  sentences += ["Ünïcode ÀCCENTS and UPPER case", ""]
  preprocessor = hub.KerasLayer(os.path.join(exported, "preprocessor"))
  packed = {k: v.numpy() for k, v in preprocessor(tf.constant(sentences))
            .items()}
  expected = tokenizer.tokenize(sentences).to_list()
  assert packed["input_word_ids"].shape == (len(sentences), SEQ)
  long_ones = 0
  for row, ids in enumerate(expected):
    ids = [special.cls] + ids[:SEQ - 2] + [special.sep]
    long_ones += len(expected[row]) > SEQ - 2
    want = ids + [special.pad] * (SEQ - len(ids))
    assert packed["input_word_ids"][row].tolist() == want, sentences[row]
    assert packed["input_mask"][row].tolist() == (
        [1] * len(ids) + [0] * (SEQ - len(ids)))
  assert long_ones, "no sentence was long enough to test truncation"
  assert not packed["input_type_ids"].any()

  # Pairs, as TF Hub's preprocessors: tokenize, then bert_pack_inputs.
  loaded = tf.saved_model.load(os.path.join(exported, "preprocessor"))
  a, b = loaded.tokenize(tf.constant(sentences[:4])), loaded.tokenize(
      tf.constant(sentences[4:8]))
  pair = loaded.bert_pack_inputs([a, b], seq_length=tf.constant(16))
  assert pair["input_word_ids"].shape == (4, 16)
  types = pair["input_type_ids"].numpy()
  assert types.max() == 1 and (pair["input_word_ids"].numpy()[:, 0] ==
                               special.cls).all()
  # The preprocessor's output feeds the encoder.
  encoder = hub.KerasLayer(os.path.join(exported, "encoder"))
  assert encoder(pair)["pooled_output"].shape == (4, 64)
  assert encoder(preprocessor(tf.constant(["one more"])))[
      "sequence_output"].shape == (1, SEQ, 64)


def _cli(args):
  """`python -m trainer.export ARGS` in this process: (exit code, stderr)."""
  argv = ["export"] + args
  fv = flags.FlagValues()
  export_lib.define_flags(fv)
  fv(argv)
  import io  # pylint: disable=g-import-not-at-top
  import contextlib  # pylint: disable=g-import-not-at-top
  err = io.StringIO()
  with contextlib.redirect_stderr(err):
    code = export_lib.main(argv[:1], fv)
  return code, err.getvalue()


def _one_error_line(code, stderr, words):
  assert code != 0
  lines = stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), stderr
  assert words in lines[0], lines[0]


def test_bad_input(pretrained_run, tmp_path):
  empty_run = tmp_path / "empty_run"
  empty_run.mkdir()
  out = tmp_path / "out"
  _one_error_line(*_cli([f"--model_dir={empty_run}", f"--export_dir={out}"]),
                  "no checkpoint")
  _one_error_line(*_cli([f"--model_dir={pretrained_run}",
                         f"--export_dir={out}", "--max_seq_length=65"]),
                  "position table")
  assert not out.exists() and os.listdir(tmp_path) == ["empty_run"], (
      "something was left behind")
  full = tmp_path / "full"
  full.mkdir()
  (full / "x").write_text("keep me")
  _one_error_line(*_cli([f"--model_dir={pretrained_run}",
                         f"--export_dir={full}"]), "not empty")
  assert os.listdir(full) == ["x"]
  locked = tmp_path / "locked"
  locked.mkdir(mode=0o500)
  if os.access(locked, os.W_OK):  # Root writes anywhere; simulate instead.
    locked = "/proc/no_such_dir_here/out"
  else:
    locked = locked / "out"
  _one_error_line(*_cli([f"--model_dir={pretrained_run}",
                         f"--export_dir={locked}"]), "--export_dir")
  # The real command line: one line, no traceback.
  done = subprocess.run(
      [sys.executable, "-m", "trainer.export", f"--model_dir={empty_run}",
       f"--export_dir={full}"], cwd=ROOT, capture_output=True, text=True,
      timeout=300, check=False)
  _one_error_line(done.returncode, done.stderr, "not empty")
