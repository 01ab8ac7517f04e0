"""Tests of lamb.LAMB against a numpy reference and tf-models-official's LAMB."""

import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.modeling.optimization import lamb as tfm_lamb

from lamb import LAMB

TfmLAMB = tfm_lamb.LAMB
FUSED = [pytest.param(True, id="fused"), pytest.param(False, id="plain")]


def numpy_lamb_step(w, m, v, g, t, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-6,
                    weight_decay_rate=0.0, decay=True, adapt=True,
                    bounds=None, bias_correction=True):
  """One LAMB step in float64, written from Algorithm 2 of the paper."""
  w, m, v, g = (np.asarray(x, np.float64) for x in (w, m, v, g))
  m = beta_1 * m + (1 - beta_1) * g
  v = beta_2 * v + (1 - beta_2) * g * g
  m_hat = m / (1 - beta_1**t) if bias_correction else m
  v_hat = v / (1 - beta_2**t) if bias_correction else v
  update = m_hat / (np.sqrt(v_hat) + epsilon)
  if decay:
    update = update + weight_decay_rate * w
  ratio = 1.0
  w_norm, u_norm = np.linalg.norm(w), np.linalg.norm(update)
  if adapt and w_norm > 0 and u_norm > 0:
    ratio = w_norm / u_norm
    if bounds is not None:
      ratio = np.clip(ratio, *bounds)
  return w - lr * ratio * update, m, v


def make_problem(seed, shapes=((12, 6), (6,), (3, 4, 5)), steps=20):
  """Initial values and per-step gradients of a random problem."""
  rng = np.random.default_rng(seed)
  init = [rng.normal(size=s).astype(np.float32) for s in shapes]
  grads = [[rng.normal(size=s).astype(np.float32) for s in shapes]
           for _ in range(steps)]
  return init, grads


NAMES = ["dense/kernel", "dense/bias", "LayerNorm/gamma"]


def make_vars(init, dtype=tf.float32, names=NAMES):
  return [tf.Variable(tf.cast(x, dtype), name=n) for x, n in zip(init, names)]


def run_steps(opt, variables, grads, use_function=True):
  """Applies each step's gradients; returns the variables as float64."""
  def step(gs):
    opt.apply_gradients(zip(gs, variables))
  if use_function:
    step = tf.function(step)
  for gs in grads:
    step([tf.cast(g, v.dtype) if not isinstance(g, tf.IndexedSlices) else g
          for g, v in zip(gs, variables)])
  return [tf.cast(v, tf.float64).numpy() for v in variables]


def max_rel_diff(a, b):
  return max(np.max(np.abs(x - y)) / max(np.max(np.abs(x)), 1e-12)
             for x, y in zip(a, b))


# -----------------------------------------------------------------------------
# Numpy reference, step by step.


@pytest.mark.parametrize("fused", FUSED)
# float64 is not exact: the hyperparameters are float32 variables (as in
# tf-models-official), so beta_1 = 0.9 is 0.89999998 in float64.
@pytest.mark.parametrize("dtype,tol", [(tf.float32, 1e-5), (tf.float64, 1e-8),
                                       (tf.float16, 2e-3),
                                       (tf.bfloat16, 1e-2)])
def test_numpy_reference_dense(dtype, tol, fused):
  init, grads = make_problem(0, steps=4)
  variables = make_vars(init, dtype)
  opt = LAMB(learning_rate=0.05, weight_decay_rate=0.1,
             exclude_from_weight_decay=["bias"],
             exclude_from_layer_adaptation=["LayerNorm"], fused=fused)
  ref = [tf.cast(v, tf.float64).numpy() for v in variables]
  ms = [np.zeros_like(x) for x in ref]
  vs = [np.zeros_like(x) for x in ref]
  for t, gs in enumerate(grads, start=1):
    gs = [tf.cast(g, dtype) for g in gs]
    opt.apply_gradients(zip(gs, variables))
    for i, name in enumerate(NAMES):
      ref[i], ms[i], vs[i] = numpy_lamb_step(
          ref[i], ms[i], vs[i], tf.cast(gs[i], tf.float64).numpy(), t, 0.05,
          weight_decay_rate=0.1, decay="bias" not in name,
          adapt="LayerNorm" not in name)
    got = [tf.cast(v, tf.float64).numpy() for v in variables]
    assert max_rel_diff(ref, got) < tol, t
    # Set the variables to the exact reference so rounding does not add up
    # over steps in low precision.
    for v, r in zip(variables, ref):
      v.assign(tf.cast(r, dtype))
    ref = [tf.cast(v, tf.float64).numpy() for v in variables]
  assert all(v.dtype == dtype for v in variables)
  slot_dtype = tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype
  assert opt.get_slot(variables[0], "m").dtype == slot_dtype


