r"""Exports a pretraining run's encoder in the formats TensorFlow users load.

  python -m trainer.export --model_dir=runs/bert_lamb --export_dir=export/bert

From the newest intact (or the given) checkpoint of a run, writes:

  encoder/              SavedModel with TF Hub's BERT encoder interface:
                        a dict of int32 `input_word_ids`, `input_mask`,
                        `input_type_ids` [batch, seq] -> `pooled_output`
                        [batch, hidden], `sequence_output` [batch, seq, hidden],
                        `encoder_outputs` (one [batch, seq, hidden] per layer)
                        and `default` (= pooled_output). Load it with
                        `hub.KerasLayer(path, trainable=True)`.
  preprocessor/         SavedModel: strings [batch] -> that input dict, with
                        the run's WordPiece vocab and casing; `.tokenize` and
                        `.bert_pack_inputs` for sentence pairs, as TF Hub's
                        BERT preprocessors (built by the Model Garden's own
                        `export_tfhub_lib`).
  checkpoint/           `tf.train.Checkpoint(encoder=<BertEncoderV2>,
                        **{"next_sentence.pooler_dense": <Dense>})`: the Model
                        Garden's `init_checkpoint` convention, so its
                        `bert/sentence_prediction` task starts from it, with
                        `init_cls_pooler` or without.
  encoder_config.json   `networks.BertEncoderV2(**json.load(f))` rebuilds it.
  vocab.txt, README.md  the vocab; the source run, step, eval metrics.

The pooled output. Pretraining never trains the encoder's own pooler
(`BertPretrainerV2` pools [CLS] inside the next-sentence head, which has its
own dense layer; see `trainer.model.trained_variables`), so that layer still
holds its random initialization. The export copies the next-sentence head's
trained `pooler_dense` into the encoder's `pooler_layer`, as the Model
Garden's `export_tfhub_lib.export_model(copy_pooler_dense_to_encoder=True)`
does: `pooled_output` is then tanh(W [CLS] + b) with the weights that learned
to tell consecutive sentences apart, the same features the head classified.
The checkpoint also keeps the head's layer where `init_cls_pooler` looks
for it.

Everything is written into a temporary directory beside --export_dir and
renamed into place at the end, so a failed export leaves nothing behind.
Exit codes: 0 done; 1 error (one line on stderr; --verbose for the traceback).
"""

import json
import os
import shutil
import sys
import tempfile

if __name__ == "__main__" and "--verbose" not in sys.argv:
  # Before TensorFlow loads: its C++ start-up logs (e.g. a failed CUDA
  # probe) would bury the one-line errors; --verbose shows them.
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

from absl import app  # noqa: E402  pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
from official.nlp.modeling import layers
from official.nlp.modeling import networks
from official.nlp.tools import export_tfhub_lib
import tensorflow as tf
import tensorflow_text as text
import tf_keras

from data import vocab as vocab_lib
from trainer import checkpointing
from trainer import cli


def define_flags(fv=flags.FLAGS):
  """Defines the command's flags in `fv` (tests pass their own)."""
  flags.DEFINE_string("model_dir", None, "The pretraining run to export.",
                      flag_values=fv)
  flags.DEFINE_string("export_dir", None, "Where to write the export; must "
                      "not exist yet or be empty.", flag_values=fv)
  flags.DEFINE_string("checkpoint", None, "A checkpoint prefix of the run "
                      "(e.g. RUN/ckpt-4000); default: the newest intact one.",
                      flag_values=fv)
  flags.DEFINE_integer("max_seq_length", None, "The preprocessor's default "
                       "sequence length; default: min(128, the encoder's "
                       "position table).", flag_values=fv)
  flags.DEFINE_boolean("verbose", False, "Show tracebacks and TensorFlow "
                       "logs.", flag_values=fv)


# The preprocessor's default length when none is given, as TF Hub's BERTs.
DEFAULT_SEQ_LENGTH = 128
CHECKPOINT_NAME = "bert_encoder"  # OUT/checkpoint/bert_encoder-0.{index,data*}


class ExportError(ValueError):
  """The run or the export directory cannot be used as given."""


