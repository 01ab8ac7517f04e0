"""Tests of the trainer: configs, equivalences, resume, multi-worker, errors."""

import glob
import json
import os
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from conftest import assert_same
from conftest import cli
from conftest import cli_args
from conftest import cli_many
from conftest import free_port
from conftest import losses
from conftest import mirrored
from conftest import ROOT
from conftest import run
from conftest import TINY_CORPUS
from conftest import TINY_DATA
import data
from trainer import configurables
from trainer import runtime
from trainer import schedule as schedule_lib
from trainer import train as train_lib

# The pretraining configs; configs/base/ holds the blocks they include, and
# configs/finetune*.gin configure `trainer.finetune`, tested on their own.
CONFIGS = sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(
        os.path.join(ROOT, "configs", "**", "*.gin"), recursive=True)
    if "/base/" not in p and "finetune" not in os.path.basename(p))
# Every config at test size: the tiny data, a small encoder, a few steps of
# a small batch, float32, and a learning rate that moves in a few steps.
TINY_RUN = ["BertEncoder.num_layers = 2", "BertEncoder.hidden_size = 64",
            "BertEncoder.num_attention_heads = 2",
            "BertEncoder.inner_dim = 128",
            "BertEncoder.max_sequence_length = 64",
            "train.total_steps = 12", "train.steps_per_loop = 4",
            "train.global_batch_size = 16", "train.eval_examples = 16",
            "train.eval_every_steps = 12", "train.checkpoint_every_steps = 12",
            'train.mixed_precision = "float32"',
            "learning_rate_schedule.peak_learning_rate = 0.05"]


def test_the_configs_are_found():
  assert len(CONFIGS) >= 8 and "configs/bert_lamb.gin" in CONFIGS


@pytest.mark.parametrize("gin_file", CONFIGS)
def test_every_config_trains_and_the_loss_goes_down(gin_file, data_dir,
                                                    tmp_path):
  # Macros such as %MAX_SEQ_LENGTH may set dataset.max_seq_length: the tiny
  # data's bindings come last and win.
  gin.clear_config()
  gin.add_config_file_search_path(ROOT)
  gin.parse_config_files_and_bindings(
      [os.path.join(ROOT, gin_file)],
      TINY_RUN + TINY_DATA + ["train.parallel_micro_batches = 1"])
  metrics = configurables.train(
      model_dir=str(tmp_path), data_dir=data_dir,
      strategy=tf.distribute.OneDeviceStrategy("/cpu:0"))
  logged = losses(tmp_path)
  assert len(logged) == 3, logged
  assert logged[-1] < logged[0] - 0.1, logged
  assert metrics["loss"] < logged[0], (metrics, logged)
  assert os.path.exists(tmp_path / "operative_config.gin")


def test_a_model_builds_without_gin():
  from official.nlp.modeling import networks  # pylint: disable=g-import-not-at-top
  encoder = networks.BertEncoderV2(vocab_size=128, num_layers=1,
                                   hidden_size=32, num_attention_heads=2,
                                   inner_dim=64, max_sequence_length=64)
  model = train_lib.model_lib.build_pretrainer(encoder, 32, 5)
  assert model.count_params() > 5e3
  with pytest.raises(ValueError, match="max_sequence_length"):
    train_lib.model_lib.build_pretrainer(
        networks.BertEncoderV2(vocab_size=128, num_layers=1, hidden_size=32,
                               num_attention_heads=2, inner_dim=64,
                               max_sequence_length=16), 32, 5)


def test_dupe_factor_names_the_dataset(tmp_path):
  # `python -m data.prepare --dupe_factor=2` builds a dataset of its own
  # name; `dataset.dupe_factor = 2` trains on it.
  data_dir = str(tmp_path / "data")
  data.prepare_dataset(data_dir, corpus=TINY_CORPUS, vocab_size=512,
                       max_seq_length=32, dupe_factor=2, progress=False)
  run(tmp_path / "run", data_dir, "dataset.dupe_factor = 2",
      "train.total_steps = 2", "train.steps_per_loop = 2")
  assert losses(tmp_path / "run")
  # It trained on that dataset, without building the default one.
  built = [d for d in os.listdir(os.path.join(data_dir, "bert_pretraining"))
           if not d.startswith(".")]  # TFDS keeps a .config folder there.
  assert len(built) == 1 and built[0].endswith("-d2"), built


