"""What every command of the project does with an error: one line, an exit code.

Exit codes: 0 done; 1 error (one `error: Type: first line` on stderr, the
traceback only with --verbose); 130 interrupted (Ctrl-C); 143 stopped on
SIGTERM after saving a checkpoint (`preemption.Preempted`).

No TensorFlow import here: the commands call this before TensorFlow starts.
"""

import sys

from trainer import preemption


def error_line(error):
  """`error: <type>: <first line of its message>`."""
  lines = str(error).strip().splitlines()
  return f"error: {type(error).__name__}: {lines[0] if lines else ''}"


def run_command(command, *, verbose):
  """Calls `command()` and returns its exit code.

  Args:
    command: a function of no arguments returning an exit code (or None, 0).
    verbose: re-raise errors with their traceback instead of one line.

  Returns:
    The exit code, see the module docstring.
  """
  try:
    return command() or 0
  except preemption.Preempted as e:
    print(e, flush=True)
    return preemption.EXIT_CODE
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    return 130
  except Exception as e:  # pylint: disable=broad-except
    if verbose:
      raise
    print(error_line(e), file=sys.stderr)
    return 1