def read_run_assets(model_dir):
  """The run's encoder config (a dict) and vocab (a list of tokens)."""
  config_path = os.path.join(model_dir, "encoder_config.json")
  if not os.path.isfile(config_path):
    raise ExportError(f"{config_path} does not exist: is {model_dir} a "
                      f"pretraining run's model_dir?")
  with open(config_path, encoding="utf-8") as f:
    config = json.load(f)
  tokens = vocab_lib.load_vocab(os.path.join(model_dir, "vocab.txt"))
  if len(tokens) != config["vocab_size"]:
    raise ExportError(f"vocab.txt has {len(tokens)} tokens but the encoder's "
                      f"vocab_size is {config['vocab_size']}")
  return config, tokens


def build_encoder_and_head(config):
  """A `BertEncoderV2` from its config, and a next-sentence head like the
  trainer's (`trainer.model.build_pretrainer`), both with their variables
  built so that a checkpoint restores into them at once."""
  encoder = networks.BertEncoderV2(**config)
  ids = tf.zeros([1, 2], tf.int32)
  encoder(dict(input_word_ids=ids, input_mask=ids, input_type_ids=ids))
  head = layers.ClassificationHead(
      inner_dim=config["hidden_size"], num_classes=2,
      dropout_rate=config.get("output_dropout", 0.0), name="next_sentence")
  head(tf.zeros([1, 1, config["hidden_size"]]))
  return encoder, head


def restore_from_run(prefix, encoder, head):
  """Reads the encoder and the next-sentence head out of a training checkpoint.

  Only these two are read, by their object path in the trainer's checkpoint
  (`model` is the `BertPretrainerV2`; its `encoder_network` and
  `classification_heads[0]`), so the masked-LM head, the optimizer slots
  and the input iterator are left alone, and nothing depends on how the
  trainer builds the pretrainer.

  Raises:
    AssertionError: a variable of `encoder` or `head` is not in the checkpoint.
  """
  model = tf.train.Checkpoint(encoder_network=encoder,
                              classification_heads=[head])
  status = tf.train.Checkpoint(model=model).read(prefix)
  status.expect_partial().assert_existing_objects_matched()


def checkpoint_step(prefix):
  """The training step a checkpoint was written at."""
  reader = tf.train.load_checkpoint(prefix)
  key = "step/.ATTRIBUTES/VARIABLE_VALUE"
  if reader.has_tensor(key):
    return int(reader.get_tensor(key))
  return int(prefix.rsplit("-", 1)[-1]) if "-" in prefix else None


def last_eval(model_dir, step):
  """The run's last eval record in metrics.jsonl at or before `step`."""
  path = os.path.join(model_dir, "metrics.jsonl")
  found = {}
  if os.path.isfile(path):
    with open(path, encoding="utf-8") as f:
      for line in f:
        try:
          record = json.loads(line)
        except ValueError:
          continue
        if (any(k.startswith("eval_") for k in record) and
            (step is None or record.get("step", 0) <= step)):
          found = record
  return {k: v for k, v in found.items() if k.startswith("eval_")
          or k == "step"}


def _check_export_dir(export_dir):
  """Fails early, before any work, when `export_dir` cannot be written."""
  if os.path.exists(export_dir) and (not os.path.isdir(export_dir) or
                                     os.listdir(export_dir)):
    raise ExportError(f"--export_dir {export_dir} exists and is not empty; "
                      f"choose a new directory or move it away")
  parent = os.path.dirname(os.path.abspath(export_dir))
  if not os.path.isdir(parent):
    raise ExportError(f"the parent directory of --export_dir, {parent}, does "
                      f"not exist")
  if not os.access(parent, os.W_OK | os.X_OK):
    raise ExportError(f"cannot write in {parent}, the parent directory of "
                      f"--export_dir")