def test_loss_drops(data_dir, tmp_path):
  run(tmp_path, data_dir, "train.total_steps = 40",
      "train.steps_per_loop = 10", "train.eval_every_steps = 40",
      "train.checkpoint_every_steps = 40",
      "learning_rate_schedule.peak_learning_rate = 0.05")
  logged = losses(tmp_path)
  assert len(logged) == 4
  # From ~ln(512) + ln(2) = 6.9 at random init towards the unigram entropy.
  assert logged[-1] < logged[0] - 0.5, logged


def test_one_device_equals_mirrored(data_dir, tmp_path):
  run(tmp_path / "one", data_dir, "train.deterministic = True")
  run(tmp_path / "two", data_dir, "train.deterministic = True",
       strategy=mirrored())
  assert_same(tmp_path / "one", tmp_path / "two", rtol=1e-5)


def test_accumulation_equals_full_batch(data_dir, tmp_path):
  run(tmp_path / "full", data_dir)
  run(tmp_path / "accum", data_dir, "train.grad_accumulation_steps = 4")
  assert_same(tmp_path / "full", tmp_path / "accum", rtol=1e-5)


@pytest.mark.parametrize("accumulation", [1, 2])
def test_parallel_parts_equal_one_part(accumulation, data_dir, tmp_path):
  # Micro-batches of 8 / 4 examples in 3 parts: uneven parts (3+3+2, 2+1+1)
  # give the same sums as the whole micro-batch, in training and eval.
  steps = f"train.grad_accumulation_steps = {accumulation}"
  one = run(tmp_path / "one", data_dir, steps)
  three = run(tmp_path / "three", data_dir, steps,
              "train.parallel_micro_batches = 3")
  assert_same(tmp_path / "one", tmp_path / "three", rtol=1e-5)
  assert one.keys() == three.keys()
  for k in one:
    np.testing.assert_allclose(one[k], three[k], rtol=1e-5, err_msg=k)


def test_parallel_micro_batches_auto(monkeypatch):
  threads = []
  monkeypatch.setattr(tf.config.threading,
                      "set_intra_op_parallelism_threads", threads.append)
  monkeypatch.delenv("TF_NUM_INTRAOP_THREADS", raising=False)
  monkeypatch.setattr(os, "cpu_count", lambda: 8)

  def resolve(value, accelerator=False, local_replicas=1):
    parts, _ = runtime.resolve_parallel_micro_batches(
        value, accelerator=accelerator, local_replicas=local_replicas)
    runtime.set_cpu_threads(parts)
    return parts

  assert resolve(None) == 2 and threads == [4]
  assert resolve(4) == 4 and threads == [4, 2]
  # Replicas already run side by side; a TPU or GPU host feeds its chips.
  assert resolve(None, local_replicas=2) == 1
  assert resolve(None, accelerator=True) == 1
  monkeypatch.setattr(os, "cpu_count", lambda: 1)
  assert resolve(None) == 1 and threads == [4, 2]
  monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "3")  # The user's choice.
  assert resolve(2) == 2 and threads == [4, 2]
  for bad in (0, -1, 1.5):
    with pytest.raises(ValueError, match="train.parallel_micro_batches"):
      resolve(bad)


def test_jit_compile_trains_as_without(data_dir, tmp_path):
  # XLA needs static shapes: padding is kept and the MLM head runs on all
  # prediction slots; the losses and weights are the same up to rounding.
  run(tmp_path / "plain", data_dir)
  run(tmp_path / "jit", data_dir, "train.jit_compile = True",
      "train.grad_accumulation_steps = 2")
  assert_same(tmp_path / "plain", tmp_path / "jit", rtol=1e-4)


