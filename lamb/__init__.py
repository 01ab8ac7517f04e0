"""LAMB for tf_keras: `from lamb import LAMB`."""

from lamb.optimizer import LAMB

__all__ = ["LAMB"]
