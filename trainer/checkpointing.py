"""Checkpoints that survive crashes: find the newest intact one, save safely.

TensorFlow writes a checkpoint's files first and moves the `checkpoint`
pointer file to it afterwards, by an atomic rename, so a crash during a save
leaves the pointer at the previous checkpoint. A checkpoint can still be
damaged later (a truncated copy, a bad disk, a partial upload), so on start
each candidate, newest first, is read back in full before it is trusted:
reading checks every tensor's CRC32C and length. A damaged one is reported in
one line and the next older one is used; when every checkpoint is damaged the
run stops instead of silently starting from scratch. In a multi-worker job
only the chief reads the candidates; the others take its choice
(`trainer.distribute.chief_value`).

The input position is saved apart from the model: with one input pipeline
in the checkpoint itself (`train_iterator`), with n > 1 in one small
checkpoint per host under `input_dir(model_dir, n, host)`, saved under the
same numbers. Those files are a shortcut, not a requirement: the input
pipeline yields the same global batches for any number of hosts, so a
host whose file is missing, damaged or saved for another number of hosts
reaches the position by reading its share of the first `step` batches again
(`trainer.train`), which costs input time but changes no result.
"""

import os
import re

import tensorflow as tf


class CheckpointError(RuntimeError):
  """No usable checkpoint to resume from, or a checkpoint cannot be saved."""


def _reason(error):
  """One short line for an exception from reading or writing files."""
  text = re.sub(r"\{\{[^}]*\}\}\s*", "", str(error)).strip()
  first = text.splitlines()[0] if text else ""
  return f"{type(error).__name__}: {first}"[:200]


def checkpoint_step(prefix):
  """The step in a `.../ckpt-<step>` prefix (-1 if there is none)."""
  match = re.search(r"-(\d+)$", prefix)
  return int(match.group(1)) if match else -1


def _pointer(model_dir):
  """The `checkpoint` pointer file's contents, or None if it is unreadable."""
  try:
    return tf.train.get_checkpoint_state(model_dir)  # None for most damage.
  except ValueError:  # Raised for an empty file.
    return None


def candidates(model_dir):
  """Checkpoint prefixes in `model_dir`, newest first.

  The pointer file's list when it is readable; otherwise every `ckpt-N`
  found, so that a lost pointer file does not mean starting from scratch.
  """
  state = _pointer(model_dir)
  if state:
    latest = state.model_checkpoint_path
    older = [p for p in state.all_model_checkpoint_paths if p != latest]
    return [latest] + older[::-1]
  found = tf.io.gfile.glob(os.path.join(model_dir, "ckpt-*.index"))
  return sorted((p[:-len(".index")] for p in found), key=checkpoint_step,
                reverse=True)


def damage(prefix):
  """Why the checkpoint at `prefix` cannot be restored, or None if it can."""
  try:
    reader = tf.train.load_checkpoint(prefix)
    for name, dtype in reader.get_variable_to_dtype_map().items():
      if dtype == tf.variant:  # E.g. the input iterator; numpy cannot hold it.
        tf.raw_ops.RestoreV2(prefix=prefix, tensor_names=[name],
                             shape_and_slices=[""], dtypes=[dtype])
      else:
        reader.get_tensor(name)
  except (tf.errors.OpError, OSError, ValueError, IndexError) as e:
    return _reason(e)
  return None


def newest_intact(model_dir, warn):
  """Returns the newest checkpoint in `model_dir` that reads back in full.

  Args:
    model_dir: the run's directory.
    warn: called with one line for each damaged checkpoint that is skipped.

  Returns:
    A checkpoint prefix, or None when `model_dir` holds no checkpoint.

  Raises:
    CheckpointError: checkpoints exist but none of them is intact.
  """
  found = candidates(model_dir)
  pointer = os.path.join(model_dir, "checkpoint")
  if found and tf.io.gfile.exists(pointer) and not _pointer(model_dir):
    warn(f"warning: {pointer} is unreadable; looking at the checkpoints "
         f"found by name instead")
  damaged = []
  for prefix in found:
    why = damage(prefix)
    if why is None:
      for bad, bad_why in damaged:
        warn(f"warning: checkpoint {bad} is damaged ({bad_why}); resuming "
             f"from the newest intact one, {prefix}")
      return prefix
    damaged.append((prefix, why))
  if damaged:
    raise CheckpointError(
        f"no intact checkpoint in {model_dir}: {damaged[0][0]} is damaged "
        f"({damaged[0][1]}), and {len(damaged) - 1} older one(s) too; move "
        f"them away to start from scratch")
  return None