def test_resume_equals_uninterrupted(data_dir, tmp_path):
  whole, resumed = tmp_path / "whole", tmp_path / "resumed"
  run(whole, data_dir, "train.deterministic = True")
  run(resumed, data_dir, "train.deterministic = True")
  # Crash after step 4: the step-8 checkpoint and later records never
  # existed, so the rerun resumes from step 4.
  for path in glob.glob(str(resumed / "ckpt-8*")):
    os.remove(path)
  tf.compat.v1.train.update_checkpoint_state(str(resumed),
                                             str(resumed / "ckpt-4"))
  with open(resumed / "metrics.jsonl") as f:
    kept = [line for line in f if json.loads(line)["step"] <= 4]
  with open(resumed / "metrics.jsonl", "w") as f:
    f.writelines(kept)
  run(resumed, data_dir, "train.deterministic = True")
  assert_same(whole, resumed, rtol=0)


def test_schedule_values():
  s = schedule_lib.WarmupPolynomialDecay(
      peak_learning_rate=1.0, total_steps=110, warmup_steps=10)
  got = [float(s(t)) for t in (0, 4, 9, 10, 60, 110, 200)]
  np.testing.assert_allclose(got, [0.1, 0.5, 1.0, 1.0, 0.5, 0.0, 0.0],
                             atol=1e-6)
  poly = schedule_lib.learning_rate_schedule(
      100, peak_learning_rate=2.0, warmup_fraction=0.2, decay_power=2.0,
      end_learning_rate=0.5)
  assert poly.warmup_steps == 20
  np.testing.assert_allclose(float(poly(60)), 0.5 + 1.5 * 0.25, rtol=1e-6)
  with pytest.raises(ValueError, match="warmup_steps"):
    schedule_lib.learning_rate_schedule(10, peak_learning_rate=1.0,
                                        warmup_steps=1, warmup_fraction=0.1)


