"""The peer's side of `scripts.bench_train`: the Model Garden's trainer.

It runs `python -m official.nlp.train --experiment=bert/pretraining` with a
YAML file written here (`theirs_config`: the work of `bench_work`) on the
exported TFRecords, and reads its rate and accuracy from orbit's absl log.
"""

import os
import re
import sys

from scripts import bench_work


def theirs_config(size, data_cfg, batch_size, steps, eval_batches, vocab_size,
                  train_path, eval_path, *, warmup, peak_learning_rate,
                  steps_per_loop):
  """The Model Garden experiment overrides: the same work as ours."""
  lr = peak_learning_rate
  model = bench_work.SIZES[size]
  data_common = dict(
      global_batch_size=batch_size, seq_length=data_cfg["max_seq_length"],
      max_predictions_per_seq=data_cfg["max_predictions_per_seq"],
      use_next_sentence_label=True, seed=bench_work.SEED)
  return dict(
      runtime=dict(distribution_strategy="one_device", num_gpus=0,
                   mixed_precision_dtype="float32"),
      task=dict(
          model=dict(
              encoder=dict(type="bert", bert=dict(
                  vocab_size=vocab_size, hidden_size=model["hidden"],
                  num_layers=model["layers"],
                  num_attention_heads=model["heads"],
                  intermediate_size=model["ffn"],
                  max_position_embeddings=512, type_vocab_size=2,
                  dropout_rate=bench_work.DROPOUT,
                  attention_dropout_rate=bench_work.DROPOUT)),
              # The default NSP head has inner_dim 768 (BERT-base); ours
              # pools to the hidden size.
              cls_heads=[dict(inner_dim=model["hidden"], num_classes=2,
                              dropout_rate=bench_work.DROPOUT,
                              name="next_sentence")]),
          train_data=dict(input_path=train_path, is_training=True,
                          **data_common),
          validation_data=dict(input_path=eval_path, is_training=False,
                               **data_common)),
      trainer=dict(
          train_steps=steps, steps_per_loop=steps_per_loop,
          summary_interval=steps_per_loop, checkpoint_interval=steps,
          validation_interval=steps, validation_steps=eval_batches,
          optimizer_config=dict(
              optimizer=dict(type="lamb", lamb=dict(
                  beta_1=0.9, beta_2=0.999, epsilon=1e-6,
                  weight_decay_rate=0.01,
                  exclude_from_weight_decay=(
                      bench_work.WEIGHT_DECAY_EXCLUDED))),
              learning_rate=dict(type="polynomial", polynomial=dict(
                  initial_learning_rate=lr, decay_steps=steps,
                  end_learning_rate=0.0, power=1.0)),
              warmup=dict(type="polynomial", polynomial=dict(
                  warmup_steps=warmup, power=1.0)))))


# An absl log line: "I1125 13:31:35.373152 140... controller.py:535] msg".
_LOG_LINE = re.compile(r"^[IWEF](\d\d)(\d\d) (\d\d):(\d\d):(\d\d\.\d+) +\d+ "
                       r"[^\]]*\] (.*)$")


def parse_orbit_log(text):
  """Train loop (step, seconds) records and the last eval's output text.

  Orbit logs `train | step: N | steps/sec: X | output: {...}` after each
  loop and ` eval | step: N | ... | output: {...}` after evaluating; the
  output dict may continue over the following lines.
  """
  loops, evals, current = [], [], None
  day, last = 0.0, None
  for line in text.splitlines():
    match = _LOG_LINE.match(line)
    if not match:
      if current is not None:
        current.append(line)
      continue
    current = None
    h, m, s, message = (int(match[3]), int(match[4]), float(match[5]),
                        match[6])
    seconds = h * 3600 + m * 60 + s
    if last is not None and seconds + day < last:
      day += 86400.0  # The run went past midnight.
    last = seconds + day
    train = re.match(r"train \| step: +(\d+) \| steps/sec", message)
    if train:
      loops.append((int(train[1]), last))
    elif re.match(r" ?eval \| step: +\d+ \| .*output:", message):
      current = [message]
      evals.append(current)
  return loops, "\n".join(evals[-1]) if evals else ""


def run_theirs(run_dir, config):
  """Trains with the Model Garden's trainer; same results as `run_ours`."""
  import yaml  # pylint: disable=g-import-not-at-top
  config_path = os.path.join(run_dir, "experiment.yaml")
  with open(config_path, "w") as f:
    yaml.safe_dump(config, f, sort_keys=False)
  rss = bench_work.run_child([sys.executable, "-m", "official.nlp.train",
                   "--experiment=bert/pretraining", "--mode=train_and_eval",
                   f"--model_dir={os.path.join(run_dir, 'model')}",
                   f"--config_file={config_path}", "--alsologtostderr"],
                  run_dir)
  with open(os.path.join(run_dir, "stderr.txt")) as f:
    loops, eval_text = parse_orbit_log(f.read())
  accuracy = re.search(
      r"'masked_lm_accuracy': (?:np\.float\d+\()?([-+0-9.eE]+)", eval_text)
  if not accuracy:
    raise RuntimeError(f"no eval masked_lm_accuracy in {run_dir}/stderr.txt")
  return dict(rate=bench_work.loop_rate(loops, config["task"]["train_data"][
      "global_batch_size"]), rss=rss, mlm_accuracy=float(accuracy[1]))