@pytest.mark.parametrize("fused", FUSED)
def test_numpy_reference_sparse_with_duplicate_indices(fused):
  rng = np.random.default_rng(1)
  w0 = rng.normal(size=(10, 4)).astype(np.float32)
  var = tf.Variable(w0, name="embeddings")
  opt = LAMB(learning_rate=0.1, weight_decay_rate=0.01, fused=fused)
  ref, m, v = w0.astype(np.float64), np.zeros((10, 4)), np.zeros((10, 4))
  for t in range(1, 4):
    indices = np.array([1, 7, 1, 3], np.int32)  # Row 1 twice.
    values = rng.normal(size=(4, 4)).astype(np.float32)
    opt.apply_gradients([(tf.IndexedSlices(tf.constant(values),
                                           tf.constant(indices),
                                           tf.constant([10, 4])), var)])
    dense = np.zeros((10, 4))
    np.add.at(dense, indices, values)
    ref, m, v = numpy_lamb_step(ref, m, v, dense, t, 0.1,
                                weight_decay_rate=0.01)
    np.testing.assert_allclose(var.numpy(), ref, rtol=1e-5, atol=1e-6)
  # Rows without gradient moved too (weight decay, decayed moments).
  assert not np.allclose(var.numpy()[0], w0[0])


@pytest.mark.parametrize("fused", FUSED)
def test_numpy_reference_schedule_and_decay(fused):
  init, grads = make_problem(2, shapes=((5, 3),), steps=4)
  schedule = tf_keras.optimizers.schedules.PolynomialDecay(0.1, 4, 0.01)
  variables = make_vars(init, names=["w"])
  opt = LAMB(learning_rate=schedule, decay=0.5, fused=fused)
  run_steps(opt, variables, grads)
  ref, m, v = init[0].astype(np.float64), 0.0, 0.0
  for step, gs in enumerate(grads):
    lr = schedule(step).numpy() / (1 + 0.5 * step)
    ref, m, v = numpy_lamb_step(ref, m, v, gs[0], step + 1, lr)
  np.testing.assert_allclose(variables[0].numpy(), ref, rtol=1e-5)


@pytest.mark.parametrize("kwargs,transform", [
    ({"clipnorm": 0.5},
     lambda gs: [g * min(1.0, 0.5 / np.linalg.norm(g)) for g in gs]),
    ({"clipvalue": 0.3}, lambda gs: [np.clip(g, -0.3, 0.3) for g in gs]),
    ({"global_clipnorm": 0.5},
     lambda gs: [g * min(1.0, 0.5 / np.sqrt(sum(np.sum(x * x) for x in gs)))
                 for g in gs]),
    ({"gradient_pre_normalization": True},
     lambda gs: [g / np.sqrt(sum(np.sum(x * x) for x in gs)) for g in gs]),
], ids=["clipnorm", "clipvalue", "global_clipnorm", "pre_normalization"])
def test_numpy_reference_gradient_transforms(kwargs, transform):
  init, grads = make_problem(3, shapes=((4, 3), (3,)), steps=3)
  variables = make_vars(init, names=["a", "b"])
  opt = LAMB(learning_rate=0.1, **kwargs)
  ref = [x.astype(np.float64) for x in init]
  ms, vs = [0.0, 0.0], [0.0, 0.0]
  for t, gs in enumerate(grads, start=1):
    opt.apply_gradients(zip([tf.constant(g) for g in gs], variables))
    for i, g in enumerate(transform([g.astype(np.float64) for g in gs])):
      ref[i], ms[i], vs[i] = numpy_lamb_step(ref[i], ms[i], vs[i], g, t, 0.1)
  assert max_rel_diff(ref, [v.numpy() for v in variables]) < 1e-5


