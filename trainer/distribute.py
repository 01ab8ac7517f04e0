"""Where training runs: one device, several GPUs or CPUs, several hosts, TPU."""

import json
import os
import threading

import tensorflow as tf

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")


def split_cpu(num_replicas):
  """Splits the host CPU into logical devices (before TensorFlow starts).

  This lets MirroredStrategy run real cross-replica training on a CPU-only
  machine, e.g. to check that 2 replicas give the same result as 1.
  """
  if num_replicas < 1:
    raise ValueError(f"--cpu_replicas must be >= 1, got {num_replicas}")
  cpus = tf.config.list_physical_devices("CPU")
  if num_replicas > 1:
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_replicas)


def _connect_tpu(tpu, timeout_s):
  """Connects to a Cloud TPU, failing after `timeout_s` instead of hanging."""
  result = {}

  def connect():
    try:
      resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
      tf.config.experimental_connect_to_cluster(resolver)
      tf.tpu.experimental.initialize_tpu_system(resolver)
      result["resolver"] = resolver
    except Exception as e:  # pylint: disable=broad-except
      result["error"] = e

  thread = threading.Thread(target=connect, daemon=True)
  thread.start()
  thread.join(timeout_s)
  if "resolver" in result:
    return result["resolver"]
  reason = (f"{type(result['error']).__name__}: {result['error']}"
            if "error" in result else f"no answer within {timeout_s:.0f}s")
  raise ConnectionError(f"cannot reach TPU {tpu!r}: "
                        f"{str(reason).splitlines()[0]}")


def create_strategy(name="auto", tpu=None, tpu_timeout_s=300.0):
  """Returns the `tf.distribute.Strategy` called `name`.

  `auto` picks TPU when `tpu` is given, mirrored for more than one GPU or
  logical CPU device, multi-worker when TF_CONFIG names several tasks, else
  one device.
  """
  if name not in STRATEGIES:
    raise ValueError(f"unknown --strategy={name!r}; choose one of "
                     f"{', '.join(STRATEGIES)}")
  cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
  if name == "auto" and (tpu or sum(len(v) for v in cluster.values()) > 1):
    name = "tpu" if tpu else "multi_worker"
  if name == "multi_worker":
    if not cluster:
      raise ValueError("--strategy=multi_worker needs the TF_CONFIG "
                       "environment variable (cluster and task)")
    # Created before anything else touches the runtime: collectives must be
    # configured at program start.
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "tpu":
    if not tpu:
      raise ValueError("--strategy=tpu needs --tpu=NAME_OR_GRPC_ADDRESS")
    return tf.distribute.TPUStrategy(_connect_tpu(tpu, tpu_timeout_s))
  gpus = tf.config.list_logical_devices("GPU")
  cpus = tf.config.list_logical_devices("CPU")
  if name == "auto":
    many = len(gpus) > 1 or (not gpus and len(cpus) > 1)
    name = "mirrored" if many else "one_device"
  if name == "mirrored":
    devices = [d.name for d in (gpus or cpus)]
    return tf.distribute.MirroredStrategy(devices)
  return tf.distribute.OneDeviceStrategy(
      gpus[0].name if gpus else cpus[0].name)


def is_chief(strategy):
  """Only the chief writes checkpoints, summaries and logs."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or isinstance(
      strategy, tf.distribute.TPUStrategy) or not resolver.task_type:
    return True
  return (resolver.task_type == "chief" or
          (resolver.task_type == "worker" and resolver.task_id == 0 and
           "chief" not in resolver.cluster_spec().as_dict()))


def worker_index(strategy):
  """This host's input pipeline id: 0 for the chief, 1.. for other workers."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or isinstance(
      strategy, tf.distribute.TPUStrategy) or not resolver.task_type:
    return 0
  if resolver.task_type == "chief":
    return 0
  has_chief = "chief" in resolver.cluster_spec().as_dict()
  return resolver.task_id + (1 if has_chief else 0)


def input_context(strategy):
  """The `tf.distribute.InputContext` of this host's input pipeline."""
  local = len(strategy.extended.worker_devices)
  return tf.distribute.InputContext(
      num_input_pipelines=strategy.num_replicas_in_sync // local,
      input_pipeline_id=worker_index(strategy),
      num_replicas_in_sync=strategy.num_replicas_in_sync)
