"""AdamW, the baseline optimizer of the scaling study.

tf-models-official's `AdamWeightDecay`: tf_keras's legacy Adam (with bias
correction, unlike google-research/bert's original `AdamWeightDecayOptimizer`)
plus decoupled weight decay (Loshchilov & Hutter, arXiv:1711.05101),

  w <- w - lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay_rate * w),

the decay skipped for variables whose name matches
`exclude_from_weight_decay`. The trainer all-reduces (and optionally clips)
the gradients itself and calls `apply_gradients(...,
experimental_aggregate_gradients=False)`; on that path `AdamWeightDecay`
applies no clipping of its own (its `gradient_clip_norm` acts only when it
aggregates), so AdamW and LAMB see exactly the same gradients.

Gin files name it `train.optimizer = @AdamW` and set `AdamW.<argument> =
...` (registered in `trainer/configurables.py`).
"""

from official.modeling.optimization import legacy_adamw

AdamW = legacy_adamw.AdamWeightDecay
