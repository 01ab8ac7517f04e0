"""LAMB: layer-wise adaptive moments, a drop-in for tf-models-official's LAMB.

Reference: Y. You et al., "Large Batch Optimization for Deep Learning:
Training BERT in 76 minutes", ICLR 2020, https://arxiv.org/abs/1904.00962.

`LAMB` keeps the constructor, slot names ("m", "v"), hyperparameter names,
weight layout and default numerics of `official.modeling.optimization.lamb.
LAMB`, so checkpoints and configs move between the two in both directions.
It differs where that optimizer is wrong (config round trip, argument checks,
`epsilon=0.0`, bfloat16 variables) and in speed: float32 and float64
variables take a fused update of three passes over memory (see `LAMB`).
"""

import functools
import math
import numbers
import re
from typing import Callable, List, Optional, Tuple, Union

import tensorflow as tf
import tf_keras
from tf_keras.src import backend
from tf_keras.src.optimizers.legacy import optimizer_v2

FloatLike = Union[float, tf.Tensor]

# Variables of these dtypes keep float32 moments and do their arithmetic in
# float32: 1 - beta_2**t rounds to 0 in bfloat16 (the update becomes NaN) and
# squared gradients underflow in float16.
_LOW_PRECISION = (tf.float16, tf.bfloat16)

# The fused update uses TensorFlow's ApplyAdam kernel, which needs the
# variable and its moments in one dtype.
_FUSED_DTYPES = (tf.float32, tf.float64)

# Longest row for which `_sum_of_squares` uses a matrix-vector product: XLA's
# CPU backend fuses elementwise producers into a GEMV only when the vector is
# small (16 KiB).
_MAX_GEMV_ROW = 4096


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


def trust_ratio(w_norm, u_norm, bounds=None):
  """The LAMB trust ratio ||w|| / ||u||: 1 unless both norms are positive.

  Args:
    w_norm: scalar, L2 norm of the variable before the step.
    u_norm: scalar, L2 norm of the update direction (decay included).
    bounds: optional (lo, hi) clipping the ratio where both norms are
      positive (DeepSpeed's `min_coeff`, `max_coeff`).

  Returns:
    A scalar of the dtype of `w_norm`.
  """
  both_positive = tf.logical_and(w_norm > 0, u_norm > 0)
  # The inner where keeps 0/0 out of the result (and of any gradient).
  ratio = w_norm / tf.where(both_positive, u_norm, tf.ones_like(u_norm))
  if bounds is not None:
    ratio = tf.clip_by_value(ratio, *bounds)
  return tf.where(both_positive, ratio, tf.ones_like(ratio))


def _sum_of_squares(x, use_gemv):
  """sum(x * x) over all elements of `x`, as a scalar.

  On CPU, `tf.reduce_sum(x * x)` compiles to a squaring pass into a
  full-size buffer and a separate tree reduction. Written as a matrix-vector
  product of the rows of x * x with ones, XLA fuses the computation of `x`
  into its vectorized GEMV: one read pass and no temporary. GPU and TPU
  backends fuse a plain reduction well on their own.

  Args:
    x: a tensor of any shape.
    use_gemv: whether to use the GEMV form (for CPU).
  """
  row = x.shape[-1] if x.shape.rank else 0
  if use_gemv and x.shape.rank >= 2 and 32 <= row <= _MAX_GEMV_ROW:
    rows = tf.reshape(x * x, [-1, row])
    return tf.reduce_sum(tf.linalg.matvec(rows, tf.ones([row], x.dtype)))
  return tf.reduce_sum(x * x)


