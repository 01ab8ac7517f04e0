"""LAMB: layer-wise adaptive moments, a drop-in for tf-models-official's LAMB.

Reference: Y. You et al., "Large Batch Optimization for Deep Learning:
Training BERT in 76 minutes", ICLR 2020, https://arxiv.org/abs/1904.00962.

`LAMB` keeps the constructor, slot names ("m", "v"), hyperparameter names,
weight layout and default numerics of `official.modeling.optimization.lamb.
LAMB`, so checkpoints and configs move between the two in both directions.
It differs where that optimizer is wrong (config round trip, argument checks,
`epsilon=0.0`, bfloat16 variables) and in speed: by default every step of all
variables runs as one XLA-compiled computation.
"""

import functools
import math
import numbers
import re
from typing import Callable, List, Optional, Sequence, Tuple, Union

import tensorflow as tf
import tf_keras
from tf_keras.src import backend
from tf_keras.src.optimizers.legacy import optimizer_v2

FloatLike = Union[float, tf.Tensor]

# Variables of these dtypes keep float32 moments and do their arithmetic in
# float32: 1 - beta_2**t rounds to 0 in bfloat16 (the update becomes NaN) and
# squared gradients underflow in float16.
_LOW_PRECISION = (tf.float16, tf.bfloat16)

# Strategies whose variables of one replica all live on that replica's
# device, so one fused computation per device can update all of them.
_FUSABLE_STRATEGIES = (tf.distribute.MirroredStrategy,
                       tf.distribute.MultiWorkerMirroredStrategy,
                       tf.distribute.OneDeviceStrategy)


def _compute_dtype(dtype):
  """The dtype of the moments and the arithmetic for variables of `dtype`."""
  return tf.float32 if dtype in _LOW_PRECISION else dtype


def _check_patterns(arg_name, patterns):
  """Returns `patterns` as a list after checking each is a valid regex."""
  if patterns is None:
    return None
  if isinstance(patterns, (str, bytes)):
    raise ValueError(f"{arg_name} must be a list of regex patterns, not a "
                     f"string: {patterns!r}; write [{patterns!r}].")
  patterns = list(patterns)
  for pattern in patterns:
    try:
      re.compile(pattern)
    except (re.error, TypeError) as e:
      raise ValueError(f"{arg_name} has an invalid regex {pattern!r}: "
                       f"{e}.") from None
  return patterns


def _check_number(arg_name, value, low=0.0, high=None, high_open=False):
  """Checks a Python number lies in [low, high] (or [low, high))."""
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    return  # Tensors, variables, schedules and callables are not checked.
  if math.isnan(value) or value < low or (
      high is not None and (value >= high if high_open else value > high)):
    upper = "" if high is None else f" and {'<' if high_open else '<='} {high}"
    raise ValueError(f"{arg_name} must be >= {low}{upper}, got {value}.")


