r"""`trainer.main` with faults injected: for tests and `scripts/chaos.py`.

  python -m tests.faulty_main --nonfinite_steps=3,7-9 <trainer.main flags>

makes the all-reduced gradients of optimizer steps 3, 7, 8 and 9 NaN, as an
overflow would. Everything else is `python -m trainer.main`.
"""


from absl import app
from absl import flags

from trainer import faults
from trainer import main

flags.DEFINE_string("nonfinite_steps", "", "1-based optimizer steps whose "
                    "gradients are made NaN, e.g. '3,7-9'.")


def run(argv):
  hook = faults.nonfinite_gradients(
      faults.parse_steps(flags.FLAGS.nonfinite_steps))
  return main.main(argv, gradient_hook=hook)


if __name__ == "__main__":
  app.run(run)
