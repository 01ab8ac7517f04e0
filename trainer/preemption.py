"""Preemption: on SIGTERM, finish the current step, checkpoint and exit 143.

Cloud TPU VMs, Kubernetes and most schedulers send SIGTERM some seconds before
they kill a job. Python runs signal handlers in the main thread only, between
bytecodes, so a plain handler would wait until the `tf.function` running
`steps_per_loop` steps returns. Here the handler's C half instead wakes a
watcher thread (through `signal.set_wakeup_fd`); the thread sets a
`tf.Variable` that the training loop reads before every step (TensorFlow
releases the GIL while it runs). All replicas and workers combine the flag
in the step's all-reduce, so they stop after the same step and save one
consistent checkpoint. On CPU the loop ends right after that step. On TPUs
and GPUs it ends at the end of the host loop (`train.steps_per_loop`
steps): ending earlier would make the host wait for every step's result
before queuing the next (`step.make_train_loop`'s `check_every_step`).

TensorFlow's `tf.distribute.experimental.PreemptionCheckpointHandler` does not
fit this loop: it checks for preemption between `run` calls, i.e. every
`steps_per_loop` steps, and on Cloud TPU VMs and GCE CPU hosts it does nothing
(it warns that those platforms are unsupported).

No TensorFlow import here: `trainer.main` needs `EXIT_CODE` and `Preempted`
before TensorFlow starts.
"""

import contextlib
import os
import signal
import threading

# 128 + SIGTERM, the code TensorFlow's own preemption handling exits with on
# GCE; schedulers treat it as "restart me".
EXIT_CODE = 143


class Preempted(Exception):
  """Training stopped on request after saving a checkpoint to resume from."""


def _ignore(signum, frame):
  """The Python-level half of the handler; the watcher thread does the work."""
  del signum, frame


@contextlib.contextmanager
def stop_on_signal(request_stop, signals=(signal.SIGTERM,)):
  """Calls `request_stop()` from a thread as soon as one of `signals` arrives.

  Previous handlers are restored on exit. Outside the main thread, where
  Python cannot install signal handlers, this does nothing.

  Args:
    request_stop: a callable taking no arguments, e.g. one that sets the
      training loop's stop flag.
    signals: the signals that ask for a stop.

  Yields:
    Nothing.
  """
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  read_fd, write_fd = os.pipe()
  os.set_blocking(write_fd, False)  # set_wakeup_fd requires it.
  codes = {int(s) for s in signals}

  def watch():
    while True:
      received = os.read(read_fd, 64)
      if not received:  # The write end was closed: training is over.
        return
      if codes.intersection(received):
        request_stop()

  # The wakeup fd goes first, so that no signal is caught but not passed on.
  previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
  previous = {s: signal.signal(s, _ignore) for s in signals}
  watcher = threading.Thread(target=watch, name="stop-on-signal", daemon=True)
  watcher.start()
  try:
    yield
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
    signal.set_wakeup_fd(previous_fd)
    os.close(write_fd)
    watcher.join()
    os.close(read_fd)
