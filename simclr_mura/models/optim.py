"""Optimizer and learning-rate schedule from a `Config` (SimCLR tf2/model.py `build_optimizer`)."""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from simclr_mura.config import Config
from simclr_mura.models.lars import LARS
from simclr_mura.models.schedule import WarmUpAndCosineDecay, scaled_learning_rate

# SimCLR tf2/run.py: LARS excludes batch norm parameters, biases and the supervised head from weight decay and from
# layer adaptation (the head's kernel gets an L2 term in the loss instead: objective.weight_decay_loss).
LARS_EXCLUDE = ["batch_norm", "bias", "head_supervised"]
# Deviation, pretraining only: the linear probe (head_supervised) keeps LARS's trust ratio, its bias included: at
# SimCLR's raw learning rate a two-class probe on unnormalised features diverges (fine-tuning keeps SimCLR's exclusion:
# a zero-initialised head must move at the full rate).
_OUTSIDE_PROBE = r"^(?!.*head_supervised)"  # anchored at the start: re.search cannot skip past the probe's name
LARS_EXCLUDE_FROM_ADAPTATION_PRETRAIN = ["batch_norm", _OUTSIDE_PROBE + r".*bias"]


class FusedAdam(keras.optimizers.Adam):
  """Keras's Adam with each variable's update in TensorFlow's one `ResourceApplyAdam` kernel.

  The same rule as `keras.optimizers.Adam` (lr_t = lr·sqrt(1 − β2^t)/(1 − β1^t); m, v moving averages;
  w ← w − lr_t·m/(sqrt(v) + ε), ε outside the square root) and the same slots, so checkpoints are interchangeable.
  Why: Keras's update is about twenty graph ops per variable, and tracing them for DenseNet-169's ~500 variables
  takes longer on a CPU than the baseline's training steps; one kernel per variable is also one pass over memory.
  """

  def update_step(self, gradient, variable, learning_rate) -> None:
    if self.amsgrad:
      return super().update_step(gradient, variable, learning_rate)
    dtype = variable.dtype
    index = self._get_variable_index(variable)
    local_step = ops.cast(self.iterations + 1, dtype)
    tf.raw_ops.ResourceApplyAdam(
        var=variable.handle, m=self._momentums[index].handle, v=self._velocities[index].handle,
        beta1_power=ops.power(ops.cast(self.beta_1, dtype), local_step),
        beta2_power=ops.power(ops.cast(self.beta_2, dtype), local_step),
        lr=ops.cast(learning_rate, dtype), beta1=ops.cast(self.beta_1, dtype), beta2=ops.cast(self.beta_2, dtype),
        epsilon=ops.cast(self.epsilon, dtype), grad=ops.cast(gradient, dtype))


def learning_rate(config: Config, num_train_examples: int, total_steps: int):
  """Warm-up + cosine (SimCLR) as a schedule, or a constant for `plateau` (the trainer divides it by 10)."""
  if config.lr_schedule == "plateau":
    return scaled_learning_rate(config.learning_rate, config.train_batch_size, config.learning_rate_scaling)
  return WarmUpAndCosineDecay(
      base_learning_rate=config.learning_rate, num_examples=num_train_examples,
      train_batch_size=config.train_batch_size, learning_rate_scaling=config.learning_rate_scaling,
      warmup_epochs=config.warmup_epochs, total_steps=total_steps)


def build_optimizer(config: Config, lr) -> keras.optimizers.Optimizer:
  """LARS, momentum or Adam as SimCLR builds them; wrapped for loss scaling under `mixed_float16`."""
  if config.optimizer == "lars":
    adaptation = LARS_EXCLUDE_FROM_ADAPTATION_PRETRAIN if config.train_mode == "pretrain" else None
    optimizer = LARS(lr, momentum=config.momentum, weight_decay=config.weight_decay,
                     exclude_from_weight_decay=LARS_EXCLUDE, exclude_from_layer_adaptation=adaptation)
  elif config.optimizer == "momentum":
    optimizer = keras.optimizers.SGD(lr, momentum=config.momentum, nesterov=True)  # as SimCLR
  else:
    optimizer = FusedAdam(lr)
  if config.mixed_precision == "mixed_float16":
    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
  return optimizer