@pytest.mark.parametrize("fused", FUSED)
def test_numpy_reference_options(fused):
  init, grads = make_problem(4, shapes=((6, 2),), steps=3)
  init[0] *= 1e-3  # Tiny weights: the lower bound of the ratio is active.
  variables = make_vars(init, names=["w"])
  opt = LAMB(learning_rate=0.1, trust_ratio_bounds=(0.5, 10.0),
             bias_correction=False, epsilon=0.0, fused=fused)
  ref, m, v = init[0].astype(np.float64), 0.0, 0.0
  for t, gs in enumerate(grads, start=1):
    opt.apply_gradients([(tf.constant(gs[0]), variables[0])])
    ref, m, v = numpy_lamb_step(ref, m, v, gs[0], t, 0.1, epsilon=0.0,
                                bounds=(0.5, 10.0), bias_correction=False)
  np.testing.assert_allclose(variables[0].numpy(), ref, rtol=1e-5)
  assert opt.trust_ratios()["w"].numpy() == pytest.approx(0.5)


def test_zero_norms_give_ratio_one_and_trust_ratio_stats():
  w = tf.Variable(tf.zeros([3]), name="bias")
  k = tf.Variable(tf.ones([2, 2]), name="kernel")
  opt = LAMB(learning_rate=0.1)
  opt.apply_gradients([(tf.ones([3]), w), (tf.zeros([2, 2]), k)])
  # ||w|| = 0: plain Adam-like step of lr * m^/(sqrt(v^)+eps) ~ lr.
  np.testing.assert_allclose(w.numpy(), -0.1 * np.ones(3) / (1 + 1e-6),
                             rtol=1e-6)
  np.testing.assert_array_equal(k.numpy(), np.ones([2, 2]))  # ||u|| = 0.
  ratios = {n: r.numpy() for n, r in opt.trust_ratios().items()}
  assert ratios == {"bias": 1.0, "kernel": 1.0}
  k.assign(tf.ones([2, 2]) * 3.0)
  opt.apply_gradients([(tf.ones([3]), w), (tf.ones([2, 2]), k)])
  stats = {n: s.numpy() for n, s in opt.trust_ratio_stats().items()}
  ratios = opt.trust_ratios()
  assert stats["max"] == pytest.approx(float(ratios["kernel"]), rel=1e-6)
  assert stats["min"] == pytest.approx(float(ratios["bias"]), rel=1e-6)
  assert stats["max"] > 1.0


# -----------------------------------------------------------------------------
# tf-models-official's LAMB as an oracle.


def _oracle_problem(seed, sparse):
  rng = np.random.default_rng(seed)
  # Rows of 32 or more elements take the GEMV reduction of the fused path.
  shapes = [(30, 40), (40,), (40, 32), (32,), (32,)]
  names = ["embeddings", "dense/bias", "dense/kernel", "LayerNorm/gamma",
           "LayerNorm/beta"]
  init = [rng.normal(size=s).astype(np.float32) for s in shapes]
  steps = []
  for _ in range(20):
    gs = [rng.normal(size=s).astype(np.float32) for s in shapes]
    if sparse:
      idx = rng.integers(0, 30, size=12).astype(np.int32)
      gs[0] = tf.IndexedSlices(
          tf.constant(rng.normal(size=(12, 40)).astype(np.float32)),
          tf.constant(idx), tf.constant([30, 40]))
    steps.append(gs)
  return init, names, steps


@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_matches_tfm_over_20_steps(sparse, fused):
  init, names, steps = _oracle_problem(5, sparse)
  schedule = tf_keras.optimizers.schedules.PolynomialDecay(0.02, 20, 0.001)
  kwargs = dict(learning_rate=schedule, weight_decay_rate=0.01,
                exclude_from_weight_decay=["LayerNorm", "bias"], decay=0.01)
  expected = run_steps(TfmLAMB(**kwargs), make_vars(init, names=names), steps)
  got = run_steps(LAMB(fused=fused, **kwargs), make_vars(init, names=names),
                  steps)
  assert max_rel_diff(expected, got) <= 1e-5
  # Not vacuous: the variables moved by much more than the tolerance.
  assert max_rel_diff(init, got) > 1e-2


