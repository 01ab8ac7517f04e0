"""configs/bert_lamb.gin, shortened, learns on the test corpus."""

import json
import os

import gin
import tensorflow as tf

from conftest import ROOT
from conftest import TINY_DATA
from trainer import configurables


def _evals(model_dir):
  with open(os.path.join(model_dir, "metrics.jsonl")) as f:
    return [r for r in map(json.loads, f) if "eval_mlm_loss" in r]


def test_default_config_shortened_learns(data_dir, tmp_path):
  # The default's model shape, optimizer and schedule (warmup fraction and
  # decay), on the tiny corpus's dataset and for fewer steps, in float32 so
  # that every CPU computes the same numbers.
  gin.clear_config()
  gin.add_config_file_search_path(ROOT)
  gin.parse_config_files_and_bindings(
      [os.path.join(ROOT, "configs", "bert_lamb.gin")],
      TINY_DATA + ["train.total_steps = 90", "train.global_batch_size = 32",
                   "train.steps_per_loop = 15",
                   "train.eval_every_steps = 15",
                   "train.checkpoint_every_steps = 90",
                   "train.eval_examples = 64",
                   "train.parallel_micro_batches = 1",
                   'train.mixed_precision = "float32"'])
  configurables.train(model_dir=str(tmp_path), data_dir=data_dir,
                      strategy=tf.distribute.OneDeviceStrategy("/cpu:0"))
  with open(tmp_path / "encoder_config.json") as f:
    encoder = json.load(f)
  assert (encoder["num_layers"], encoder["hidden_size"]) == (2, 128)
  evals = _evals(tmp_path)
  assert len(evals) == 6, evals
  first, last = evals[0], evals[-1]
  # A model that learned nothing stays near ln(512) = 6.24; this one went
  # from 6.03-6.05 (step 15) to 5.54-5.56 (step 90). Its accuracy is not
  # asserted: 90 steps at the default's rate leave it on frequent tokens.
  assert last["eval_mlm_loss"] < first["eval_mlm_loss"] - 0.3, evals
