"""Where training runs: one device, several GPUs or CPUs, several hosts, TPU."""

import glob
import json
import os
import re
import sys
import threading

import tensorflow as tf
# The heartbeat timeout of TensorFlow's coordination service has no public
# setter; MultiWorkerMirroredStrategy configures the service the same way.
from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
from tensorflow.python.eager import context

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


def local_tpu_chips():
  """The device files of TPU chips attached to this machine (a Cloud TPU
  VM: /dev/accel* up to v4, /dev/vfio/<n> from v5e on)."""
  return sorted(glob.glob("/dev/accel*") + glob.glob("/dev/vfio/[0-9]*"))


def _connect_tpu(tpu, timeout_s):
  """Connects to a Cloud TPU ("local": this VM's chips), in this thread.

  The connection is made by the thread that trains: TensorFlow keeps device
  scopes per thread, so a helper thread's connection would leave the
  training thread's default device unset. Python cannot interrupt a call
  that hangs in TensorFlow's C++ (an unreachable address is retried for
  minutes), so a watchdog thread ends the process with one line and exit
  status 1 after `timeout_s`; nothing has been written by then.
  """
  done = threading.Event()

  def watchdog():
    if not done.wait(timeout_s):
      sys.stderr.write(f"error: cannot reach TPU {tpu!r}: no answer within "
                       f"{timeout_s:.0f}s (--tpu_timeout)\n")
      sys.stderr.flush()
      os._exit(1)  # pylint: disable=protected-access

  threading.Thread(target=watchdog, name="tpu-timeout", daemon=True).start()
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
  except Exception as e:  # pylint: disable=broad-except
    reason = f"{type(e).__name__}: {e}".splitlines()[0]
    raise ConnectionError(f"cannot reach TPU {tpu!r}: {reason}") from None
  finally:
    done.set()
  return resolver


def _configure_heartbeats(cluster, task_type, timeout_s):
  """Makes every worker fail `timeout_s` after another one stops answering.

  The coordination service (hosted by the chief, or worker 0) expects a
  heartbeat from each task and aborts the collectives on all others, with
  an error naming the task, when one goes missing. It notices a missing
  heartbeat between one and two heartbeat timeouts late (measured on CPU), so
  the timeout is half the bound. A worker that dies outright is usually
  noticed sooner, when its connections drop.
  """
  if task_type not in ("chief", "worker"):
    return
  jobs = [coordination_config_pb2.CoordinatedJob(name=j,
                                                 num_tasks=len(cluster[j]))
          for j in ("chief", "worker") if j in cluster]
  leader = "chief" if "chief" in cluster else "worker"
  context.context().configure_coordination_service(
      service_type="standalone",
      service_leader=f"/job:{leader}/replica:0/task:0",
      heartbeat_timeout_in_ms=int(timeout_s * 1000 / 2),
      coordinated_jobs=jobs)


