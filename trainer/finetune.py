r"""Fine-tunes an exported encoder on sentence (pair) classification.

  python -m trainer.finetune --export_dir=export/bert --model_dir=runs/ft \
      --gin_file=configs/finetune.gin [--task=glue/mrpc]

Run again with the same --model_dir to resume from its latest checkpoint.
The encoder is `BertEncoderV2(**EXPORT/encoder_config.json)` restored from
`EXPORT/checkpoint` (the Model Garden's `init_checkpoint` path, so dropout is
configurable), under a classification layer that reads [CLS] through a new
dense pooler (the Model Garden's `BertClassifier`), the export's pooled
output, or the mean over the tokens (`finetune.pooling`); text goes through
the export's own preprocessor
SavedModel. Writes to --model_dir: checkpoints,
TensorBoard summaries (train/, eval/), `metrics.jsonl` (train records, and
eval records with `eval_accuracy`, `eval_loss` and, for tasks that report
it, `eval_f1`) and `operative_config.gin`.

The recipe is BERT's (Devlin et al. 2019, Sec. 4 and A.3): AdamW (the Model
Garden's `AdamWeightDecay`: Adam with decoupled weight decay 0.01, epsilon
1e-6, no decay on LayerNorm and biases), linear warmup over
`warmup_fraction` of the steps, then linear decay to zero; dropout 0.1.
`finetune.optimizer = "lamb"` uses this project's LAMB with the same decay.

Exit codes: 0 done; 1 error (one line on stderr; --verbose for the
traceback); 130 interrupted.
"""

import functools
import json
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import gin

from trainer import cli


def define_flags(fv=flags.FLAGS):
  """Defines the command's flags in `fv` (tests pass their own)."""
  flags.DEFINE_string("export_dir", None, "An export of `python -m "
                      "trainer.export`.", flag_values=fv)
  flags.DEFINE_string("model_dir", None, "Checkpoints, summaries and "
                      "metrics.jsonl; an existing run here is resumed.",
                      flag_values=fv)
  flags.DEFINE_string("task", "tweet_sentiment", "tweet_sentiment "
                      "(offline), glue/NAME (TFDS), csv:TRAIN[,EVAL] or "
                      "tsv:TRAIN[,EVAL].", flag_values=fv)
  flags.DEFINE_string("data_dir", None, "TFDS data directory for glue/ "
                      "tasks.", flag_values=fv)
  flags.DEFINE_multi_string("gin_file", [], "Gin files (finetune.* "
                            "bindings).", flag_values=fv)
  flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. "
                            "'finetune.total_steps = 100'.", flag_values=fv)
  flags.DEFINE_enum("strategy", "auto", ["auto", "one_device", "mirrored",
                                         "multi_worker", "tpu"],
                    "Distribution strategy, as for trainer.main.",
                    flag_values=fv)
  flags.DEFINE_string("tpu", None, "Cloud TPU name or grpc:// address.",
                      flag_values=fv)
  flags.DEFINE_integer("cpu_replicas", 1, "Split the CPU into this many "
                       "logical devices (mirrored training without a GPU).",
                       flag_values=fv)
  flags.DEFINE_boolean("verbose", False, "Show tracebacks and TensorFlow "
                       "logs.", flag_values=fv)


EXPORT_FILES = ("encoder_config.json", "vocab.txt", "checkpoint",
                "preprocessor")
NO_DECAY = ["LayerNorm", "layer_norm", "bias"]