def test_fused_path_runs_the_fused_kernels():
  """The default path is the fused one; fused=False is tfm's ops."""
  def op_types(opt):
    w = tf.Variable(tf.ones([4, 64]), name="dense/kernel")

    @tf.function
    def step(g):
      opt.apply_gradients([(g, w)])
    graph = step.get_concrete_function(tf.ones([4, 64])).graph
    types = set()
    for op in graph.get_operations():
      types.add(op.type)
      # A call of a tf.function(jit_compile=True) carries this attribute.
      attr = op.node_def.attr.get("_XlaMustCompile")
      if attr is not None and attr.b:
        types.add("XlaMustCompile")
    return types
  fused = op_types(LAMB(weight_decay_rate=0.01))
  assert {"ResourceApplyAdam", "XlaMustCompile"} <= fused
  assert "ResourceApplyAdam" not in op_types(LAMB(fused=False))


def test_matches_tfm_with_separate_layer_adaptation_list():
  init, names, steps = _oracle_problem(6, sparse=False)
  kwargs = dict(learning_rate=0.01, weight_decay_rate=0.05,
                exclude_from_weight_decay=["bias"],
                exclude_from_layer_adaptation=["LayerNorm"])
  expected = run_steps(TfmLAMB(**kwargs), make_vars(init, names=names),
                       steps[:5])
  got = run_steps(LAMB(**kwargs), make_vars(init, names=names), steps[:5],
                  use_function=False)
  assert max_rel_diff(expected, got) <= 1e-5


def test_bfloat16_works_where_tfm_gives_nan():
  variables = make_vars([np.ones((4, 4), np.float32)], tf.bfloat16, ["w"])
  grads = [[np.full((4, 4), 0.5, np.float32)]] * 3
  got = run_steps(LAMB(learning_rate=0.01), variables, grads)
  assert np.all(np.isfinite(got[0])) and np.all(got[0] < 1.0)
  tfm_vars = make_vars([np.ones((4, 4), np.float32)], tf.bfloat16, ["w"])
  assert np.all(np.isnan(run_steps(TfmLAMB(learning_rate=0.01), tfm_vars,
                                   grads)[0]))


# -----------------------------------------------------------------------------
# Config, weights and checkpoints.


def test_config_round_trip_keeps_everything():
  opt = LAMB(learning_rate=tf_keras.optimizers.schedules.PolynomialDecay(
      0.1, 100, 0.0), beta_1=0.8, beta_2=0.99, epsilon=0.0,
             weight_decay_rate=0.01, exclude_from_weight_decay=["bias"],
             exclude_from_layer_adaptation=["LayerNorm"], name="my_lamb",
             trust_ratio_bounds=(0.01, 10), gradient_pre_normalization=True,
             bias_correction=False, fused=False, clipnorm=1.0, decay=0.1)
  config = opt.get_config()
  json.dumps(config)
  restored = LAMB.from_config(json.loads(json.dumps(config)))
  assert restored.get_config() == config
  assert restored.exclude_from_weight_decay == ["bias"]
  assert restored.exclude_from_layer_adaptation == ["LayerNorm"]
  assert restored.trust_ratio_bounds == (0.01, 10.0)
  assert restored.epsilon == 0.0 and not restored.fused
  # Through the Keras registry too.
  again = tf_keras.optimizers.deserialize(
      tf_keras.optimizers.serialize(opt), use_legacy_optimizer=True)
  assert isinstance(again, LAMB) and again.get_config() == config
  # A config saved by tf-models-official's LAMB loads.
  tfm_config = TfmLAMB(learning_rate=0.1).get_config()
  assert LAMB.from_config(tfm_config).get_config()["learning_rate"] == 0.1


def test_layer_adaptation_falls_back_to_weight_decay_list():
  opt = LAMB.from_config(LAMB(exclude_from_weight_decay=["bias"]).get_config())
  assert opt.exclude_from_layer_adaptation == ["bias"]


