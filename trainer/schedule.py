"""Learning-rate schedule of the LAMB paper: warmup, then polynomial decay.

You et al. (arXiv:1904.00962, Section 4) train BERT with a linear warmup to the
peak learning rate followed by polynomial decay (power 1, i.e. linear) to zero,
and for the mixed-length recipe re-warm up at the start of phase 2.

tf-models-official's `PolynomialWarmUp(PolynomialDecay(...))` warms up to the
*decay schedule's value at the end of warmup*, not to the peak, and its decay
starts counting at step 0; google-research/bert does the same. Here the peak is
reached exactly at the end of warmup and the decay runs over the remaining
steps, so `peak_learning_rate` means what it says.
"""

import tensorflow as tf
import tf_keras


class WarmupPolynomialDecay(
    tf_keras.optimizers.schedules.LearningRateSchedule):
  """lr(t) for optimizer step t (0-based, as `optimizer.iterations`).

    t <  W:  lr = peak * ((t + 1) / W) ** warmup_power
    t >= W:  lr = end + (peak - end) * (1 - (t - W) / (T - W)) ** decay_power

  with W = warmup_steps, T = total_steps; lr stays at `end` after T. The `+ 1`
  makes the very first step move the weights, and the warmup reach `peak`
  on its last step. warmup_power=1 is the paper's linear warmup.
  """

  def __init__(self, peak_learning_rate, total_steps, warmup_steps,
               warmup_power=1.0, decay_power=1.0, end_learning_rate=0.0):
    super().__init__()
    if peak_learning_rate < 0:
      raise ValueError(
          f"peak_learning_rate must be >= 0, got {peak_learning_rate}")
    if total_steps <= 0:
      raise ValueError(f"total_steps must be > 0, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
      raise ValueError(
          f"warmup_steps must be in [0, total_steps={total_steps}], "
          f"got {warmup_steps}")
    self.peak_learning_rate = float(peak_learning_rate)
    self.total_steps = int(total_steps)
    self.warmup_steps = int(warmup_steps)
    self.warmup_power = float(warmup_power)
    self.decay_power = float(decay_power)
    self.end_learning_rate = float(end_learning_rate)

  def __call__(self, step):
    t = tf.cast(step, tf.float32)
    peak = self.peak_learning_rate
    end = self.end_learning_rate
    warmup = float(max(self.warmup_steps, 1))
    warm_lr = peak * tf.pow((t + 1.0) / warmup, self.warmup_power)
    decay_steps = float(max(self.total_steps - self.warmup_steps, 1))
    frac = tf.clip_by_value((t - self.warmup_steps) / decay_steps, 0.0, 1.0)
    decay_lr = end + (peak - end) * tf.pow(1.0 - frac, self.decay_power)
    return tf.where(t < self.warmup_steps, warm_lr, decay_lr)

  def get_config(self):
    return dict(peak_learning_rate=self.peak_learning_rate,
                total_steps=self.total_steps,
                warmup_steps=self.warmup_steps,
                warmup_power=self.warmup_power,
                decay_power=self.decay_power,
                end_learning_rate=self.end_learning_rate)


def learning_rate_schedule(total_steps, *, peak_learning_rate,
                           warmup_steps=None, warmup_fraction=None,
                           warmup_power=1.0, decay_power=1.0,
                           end_learning_rate=0.0):
  """Builds the schedule; warmup in steps or as a fraction of training.

  The paper gives warmup as a fraction of the steps when scaling the batch
  (e.g. 2,000 of 7,037 phase-1 steps at batch 65,536), so the fraction stays
  the same when the step count changes with the batch size.

  Args:
    total_steps: optimizer steps of the whole run (from `train.total_steps`).
    peak_learning_rate: learning rate at the end of warmup.
    warmup_steps: warmup length in steps; exclusive with `warmup_fraction`.
    warmup_fraction: warmup length as a fraction of `total_steps`.
    warmup_power: 1.0 for linear warmup, other values for polynomial warmup.
    decay_power: power of the polynomial decay (1.0 = linear, the paper's).
    end_learning_rate: learning rate reached at `total_steps`.

  Returns:
    A `WarmupPolynomialDecay`.
  """
  if warmup_steps is not None and warmup_fraction is not None:
    raise ValueError("set only one of learning_rate_schedule.warmup_steps and "
                     "learning_rate_schedule.warmup_fraction")
  if warmup_fraction is not None:
    if not 0.0 <= warmup_fraction <= 1.0:
      raise ValueError(f"learning_rate_schedule.warmup_fraction must be in "
                       f"[0, 1], got {warmup_fraction}")
    warmup_steps = int(round(warmup_fraction * total_steps))
  return WarmupPolynomialDecay(
      peak_learning_rate=peak_learning_rate, total_steps=total_steps,
      warmup_steps=warmup_steps or 0, warmup_power=warmup_power,
      decay_power=decay_power, end_learning_rate=end_learning_rate)