def _ratio_and_decayed(w, m, v, grad, lr, beta_1, beta_2, step_size,
                       epsilon_hat, weight_decay_rate, *, use_decay,
                       use_adapt, bounds, use_gemv):
  """Trust ratio and decayed weights of one variable; writes nothing.

  The first pass of the fused update. The moments are recomputed here in the
  form of TensorFlow's ApplyAdam kernel, which writes them afterwards, so that
  the ratio is that of the update the kernel applies.

  Args:
    w: the variable's value, shape [*S].
    m: first moment before the step, shape [*S].
    v: second moment before the step, shape [*S].
    grad: dense gradient, shape [*S].
    lr: scalar learning rate of the step.
    beta_1: scalar.
    beta_2: scalar.
    step_size: scalar sqrt(1 - beta_2^t) / (1 - beta_1^t).
    epsilon_hat: scalar epsilon * sqrt(1 - beta_2^t).
    weight_decay_rate: scalar.
    use_decay: whether the decay term applies to this variable.
    use_adapt: whether the trust ratio applies to this variable.
    bounds: `trust_ratio_bounds`.
    use_gemv: see `_sum_of_squares`.

  Returns:
    (scalar trust ratio, w - lr * ratio * weight_decay_rate * w or None).
  """
  ratio = tf.ones([], w.dtype)
  if use_adapt:
    m_t = m + (grad - m) * (1 - beta_1)
    v_t = v + (grad * grad - v) * (1 - beta_2)
    update = step_size * m_t / (tf.sqrt(v_t) + epsilon_hat)
    if use_decay:
      update += weight_decay_rate * w
    ratio = trust_ratio(tf.sqrt(_sum_of_squares(w, use_gemv)),
                        tf.sqrt(_sum_of_squares(update, use_gemv)), bounds)
  decayed = None
  if use_decay:
    # Subtracted rather than multiplied by (1 - lr * ratio * wd): that factor
    # rounds to one float for the whole tensor and would bias the decay.
    decayed = w - (lr * ratio * weight_decay_rate) * w
  return ratio, decayed


