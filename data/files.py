"""Files that appear only once complete: write to a temporary name, rename.

A reader (or a run resumed after a crash) then sees either the previous file
or the whole new one, never a file cut short. Works for local paths and for
any `tf.io.gfile` file system.
"""

import contextlib
import os

import tensorflow as tf


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
