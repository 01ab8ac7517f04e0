"""Random access to a prepared split's examples, and a seeded order of them.

TFDS stores a split as TFRecord files, which can only be read front to back.
A host of a job of n hosts needs 1/n of each global batch; reading and
parsing the whole stream to keep every n-th example made its cost that of
the whole job (measured: 129 examples/s as 1 of 64 hosts against 2,187
alone). An index of where each record starts lets a host read only its
examples, through `tf.io.gfile`, so from any file system:

  DATASET_DIR/index-SPLIT.npz  per example, in stored order: the byte offset
                               and size of its record in its shard, and its
                               number of tokens [CLS] A [SEP] B [SEP]

The index holds 14 bytes per example (offsets int64, sizes int32, lengths
uint16) and is loaded whole on each host: 0.4 GB for 30M examples. The
records themselves are read on demand, a step's examples at a time.

`permutation` is the seeded order of an epoch: a keyed bijection of [0, n)
computed for any index alone, so any example's place in the stream follows
from its position, without materializing or replaying the order.
"""

import io
import struct
import threading
from typing import Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf

from data import files

_MASK64 = (1 << 64) - 1
_FEISTEL_ROUNDS = 4


def index_path(dataset_dir: str, split: str) -> str:
  return f"{dataset_dir}/index-{split}.npz"


def _record_offsets(path: str) -> Tuple[List[int], List[int]]:
  """The data offset and size of every record of a TFRecord file.

  A record is framed as: uint64 length, uint32 CRC of the length, the data,
  uint32 CRC of the data (little-endian).
  """
  offsets, sizes = [], []
  size = tf.io.gfile.stat(path).length
  with tf.io.gfile.GFile(path, "rb") as f:
    position = 0
    while position < size:
      f.seek(position)
      (length,) = struct.unpack("<Q", f.read(8))
      offsets.append(position + 12)
      sizes.append(length)
      position += 12 + length + 4
  return offsets, sizes


def write_index(dataset_dir: str, split: str, shard_paths: Sequence[str],
                lengths: np.ndarray) -> None:
  """Writes the index of a split (see the module docstring).

  Args:
    dataset_dir: the dataset's folder.
    split: the split's name.
    shard_paths: its record files, in order.
    lengths: int [N], each example's tokens [CLS] A [SEP] B [SEP], in stored
      order.
  """
  offsets, sizes = [], []
  for path in shard_paths:
    o, s = _record_offsets(path)
    offsets += o
    sizes += s
  if len(offsets) != len(lengths):
    raise ValueError(f"{split}: {len(offsets)} records but {len(lengths)} "
                     "examples")
  buffer = io.BytesIO()
  np.savez(buffer, offsets=np.asarray(offsets, np.int64),
           sizes=np.asarray(sizes, np.int32),
           lengths=np.asarray(lengths, np.uint16))
  with files.atomic_path(index_path(dataset_dir, split)) as tmp_path:
    with tf.io.gfile.GFile(tmp_path, "wb") as f:
      f.write(buffer.getvalue())


class Records:
  """Reads any examples of a split by their stored index.

  Attributes:
    lengths: uint16 [N], tokens per example, for length buckets.
  """

  def __init__(self, dataset_dir: str, split: str,
               shards: Sequence[Tuple[str, int]]):
    with tf.io.gfile.GFile(index_path(dataset_dir, split), "rb") as f:
      index = np.load(io.BytesIO(f.read()))
      self._offsets = index["offsets"]
      self._sizes = index["sizes"]
      self.lengths = index["lengths"]
    self._paths = [path for path, _ in shards]
    self._ends = np.cumsum([n for _, n in shards])
    if len(self._offsets) != self._ends[-1]:
      raise ValueError(f"the index of {split} in {dataset_dir} does not "
                       "match its record files; delete the dataset's folder "
                       "to rebuild it")
    self._local = threading.local()  # Open files, one set per thread.

  def __len__(self) -> int:
    return len(self._offsets)

  def _file(self, shard: int):
    opened: Dict[int, object] = self._local.__dict__.setdefault("files", {})
    if shard not in opened:
      opened[shard] = tf.io.gfile.GFile(self._paths[shard], "rb")
    return opened[shard]

  def read(self, indices: np.ndarray) -> np.ndarray:
    """The serialized examples at `indices` (int [M]), as bytes [M]."""
    indices = np.asarray(indices, np.int64)
    out = np.empty(len(indices), dtype=object)
    shards = np.searchsorted(self._ends, indices, side="right")
    # In file order: sequential reads where examples are close.
    for k in np.lexsort((self._offsets[indices], shards)):
      f = self._file(int(shards[k]))
      f.seek(int(self._offsets[indices[k]]))
      out[k] = f.read(int(self._sizes[indices[k]]))
    return out


def _mix(x: np.ndarray) -> np.ndarray:
  """SplitMix64's finalizer: a bijective scramble of uint64."""
  x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return x ^ (x >> np.uint64(31))


def _key(*parts: int) -> int:
  key = 0x9E3779B97F4A7C15
  for part in parts:
    key = int(_mix(np.asarray([(key ^ (part & _MASK64)) & _MASK64],
                              np.uint64))[0])
  return key


def permutation(indices: np.ndarray, n: int, *parts: int) -> np.ndarray:
  """The images of `indices` (int in [0, n)) under a bijection of [0, n)
  keyed by `parts` (e.g. seed and epoch).

  A balanced Feistel network on the smallest even number of bits that holds
  n, with cycle walking: an image outside [0, n) is mapped again until it
  falls inside, which keeps the map a bijection of [0, n).
  """
  half = max(1, (int(n - 1).bit_length() + 1) // 2)
  mask = np.uint64((1 << half) - 1)
  keys = [np.uint64(_key(*parts, r)) for r in range(_FEISTEL_ROUNDS)]

  def rounds(x):
    left, right = x >> np.uint64(half), x & mask
    for k in keys:
      left, right = right, left ^ (_mix(right ^ k) & mask)
    return (left << np.uint64(half)) | right

  x = rounds(np.asarray(indices, np.uint64))
  outside = x >= np.uint64(n)
  while outside.any():
    x[outside] = rounds(x[outside])
    outside = x >= np.uint64(n)
  return x.astype(np.int64)
