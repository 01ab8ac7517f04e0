"""The simple gradient noise scale, from gradients a step computes anyway.

McCandlish et al., "An Empirical Model of Large-Batch Training"
(arXiv:1812.06162): with per-example gradient covariance Sigma and true
gradient G, the *simple noise scale*

    B_simple = tr(Sigma) / |G|^2

is about the batch size beyond which a larger batch stops buying
proportionally fewer steps. Appendix A estimates both terms without extra
passes from the squared norms of gradients of two batch sizes: for a mean
gradient G_B over B examples, E|G_B|^2 = |G|^2 + tr(Sigma) / B, so two sizes
b < B give

    |G|^2     ~= (B |G_B|^2 - b |G_b|^2) / (B - b)
    tr(Sigma) ~= (|G_b|^2 - |G_B|^2) / (1/b - 1/B).

A training step here computes its gradient as the sum of k pieces g_1..g_k
(micro-batches x parts x replicas; see `trainer/step.py`), each the gradient
of its share of the global loss, which is normalized by the global counts.
With k pieces of equal size b = B/k, the piece's own mean gradient is
k g_i, so |G_b|^2 ~= (1/k) sum_i |k g_i|^2 = k sum_i |g_i|^2 and
|G_B|^2 = |sum_i g_i|^2; the two estimates above become

    |G|^2     ~= (k |sum g_i|^2 - k sum |g_i|^2) / (k - 1)
    tr(Sigma) ~= B (k sum |g_i|^2 - |sum g_i|^2) / (k - 1).

Each is unbiased but noisy for one step, and their ratio is not, so, as the
paper recommends, both are averaged over the steps of a host loop before
dividing (`ratio`). Caveats: pieces hold equal numbers of examples to within
one, and their MLM weights (masked tokens) differ somewhat; with
`train.trim_padding` a replica's examples are sorted by length before they
are split, so pieces are not random subsets, and the differences between
short and long examples count as noise. B_simple is in examples.
"""

import numpy as np
import tensorflow as tf


def step_terms(piece_sq_norm_sum, total_sq_norm, pieces, batch_size):
  """One step's estimates of (tr(Sigma), |G|^2); zeros when pieces < 2.

  Args:
    piece_sq_norm_sum: sum over the k pieces of |g_i|^2.
    total_sq_norm: |sum_i g_i|^2, the step's gradient's squared norm.
    pieces: k, the number of pieces (a Python int).
    batch_size: B, examples in the step (global batch).

  Returns:
    (trace_sigma, grad_sq) as float32 scalars.
  """
  if pieces < 2:
    return tf.constant(0.0), tf.constant(0.0)
  k = float(pieces)
  piece_sq_norm_sum = tf.cast(piece_sq_norm_sum, tf.float32)
  total_sq_norm = tf.cast(total_sq_norm, tf.float32)
  grad_sq = k * (total_sq_norm - piece_sq_norm_sum) / (k - 1)
  trace_sigma = (float(batch_size) * (k * piece_sq_norm_sum - total_sq_norm)
                 / (k - 1))
  return trace_sigma, grad_sq


def ratio(trace_sigma_sum, grad_sq_sum):
  """B_simple from terms summed over steps; NaN when |G|^2 is not > 0."""
  if not grad_sq_sum > 0:
    return float("nan")
  return float(trace_sigma_sum) / float(grad_sq_sum)


def reference(per_example_grads):
  """The exact B_simple of a finite population of per-example gradients
  ([n, d] numpy): tr(cov) / |mean|^2. For tests."""
  g = np.asarray(per_example_grads, np.float64)
  mean = g.mean(axis=0)
  return float(np.trace(np.cov(g, rowvar=False, bias=True)) /
               np.dot(mean, mean))