@tf_keras.utils.register_keras_serializable(package="lamb")
class LAMB(tf_keras.optimizers.legacy.Optimizer):
  r"""Layer-wise Adaptive Moments optimizer (LAMB, Algorithm 2 of [1]).

  For each variable `w` with gradient `g` at step `t = iterations + 1`
  (defaults give exactly tf-models-official's `LAMB`):

      m_t = beta_1 * m_{t-1} + (1 - beta_1) * g        # first moment
      v_t = beta_2 * v_{t-1} + (1 - beta_2) * g * g    # second moment
      m^_t = m_t / (1 - beta_1^t)                      # bias correction
      v^_t = v_t / (1 - beta_2^t)
      r_t = m^_t / (sqrt(v^_t) + epsilon)              # epsilon outside sqrt
      u_t = r_t + weight_decay_rate * w                # decoupled decay
      ratio_t = ||w||_2 / ||u_t||_2                    # trust ratio
      w <- w - lr_t * ratio_t * u_t

  * `ratio_t = 1` if `||w|| = 0` or `||u_t|| = 0` (fresh zero-initialised
    biases would otherwise never move), and for variables excluded from layer
    adaptation.
  * The decay term is left out for variables excluded from weight decay.
    Exclusions use `re.search(pattern, name)` on the variable name without
    its `:0` suffix; `exclude_from_layer_adaptation=None` falls back to
    `exclude_from_weight_decay`.
  * `lr_t` is `learning_rate`, or `learning_rate(iterations)` for a
    `LearningRateSchedule`, divided by `1 + decay * iterations` when the
    legacy `decay` keyword is set.
  * Sparse gradients (`tf.IndexedSlices`, e.g. of embeddings) give the same
    result as their dense equivalent: the moments of rows without gradient
    still decay, and the norms cover the whole variable, as in tf-models-
    official.
  * float16 and bfloat16 variables keep float32 moments, and the step is
    computed in float32 and rounded once when written back.

  Options beyond tf-models-official (keyword-only, off by default):

  * `trust_ratio_bounds=(lo, hi)`: `ratio_t = clip(||w|| / ||u_t||, lo, hi)`
    where both norms are positive (still 1 otherwise). [1] bounds the weight
    norm with a function phi; DeepSpeed's LAMB bounds the ratio itself,
    with (0.01, 10), which keeps early steps of near-zero layers stable.
  * `gradient_pre_normalization=True`: before the moments, every gradient of
    a step is divided by the global L2 norm of all of them,
    `g <- g / ||(g_1, ..., g_n)||_2` (left alone when that norm is 0), as in
    NVIDIA's NVLAMB ("Pretraining BERT with Layer-wise Adaptive Learning
    Rates", NVIDIA developer blog, 2019). It runs after `clipnorm`,
    `clipvalue` and `global_clipnorm`, and makes the step independent of the
    loss scale and of summing versus averaging gradients over replicas.
  * `bias_correction=False`: `m^_t = m_t`, `v^_t = v_t`, as in ALBERT's LAMB
    (google-research/albert `lamb_optimizer.py`) and BERT's AdamWeightDecay.
  * `fused=True` (the default) updates all variables of a device in one
    `tf.function(jit_compile=True)`, which XLA fuses into a few passes over
    memory; sparse gradients are made dense inside it, which gives the same
    values. `fused=False` runs tf-models-official's per-variable ops instead,
    for platforms without XLA. Both paths share one update function.

  The trust ratios of the last step are kept for logging: see
  `trust_ratios()` and `trust_ratio_stats()`; they are not part of the
  optimizer's weights or checkpoints.

  [1] Y. You et al., "Large Batch Optimization for Deep Learning: Training
  BERT in 76 minutes", ICLR 2020, https://arxiv.org/abs/1904.00962.
  """

  def __init__(self,
               learning_rate: Union[FloatLike, Callable] = 0.001,
               beta_1: FloatLike = 0.9,
               beta_2: FloatLike = 0.999,
               epsilon: Optional[float] = 1e-6,
               weight_decay_rate: FloatLike = 0.0,
               exclude_from_weight_decay: Optional[List[str]] = None,
               exclude_from_layer_adaptation: Optional[List[str]] = None,
               name: str = "LAMB",
               *,
               trust_ratio_bounds: Optional[Tuple[float, float]] = None,
               gradient_pre_normalization: bool = False,
               bias_correction: bool = True,
               fused: bool = True,
               **kwargs):
    """Creates a LAMB optimizer.

    Args:
      learning_rate: a float, a scalar tensor, a callable returning one, or a
        `tf_keras.optimizers.schedules.LearningRateSchedule` called with
        `iterations`.
      beta_1: decay rate of the first moment, in [0, 1).
      beta_2: decay rate of the second moment, in [0, 1).
      epsilon: added to `sqrt(v^_t)`; 0.0 is allowed, None means
        `tf_keras.backend.epsilon()` (as in tf-models-official).
      weight_decay_rate: decoupled weight decay `lambda` (>= 0).
      exclude_from_weight_decay: list of regex patterns; variables whose name
        matches one (`re.search`) are not decayed.
      exclude_from_layer_adaptation: list of regex patterns; matching
        variables use a trust ratio of 1. None means the same list as
        `exclude_from_weight_decay`.
      name: name of the optimizer's variables and ops.
      trust_ratio_bounds: optional `(lo, hi)`, `0 <= lo <= hi`, clipping the
        trust ratio (DeepSpeed uses `(0.01, 10.0)`).
      gradient_pre_normalization: divide the step's gradients by their global
        L2 norm first (NVLAMB).
      bias_correction: divide the moments by `1 - beta^t` (True, as
        tf-models-official and [1]); False as in ALBERT.
      fused: update all variables of a device in one XLA computation (True)
        or variable by variable (False, needs no XLA). Same values.
      **kwargs: `clipnorm`, `clipvalue`, `global_clipnorm`, `lr` (alias of
        `learning_rate`), `decay` (inverse-time learning-rate decay).

    Raises:
      ValueError: for an argument out of range, an exclusion list given as a
        string or containing an invalid regex.
    """
    _check_number("learning_rate", kwargs.get("lr", learning_rate))
    _check_number("beta_1", beta_1, 0.0, 1.0, high_open=True)
    _check_number("beta_2", beta_2, 0.0, 1.0, high_open=True)
    _check_number("epsilon", epsilon)
    _check_number("weight_decay_rate", weight_decay_rate)
    exclude_from_weight_decay = _check_patterns("exclude_from_weight_decay",
                                                exclude_from_weight_decay)
    exclude_from_layer_adaptation = _check_patterns(
        "exclude_from_layer_adaptation", exclude_from_layer_adaptation)
    if trust_ratio_bounds is not None:
      try:
        low, high = (float(b) for b in trust_ratio_bounds)
      except (TypeError, ValueError):
        raise ValueError("trust_ratio_bounds must be a pair (lo, hi), got "
                         f"{trust_ratio_bounds!r}.") from None
      if not 0.0 <= low <= high:
        raise ValueError("trust_ratio_bounds must satisfy 0 <= lo <= hi, got "
                         f"{trust_ratio_bounds!r}.")
      trust_ratio_bounds = (low, high)
    super().__init__(name, **kwargs)
    # Same hyperparameters, created in the same order, as tf-models-official
    # so that checkpoints map one to one.
    self._set_hyper("weight_decay_rate", weight_decay_rate)
    self._set_hyper("learning_rate", kwargs.get("lr", learning_rate))
    self._set_hyper("decay", self._initial_decay)
    self._set_hyper("beta_1", beta_1)
    self._set_hyper("beta_2", beta_2)
    # `is None`, not `or`: an explicit 0.0 is a valid choice.
    self.epsilon = backend.epsilon() if epsilon is None else epsilon
    self.exclude_from_weight_decay = exclude_from_weight_decay
    self.exclude_from_layer_adaptation = (
        exclude_from_layer_adaptation if exclude_from_layer_adaptation
        else exclude_from_weight_decay)
    # Kept to tell "fallback" from "given" in get_config.
    self._exclude_from_layer_adaptation_arg = exclude_from_layer_adaptation
    # Options are Python attributes, not hyperparameter variables, so that
    # checkpoints hold exactly what tf-models-official's do.
    self.trust_ratio_bounds = trust_ratio_bounds
    self.gradient_pre_normalization = bool(gradient_pre_normalization)
    self.bias_correction = bool(bias_correction)
    self.fused = bool(fused)
    # Last-step trust ratio of each variable, keyed like the slots. Plain
    # attributes are not tracked by checkpoints (OptimizerV2 is a Trackable,
    # not an AutoTrackable).
    self._trust_ratio_vars = {}
    self._trust_ratio_names = {}
    self._fused_step = tf.function(self._fused_step_fn, jit_compile=True)

  # ---------------------------------------------------------------------------
  # Variables.

  def _create_slots(self, var_list):
    # Separate loops: all "m" then all "v", the order of tf-models-official
    # (and TF1), so that get_weights()/set_weights() layouts match.
    for var in var_list:
      self.add_slot(var, "m")
    for var in var_list:
      self.add_slot(var, "v")
    for var in var_list:
      self._create_trust_ratio_var(var)

  def add_slot(self, var, slot_name, initializer="zeros", shape=None):
    """Adds a slot for `var`; float32 for float16/bfloat16 variables.

    Args:
      var: a `Variable`.
      slot_name: name of the slot variable.
      initializer: initializer of the slot variable.
      shape: shape of the slot variable; defaults to `var`'s.

    Returns:
      The slot variable.
    """
    dtype = getattr(var, "true_dtype", var.dtype)
    if dtype not in _LOW_PRECISION or slot_name not in ("m", "v"):
      return super().add_slot(var, slot_name, initializer, shape)
    # The base class always uses the variable's dtype; this is its logic with
    # the slot dtype changed.
    if slot_name not in self._slot_names:
      self._slot_names.append(slot_name)
    slot_dict = self._slots.setdefault(optimizer_v2._var_key(var), {})
    weight = slot_dict.get(slot_name)
    if weight is not None:
      return weight
    initializer = tf_keras.initializers.get(initializer)
    slot_shape = var.shape if shape is None else shape
    with self._distribution_strategy_scope():
      strategy = tf.distribute.get_strategy()
      if not strategy.extended.variable_created_in_scope(var):
        raise ValueError(f"Slot variable {slot_name} of {var.name} must be "
                         "created under the strategy scope of the variable.")
      with strategy.extended.colocate_vars_with(var):
        weight = tf.Variable(
            name=f"{var._shared_name}/{slot_name}",  # pylint: disable=protected-access
            dtype=tf.float32, trainable=False,
            initial_value=functools.partial(initializer, shape=slot_shape,
                                            dtype=tf.float32))
    backend.track_variable(weight)
    slot_dict[slot_name] = weight
    self._restore_slot_variable(slot_name=slot_name, variable=var,
                                slot_variable=weight)
    self._weights.append(weight)
    return weight

  def _create_trust_ratio_var(self, var):
    key = optimizer_v2._var_key(var)  # pylint: disable=protected-access
    if key in self._trust_ratio_vars:
      return
    with self._distribution_strategy_scope():
      with tf.distribute.get_strategy().extended.colocate_vars_with(var):
        ratio = tf.Variable(1.0, dtype=tf.float32, trainable=False,
                            name=f"{var._shared_name}/trust_ratio")  # pylint: disable=protected-access
    backend.track_variable(ratio)
    self._trust_ratio_vars[key] = ratio
    self._trust_ratio_names[key] = self._get_variable_name(var.name)

  def _trust_ratio_var(self, var):
    return self._trust_ratio_vars[optimizer_v2._var_key(var)]  # pylint: disable=protected-access

  def trust_ratios(self):
    """Returns {variable name: float32 scalar} of the last step's ratios.

    Variables excluded from layer adaptation, and those not yet updated,
    report 1.0.
    """
    return {self._trust_ratio_names[k]: tf.identity(v)
            for k, v in self._trust_ratio_vars.items()}

  def trust_ratio_stats(self):
    """Returns {"min", "mean", "max"} of the last step's trust ratios.

    Over variables using layer adaptation (all variables if none does);
    float32 scalars, cheap enough to log every step.
    """
    keys = [k for k, name in self._trust_ratio_names.items()
            if self._do_layer_adaptation(name)] or list(self._trust_ratio_vars)
    if not keys:
      one = tf.constant(1.0)
      return {"min": one, "mean": one, "max": one}
    ratios = tf.stack([self._trust_ratio_vars[k] for k in keys])
    return {"min": tf.reduce_min(ratios), "mean": tf.reduce_mean(ratios),
            "max": tf.reduce_max(ratios)}

  # ---------------------------------------------------------------------------
  # Coefficients and the update, shared by the per-variable and fused paths.

  def _coefficients(self, dtype):
    """Scalars of this step in `dtype`, named as in tf-models-official."""
    local_step = tf.cast(self.iterations + 1, dtype)
    beta_1_t = tf.identity(self._get_hyper("beta_1", dtype))
    beta_2_t = tf.identity(self._get_hyper("beta_2", dtype))
    if self.bias_correction:
      beta_1_power = tf.pow(beta_1_t, local_step)
      beta_2_power = tf.pow(beta_2_t, local_step)
    else:
      # 1 - 0 = 1 exactly: the same code divides by one.
      beta_1_power = beta_2_power = tf.zeros([], dtype)
    return dict(
        lr_t=tf.identity(self._decayed_lr(dtype)),
        weight_decay_rate=tf.identity(
            self._get_hyper("weight_decay_rate", dtype)),
        epsilon=tf.convert_to_tensor(self.epsilon, dtype),
        beta_1_t=beta_1_t,
        beta_1_power=beta_1_power,
        one_minus_beta_1_t=1 - beta_1_t,
        beta_2_t=beta_2_t,
        beta_2_power=beta_2_power,
        one_minus_beta_2_t=1 - beta_2_t,
    )

  def _prepare_local(self, var_device, var_dtype, apply_state):
    apply_state[(var_device, var_dtype)].update(
        self._coefficients(_compute_dtype(var_dtype)))

  def _lamb_update(self, w, m, v, grad, coefficients, use_decay, use_adapt,
                   indices=None):
    """One LAMB step of one variable, as values (no assignment).

    Args:
      w: the variable's value.
      m: first moment (compute dtype).
      v: second moment (compute dtype).
      grad: gradient, dense, or the rows at unique `indices`.
      coefficients: the step's scalars from `_coefficients`.
      use_decay: whether the decay term applies to this variable.
      use_adapt: whether the trust ratio applies to this variable.
      indices: None for a dense `grad`, else unique row indices.

    Returns:
      (new w in w's dtype, m_t, v_t, float32 trust ratio).
    """
    c = coefficients
    dtype = c["lr_t"].dtype
    w_in_dtype = w.dtype
    w = tf.cast(w, dtype)
    grad = tf.cast(grad, dtype)
    # The operation order of tf-models-official, for identical rounding.
    m_scaled_g = grad * c["one_minus_beta_1_t"]
    v_scaled_g = (grad * grad) * c["one_minus_beta_2_t"]
    if indices is None:
      m_t = m * c["beta_1_t"] + m_scaled_g
      v_t = v * c["beta_2_t"] + v_scaled_g
    else:
      # Rows without gradient still decay: scatter into the decayed moments.
      indices = tf.expand_dims(indices, -1)
      m_t = tf.tensor_scatter_nd_add(m * c["beta_1_t"], indices, m_scaled_g)
      v_t = tf.tensor_scatter_nd_add(v * c["beta_2_t"], indices, v_scaled_g)
    m_t_hat = m_t / (1.0 - c["beta_1_power"])
    v_t_hat = v_t / (1.0 - c["beta_2_power"])
    update = m_t_hat / (tf.sqrt(v_t_hat) + c["epsilon"])
    if use_decay:
      update += c["weight_decay_rate"] * w
    if use_adapt:
      w_norm = tf.norm(w, ord=2)
      u_norm = tf.norm(update, ord=2)
      both_positive = tf.logical_and(w_norm > 0, u_norm > 0)
      # The inner where keeps 0/0 out of the result (and of any gradient).
      ratio = w_norm / tf.where(both_positive, u_norm, 1.0)
      if self.trust_ratio_bounds is not None:
        ratio = tf.clip_by_value(ratio, *self.trust_ratio_bounds)
      ratio = tf.where(both_positive, ratio, 1.0)
      new_w = w - ratio * c["lr_t"] * update
    else:
      ratio = tf.ones([], dtype)
      new_w = w - c["lr_t"] * update
    return (tf.cast(new_w, w_in_dtype), m_t, v_t, tf.cast(ratio, tf.float32))

  def _flags(self, var):
    name = self._get_variable_name(var.name)
    return self._do_use_weight_decay(name), self._do_layer_adaptation(name)

  # ---------------------------------------------------------------------------
  # Per-variable path (fused=False, and graph-mode get_updates).

  def _apply_one(self, grad, var, indices, apply_state):
    var_device, var_dtype = var.device, var.dtype.base_dtype
    coefficients = ((apply_state or {}).get((var_device, var_dtype))
                    or self._fallback_apply_state(var_device, var_dtype))
    m = self.get_slot(var, "m")
    v = self.get_slot(var, "v")
    new_w, m_t, v_t, ratio = self._lamb_update(
        var.value(), m.value(), v.value(), grad, coefficients,
        *self._flags(var), indices=indices)
    return tf.group(
        m.assign(m_t, use_locking=self._use_locking, read_value=False),
        v.assign(v_t, use_locking=self._use_locking, read_value=False),
        var.assign(new_w, use_locking=self._use_locking, read_value=False),
        self._trust_ratio_var(var).assign(ratio, read_value=False))

  def _resource_apply_dense(self, grad, var, apply_state=None):
    return self._apply_one(grad, var, None, apply_state)

  def _resource_apply_sparse(self, grad, var, indices, apply_state=None):
    # Indices arrive unique: the base class sums duplicates first.
    return self._apply_one(grad, var, indices, apply_state)

  # ---------------------------------------------------------------------------
  # Gradient pre-normalization (NVLAMB), before either path.

  def _transform_gradients(self, grads_and_vars):
    grads_and_vars = super()._transform_gradients(grads_and_vars)
    if not self.gradient_pre_normalization:
      return grads_and_vars
    grads_and_vars = list(grads_and_vars)
    # Duplicate rows of an IndexedSlices are summed first: the norm is that
    # of the gradient, not of its pieces.
    grads = [
        tf.IndexedSlices(*optimizer_v2._deduplicate_indexed_slices(  # pylint: disable=protected-access
            g.values, g.indices), g.dense_shape)
        if isinstance(g, tf.IndexedSlices) else g
        for g, _ in grads_and_vars]
    norm = tf.linalg.global_norm(grads)
    scale = tf.where(norm > 0, 1.0 / norm, 1.0)

    def scaled(g):
      if isinstance(g, tf.IndexedSlices):
        return tf.IndexedSlices(g.values * tf.cast(scale, g.dtype), g.indices,
                                g.dense_shape)
      return g * tf.cast(scale, g.dtype)
    return [(scaled(g), v) for g, (_, v) in zip(grads, grads_and_vars)]

  # ---------------------------------------------------------------------------
  # Fused path: one XLA computation per device for all its variables.

  def _fused_step_fn(self, ws, ms, vs, grads, coefficients, flags):
    """The step of all variables; traced once per variable set and device."""
    outs = []
    for w, m, v, g, (use_decay, use_adapt) in zip(ws, ms, vs, grads, flags):
      if isinstance(g, tf.IndexedSlices):
        # Summing duplicates into a dense gradient is what the per-variable
        # path computes too (zero rows leave the decayed moments unchanged).
        g = tf.math.unsorted_segment_sum(g.values, g.indices, w.shape[0])
      dtype = _compute_dtype(w.dtype)
      outs.append(self._lamb_update(w, m, v, g, coefficients[dtype.name],
                                    use_decay, use_adapt))
    return outs

  def _use_fused(self, distribution):
    return (self.fused and tf.compat.v1.executing_eagerly_outside_functions()
            and (not tf.distribute.has_strategy()
                 or isinstance(distribution, _FUSABLE_STRATEGIES)))

  def _distributed_apply(self, distribution, grads_and_vars, apply_state,
                         name):
    if not self._use_fused(distribution):
      return super()._distributed_apply(distribution, grads_and_vars,
                                        apply_state, name)
    grads_and_vars = list(grads_and_vars)
    for grad, var in grads_and_vars:
      if isinstance(grad, tf.IndexedSlices) and var.constraint is not None:
        raise RuntimeError(f"Cannot use a constraint function on a sparse "
                           f"variable: {var.name}.")
    # One computation per device (variables placed by hand may differ).
    groups = {}
    for grad, var in grads_and_vars:
      groups.setdefault(var.device, []).append((grad, var))

    update_ops = []
    with optimizer_v2.name_scope_only_in_function_or_graph(name or self._name):
      for group in groups.values():
        grads = [g for g, _ in group]
        variables = [v for _, v in group]
        # `update` runs the function once per replica, on its device and in
        # its update context, where reading or assigning a mirrored variable
        # means that replica's copy, and passes that replica's gradients.
        result = distribution.extended.update(
            variables[0], functools.partial(self._fused_update, variables),
            args=(grads,), group=False)
        if tf.distribute.in_cross_replica_context():
          update_ops.extend(result)
        else:
          update_ops.append(result)
      if not tf.executing_eagerly() or any(
          isinstance(op, tf.Operation) or tf.is_symbolic_tensor(op)
          for op in update_ops if op is not None):
        with tf.control_dependencies([tf.group(update_ops)]):
          return self.iterations.assign_add(1, read_value=False)
      return self.iterations.assign_add(1)

  def _fused_update(self, variables, unused_local_var, grads):
    """Updates `variables` of the current replica with its `grads`."""
    slots_m = [self.get_slot(var, "m") for var in variables]
    slots_v = [self.get_slot(var, "v") for var in variables]
    coefficients = {}
    for var in variables:
      dtype = _compute_dtype(var.dtype.base_dtype)
      if dtype.name not in coefficients:
        coefficients[dtype.name] = self._coefficients(dtype)
    outs = self._fused_step(
        [var.value() for var in variables], [m.value() for m in slots_m],
        [v.value() for v in slots_v], list(grads), coefficients,
        tuple(self._flags(var) for var in variables))
    ops = []
    for var, m, v, (new_w, m_t, v_t, ratio) in zip(variables, slots_m,
                                                   slots_v, outs):
      ops.append(m.assign(m_t, read_value=False))
      ops.append(v.assign(v_t, read_value=False))
      assign = var.assign(new_w, read_value=False)
      if var.constraint is not None:
        with tf.control_dependencies([assign]):
          assign = var.assign(var.constraint(var), read_value=False)
      ops.append(assign)
      ops.append(self._trust_ratio_var(var).assign(ratio, read_value=False))
    return tf.group(ops)

  # ---------------------------------------------------------------------------
  # Config and names.

  def get_config(self):
    config = super().get_config()
    config.update({
        "learning_rate": self._serialize_hyperparameter("learning_rate"),
        "weight_decay_rate": self._serialize_hyperparameter(
            "weight_decay_rate"),
        "decay": self._serialize_hyperparameter("decay"),
        "beta_1": self._serialize_hyperparameter("beta_1"),
        "beta_2": self._serialize_hyperparameter("beta_2"),
        "epsilon": self.epsilon,
        "exclude_from_weight_decay": self.exclude_from_weight_decay,
        "exclude_from_layer_adaptation":
            self._exclude_from_layer_adaptation_arg,
        "trust_ratio_bounds": (None if self.trust_ratio_bounds is None
                               else list(self.trust_ratio_bounds)),
        "gradient_pre_normalization": self.gradient_pre_normalization,
        "bias_correction": self.bias_correction,
        "fused": self.fused,
    })
    return config

  def _do_use_weight_decay(self, param_name):
    """Whether to use L2 weight decay for `param_name`."""
    return not any(re.search(r, param_name) is not None
                   for r in self.exclude_from_weight_decay or ())

  def _do_layer_adaptation(self, param_name):
    """Whether to do layer-wise learning rate adaptation for `param_name`."""
    return not any(re.search(r, param_name) is not None
                   for r in self.exclude_from_layer_adaptation or ())

  def _get_variable_name(self, param_name):
    """Get the variable name from the tensor name."""
    m = re.match("^(.*):\\d+$", param_name)
    return param_name if m is None else m.group(1)