def _train_pair(opt_a, opt_b, init, names, steps, prefix):
  """Trains with opt_a for 3 steps, checkpoints, restores into opt_b."""
  vars_a = make_vars(init, names=names)
  run_steps(opt_a, vars_a, steps[:3], use_function=False)
  path = tf.train.Checkpoint(optimizer=opt_a, vars=vars_a).write(prefix)
  vars_b = make_vars([np.zeros_like(x) for x in init], names=names)
  status = tf.train.Checkpoint(optimizer=opt_b, vars=vars_b).read(path)
  run_steps(opt_b, vars_b, steps[3:4], use_function=False)  # Creates slots.
  status.assert_consumed()
  run_steps(opt_a, vars_a, steps[3:4], use_function=False)
  return vars_a, vars_b


@pytest.mark.parametrize("direction", ["tfm_to_ours", "ours_to_tfm"])
def test_checkpoint_interop(direction, tmp_path):
  init, names, steps = _oracle_problem(7, sparse=False)
  kwargs = dict(learning_rate=0.01, weight_decay_rate=0.01,
                exclude_from_weight_decay=["bias"])
  a, b = (TfmLAMB(**kwargs), LAMB(**kwargs))
  if direction == "ours_to_tfm":
    a, b = b, a
  vars_a, vars_b = _train_pair(a, b, init, names, steps,
                               str(tmp_path / "ckpt"))
  assert b.iterations.numpy() == a.iterations.numpy() == 4
  assert max_rel_diff([v.numpy() for v in vars_a],
                      [v.numpy() for v in vars_b]) <= 1e-6
  for va, vb in zip(vars_a, vars_b):
    for slot in ("m", "v"):
      np.testing.assert_allclose(a.get_slot(va, slot).numpy(),
                                 b.get_slot(vb, slot).numpy(), rtol=1e-5,
                                 atol=1e-8)


def test_weights_layout_matches_tfm():
  init, names, steps = _oracle_problem(8, sparse=False)
  ours, theirs = LAMB(), TfmLAMB()
  run_steps(ours, make_vars(init, names=names), steps[:1], use_function=False)
  run_steps(theirs, make_vars(init, names=names), steps[:1],
            use_function=False)
  assert [w.shape for w in ours.get_weights()] == [
      w.shape for w in theirs.get_weights()]
  assert [w.name.split("/", 1)[1] for w in ours.weights] == [
      w.name.split("/", 1)[1] for w in theirs.weights]
  for a, b in zip(ours.get_weights(), theirs.get_weights()):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  ours.set_weights(theirs.get_weights())
  assert ours.get_slot_names() == ["m", "v"]


# -----------------------------------------------------------------------------
# Distribution, Keras integration and the rest of the API.


@pytest.mark.parametrize("fused", FUSED)
def test_mirrored_strategy_with_own_all_reduce_matches_one_device(fused):
  init, names, steps = _oracle_problem(9, sparse=False)
  kwargs = dict(learning_rate=0.01, weight_decay_rate=0.01,
                exclude_from_weight_decay=["bias"], fused=fused)
  expected = run_steps(LAMB(**kwargs), make_vars(init, names=names),
                       steps[:5])
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  with strategy.scope():
    variables = make_vars(init, names=names)
    opt = LAMB(**kwargs)

  @tf.function
  def step(gs):
    def replica_fn(gs):
      ctx = tf.distribute.get_replica_context()
      # Each replica holds half of the gradient; the sum is the full one.
      local = [g * 0.5 for g in gs]
      summed = ctx.all_reduce(tf.distribute.ReduceOp.SUM, local)
      opt.apply_gradients(zip(summed, variables),
                          experimental_aggregate_gradients=False)
    strategy.run(replica_fn, args=(gs,))

  for gs in steps[:5]:
    step([tf.constant(g) for g in gs])
  for i, var in enumerate(variables):
    copies = strategy.experimental_local_results(var)
    assert len(copies) == 2
    for copy in copies:
      np.testing.assert_allclose(copy.numpy(), expected[i], rtol=1e-5)
  assert opt.iterations.numpy() == 5