def export(model_dir, export_dir, checkpoint=None, max_seq_length=None):
  """Writes the export of `model_dir` into `export_dir` (see module doc).

  Args:
    model_dir: the pretraining run: checkpoints, encoder_config.json,
      vocab.txt (metrics.jsonl optional).
    export_dir: a new or empty directory.
    checkpoint: a checkpoint prefix; None: the run's newest intact one.
    max_seq_length: the preprocessor's default length; None: the smaller
      of 128 and the encoder's position table.

  Returns:
    A dict describing the export: `checkpoint`, `step`, `eval` metrics.

  Raises:
    ExportError: a bad run, checkpoint, directory or length.
  """
  _check_export_dir(export_dir)
  if not os.path.isdir(model_dir):
    raise ExportError(f"--model_dir {model_dir} does not exist")
  if checkpoint is None:
    checkpoint = checkpointing.newest_intact(
        model_dir, lambda line: print(line, file=sys.stderr))
    if checkpoint is None:
      raise ExportError(f"no checkpoint in {model_dir}; train first (python "
                        f"-m trainer.main --model_dir={model_dir} ...)")
  elif checkpointing.damage(checkpoint):
    raise ExportError(f"cannot read checkpoint {checkpoint}: "
                      f"{checkpointing.damage(checkpoint)}")
  config, tokens = read_run_assets(model_dir)
  positions = config["max_sequence_length"]
  if max_seq_length is None:
    max_seq_length = min(DEFAULT_SEQ_LENGTH, positions)
  if not 3 <= max_seq_length <= positions:
    raise ExportError(f"--max_seq_length={max_seq_length} must be in [3, "
                      f"{positions}] (the encoder's position table)")

  parent = os.path.dirname(os.path.abspath(export_dir))
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(export_dir)}.tmp",
                         dir=parent)
  try:
    info = _write_export(tmp, model_dir, checkpoint, config, tokens,
                         max_seq_length)
    if os.path.isdir(export_dir):
      os.rmdir(export_dir)  # Empty, checked above.
    os.rename(tmp, export_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return info


def _write_export(out, model_dir, prefix, config, tokens, max_seq_length):
  """Restores the run's checkpoint and writes every part of the export."""

  encoder, head = build_encoder_and_head(config)
  restore_from_run(prefix, encoder, head)
  # The trained next-sentence pooler becomes the encoder's (module doc).
  encoder.pooler_layer.set_weights(head.dense.get_weights())

  vocab_file = os.path.join(out, "vocab.txt")
  vocab_lib.write_vocab(tokens, vocab_file)
  lower_case = vocab_lib.is_lower_case(tokens)
  with open(os.path.join(out, "encoder_config.json"), "w",
            encoding="utf-8") as f:
    json.dump(config, f, indent=2, sort_keys=True)

  # As the Model Garden's export_tfhub_lib._create_model: a dict-in,
  # dict-out Keras model, with `default` as TF Hub's alias of pooled_output.
  # Its inputs are a plain dict: saving with the encoder's own tracked
  # `.inputs` dict fails on Python 3.11 (a _DictWrapper cannot be traced).
  inputs = {name: tf_keras.Input(shape=(None,), dtype=tf.int32, name=name)
            for name in ("input_word_ids", "input_mask", "input_type_ids")}
  outputs = dict(encoder(inputs))
  outputs["default"] = outputs["pooled_output"]
  core = tf_keras.Model(inputs=inputs, outputs=outputs)
  core.vocab_file = tf.saved_model.Asset(vocab_file)
  core.do_lower_case = tf.Variable(lower_case, trainable=False)
  core.save(os.path.join(out, "encoder"), include_optimizer=False,
            save_format="tf")

  tf.saved_model.save(
      Preprocessor(vocab_file, tokens, lower_case, max_seq_length),
      os.path.join(out, "preprocessor"))

  ckpt_dir = os.path.join(out, "checkpoint")
  ckpt = tf.train.Checkpoint(
      encoder=encoder, **{"next_sentence.pooler_dense": head.dense})
  # The manager writes the `checkpoint` pointer file with a relative path,
  # so the directory works as `init_checkpoint` after the rename and
  # wherever it is copied.
  tf.train.CheckpointManager(ckpt, ckpt_dir, max_to_keep=1,
                             checkpoint_name=CHECKPOINT_NAME).save(
                                 checkpoint_number=0)

  step = checkpoint_step(prefix)
  metrics = last_eval(model_dir, step)
  with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
    f.write(_readme(model_dir, prefix, step, metrics, config, lower_case,
                    max_seq_length))
  return dict(checkpoint=prefix, step=step, eval=metrics)


class Preprocessor(tf.Module):
  """TF Hub's BERT preprocessor interface, as a plain `tf.Module`.

  The Model Garden's `export_tfhub_lib.export_preprocessing` builds the same
  interface as a Keras model, which does not save on Python 3.11 (its dict
  outputs are `_DictWrapper`s that tracing rejects); its packing wrapper
  is reused as is.

    __call__(strings [batch]) -> dict of int32 [batch, seq_length]
    tokenize(strings [batch]) -> int32 ragged [batch, (words), (pieces)]
    bert_pack_inputs([segments...], seq_length=N) -> the same dict, for 1
      or 2 segments, each trimmed round-robin to fit.
  """

  def __init__(self, vocab_file, tokens, lower_case, seq_length):
    super().__init__()
    ids = vocab_lib.special_ids(tokens)
    # The same splitting, lower-casing and accent stripping as the
    # FastBertTokenizer the run was pretrained with. Its lookup table
    # makes the vocab file an asset of the SavedModel.
    self._tokenizer = text.BertTokenizer(
        vocab_file, lower_case=lower_case, token_out_type=tf.int32,
        unknown_token=vocab_lib.UNK)
    self._special = dict(
        vocab_size=tf.constant(len(tokens)),
        start_of_sequence_id=tf.constant(ids.cls),
        end_of_segment_id=tf.constant(ids.sep),
        padding_id=tf.constant(ids.pad), mask_id=tf.constant(ids.mask))
    self.bert_pack_inputs = export_tfhub_lib.BertPackInputsSavedModelWrapper(
        layers.BertPackInputs(seq_length=seq_length,
                              start_of_sequence_id=ids.cls,
                              end_of_segment_id=ids.sep,
                              padding_id=ids.pad))
    strings = tf.TensorSpec([None], tf.string)
    self.tokenize = tf.function(self._tokenize, input_signature=[strings])
    self.__call__ = tf.function(
        lambda sentences: self.bert_pack_inputs.__call__(
            [self._tokenize(sentences)]),
        input_signature=[strings])
    self.get_special_tokens_dict = tf.function(
        lambda: dict(self._special), input_signature=[])

  def _tokenize(self, sentences):
    return self._tokenizer.tokenize(sentences)


def _readme(model_dir, prefix, step, metrics, config, lower_case, seq_length):
  evals = ", ".join(f"{k.removeprefix('eval_')} {v:.4f}"
                    for k, v in sorted(metrics.items())
                    if k.startswith("eval_") and isinstance(v, float))
  return f"""# BERT encoder exported from {os.path.abspath(model_dir)}

- checkpoint: `{prefix}` (training step {step})
- eval at step {metrics.get('step', '?')}: {evals or 'none recorded'}
- encoder: BertEncoderV2, {config['num_layers']} layers, hidden \
{config['hidden_size']}, {config['num_attention_heads']} heads, vocab \
{config['vocab_size']}, {config['max_sequence_length']} positions; \
{'uncased' if lower_case else 'cased'} WordPiece vocab
- preprocessor: default sequence length {seq_length}
- pooled_output: the next-sentence head's trained pooler (tanh dense on
  [CLS]), copied into the encoder's pooler_layer; pretraining does not train
  the encoder's own one.

## Loading

```python
import tensorflow_hub as hub
import tensorflow_text  # Registers the preprocessor's ops.
preprocessor = hub.KerasLayer("preprocessor")
encoder = hub.KerasLayer("encoder", trainable=True)
outputs = encoder(preprocessor(["a sentence"]))  # pooled_output, sequence_output

# The Model Garden: rebuild and restore (init_checkpoint convention).
import json
from official.nlp.modeling import networks
net = networks.BertEncoderV2(**json.load(open("encoder_config.json")))
tf.train.Checkpoint(encoder=net).read("checkpoint/{CHECKPOINT_NAME}-0").expect_partial()
# or: SentencePredictionConfig(init_checkpoint="checkpoint", init_cls_pooler=True)
```

Fine-tune: `python -m trainer.finetune --export_dir=THIS_DIR --model_dir=...`
"""


def main(argv, fv=flags.FLAGS):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not fv.verbose:
    logging.set_verbosity(logging.WARNING)

  def command():
    if not fv.model_dir or not fv.export_dir:
      raise ExportError("give --model_dir=RUN and --export_dir=OUT")
    info = export(fv.model_dir, fv.export_dir, fv.checkpoint,
                  fv.max_seq_length)
    print(f"exported {info['checkpoint']} (step {info['step']}) to "
          f"{fv.export_dir}")

  return cli.run_command(command, verbose=fv.verbose)


if __name__ == "__main__":
  define_flags()
  app.run(main)
