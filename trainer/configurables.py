"""Every gin registration, in one place: the names a config file can use.

Entry points (`trainer.main`, `scripts/reproduce.py`, the tests) import this
module, parse the configs and call `train` from here; the library functions
it wraps take plain arguments and never read gin. The names:

  train.*                  trainer/train.py's `train` (the loop's settings)
  dataset.*                what is trained on (`train.DatasetSettings`)
  BertEncoder.*            the Model Garden's `BertEncoderV2`: model size
  learning_rate_schedule.* trainer/schedule.py: warmup, then decay
  LAMB.*                   lamb/optimizer.py
  AdamW.*                  trainer/adamw.py: the scaling study's baseline

configs/base/bert.gin wires the first ones together (`train.encoder =
@BertEncoder`, `train.dataset = @dataset()`, ...); every config includes it.
"""

import gin
from official.nlp.modeling import networks

import lamb
from trainer import adamw
from trainer import schedule
from trainer import train as train_lib

BertEncoder = gin.external_configurable(
    networks.BertEncoderV2, "BertEncoder", module="tfm")
LAMB = gin.external_configurable(lamb.LAMB, "LAMB", module="lamb")
AdamW = gin.external_configurable(adamw.AdamW, "AdamW", module="adamw")
learning_rate_schedule = gin.external_configurable(
    schedule.learning_rate_schedule, "learning_rate_schedule",
    module="trainer", denylist=["total_steps"])
dataset = gin.external_configurable(
    train_lib.DatasetSettings, "dataset", module="trainer")
# Where the job runs, and test hooks, are arguments, not configuration.
_train = gin.external_configurable(
    train_lib.train, "train", module="trainer",
    denylist=["model_dir", "data_dir", "strategy", "gradient_hook",
              "operative_config"])


def train(model_dir, data_dir=None, strategy=None, gradient_hook=None):
  """`train.train` with the parsed gin bindings; the chief writes gin's
  operative config to model_dir/operative_config.gin after the first loop."""
  return _train(model_dir=model_dir, data_dir=data_dir, strategy=strategy,
                gradient_hook=gradient_hook,
                operative_config=gin.operative_config_str)


def bound_value(name, default=None):
  """The value bound to gin parameter `name` (macros resolved), or default."""
  try:
    value = gin.query_parameter(name)
  except ValueError:
    return default
  if isinstance(value, gin.config.ConfigurableReference):
    return value.scoped_configurable_fn() if value.evaluate else value
  return value
