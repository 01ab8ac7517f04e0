"""The gradient noise scale estimator against a synthetic truth."""

import numpy as np
import pytest

from trainer import noise_scale


def _simulate(per_example, batch, pieces, steps, rng):
  """Feeds `step_terms` what a training step computes: k pieces of a batch,
  each the sum of its examples' gradients divided by the global batch (the
  loss is normalized by the global count), and their sum."""
  trace_sum = grad_sq_sum = 0.0
  for _ in range(steps):
    rows = per_example[rng.integers(0, len(per_example), batch)]
    piece_grads = [p.sum(axis=0) / batch
                   for p in np.array_split(rows, pieces)]
    total = np.sum(piece_grads, axis=0)
    trace, grad_sq = noise_scale.step_terms(
        sum(float(np.dot(g, g)) for g in piece_grads),
        float(np.dot(total, total)), pieces, batch)
    trace_sum += float(trace)
    grad_sq_sum += float(grad_sq)
  return noise_scale.ratio(trace_sum, grad_sq_sum)


@pytest.mark.parametrize("truth, pieces", [(40.0, 2), (40.0, 8),
                                           (400.0, 4)])
def test_estimate_within_20_percent_of_truth(truth, pieces):
  rng = np.random.default_rng(0)
  d = 64
  mean = rng.normal(size=d)
  # Per-example noise with an anisotropic covariance, scaled so that
  # tr(Sigma) / |G|^2 is `truth`.
  scales = rng.uniform(0.2, 2.0, size=d)
  noise = rng.normal(size=(20000, d)) * scales
  noise -= noise.mean(axis=0)
  noise *= np.sqrt(truth * np.dot(mean, mean) /
                   np.trace(np.cov(noise, rowvar=False, bias=True)))
  per_example = mean + noise
  exact = noise_scale.reference(per_example)
  assert exact == pytest.approx(truth, rel=1e-6)
  estimate = _simulate(per_example, batch=64, pieces=pieces, steps=200,
                       rng=rng)
  assert estimate == pytest.approx(exact, rel=0.2)
  # Not vacuous: a population with 4x the noise is told apart.
  noisier = mean + 2 * noise
  assert _simulate(noisier, batch=64, pieces=pieces, steps=200,
                   rng=rng) > 2.5 * exact


def test_one_piece_gives_no_estimate():
  trace, grad_sq = noise_scale.step_terms(1.0, 1.0, 1, 64)
  assert float(trace) == 0.0 and float(grad_sq) == 0.0
  assert np.isnan(noise_scale.ratio(0.0, 0.0))
