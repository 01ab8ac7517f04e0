"""Fault injection for tests and `scripts/chaos.py`: a gradient hook.

Nothing here is reachable from a config or a flag of `trainer.main`: the
test entry point `tests/faulty_main.py` builds a hook with
`nonfinite_gradients` and hands it to `train(gradient_hook=...)`, so that a
real run meets non-finite gradients at chosen steps, as an overflow would
make them.
"""

import tensorflow as tf


def parse_steps(spec):
  """"3,7-9" -> [3, 7, 8, 9]: 1-based optimizer steps."""
  steps = set()
  for part in filter(None, spec.split(",")):
    first, _, last = part.partition("-")
    steps.update(range(int(first), int(last or first) + 1))
  return sorted(steps)


def nonfinite_gradients(steps):
  """A gradient hook that makes the gradients of `steps` NaN.

  Args:
    steps: 1-based optimizer steps (counted by the trainer's step counter).

  Returns:
    `hook(grads, steps_done) -> grads`, for `step.make_train_loop`; None
    when `steps` is empty, so that no op is added.
  """
  if not steps:
    return None
  steps = sorted(steps)

  def hook(grads, steps_done):
    hit = tf.reduce_any(tf.equal(tf.cast(steps_done, tf.int64) + 1,
                                 tf.constant(steps, tf.int64)))
    return [g * tf.where(hit, tf.constant(float("nan"), g.dtype),
                         tf.constant(1, g.dtype)) for g in grads]
  return hook