def check_export(export_dir):
  """The export's encoder config and checkpoint prefix, after checking that
  every part is there and that the vocab matches the encoder.

  Raises:
    FileNotFoundError: a part is missing.
    ValueError: the vocab's size differs from the encoder's vocab_size.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from data import vocab as vocab_lib  # pylint: disable=g-import-not-at-top
  missing = [f for f in EXPORT_FILES
             if not os.path.exists(os.path.join(export_dir, f))]
  if missing:
    raise FileNotFoundError(
        f"export {export_dir} lacks {', '.join(missing)}; make one with "
        f"python -m trainer.export --model_dir=RUN --export_dir=...")
  with open(os.path.join(export_dir, "encoder_config.json"),
            encoding="utf-8") as f:
    config = json.load(f)
  tokens = vocab_lib.load_vocab(os.path.join(export_dir, "vocab.txt"))
  if len(tokens) != config["vocab_size"]:
    raise ValueError(f"vocab.txt of {export_dir} has {len(tokens)} tokens "
                     f"but its encoder's vocab_size is {config['vocab_size']}")
  prefix = tf.train.latest_checkpoint(os.path.join(export_dir, "checkpoint"))
  if prefix is None:
    raise FileNotFoundError(f"no checkpoint in {export_dir}/checkpoint")
  return config, prefix


POOLINGS = ("cls", "encoder_pooler", "mean")


def build_classifier(config, num_classes, dropout, init_checkpoint, seed,
                     pooling="cls"):
  """A classifier on a BertEncoderV2 from `config`.

  Args:
    config: `BertEncoderV2` keyword arguments (the export's JSON).
    num_classes: outputs of the classification layer.
    dropout: dropout rate of the encoder and before the classifier.
    init_checkpoint: a checkpoint prefix holding `encoder`, or None for
      random initialization (the study's baseline).
    seed: seeds the random initialization of every layer.
    pooling: "cls": the Model Garden's BertClassifier, [CLS] through a new
      dense tanh pooler; "encoder_pooler": BertClassifier on the encoder's
      pooled output; "mean": the mean of the sequence output over the real
      tokens (input_mask), then dropout and the classification layer.

  Returns:
    A `tf_keras.Model` from the input dict to logits [batch, num_classes].
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf_keras  # pylint: disable=g-import-not-at-top
  from official.nlp.modeling import models  # pylint: disable=g-import-not-at-top
  from official.nlp.modeling import networks  # pylint: disable=g-import-not-at-top
  tf_keras.utils.set_random_seed(seed)
  encoder = networks.BertEncoderV2(**dict(
      config, output_dropout=dropout, attention_dropout=dropout))
  initializer = tf_keras.initializers.TruncatedNormal(stddev=0.02, seed=seed)
  if pooling not in POOLINGS:
    raise ValueError(f"finetune.pooling must be one of {POOLINGS}, got "
                     f"{pooling!r}")
  if pooling == "mean":
    inputs = {name: tf_keras.Input([None], dtype=tf.int32, name=name)
              for name in ("input_word_ids", "input_mask", "input_type_ids")}
    sequence = encoder(inputs)["sequence_output"]
    mask = tf.cast(inputs["input_mask"], sequence.dtype)[:, :, None]
    pooled = (tf.reduce_sum(sequence * mask, axis=1) /
              tf.maximum(tf.reduce_sum(mask, axis=1), 1.0))
    logits = tf_keras.layers.Dense(
        num_classes, kernel_initializer=initializer, name="classifier")(
            tf_keras.layers.Dropout(dropout)(pooled))
    classifier = tf_keras.Model(inputs, logits)
  else:
    classifier = models.BertClassifier(
        encoder, num_classes=num_classes, dropout_rate=dropout,
        use_encoder_pooler=pooling == "encoder_pooler",
        initializer=initializer)
  ids = tf.zeros([1, 2], tf.int32)
  classifier(dict(input_word_ids=ids, input_mask=ids, input_type_ids=ids))
  if init_checkpoint:
    tf.train.Checkpoint(encoder=encoder).read(
        init_checkpoint).expect_partial().assert_existing_objects_matched()
  return classifier


def make_optimizer(name, learning_rate, total_steps, warmup_steps,
                   weight_decay_rate):
  """AdamW (BERT's fine-tuning recipe) or LAMB, on the same schedule."""
  from official.modeling.optimization import legacy_adamw  # pylint: disable=g-import-not-at-top
  from trainer import schedule  # pylint: disable=g-import-not-at-top
  lr = schedule.WarmupPolynomialDecay(learning_rate, total_steps,
                                      warmup_steps)
  if name == "adamw":
    return legacy_adamw.AdamWeightDecay(
        learning_rate=lr, epsilon=1e-6, weight_decay_rate=weight_decay_rate,
        exclude_from_weight_decay=NO_DECAY)
  if name == "lamb":
    import lamb  # pylint: disable=g-import-not-at-top
    return lamb.LAMB(learning_rate=lr, weight_decay_rate=weight_decay_rate,
                     exclude_from_weight_decay=NO_DECAY)
  raise ValueError(f"finetune.optimizer must be 'adamw' or 'lamb', got "
                   f"{name!r}")


def example_order(num_examples, total_examples, seed):
  """Indices of the training examples in the order they are used: one
  shuffle per epoch. A function of the seed alone, so a resumed run picks
  up at `step * batch` with the same examples as an uninterrupted one."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(seed)
  epochs = -(-total_examples // num_examples)
  return np.concatenate([rng.permutation(num_examples)
                         for _ in range(epochs)])[:total_examples]


def _sums(logits, labels):
  """Unnormalized loss, hits, count and binary confusion counts [6]."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  logits = tf.cast(logits, tf.float32)
  losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                          logits=logits)
  pred = tf.argmax(logits, -1, output_type=labels.dtype)
  f32 = lambda x: tf.reduce_sum(tf.cast(x, tf.float32))  # noqa: E731
  return tf.stack([
      tf.reduce_sum(losses), f32(pred == labels),
      tf.cast(tf.size(labels), tf.float32),
      f32((pred == 1) & (labels == 1)), f32((pred == 1) & (labels != 1)),
      f32((pred != 1) & (labels == 1))])


def _metrics(sums, f1):
  loss, hits, n, tp, fp, fn = (float(x) for x in sums)
  out = dict(loss=loss / max(n, 1), accuracy=hits / max(n, 1))
  if f1:
    out["f1"] = 2 * tp / max(2 * tp + fp + fn, 1)
  return out


def _is_chief(strategy):
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True
  return (resolver.task_type == "chief" or
          (resolver.task_type == "worker" and resolver.task_id == 0 and
           "chief" not in resolver.cluster_spec().as_dict()))


def _log(model_dir, chief, writers, split, step, record, line):
  """One record to stdout, metrics.jsonl and TensorBoard."""
  print(line, flush=True)
  if not chief:
    return
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with open(os.path.join(model_dir, "metrics.jsonl"), "a",
            encoding="utf-8") as f:
    f.write(json.dumps(dict(step=step, time=time.time(), **record),
                       sort_keys=True) + "\n")
  with writers[split].as_default(step=step):
    for key, value in record.items():
      tf.summary.scalar(key.removeprefix("eval_"), value)
  writers[split].flush()


def _checkpointed_dropout(fn):
  """Runs `fn` with tf_keras's dropout drawing from a tf.random.Generator,
  whose state is a variable that the checkpoint saves, so a resumed run
  continues the same random stream (tf_keras's default, stateful random
  ops, would restart it)."""

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    import tf_keras  # pylint: disable=g-import-not-at-top
    enabled = tf_keras.backend.experimental.is_tf_random_generator_enabled()
    tf_keras.backend.experimental.enable_tf_random_generator()
    try:
      return fn(*args, **kwargs)
    finally:
      if not enabled:
        tf_keras.backend.experimental.disable_tf_random_generator()
  return wrapper


@_checkpointed_dropout
def finetune(model_dir, export_dir, task="tweet_sentiment", strategy=None,
             data_dir=None, *, total_steps=2000, global_batch_size=32,
             learning_rate=1e-4, warmup_fraction=0.1, seed=0,
             max_seq_length=64, train_examples=0, dropout=0.1,
             optimizer="adamw",
             weight_decay_rate=0.01, init="pretrained",
             pooling="cls", steps_per_loop=100,
             eval_every_steps=0, checkpoint_every_steps=500,
             keep_checkpoints=2):
  """Fine-tunes and evaluates; returns the final eval metrics.

  Args:
    model_dir: checkpoints, summaries, metrics.jsonl; resumed when it holds
      a checkpoint.
    export_dir: the `trainer.export` output to start from.
    task: a `classifier_data.load_task` name.
    strategy: a `tf.distribute.Strategy` (None: the default one).
    data_dir: TFDS's data directory for glue/ tasks.
    total_steps: optimizer steps.
    global_batch_size: examples per step over all replicas.
    learning_rate: peak learning rate, reached at the end of warmup.
    warmup_fraction: fraction of the steps of linear warmup.
    seed: initialization of the new layers (all layers with
      init="random"), data order and dropout.
    max_seq_length: tokens per example, at most the encoder's positions.
    train_examples: train on this many of the task's training examples, a
      fixed random subset, the same for every seed and init (0: all): how
      much pretraining buys depends on how few the labels are.
    dropout: dropout rate in the encoder and before the classifier.
    optimizer: "adamw" or "lamb".
    weight_decay_rate: decoupled weight decay (not on LayerNorm, biases).
    init: "pretrained" (the export's encoder) or "random" (same
      architecture, fresh weights: the baseline that shows what pretraining
      bought).
    pooling: what the classification layer reads: "cls", [CLS] through a
      new pooler (the Model Garden's `use_encoder_pooler=False`);
      "encoder_pooler", the encoder's pooled output (the export's
      next-sentence pooler, saturated after a short CPU pretraining run: 54%
      of its tanh units above 0.99 on the offline task's tweets, measured on
      a 1,000-step run of configs/bert_lamb.gin, so gradients barely pass
      it); "mean", the mean of the sequence output over the real tokens.
    steps_per_loop: steps per `tf.function` call and progress line.
    eval_every_steps: evaluate every this many steps (0: at the end only).
    checkpoint_every_steps: save every this many steps, and at the end.
    keep_checkpoints: checkpoints kept.

  Returns:
    A dict: `accuracy`, `loss` (and `f1`) on the task's eval split.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from trainer import checkpointing  # pylint: disable=g-import-not-at-top
  from trainer import classifier_data  # pylint: disable=g-import-not-at-top
  from trainer import reporting  # pylint: disable=g-import-not-at-top

  for name, value in (("total_steps", total_steps),
                      ("global_batch_size", global_batch_size),
                      ("steps_per_loop", steps_per_loop),
                      ("checkpoint_every_steps", checkpoint_every_steps)):
    if value <= 0:
      raise ValueError(f"finetune.{name} must be > 0, got {value}")
  if init not in ("pretrained", "random"):
    raise ValueError(f"finetune.init must be 'pretrained' or 'random', got "
                     f"{init!r}")
  strategy = strategy or tf.distribute.get_strategy()
  data = classifier_data.load_task(task, data_dir)
  config, init_checkpoint = check_export(export_dir)
  if not 3 <= max_seq_length <= config["max_sequence_length"]:
    raise ValueError(f"finetune.max_seq_length={max_seq_length} must be in "
                     f"[3, {config['max_sequence_length']}] (the encoder's "
                     f"position table)")
  preprocessor = tf.saved_model.load(os.path.join(export_dir, "preprocessor"))
  train = classifier_data.encode(preprocessor, data.train, max_seq_length)
  evals = classifier_data.encode(preprocessor, data.eval, max_seq_length)
  num_train = len(train["labels"])
  if not 0 <= train_examples <= num_train:
    raise ValueError(f"finetune.train_examples={train_examples} must be in "
                     f"[0, {num_train}] (the task's training examples)")
  if train_examples:
    keep = np.sort(np.random.RandomState(0).permutation(num_train)
                   [:train_examples])
    train = {k: v[keep] for k, v in train.items()}
    num_train = train_examples
  print(f"task {data.name}: {num_train} train, {len(evals['labels'])} eval "
        f"examples, classes {', '.join(data.class_names)}; init {init}",
        flush=True)

  chief = _is_chief(strategy)
  os.makedirs(model_dir, exist_ok=True)
  with strategy.scope():
    model = build_classifier(
        config, len(data.class_names), dropout,
        init_checkpoint if init == "pretrained" else None, seed,
        pooling)
    opt = make_optimizer(optimizer, learning_rate, total_steps,
                         int(round(warmup_fraction * total_steps)),
                         weight_decay_rate)
    # Everything a resumed run needs to continue exactly as if it had not
    # stopped: weights, optimizer slots and step, and the dropout layers'
    # random streams (tf_keras keeps those out of checkpoints).
    ckpt = tf.train.Checkpoint(
        model=model, optimizer=opt,
        dropout_generators=checkpointing.dropout_generators(model))
  manager = tf.train.CheckpointManager(ckpt, model_dir,
                                       max_to_keep=keep_checkpoints)
  latest = checkpointing.newest_intact(
      model_dir, lambda line: print(line, file=sys.stderr))
  if latest:
    checkpointing.point_to(model_dir, latest)
    # Optimizer slots are created on the first step and restored then.
    ckpt.restore(latest).assert_existing_objects_matched()
  step = int(opt.iterations.numpy())
  if step:
    print(f"resumed from {latest} at step {step}", flush=True)
  if chief:
    reporting.forget_after(model_dir, step)

  batch = global_batch_size
  order = example_order(num_train, total_steps * batch, seed)[step * batch:]
  tensors = {k: tf.constant(v) for k, v in train.items()}

  def gather(idx):
    return {k: tf.gather(v, idx) for k, v in tensors.items()}
  dataset = tf.data.Dataset.from_tensor_slices(order).batch(
      batch, drop_remainder=True).map(gather)
  iterator = iter(strategy.experimental_distribute_dataset(dataset))
  eval_dataset = strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensor_slices(evals).batch(batch))

  def step_fn(features):
    features = dict(features)
    labels = features.pop("labels")
    with tf.GradientTape() as tape:
      logits = model(features, training=True)
      sums = _sums(logits, labels)
      # The mean over the global batch: each replica divides its sum by the
      # global batch size, so the optimizer's cross-replica *sum* of the
      # gradients is the gradient of the global mean.
      loss = sums[0] / batch
    grads = tape.gradient(loss, model.trainable_variables)
    # The encoder's own pooler gets no gradient unless the classifier reads
    # it ("encoder_pooler"); it is left out rather than decayed.
    opt.apply_gradients([(g, v) for g, v in
                         zip(grads, model.trainable_variables)
                         if g is not None])
    return sums

  @tf.function
  def train_loop(iterator, steps):
    total = tf.zeros([6])
    for _ in tf.range(steps):
      total += strategy.reduce("SUM", strategy.run(
          step_fn, args=(next(iterator),)), axis=None)
    return total

  @tf.function
  def eval_step(features):
    def fn(features):
      features = dict(features)
      labels = features.pop("labels")
      return _sums(model(features, training=False), labels)
    return strategy.reduce("SUM", strategy.run(fn, args=(features,)),
                           axis=None)

  def evaluate(at_step):
    sums = np.zeros(6)
    for features in eval_dataset:
      sums += eval_step(features).numpy()
    metrics = _metrics(sums, data.f1)
    record = {f"eval_{k}": v for k, v in metrics.items()}
    _log(model_dir, chief, writers, "eval", at_step, record,
         f"eval step {at_step} | " + " | ".join(
             f"{k} {v:.4f}" for k, v in metrics.items()))
    return metrics

  writers = ({s: tf.summary.create_file_writer(os.path.join(model_dir, s))
              for s in ("train", "eval")} if chief else {})
  metrics = None
  while step < total_steps:
    steps = min(steps_per_loop, total_steps - step)
    start = time.time()
    sums = train_loop(iterator, tf.constant(steps)).numpy()
    seconds = time.time() - start
    step += steps
    train_metrics = _metrics(sums, False)
    rate = steps * batch / seconds
    lr = float(opt.learning_rate(step - 1))
    _log(model_dir, chief, writers, "train", step,
         dict(loss=train_metrics["loss"], accuracy=train_metrics["accuracy"],
              learning_rate=lr, examples_per_second=rate),
         f"step {step}/{total_steps} | loss {train_metrics['loss']:.4f} | "
         f"acc {train_metrics['accuracy']:.4f} | lr {lr:.3e} | "
         f"{rate:.1f} ex/s")
    if not np.isfinite(train_metrics["loss"]):
      raise FloatingPointError(f"the training loss is not finite at step "
                               f"{step}; lower finetune.learning_rate")
    if chief and not os.path.exists(
        os.path.join(model_dir, "operative_config.gin")):
      with open(os.path.join(model_dir, "operative_config.gin"), "w",
                encoding="utf-8") as f:
        f.write(gin.operative_config_str())
    metrics = None
    if eval_every_steps and step % eval_every_steps == 0:
      metrics = evaluate(step)
    if step % checkpoint_every_steps == 0 or step == total_steps:
      checkpointing.save([manager], step)
  if metrics is None:
    metrics = evaluate(step)
  for writer in writers.values():
    writer.close()
  return metrics


# The entry points' gin name, `finetune.*` (configs/finetune.gin); where the
# job runs and on what are arguments, not configuration. `finetune` itself
# takes plain arguments and never reads gin.
configured_finetune = gin.external_configurable(
    finetune, "finetune", module="trainer",
    denylist=["model_dir", "export_dir", "task", "strategy", "data_dir"])


def main(argv, fv=flags.FLAGS):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not fv.verbose:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.set_verbosity(logging.WARNING)
  return cli.run_command(lambda: run(fv), verbose=fv.verbose)


def run(fv):
  """Checks the flags, parses the config, picks the strategy, fine-tunes."""
  if not fv.export_dir or not fv.model_dir:
    raise ValueError("give --export_dir=EXPORT and --model_dir=DIR")
  for path in fv.gin_file:  # Checked before the slow TensorFlow import.
    if not os.path.exists(path):
      raise FileNotFoundError(f"gin file {path} does not exist")
  from trainer import distribute  # pylint: disable=g-import-not-at-top
  distribute.split_cpu(fv.cpu_replicas)
  strategy = distribute.create_strategy(fv.strategy, fv.tpu)
  # `include` lines in configs resolve from the repository root too.
  gin.add_config_file_search_path(
      os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  # Not finalized: the Model Garden registers configurables of its own as
  # its modules load, later.
  gin.parse_config_files_and_bindings(fv.gin_file, fv.gin_bindings,
                                      finalize_config=False)
  print(f"model_dir: {fv.model_dir}\n--- gin config ---\n"
        f"{gin.config_str()}------------------", flush=True)
  metrics = configured_finetune(fv.model_dir, fv.export_dir, fv.task,
                                 strategy, fv.data_dir)
  print("done: " + ", ".join(f"eval {k} {v:.4f}" for k, v in
                              metrics.items()) + f"; model_dir "
        f"{fv.model_dir}")
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(main)
