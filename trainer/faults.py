"""Fault injection for tests and `scripts/chaos.py` only.

This is deliberately not a gin binding or a flag: it is read from one
environment variable that users never set, so that the fault-tolerance tests
can make a real run meet non-finite gradients at chosen steps.

  TRAINER_INJECT_FAULTS="nonfinite_steps=3,7-9"

makes the all-reduced gradients of optimizer steps 3, 7, 8 and 9 (1-based,
counted by the trainer's step counter) NaN, as an overflow would.
"""

import os

import tensorflow as tf

ENV = "TRAINER_INJECT_FAULTS"


def _parse_steps(spec):
  steps = set()
  for part in filter(None, spec.split(",")):
    first, _, last = part.partition("-")
    steps.update(range(int(first), int(last or first) + 1))
  return sorted(steps)


def nonfinite_steps():
  """The 1-based steps whose gradients are made NaN (empty when unset)."""
  for item in filter(None, os.environ.get(ENV, "").split(";")):
    key, _, value = item.partition("=")
    if key.strip() != "nonfinite_steps":
      raise ValueError(f"{ENV}: unknown fault {key.strip()!r}")
    return _parse_steps(value)
  return []


def poison_gradients(grads, steps_done):
  """Returns `grads`, made NaN when the step being taken is an injected one.

  Args:
    grads: list of gradient tensors.
    steps_done: int64 scalar or variable, the steps taken before this one.

  Returns:
    `grads` unchanged (and no ops added) when no fault is injected.
  """
  steps = nonfinite_steps()
  if not steps:
    return grads
  hit = tf.reduce_any(tf.equal(steps_done + 1, tf.constant(steps, tf.int64)))
  return [g * tf.where(hit, tf.constant(float("nan"), g.dtype),
                       tf.constant(1, g.dtype)) for g in grads]