def input_dir(model_dir, pipelines, host):
  """Where host `host` of a job with `pipelines` input pipelines (> 1) saves
  its input position; the count is in the name, so that a job restarted
  with another number of hosts never reads a position of another split."""
  return os.path.join(model_dir, f"input_of_{pipelines}_hosts", f"host{host}")


def input_position(model_dir, prefix, pipelines, host):
  """The checkpoint prefix holding this host's input position for the
  checkpoint `prefix`, or None when it was not saved (see the module
  docstring)."""
  if pipelines == 1:
    try:
      names = tf.train.load_checkpoint(prefix).get_variable_to_dtype_map()
    except (tf.errors.OpError, ValueError):
      return None
    return prefix if any(n.startswith("train_iterator/") for n in names) else (
        None)
  saved = os.path.join(input_dir(model_dir, pipelines, host),
                       os.path.basename(prefix))
  return saved if tf.io.gfile.exists(saved + ".index") else None


def point_to(model_dir, prefix):
  """Makes `prefix` the latest checkpoint, dropping newer damaged ones.

  The damaged files stay on disk for inspection until a save of the same
  step overwrites them; without this, `CheckpointManager` would go on
  treating the damaged checkpoint as the latest. Does nothing when the
  pointer file already names `prefix`.
  """
  state = _pointer(model_dir)
  if state and state.model_checkpoint_path == prefix:
    return
  older = [p for p in candidates(model_dir)
           if checkpoint_step(p) < checkpoint_step(prefix)]
  tf.compat.v1.train.update_checkpoint_state(
      model_dir, prefix, all_model_checkpoint_paths=older[::-1] + [prefix])


def save(managers, step):
  """Saves checkpoint `step` with each manager; failures are one clear error.

  A failed save (full disk, unwritable or vanished directory) leaves the
  previous checkpoints and the pointer to them as they were: TensorFlow
  writes to `ckpt-<step>_temp` first, and that leftover is removed here.

  Args:
    managers: `tf.train.CheckpointManager`s, saved in order.
    step: the checkpoint number, the global step.

  Raises:
    CheckpointError: when a save fails.
  """
  for manager in managers:
    previous = manager.latest_checkpoint
    try:
      manager.save(checkpoint_number=step)
    except (tf.errors.OpError, OSError) as e:
      temp = os.path.join(manager.directory, f"ckpt-{step}_temp")
      try:
        if tf.io.gfile.exists(temp):
          tf.io.gfile.rmtree(temp)
      except (tf.errors.OpError, OSError):
        pass  # The directory may be gone or read-only: nothing to clean.
      raise CheckpointError(
          f"cannot save checkpoint {step} in {manager.directory} "
          f"({_reason(e)}); the previous checkpoint is intact: "
          f"{previous or 'none'}") from None


def dropout_generators(model):
  """The `tf.random.Generator`s of `model`'s dropout layers, in a fixed order.

  tf_keras keeps these out of checkpoints on purpose (for compatibility), so
  a resumed run would restart the dropout masks' random stream unless the
  trainer saves them itself. Call inside the strategy's scope.
  """
  generators, seen = [], set()
  for layer in model.submodules:
    rng = getattr(layer, "_random_generator", None)
    if rng is None or not hasattr(rng, "_maybe_init"):
      continue
    rng._maybe_init()  # pylint: disable=protected-access
    generator = getattr(rng, "_generator", None)
    if isinstance(generator, tf.random.Generator) and id(generator) not in seen:
      seen.add(id(generator))
      generators.append(generator)
  return generators


def saved_state(prefix):
  """Every tensor saved at `prefix` but the input iterator's and the save
  counter, keyed by name: what must match for two runs to be the same."""
  reader = tf.train.load_checkpoint(str(prefix))
  return {k: reader.get_tensor(k)
          for k, dtype in reader.get_variable_to_dtype_map().items()
          if dtype != tf.variant and not k.startswith(
              ("save_counter", "_CHECKPOINTABLE"))}


def state_difference(prefix_a, prefix_b):
  """None when two checkpoints hold the same `saved_state` bit for bit,
  else a line naming the first difference."""
  a, b = saved_state(prefix_a), saved_state(prefix_b)
  if a.keys() != b.keys():
    return f"different tensors: {sorted(a.keys() ^ b.keys())[:5]}"
  for k in sorted(a):
    if a[k].shape != b[k].shape or not (a[k] == b[k]).all():
      return f"{k} differs"
  return None
