"""trainer/finetune.py and trainer/classifier_data.py on tiny exports.

The export comes from a stand-in pretraining run: a tiny BertEncoderV2 and
next-sentence head saved at the trainer's checkpoint paths, with a small
hand-made vocab, exported by `trainer.export`. Fine-tuning has to learn a
synthetic task that a keyword separates; a run stopped and resumed has to
end exactly where an uninterrupted one does.
"""

import contextlib
import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import flags
from official.nlp.modeling import layers
from official.nlp.modeling import networks

from data import vocab as vocab_lib
from trainer import checkpointing
from trainer import classifier_data
from trainer import export as export_lib
from trainer import finetune as finetune_lib
from trainer import model as model_lib

POSITIVE = ["good", "great", "fine", "nice"]
NEGATIVE = ["bad", "awful", "poor", "sad"]
FILLER = ["the", "movie", "film", "was", "is", "very", "plot", "actor",
          "story", "and", "it", "this", "of", "to"]
WORDS = POSITIVE + NEGATIVE + FILLER
# The few settings every run here shares: tiny, float32, fast.
TINY = dict(global_batch_size=16, max_seq_length=16, steps_per_loop=4,
            checkpoint_every_steps=4)


def _fake_run(run_dir):
  """A pretraining run's files (trainer layout) with an untrained model."""
  os.makedirs(run_dir)
  letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
  tokens = (list(vocab_lib.RESERVED_TOKENS) + letters +
            ["##" + c for c in letters] + WORDS + [".", ","])
  vocab_lib.write_vocab(tokens, os.path.join(run_dir, "vocab.txt"))
  encoder = networks.BertEncoderV2(
      vocab_size=len(tokens), hidden_size=32, num_layers=2,
      num_attention_heads=2, inner_dim=64, max_sequence_length=32)
  ids = tf.zeros([1, 4], tf.int32)
  encoder(dict(input_word_ids=ids, input_mask=ids, input_type_ids=ids))
  head = layers.ClassificationHead(inner_dim=32, num_classes=2,
                                   name="next_sentence")
  head(tf.zeros([1, 4, 32]))
  with open(os.path.join(run_dir, "encoder_config.json"), "w") as f:
    json.dump(model_lib.encoder_config(encoder), f)
  step = tf.Variable(8, dtype=tf.int64)
  tf.train.Checkpoint(
      model=tf.train.Checkpoint(encoder_network=encoder,
                                classification_heads=[head]),
      step=step).write(os.path.join(run_dir, "ckpt-8"))
  tf.compat.v1.train.update_checkpoint_state(run_dir, "ckpt-8")
  return run_dir


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("ft"))
  run = _fake_run(os.path.join(root, "run"))
  out = os.path.join(root, "export")
  export_lib.export(run, out, max_seq_length=16)
  return out


def _keyword_task(path, n, seed):
  """A CSV whose label is 1 iff the sentence has a positive keyword."""
  rng = np.random.RandomState(seed)
  lines = ["text,label"]
  for _ in range(n):
    label = rng.randint(2)
    words = list(rng.choice(FILLER, size=rng.randint(3, 8)))
    words.insert(rng.randint(len(words) + 1),
                 rng.choice(POSITIVE if label else NEGATIVE))
    lines.append(f"{' '.join(words)},{'pos' if label else 'neg'}")
  path.write_text("\n".join(lines) + "\n")
  return str(path)


@pytest.fixture(scope="module")
def keyword_task(tmp_path_factory):
  root = tmp_path_factory.mktemp("task")
  train = _keyword_task(root / "train.csv", 512, 0)
  evaluation = _keyword_task(root / "eval.csv", 128, 1)
  return f"csv:{train},{evaluation}"


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_learns_a_separable_task(export_dir, keyword_task, tmp_path, pooling):
  metrics = finetune_lib.finetune(
      str(tmp_path / "ft"), export_dir, keyword_task, total_steps=128,
      learning_rate=2e-3, warmup_fraction=0.1, dropout=0.0,
      pooling=pooling, **TINY)
  assert metrics["accuracy"] >= 0.95, metrics
  records = [json.loads(line) for line in
             open(tmp_path / "ft" / "metrics.jsonl")]
  assert records[0]["accuracy"] < 0.8  # It had to learn.
  assert records[-1]["eval_accuracy"] == metrics["accuracy"]
  assert os.path.exists(tmp_path / "ft" / "operative_config.gin")


