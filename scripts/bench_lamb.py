r"""Times one optimizer step of LAMB on BERT-base-shaped variables.

  python -m scripts.bench_lamb            # ~110M float32 parameters, ~3 min
  python -m scripts.bench_lamb --quick    # small shapes, < 1 min

Result: the table in the README ("lamb.LAMB", Speed), measured on 2 shared
CPU cores: ours 0.244 s/step, tfm 3.93x ours (2.2x in a second run: the
ratios vary with the machine's load), adam 0.80x ours.

Each optimizer runs `apply_gradients` inside a `tf.function` (what a training
step does) over the same variables and fixed gradients; the optimizers take
turns step by step so that a change in machine load hits all of them alike.
Printed per optimizer: the median seconds per step and its ratio to ours.

  ours         lamb.LAMB(), the default (fused) path
  ours_plain   lamb.LAMB(fused=False), tf-models-official's ops
  tfm          official.modeling.optimization.lamb.LAMB
  tfm_jit      the same, the step function compiled with jit_compile=True
  adam         tf_keras legacy Adam: one fused C++ kernel per variable; the
               floor for any Adam-like step

The lower bound is memory traffic: a step must read the gradient, weights and
both moments and write weights and moments, 7 float32 = 28 bytes per
parameter, at the memory bandwidth measured by a numpy triad (a = b + s * c)
in the same run. LAMB needs one more read pass for the norms, so ~2x that
bound (or ~2x Adam) is the best a LAMB step can do.
"""

import os
import statistics
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf
import tf_keras
from official.modeling.optimization import lamb as tfm_lamb

import lamb

flags.DEFINE_boolean("quick", False, "Small shapes, a few seconds per "
                     "optimizer.")
flags.DEFINE_integer("steps", None, "Timed steps per optimizer.")

FLAGS = flags.FLAGS


def bert_shapes(vocab=30522, hidden=768, layers=12, intermediate=3072,
                positions=512):
  """{name: shape} of BERT-base's trainable variables (with the MLM head)."""
  shapes = {
      "word_embeddings/embeddings": (vocab, hidden),
      "position_embedding/embeddings": (positions, hidden),
      "type_embeddings/embeddings": (2, hidden),
      "embeddings/layer_norm/gamma": (hidden,),
      "embeddings/layer_norm/beta": (hidden,),
  }
  for i in range(layers):
    p = f"transformer/layer_{i}/"
    for part in ("query", "key", "value", "attention_output"):
      shapes[p + part + "/kernel"] = (hidden, hidden)
      shapes[p + part + "/bias"] = (hidden,)
    shapes[p + "intermediate/kernel"] = (hidden, intermediate)
    shapes[p + "intermediate/bias"] = (intermediate,)
    shapes[p + "output/kernel"] = (intermediate, hidden)
    shapes[p + "output/bias"] = (hidden,)
    for norm in ("attention_layer_norm", "output_layer_norm"):
      shapes[p + norm + "/gamma"] = (hidden,)
      shapes[p + norm + "/beta"] = (hidden,)
  shapes["pooler_transform/kernel"] = (hidden, hidden)
  shapes["pooler_transform/bias"] = (hidden,)
  shapes["mlm/dense/kernel"] = (hidden, hidden)
  shapes["mlm/dense/bias"] = (hidden,)
  shapes["mlm/layer_norm/gamma"] = (hidden,)
  shapes["mlm/layer_norm/beta"] = (hidden,)
  shapes["mlm/output_bias"] = (vocab,)
  return shapes


def triad_bandwidth(n, repeats=5):
  """Bytes per second of numpy's a = b + s * c over n float32."""
  b = np.random.rand(n).astype(np.float32)
  c = np.random.rand(n).astype(np.float32)
  a = np.empty_like(b)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    np.multiply(c, np.float32(3.0), out=a)
    np.add(a, b, out=a)
    times.append(time.perf_counter() - start)
  # Two passes: read c, write a; read a and b, write a: 5 arrays' traffic.
  return 5 * 4 * n / min(times)


def make_step(opt, variables, grads, jit_compile=False):
  @tf.function(jit_compile=jit_compile)
  def step():
    opt.apply_gradients(zip([g.read_value() for g in grads], variables))
  return step


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.quick:
    shapes = bert_shapes(vocab=3000, hidden=128, layers=2, intermediate=512)
    steps = FLAGS.steps or 20
  else:
    shapes = bert_shapes()
    steps = FLAGS.steps or 10
  params = sum(int(np.prod(s)) for s in shapes.values())
  print(f"{len(shapes)} variables, {params / 1e6:.1f}M float32 parameters, "
        f"{steps} timed steps each, TensorFlow {tf.__version__}, "
        f"{os.cpu_count()} CPUs")

  rng = np.random.default_rng(0)
  variables = [tf.Variable(rng.normal(0, 0.02, s).astype(np.float32), name=n)
               for n, s in shapes.items()]
  grads = [tf.Variable(rng.normal(0, 1e-3, s).astype(np.float32),
                       trainable=False) for s in shapes.values()]
  exclude = ["layer_norm", "bias"]
  kwargs = dict(learning_rate=1e-4, weight_decay_rate=0.01,
                exclude_from_weight_decay=exclude)
  # All optimizers update the same variables (each has its own slots): the
  # values drift, the work per step does not.
  steps_by_name = {
      "ours": make_step(lamb.LAMB(**kwargs), variables, grads),
      "ours_plain": make_step(lamb.LAMB(fused=False, **kwargs), variables,
                              grads),
      "tfm": make_step(tfm_lamb.LAMB(**kwargs), variables, grads),
      "tfm_jit": make_step(tfm_lamb.LAMB(**kwargs), variables, grads,
                           jit_compile=True),
      "adam": make_step(tf_keras.optimizers.legacy.Adam(1e-4), variables,
                        grads),
  }
  for step in steps_by_name.values():  # Trace, compile, create slots.
    step()
    step()
  times = {name: [] for name in steps_by_name}
  for _ in range(steps):
    for name, step in steps_by_name.items():
      start = time.perf_counter()
      step()
      times[name].append(time.perf_counter() - start)

  bandwidth = triad_bandwidth(min(params, 50_000_000))
  bound = 28 * params / bandwidth
  median = {name: statistics.median(t) for name, t in times.items()}
  print(f"\n{'optimizer':12} {'s/step':>9} {'vs ours':>8} {'vs adam':>8}")
  for name, seconds in median.items():
    print(f"{name:12} {seconds:9.4f} {seconds / median['ours']:8.2f}x "
          f"{seconds / median['adam']:8.2f}x")
  print(f"\nnumpy triad bandwidth {bandwidth / 1e9:.1f} GB/s -> lower bound "
        f"{bound:.4f} s/step (28 bytes/param); ours is "
        f"{median['ours'] / bound:.1f}x the bound, tfm "
        f"{median['tfm'] / median['ours']:.2f}x slower than ours")


if __name__ == "__main__":
  app.run(main)
