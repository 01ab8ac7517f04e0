"""Our trainer's side of `scripts.bench_train`: bindings, run, results.

Our trainer runs `python -m trainer.main` with configs/bert_lamb.gin and the
bindings of `ours_bindings`, which set the work of `bench_work`.
"""

import json
import os
import sys

from scripts import bench_work


def ours_bindings(size, data_cfg, batch_size, steps, eval_batches, *,
                  warmup, peak_learning_rate, bucket_width, micro_batches,
                  steps_per_loop, parallel_micro_batches=None):
  """Gin bindings over configs/bert_lamb.gin that set the shared work.

  Args:
    size: a key of `bench_work.SIZES`.
    data_cfg: `bench_work.DATA` or `QUICK_DATA`.
    batch_size: the global batch.
    steps: optimizer steps.
    eval_batches: batches of `batch_size` evaluated at the end.
    warmup, peak_learning_rate: from `bench_work.schedule`.
    bucket_width: length buckets (None: full-length batches).
    micro_batches: `train.grad_accumulation_steps`, length-sorted and cut.
    steps_per_loop: steps per host loop and log record.
    parallel_micro_batches: parts of each micro-batch (None: automatic).

  Returns:
    A list of gin binding strings.
  """
  lr = peak_learning_rate
  model = bench_work.SIZES[size]
  return [
      f"dataset.corpus = {json.dumps(data_cfg['corpus'])}",
      f"dataset.vocab_size = {data_cfg['vocab_size']}",
      f"dataset.max_seq_length = {data_cfg['max_seq_length']}",
      "dataset.max_predictions_per_seq = "
      f"{data_cfg['max_predictions_per_seq']}",
      'dataset.masking = "static"',
      f"dataset.bucket_width = {bucket_width}",
      f"BertEncoder.num_layers = {model['layers']}",
      f"BertEncoder.hidden_size = {model['hidden']}",
      f"BertEncoder.num_attention_heads = {model['heads']}",
      f"BertEncoder.inner_dim = {model['ffn']}",
      "BertEncoder.max_sequence_length = 512",
      "BertEncoder.type_vocab_size = 2",
      "BertEncoder.norm_first = False",  # Post-LN, as the Model Garden's.
      f"BertEncoder.output_dropout = {bench_work.DROPOUT}",
      f"BertEncoder.attention_dropout = {bench_work.DROPOUT}",
      "train.optimizer = @LAMB",
      "LAMB.beta_1 = 0.9",
      "LAMB.beta_2 = 0.999",
      "LAMB.epsilon = 1e-6",
      "LAMB.weight_decay_rate = 0.01",
      f"LAMB.exclude_from_weight_decay = {bench_work.WEIGHT_DECAY_EXCLUDED}",
      # The Model Garden's polynomial warmup ends at the decay's value at the
      # end of warmup, lr * (1 - W / T), and its decay counts from step 0.
      # Our decay counts from the end of warmup, so a peak of lr * (1 - W / T)
      # gives the very same decay line and a warmup that differs by one step.
      "learning_rate_schedule.peak_learning_rate = "
      f"{lr * (1 - warmup / steps)!r}",
      "learning_rate_schedule.warmup_fraction = None",
      f"learning_rate_schedule.warmup_steps = {warmup}",
      "learning_rate_schedule.warmup_power = 1.0",
      "learning_rate_schedule.decay_power = 1.0",
      "learning_rate_schedule.end_learning_rate = 0.0",
      f"train.total_steps = {steps}",
      f"train.global_batch_size = {batch_size}",
      f"train.grad_accumulation_steps = {micro_batches}",
      f"train.trim_padding = {micro_batches > 1}",
      f"train.steps_per_loop = {steps_per_loop}",
      f"train.checkpoint_every_steps = {steps}",
      f"train.eval_every_steps = {steps}",
      # The same examples as theirs, whatever the accumulation.
      f"train.eval_examples = {eval_batches * batch_size}",
      f"train.seed = {bench_work.SEED}",
      f"train.parallel_micro_batches = {parallel_micro_batches}",
      "train.clip_global_norm = None",
      "train.mixed_precision = None",
  ]


def run_ours(run_dir, bindings, data_dir, batch_size):
  """Trains with our trainer; returns examples/s, peak RSS, MLM accuracy."""
  gin_path = os.path.join(run_dir, "bench.gin")
  with open(gin_path, "w") as f:
    f.write("\n".join(bindings) + "\n")
  model_dir = os.path.join(run_dir, "model")
  rss = bench_work.run_child(
      [sys.executable, "-m", "trainer.main",
       "--gin_file=configs/bert_lamb.gin", f"--gin_file={gin_path}",
       f"--model_dir={model_dir}"] +
      ([f"--data_dir={data_dir}"] if data_dir else []), run_dir)
  with open(os.path.join(model_dir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  loops = [(r["step"], r["time"]) for r in records
           if "examples_per_second" in r]
  evals = [r for r in records if "eval_mlm_accuracy" in r]
  # The value the trainer resolved and recorded.
  parts = operative_value(os.path.join(model_dir, "operative_config.gin"),
                          "train.parallel_micro_batches")
  return dict(rate=bench_work.loop_rate(loops, batch_size), rss=rss,
              mlm_accuracy=evals[-1]["eval_mlm_accuracy"], parts=int(parts))


def operative_value(path, name):
  """The value of `name` in an operative_config.gin, as written."""
  with open(path) as f:
    for line in f:
      if line.startswith(f"{name} = "):
        return line.split(" = ", 1)[1].strip()
  raise ValueError(f"{path} does not bind {name}")
