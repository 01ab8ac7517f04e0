"""Where training runs: strategy choice, TPU connection, multi-worker
settings. No TPU or GPU is needed: detection and constructors are mocked."""

import json
import threading

import pytest
import tensorflow as tf

from conftest import cli
from trainer import distribute

NCCL = tf.distribute.experimental.CommunicationImplementation.NCCL
AUTO = tf.distribute.experimental.CommunicationImplementation.AUTO


def test_multi_worker_without_model_dir_is_an_error():
  # The default model_dir is a new directory per host and start.
  result = cli("--gin_file=configs/tiny.gin", "--strategy=multi_worker")
  assert result.returncode == 1, result.stderr
  errors = [l for l in result.stderr.splitlines() if "--model_dir" in l]
  assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("gpus,expected", [(["GPU:0"], NCCL), ([], AUTO)])
def test_multi_worker_all_reduces_with_nccl_on_gpus(gpus, expected,
                                                    monkeypatch):
  made = {}
  monkeypatch.setenv("TF_CONFIG", json.dumps({
      "cluster": {"worker": ["a:1", "b:1"]},
      "task": {"type": "worker", "index": 0}}))
  monkeypatch.setattr(distribute, "_configure_heartbeats",
                      lambda *args: None)
  list_devices = tf.config.list_physical_devices
  monkeypatch.setattr(tf.config, "list_physical_devices",
                      lambda kind=None: gpus if kind == "GPU"
                      else list_devices(kind))
  monkeypatch.setattr(tf.distribute, "MultiWorkerMirroredStrategy",
                      lambda communication_options: made.setdefault(
                          "options", communication_options))
  distribute.create_strategy("auto")
  assert made["options"].implementation == expected


def test_tpu_connects_in_the_calling_thread(monkeypatch):
  threads = []

  class Resolver:
    def __init__(self, tpu):
      threads.append((tpu, threading.current_thread()))

  monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver",
                      Resolver)
  monkeypatch.setattr(tf.config, "experimental_connect_to_cluster",
                      lambda r: threads.append(threading.current_thread()))
  monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system",
                      lambda r: threads.append(threading.current_thread()))
  assert isinstance(distribute._connect_tpu("grpc://x:1", 30), Resolver)
  me = threading.current_thread()
  assert threads == [("grpc://x:1", me), me, me]


def test_auto_uses_a_tpu_vms_own_chips(monkeypatch, capsys):
  monkeypatch.delenv("TF_CONFIG", raising=False)
  monkeypatch.setattr(distribute, "local_tpu_chips", lambda: ["/dev/accel0"])
  monkeypatch.setattr(tf.distribute, "TPUStrategy", lambda r: ("tpu", r))
  monkeypatch.setattr(distribute, "_connect_tpu",
                      lambda tpu, timeout: f"resolver of {tpu}")
  assert distribute.create_strategy("auto") == ("tpu", "resolver of local")
  assert distribute.create_strategy("tpu") == ("tpu", "resolver of local")

  def fail(tpu, timeout):
    raise ConnectionError(f"cannot reach TPU {tpu!r}: no TPU support")
  monkeypatch.setattr(distribute, "_connect_tpu", fail)
  strategy = distribute.create_strategy("auto")
  assert not isinstance(strategy, tuple)
  out = capsys.readouterr().out
  assert "/dev/accel0" in out and "training on the CPU" in out, out