def create_strategy(name="auto", tpu=None, tpu_timeout_s=300.0,
                    worker_timeout_s=60.0):
  """Returns the `tf.distribute.Strategy` called `name`.

  `auto` picks TPU when `tpu` is given or this machine is a Cloud TPU VM
  (`local_tpu_chips`; if TensorFlow cannot use them it says so in a line and
  trains on the CPU), multi-worker when TF_CONFIG names several tasks,
  mirrored for more than one GPU or logical CPU device, else one device.
  Multi-worker jobs all-reduce with NCCL when GPUs are present and stop with
  an error within about `worker_timeout_s` seconds of losing a worker (see
  `lost_worker`).
  """
  if name not in STRATEGIES:
    raise ValueError(f"unknown --strategy={name!r}; choose one of "
                     f"{', '.join(STRATEGIES)}")
  cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
  many_hosts = sum(len(v) for v in cluster.values()) > 1
  if name == "auto" and not tpu and not many_hosts and local_tpu_chips():
    try:
      return tf.distribute.TPUStrategy(_connect_tpu("local", tpu_timeout_s))
    except ConnectionError as e:
      print(f"warning: this machine has TPU chips "
            f"({', '.join(local_tpu_chips())}) but TensorFlow cannot use "
            f"them ({e}); training on the CPU. Install TensorFlow's TPU "
            f"build or pass --strategy=one_device to silence this",
            flush=True)
  if name == "auto" and (tpu or many_hosts):
    name = "tpu" if tpu else "multi_worker"
  if name == "multi_worker":
    if not cluster:
      raise ValueError("--strategy=multi_worker needs the TF_CONFIG "
                       "environment variable (cluster and task)")
    if worker_timeout_s <= 0:
      raise ValueError(f"--worker_timeout must be > 0, got {worker_timeout_s}")
    task = json.loads(os.environ["TF_CONFIG"]).get("task", {})
    _configure_heartbeats(cluster, task.get("type"), worker_timeout_s)
    # NCCL between GPUs; on CPU-only hosts TensorFlow's own ring.
    implementation = (
        tf.distribute.experimental.CommunicationImplementation.NCCL
        if tf.config.list_physical_devices("GPU") else
        tf.distribute.experimental.CommunicationImplementation.AUTO)
    # Created before anything else touches the runtime: collectives must be
    # configured at program start.
    return tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            implementation=implementation))
  if name == "tpu":
    if not tpu and not local_tpu_chips():
      raise ValueError("--strategy=tpu needs --tpu=NAME_OR_GRPC_ADDRESS "
                       "(or a Cloud TPU VM's own chips)")
    return tf.distribute.TPUStrategy(
        _connect_tpu(tpu or "local", tpu_timeout_s))
  gpus = tf.config.list_logical_devices("GPU")
  cpus = tf.config.list_logical_devices("CPU")
  if name == "auto":
    many = len(gpus) > 1 or (not gpus and len(cpus) > 1)
    name = "mirrored" if many else "one_device"
  if name == "mirrored":
    if gpus:
      return tf.distribute.MirroredStrategy([d.name for d in gpus])
    # Logical CPUs reduce through one device: TF 2.20's collective ops can
    # launch in a different order on two CPU devices of one process, which
    # aborts the step with a shape mismatch between collective instances.
    return tf.distribute.MirroredStrategy(
        [d.name for d in cpus],
        cross_device_ops=tf.distribute.ReductionToOneDevice())
  return tf.distribute.OneDeviceStrategy(
      gpus[0].name if gpus else cpus[0].name)


def several_hosts(name, tpu):
  """Whether `--strategy=name` (and --tpu) makes a multi-worker job."""
  cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
  return name == "multi_worker" or (
      name == "auto" and not tpu and sum(len(v) for v in cluster.values()) > 1)


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


def chief_value(strategy, value):
  """The chief's `value` (an int), on every worker of a multi-worker job.

  Every worker must call it at the same point: it is one all-reduce, so it
  is also a barrier. Other strategies have one host, the chief: `value` is
  returned as it is.
  """
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return value
  # Each of the chief's local replicas adds the value, the others 0.
  mine = tf.constant(value if is_chief(strategy) else 0, tf.int64)

  @tf.function
  def all_reduce():
    return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, mine))

  total = strategy.experimental_local_results(all_reduce())[0]
  return int(total.numpy()) // len(strategy.extended.worker_devices)


def input_context(strategy):
  """The `tf.distribute.InputContext` of this host's input pipeline."""
  local = len(strategy.extended.worker_devices)
  return tf.distribute.InputContext(
      num_input_pipelines=strategy.num_replicas_in_sync // local,
      input_pipeline_id=worker_index(strategy),
      num_replicas_in_sync=strategy.num_replicas_in_sync)


def lost_worker(strategy, error):
  """A one-line error naming the worker whose loss caused `error`, or None.

  When a worker dies or stops answering, the others' collectives fail with
  an `UnavailableError` (or similar) whose long text names the task; this
  turns it into one line that says which worker, at which address, and what
  to do.
  """
  lost_types = (tf.errors.UnavailableError, tf.errors.AbortedError,
                tf.errors.DeadlineExceededError, tf.errors.CancelledError)
  resolver = getattr(strategy, "cluster_resolver", None)
  if (not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or
      not isinstance(error, lost_types) or resolver is None):
    return None
  me = (resolver.task_type, resolver.task_id)
  cluster = resolver.cluster_spec().as_dict()
  text = str(error)
  for job, task in re.findall(r"/job:(\w+)(?:/replica:\d+)?/task:(\d+)",
                              text):
    if (job, int(task)) == me:
      continue
    addresses = cluster.get(job, [])
    address = (addresses[int(task)] if isinstance(addresses, list) and
               int(task) < len(addresses) else "unknown address")
    why = ("it stopped sending heartbeats" if "heartbeat" in text
           else "its connection dropped")
    return ConnectionError(
        f"lost {job} {task} ({address}): {why}; this worker stops too. "
        f"Restart every worker with the same command to resume from the "
        f"last checkpoint")
  return None
