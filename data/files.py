"""Paths on any file system, and files that appear only once complete.

Every path in `data/` goes through `tf.io.gfile`, so a data dir may be local,
``gs://bucket/dir`` or any other file system TensorFlow knows (tests use
``ram://``). `resolve` leaves such URLs as they are (``os.path.abspath``
would turn ``gs://b/d`` into ``./gs:/b/d``); `check_reachable` fails fast, in
one line, when a remote file system cannot be reached; `atomic_path` writes
to a temporary name and renames, so a reader (or a run resumed after a crash)
sees either the previous file or the whole new one, never a file cut short.
"""

import contextlib
import os
import threading

import tensorflow as tf

# How long `check_reachable` waits for a remote file system to answer.
REACH_TIMEOUT_S = 30.0
_SERVICES = {"gs": "GCS", "s3": "S3", "hdfs": "HDFS"}


class UnreachableError(OSError):
  """A remote data dir (e.g. ``gs://``) did not answer: no network, no
  credentials, or no such bucket."""


def is_local(path: str) -> bool:
  """Whether `path` is a local path rather than a URL (``gs://...``)."""
  return "://" not in os.fspath(path)


def resolve(path: str) -> str:
  """`path` with ``~`` expanded and made absolute; URLs as they are."""
  path = os.fspath(path)
  if not is_local(path):
    return path.rstrip("/")
  return os.path.abspath(os.path.expanduser(path))


def check_reachable(path: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
  """Fails fast when the file system holding `path` cannot be reached.

  Local paths and in-process file systems (``ram://``) always pass. For a
  remote one, TensorFlow's client may retry for minutes before it gives up,
  so the check asks once whether `path` exists and waits at most
  `timeout_s`; the question is abandoned on a daemon thread, which does not
  keep the process alive. Nothing is created.

  Raises:
    UnreachableError: no answer within `timeout_s`, or an error answer.
  """
  scheme = os.fspath(path).split("://", 1)[0] if not is_local(path) else ""
  if scheme not in _SERVICES:
    return
  answer = {}

  def ask():
    try:
      tf.io.gfile.exists(path)
      answer["ok"] = True
    except Exception as e:  # pylint: disable=broad-except
      answer["error"] = e

  thread = threading.Thread(target=ask, daemon=True)
  thread.start()
  thread.join(timeout_s)
  service = _SERVICES[scheme]
  if "error" in answer:
    reason = " ".join(str(answer["error"]).split()) or type(
        answer["error"]).__name__
    raise UnreachableError(f"cannot reach {service} for {path}: {reason}")
  if "ok" not in answer:
    raise UnreachableError(f"cannot reach {service} for {path}: no answer "
                           f"within {timeout_s:.0f} s (network or "
                           "credentials?)")


@contextlib.contextmanager
def atomic_path(path):
  """Yields a temporary path to write; renames it to `path` on success.

  The folder is created if needed. On an exception the temporary file is
  removed and `path` is left as it was.

  Args:
    path: the file to (re)place.

  Yields:
    The temporary path, in the same folder, so the rename is atomic.
  """
  folder = os.path.dirname(path)
  if folder:
    tf.io.gfile.makedirs(folder)
  tmp_path = f"{path}.tmp{os.getpid()}"
  try:
    yield tmp_path
    tf.io.gfile.rename(tmp_path, path, overwrite=True)
  finally:
    if tf.io.gfile.exists(tmp_path):
      tf.io.gfile.remove(tmp_path)


def write_atomically(path, text):
  """Writes the string `text` to `path` (see `atomic_path`)."""
  with atomic_path(path) as tmp_path:
    with tf.io.gfile.GFile(tmp_path, "w") as f:
      f.write(text)