def test_multi_worker_matches_single_process(data_dir, tmp_path):
  # The workers start on an empty data dir: the chief builds the dataset,
  # the other worker waits for it, and they train as one process does on
  # the dataset built alone.
  ports = [free_port(), free_port()]
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  procs = [subprocess.Popen(
      [sys.executable, "-m", "trainer.main",
       *cli_args(tmp_path / "mw", tmp_path / "fresh_data", parallel=2)],
      cwd=ROOT, env={**os.environ, "TF_CONFIG": json.dumps(
          {"cluster": cluster, "task": {"type": "worker", "index": i}})},
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  outs = [p.communicate(timeout=300)[0] for p in procs]
  assert all(p.returncode == 0 for p in procs), outs
  assert "2 replica(s)" in outs[0]
  run(tmp_path / "single", data_dir,
       strategy=mirrored())
  assert_same(tmp_path / "mw", tmp_path / "single", rtol=1e-5)


@pytest.mark.parametrize("bindings,message", [
    (["train.no_such_arg = 1"], "no_such_arg"),
    (["NoSuchThing.x = 1"], "NoSuchThing"),
    (["train.global_batch_size = 0"], "global_batch_size"),
    (["train.global_batch_size = 6", "train.grad_accumulation_steps = 4"],
     "not divisible"),
    (["train.total_steps = -5"], "total_steps"),
])
def test_bad_config_is_named(bindings, message, data_dir, tmp_path):
  with pytest.raises(ValueError, match=message):
    run(tmp_path, data_dir, *bindings)
  assert not os.path.exists(tmp_path / "checkpoint")


def test_cli_errors_are_one_line(data_dir, tmp_path):
  bad = tmp_path / "bad.gin"
  bad.write_text("train.total_steps = = 3\n")
  cases = [
      (cli_args(tmp_path, data_dir, "train.total_steps = -5"), "total_steps"),
      (["--gin_file=" + str(bad)], "bad.gin"),
      (["--gin_file=configs/nope.gin"], "nope.gin"),
      (["--gin_file=configs/tiny.gin", "--strategy=warp"], "warp"),
      (["--gin_file=configs/tiny.gin",
        "--gin_bindings=train.parallel_micro_batches = -1"],
       "parallel_micro_batches"),
      (["--gin_file=configs/tiny.gin", "--tpu=grpc://127.0.0.1:1",
        "--tpu_timeout=3"], "cannot reach TPU"),
  ]
  for (args, message), result in zip(cases, cli_many([a for a, _ in cases])):
    assert result.returncode == 1, (args, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [l for l in result.stderr.splitlines() if message in l]
    assert len(errors) == 1, (args, result.stderr)


def test_unwritable_model_dir(data_dir, tmp_path):
  locked = tmp_path / "locked"
  locked.mkdir()
  locked.chmod(0o500)
  if os.access(locked / "x", os.W_OK) or os.geteuid() == 0:
    # root ignores permission bits: use a path below a regular file instead.
    (tmp_path / "file").write_text("")
    locked = tmp_path / "file" / "run"
  result = cli(*cli_args(locked, data_dir))
  assert result.returncode == 1
  assert "not writable" in result.stderr and "Traceback" not in result.stderr


def test_mismatched_checkpoint_is_left_untouched(data_dir, tmp_path):
  run(tmp_path, data_dir, "train.total_steps = 4")
  before = {p: os.path.getmtime(p) for p in glob.glob(str(tmp_path / "*"))}
  result = cli(*cli_args(tmp_path, data_dir, "BertEncoder.hidden_size = 32",
                           "train.total_steps = 8"))
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert "shape" in result.stderr.lower(), result.stderr
  after = {p: os.path.getmtime(p) for p in glob.glob(str(tmp_path / "*"))}
  assert before == after


def test_model_is_the_model_gardens():
  """Our pretrainer against the Model Garden's pretraining task's model of
  the same shape: the same variables, initial value distributions (which
  matter under LAMB, whose steps scale with each layer's norm) and, with the
  same weights, the same logits and loss."""
  from official.nlp.configs import bert
  from official.nlp.configs import encoders
  from official.nlp.tasks import masked_lm
  from official.nlp.modeling import networks
  from trainer import model as model_lib

  shape = dict(num_layers=2, hidden_size=64, num_attention_heads=2)
  tf_keras.utils.set_random_seed(0)
  ours = model_lib.build_pretrainer(networks.BertEncoderV2(
      vocab_size=512, inner_dim=256, type_vocab_size=2,
      max_sequence_length=512, **shape), 32, 5)
  task = masked_lm.MaskedLMTask(masked_lm.MaskedLMConfig(
      model=bert.PretrainerConfig(
          encoder=encoders.EncoderConfig(
              type="bert_v2", bert_v2=encoders.BertEncoderConfig(
                  vocab_size=512, intermediate_size=256, **shape)),
          cls_heads=[bert.ClsHeadConfig(inner_dim=64, num_classes=2,
                                        name="next_sentence")])))
  theirs = task.build_model()
  rng = np.random.RandomState(0)
  batch = dict(
      input_word_ids=tf.constant(rng.randint(5, 512, [4, 32]), tf.int32),
      input_mask=tf.ones([4, 32], tf.int32),
      input_type_ids=tf.constant(np.repeat([[0] * 16 + [1] * 16], 4, 0),
                                 tf.int32),
      masked_lm_positions=tf.constant(rng.randint(1, 32, [4, 5]), tf.int32),
      masked_lm_ids=tf.constant(rng.randint(5, 512, [4, 5]), tf.int32),
      masked_lm_weights=tf.constant([[1.0] * 4 + [0.0]] * 4),
      next_sentence_labels=tf.constant([[0], [1], [0], [1]], tf.int32))
  theirs(batch)

  def by_name(model):
    return {v.name.split("/", 1)[-1]: v for v in model.trainable_variables}

  mine, garden = by_name(ours), by_name(theirs)
  assert mine.keys() == garden.keys()
  for name, v in mine.items():
    a, b = v.numpy(), garden[name].numpy()
    assert a.shape == b.shape, name
    # Means within 6 standard errors (random init: 128 values or more).
    np.testing.assert_allclose(a.mean(), b.mean(), err_msg=name,
                               atol=6 * max(a.std(), b.std()) / np.sqrt(
                                   a.size) + 1e-6)
    np.testing.assert_allclose(a.std(), b.std(), rtol=0.3, atol=1e-6,
                               err_msg=name)
    v.assign(b)
  outputs = model_lib.forward(ours, batch, training=False, compact=True)
  sums = model_lib.metric_sums(batch, outputs)
  loss = (sums["mlm_loss_sum"] / sums["mlm_weight_sum"] +
          sums["nsp_loss_sum"] / sums["num_examples"])
  expected = task.build_losses(
      batch, theirs(batch, training=False),
      [tf_keras.metrics.Mean(name=n)
       for n in ("lm_example_loss", "next_sentence_loss")])
  np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)