@functools.lru_cache(maxsize=None)
def _compiled_ratio_and_decayed(**options):
  """`_ratio_and_decayed` compiled with XLA, one function per option set.

  Separate functions, rather than one retraced per option set, keep
  tf.function from warning about retracing; each still traces once per
  variable shape and dtype.
  """
  return tf.function(functools.partial(_ratio_and_decayed, **options),
                     jit_compile=True, autograph=False)


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
  * Sparse gradients (`tf.IndexedSlices`, e.g. of embeddings) are summed
    over duplicate indices and applied as the dense gradient that is zero
    elsewhere: the moments of rows without gradient still decay and the norms
    cover the whole variable, exactly as tf-models-official's
    decay-then-scatter update.
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

  Fused update (`fused=True`, the default, for float32 and float64
  variables). With `s = sqrt(1 - beta_2^t) / (1 - beta_1^t)` and
  `epsilon^ = epsilon * sqrt(1 - beta_2^t)`, the step above is

      m_t = m_{t-1} + (1 - beta_1) * (g - m_{t-1})     # same value
      r_t = s * m_t / (sqrt(v_t) + epsilon^)           # same value
      w <- [w - lr_t * ratio_t * weight_decay_rate * w] - lr_t * ratio_t * r_t

  and runs per variable as (1) one XLA-compiled pass that reads g, m, v and w
  and returns ratio_t and the bracket (the moments are recomputed, nothing
  full-size besides the bracket is written), then (2) TensorFlow's in-place
  ApplyAdam kernel with learning rate `lr_t * ratio_t`, which writes m, v
  and w in a single pass. tf-models-official's ops make a dozen passes with
  as many full-size temporaries. Results agree with the reference path to
  float32 rounding (both are as far from a float64 computation). The fused
  update works eagerly, in `tf.function`, in legacy graph mode, under
  `tf.distribute` strategies (each replica updates its own copy) and inside
  computations that are XLA-compiled as a whole (TPU); `fused=False`, and
  16-bit variables, run tf-models-official's sequence of ops instead.

  The trust ratios of the last step are kept for logging: see
  `trust_ratios()` and `trust_ratio_stats()`; they are not part of the
  optimizer's weights or checkpoints.

  [1] Y. You et al., "Large Batch Optimization for Deep Learning: Training
  BERT in 76 minutes", ICLR 2020, https://arxiv.org/abs/1904.00962.
  """

  # Subclasses of the legacy optimizer must opt in to receiving
  # `experimental_aggregate_gradients` from Keras.
  _HAS_AGGREGATE_GRAD = True

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
      fused: use the fused update for float32/float64 variables (True), or
        tf-models-official's per-variable ops (False, needs no XLA).
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
    slot_dict = self._slots.setdefault(optimizer_v2._var_key(var), {})  # pylint: disable=protected-access
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
    report 1.0. The values live in variables, so this can be called anywhere,
    e.g. in cross-replica context after a loop of steps.
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
  # Coefficients and the update.

  def _prepare_local(self, var_device, var_dtype, apply_state):
    """Scalars of this step, named as in tf-models-official where shared."""
    dtype = _compute_dtype(var_dtype)
    local_step = tf.cast(self.iterations + 1, dtype)
    beta_1_t = tf.identity(self._get_hyper("beta_1", dtype))
    beta_2_t = tf.identity(self._get_hyper("beta_2", dtype))
    if self.bias_correction:
      beta_1_power = tf.pow(beta_1_t, local_step)
      beta_2_power = tf.pow(beta_2_t, local_step)
    else:
      # 1 - 0 = 1 exactly: the same code (and ApplyAdam) divides by one.
      beta_1_power = beta_2_power = tf.zeros([], dtype)
    epsilon = tf.convert_to_tensor(self.epsilon, dtype)
    sqrt_bias_2 = tf.sqrt(1 - beta_2_power)
    apply_state[(var_device, var_dtype)].update(
        lr_t=tf.identity(self._decayed_lr(dtype)),
        weight_decay_rate=tf.identity(
            self._get_hyper("weight_decay_rate", dtype)),
        epsilon=epsilon,
        beta_1_t=beta_1_t,
        beta_1_power=beta_1_power,
        one_minus_beta_1_t=1 - beta_1_t,
        beta_2_t=beta_2_t,
        beta_2_power=beta_2_power,
        one_minus_beta_2_t=1 - beta_2_t,
        # The fused form: r_t = step_size * m_t / (sqrt(v_t) + epsilon_hat).
        step_size=sqrt_bias_2 / (1 - beta_1_power),
        epsilon_hat=epsilon * sqrt_bias_2,
    )

  def _resource_apply_dense(self, grad, var, apply_state=None):
    var_device, var_dtype = var.device, var.dtype.base_dtype
    coefficients = ((apply_state or {}).get((var_device, var_dtype))
                    or self._fallback_apply_state(var_device, var_dtype))
    name = self._get_variable_name(var.name)
    use_decay = self._do_use_weight_decay(name)
    use_adapt = self._do_layer_adaptation(name)
    if self.fused and var_dtype in _FUSED_DTYPES:
      update, ratio = self._fused_update(grad, var, coefficients, use_decay,
                                         use_adapt)
    else:
      update, ratio = self._reference_update(grad, var, coefficients,
                                             use_decay, use_adapt)
    with tf.control_dependencies([update]):
      return self._trust_ratio_var(var).assign(
          tf.cast(ratio, tf.float32), read_value=False)

  def _resource_apply_sparse(self, grad, var, indices, apply_state=None):
    # Indices arrive unique (the base class sums duplicates). Zero rows leave
    # m * beta_1 + 0 = m * beta_1 exactly, so the dense rule gives
    # tf-models-official's decay-then-scatter values bit for bit.
    dense_grad = tf.scatter_nd(tf.expand_dims(indices, -1), grad,
                               tf.shape(var, out_type=indices.dtype))
    return self._resource_apply_dense(dense_grad, var, apply_state)

  def _reference_update(self, grad, var, coefficients, use_decay, use_adapt):
    """tf-models-official's sequence of ops (in float32 for 16-bit variables).

    Args:
      grad: dense gradient, shape [*S].
      var: the variable, shape [*S].
      coefficients: the step's scalars from `_prepare_local`.
      use_decay: whether the decay term applies to this variable.
      use_adapt: whether the trust ratio applies to this variable.

    Returns:
      (the update op, scalar trust ratio).
    """
    c = coefficients
    m = self.get_slot(var, "m")
    v = self.get_slot(var, "v")
    dtype = m.dtype
    w = tf.cast(var.value(), dtype)
    grad = tf.cast(grad, dtype)
    # The operation order of tf-models-official, for identical rounding.
    m_t = m.value() * c["beta_1_t"] + grad * c["one_minus_beta_1_t"]
    v_t = v.value() * c["beta_2_t"] + (grad * grad) * c["one_minus_beta_2_t"]
    m_t_hat = m_t / (1.0 - c["beta_1_power"])
    v_t_hat = v_t / (1.0 - c["beta_2_power"])
    update = m_t_hat / (tf.sqrt(v_t_hat) + c["epsilon"])
    if use_decay:
      update += c["weight_decay_rate"] * w
    if use_adapt:
      ratio = trust_ratio(tf.norm(w, ord=2), tf.norm(update, ord=2),
                          self.trust_ratio_bounds)
      new_w = w - ratio * c["lr_t"] * update
    else:
      ratio = tf.ones([], dtype)
      new_w = w - c["lr_t"] * update
    return tf.group(
        m.assign(m_t, use_locking=self._use_locking, read_value=False),
        v.assign(v_t, use_locking=self._use_locking, read_value=False),
        var.assign(tf.cast(new_w, var.dtype), use_locking=self._use_locking,
                   read_value=False)), ratio

  def _fused_update(self, grad, var, coefficients, use_decay, use_adapt):
    """The fused update of a float32/float64 variable (see `LAMB`).

    Args:
      grad: dense gradient, shape [*S].
      var: the variable, shape [*S].
      coefficients: the step's scalars from `_prepare_local`.
      use_decay: whether the decay term applies to this variable.
      use_adapt: whether the trust ratio applies to this variable.

    Returns:
      (the update op, scalar trust ratio).
    """
    c = coefficients
    m = self.get_slot(var, "m")
    v = self.get_slot(var, "v")
    ratio = tf.ones([], var.dtype)
    before_adam = []
    if use_decay or use_adapt:
      first_pass = _compiled_ratio_and_decayed(
          use_decay=use_decay, use_adapt=use_adapt,
          bounds=self.trust_ratio_bounds,
          use_gemv=tf.DeviceSpec.from_string(var.device).device_type == "CPU")
      ratio, decayed = first_pass(
          var.value(), m.value(), v.value(), grad, c["lr_t"], c["beta_1_t"],
          c["beta_2_t"], c["step_size"], c["epsilon_hat"],
          c["weight_decay_rate"])
      before_adam = [ratio]
      if use_decay:
        # Reads above happen before this write: its value depends on them.
        before_adam = [var.assign(decayed, use_locking=self._use_locking,
                                  read_value=False)]
    with tf.control_dependencies(before_adam):
      # ApplyAdam: m <- m + (g - m)(1 - beta1), v <- v + (g^2 - v)(1 - beta2),
      # w <- w - lr * sqrt(1 - beta2_power) / (1 - beta1_power) * m /
      # (sqrt(v) + epsilon), in one pass and in place.
      update = tf.raw_ops.ResourceApplyAdam(
          var=var.handle, m=m.handle, v=v.handle,
          beta1_power=c["beta_1_power"], beta2_power=c["beta_2_power"],
          lr=ratio * c["lr_t"], beta1=c["beta_1_t"], beta2=c["beta_2_t"],
          epsilon=c["epsilon_hat"], grad=grad, use_locking=self._use_locking)
    return update, ratio

  # ---------------------------------------------------------------------------
  # Gradient pre-normalization (NVLAMB), before the update.

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
    norm = tf.sqrt(tf.add_n([
        tf.reduce_sum(tf.square(tf.cast(
            g.values if isinstance(g, tf.IndexedSlices) else g, tf.float32)))
        for g in grads]))
    scale = tf.where(norm > 0, 1.0 / norm, 1.0)

    def scaled(g):
      if isinstance(g, tf.IndexedSlices):
        return tf.IndexedSlices(g.values * tf.cast(scale, g.dtype), g.indices,
                                g.dense_shape)
      return g * tf.cast(scale, g.dtype)
    return [(scaled(g), v) for g, (_, v) in zip(grads, grads_and_vars)]

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