def test_invalid_arguments_raise_naming_the_argument():
  cases = [
      (dict(beta_1=1.0), "beta_1"), (dict(beta_1=-0.1), "beta_1"),
      (dict(beta_2=1.5), "beta_2"), (dict(learning_rate=-1.0), "learning_rate"),
      (dict(lr=-1.0), "learning_rate"), (dict(epsilon=-1e-6), "epsilon"),
      (dict(weight_decay_rate=-0.1), "weight_decay_rate"),
      (dict(exclude_from_weight_decay="bias"), "exclude_from_weight_decay"),
      (dict(exclude_from_layer_adaptation="LayerNorm"),
       "exclude_from_layer_adaptation"),
      (dict(exclude_from_weight_decay=["bias", "(unclosed"]),
       "exclude_from_weight_decay"),
      (dict(exclude_from_layer_adaptation=["[a-"]),
       "exclude_from_layer_adaptation"),
      (dict(trust_ratio_bounds=(1.0, 0.5)), "trust_ratio_bounds"),
      (dict(trust_ratio_bounds=0.5), "trust_ratio_bounds"),
      (dict(decay=-0.1), "decay"),
  ]
  for kwargs, arg in cases:
    with pytest.raises(ValueError, match=arg):
      LAMB(**kwargs)
  LAMB(beta_1=0.0, epsilon=0.0, learning_rate=tf.constant(0.1))  # Valid.


def test_epsilon_zero_is_honoured():
  assert LAMB(epsilon=0.0).epsilon == 0.0
  assert LAMB(epsilon=None).epsilon == tf_keras.backend.epsilon()


def test_get_updates_in_legacy_graph_mode():
  with tf.Graph().as_default():
    x = tf.compat.v1.Variable([1.0, 2.0], name="x")
    loss = tf.reduce_sum(x * x)
    opt = LAMB(learning_rate=0.1)
    grads = opt.get_gradients(loss, [x])
    updates = opt.get_updates(loss, [x])
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      np.testing.assert_allclose(sess.run(grads)[0], [2.0, 4.0])
      sess.run(updates)
      value = sess.run(x)
  # First step: u = g/|g| * (1/(1+eps)) elementwise, ratio = |x| / |u|.
  ref, _, _ = numpy_lamb_step([1.0, 2.0], 0, 0, [2.0, 4.0], 1, 0.1)
  np.testing.assert_allclose(value, ref, rtol=1e-6)


def test_minimize_with_callable_and_with_tape():
  x = tf.Variable([3.0, -4.0], name="x")
  opt = LAMB(learning_rate=0.1)
  opt.minimize(lambda: tf.reduce_sum(x * x), [x])
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(x * x)
  opt.minimize(loss, [x], tape=tape)
  assert opt.iterations.numpy() == 2
  assert np.linalg.norm(x.numpy()) < 5.0


def test_keras_compile_fit_and_loss_scale_optimizer():
  rng = np.random.default_rng(10)
  x = rng.normal(size=(64, 4)).astype(np.float32)
  y = x @ np.array([[1.0], [-2.0], [0.5], [3.0]], np.float32)
  for wrap in (False, True):
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.layers.Dense(1, input_shape=(4,))])
    opt = LAMB(learning_rate=0.05, weight_decay_rate=0.0,
               exclude_from_weight_decay=["bias"])
    if wrap:
      opt = tf_keras.mixed_precision.LossScaleOptimizer(opt)
    model.compile(optimizer=opt, loss="mse")
    history = model.fit(x, y, batch_size=16, epochs=8, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0], (wrap, losses)
  assert opt.inner_optimizer.iterations.numpy() == 32


@pytest.mark.parametrize("fused", FUSED)
def test_converges_on_a_quadratic(fused):
  rng = np.random.default_rng(11)
  target = rng.normal(size=(8, 8)).astype(np.float32)
  w = tf.Variable(rng.normal(size=(8, 8)).astype(np.float32), name="w")
  # With a constant rate, LAMB (like Adam) keeps oscillating around the
  # minimum by about the step size; a rate decaying to 0 settles.
  opt = LAMB(learning_rate=tf_keras.optimizers.schedules.PolynomialDecay(
      0.05, 300, 0.0), fused=fused)

  @tf.function
  def step():
    opt.minimize(lambda: tf.reduce_sum((w - target)**2), [w])

  for _ in range(300):
    step()
  assert np.max(np.abs(w.numpy() - target)) < 0.01