def test_resume_equals_uninterrupted(export_dir, keyword_task, tmp_path):
  run = dict(total_steps=8, learning_rate=1e-3, dropout=0.1, seed=3, **TINY)
  model_dir = str(tmp_path / "ft")
  whole = finetune_lib.finetune(model_dir, export_dir, keyword_task, **run)

  def weights(step):
    reader = tf.train.load_checkpoint(os.path.join(model_dir, f"ckpt-{step}"))
    return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
            if n.startswith("model/")}
  uninterrupted = weights(8)
  assert len(uninterrupted) > 20
  # The process "died" right after saving step 4: forget step 8, resume.
  checkpointing.point_to(model_dir, os.path.join(model_dir, "ckpt-4"))
  for name in os.listdir(model_dir):
    if name.startswith("ckpt-8"):
      os.remove(os.path.join(model_dir, name))
  resumed = finetune_lib.finetune(model_dir, export_dir, keyword_task, **run)
  assert resumed == whole
  again = weights(8)
  for name, value in uninterrupted.items():
    np.testing.assert_array_equal(again[name], value, err_msg=name)
  # Not vacuous: steps 5-8 (with dropout) changed the weights.
  at_4 = weights(4)
  assert any(not np.array_equal(at_4[n], v) for n, v in again.items())
  steps = [json.loads(line)["step"] for line in
           open(os.path.join(model_dir, "metrics.jsonl"))]
  assert steps == [4, 8, 8], steps  # Train 4, train 8, eval 8: no repeats.


def test_glue_through_tfds_mock_data(export_dir, tmp_path):
  with tfds.testing.mock_data(num_examples=24,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    task = classifier_data.load_task("glue/mrpc")
    assert task.train.second_texts is not None and task.f1
    metrics = finetune_lib.finetune(
        str(tmp_path / "mrpc"), export_dir, "glue/mrpc", total_steps=4,
        optimizer="lamb", **TINY)
  assert set(metrics) == {"loss", "accuracy", "f1"}
  last = json.loads(open(tmp_path / "mrpc" / "metrics.jsonl")
                    .read().splitlines()[-1])
  assert {"eval_accuracy", "eval_loss", "eval_f1"} <= set(last)


def _cli(args):
  """`python -m trainer.finetune ARGS` in this process: (code, stderr)."""
  fv = flags.FlagValues()
  finetune_lib.define_flags(fv)
  fv(["finetune"] + args)
  err = io.StringIO()
  with contextlib.redirect_stderr(err), contextlib.redirect_stdout(
      io.StringIO()):
    code = finetune_lib.main(["finetune"], fv)
  return code, err.getvalue()


def test_bad_input(export_dir, keyword_task, tmp_path):
  def fails(words, export=export_dir, task=keyword_task):
    code, stderr = _cli([f"--export_dir={export}",
                         f"--model_dir={tmp_path / 'bad'}", f"--task={task}",
                         "--gin_bindings=finetune.total_steps = 1",
                         "--gin_bindings=finetune.max_seq_length = 16"])
    lines = stderr.strip().splitlines()
    assert code != 0 and len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and words in lines[0], lines[0]

  fails("unknown task", task="imdb")
  fails("unknown task", task="glue/nope")
  partial = tmp_path / "partial"
  partial.mkdir()
  (partial / "vocab.txt").write_text(
      open(os.path.join(export_dir, "vocab.txt")).read())
  fails("lacks encoder_config.json, checkpoint, preprocessor",
        export=str(partial))
  other_vocab = tmp_path / "other_vocab"
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.copytree(export_dir, other_vocab)
  with open(other_vocab / "vocab.txt", "a") as f:
    f.write("extra\n")
  fails("vocab_size", export=str(other_vocab))
  train, evaluation = keyword_task[4:].split(",")
  wrong = tmp_path / "wrong.csv"
  wrong.write_text(open(evaluation).read() + "the film,meh\n")
  fails("'meh', not one of the classes", task=f"csv:{train},{wrong}")
  with pytest.raises(ValueError, match=r"train_examples=1000000 must be in"):
    finetune_lib.finetune(str(tmp_path / "big"), export_dir, keyword_task,
                          total_steps=1, max_seq_length=16,
                          train_examples=10**6)
