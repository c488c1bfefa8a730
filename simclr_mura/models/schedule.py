"""Learning-rate schedule and step counting of Google SimCLR (tf2/model.py, tf2/run.py).

Source: google-research/simclr tf2/model.py (`WarmUpAndCosineDecay`) and tf2/run.py (step counts). Library code:
explicit arguments only, no absl flags.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict

import keras
import tensorflow as tf

from simclr_mura.config import CHOICES


def scaled_learning_rate(base_learning_rate: float, train_batch_size: int, learning_rate_scaling: str) -> float:
  """SimCLR tf2/model.py: 'linear' → lr·B/256, 'sqrt' → lr·√B."""
  if learning_rate_scaling == "linear":
    return base_learning_rate * train_batch_size / 256.
  if learning_rate_scaling == "sqrt":
    return base_learning_rate * math.sqrt(train_batch_size)
  raise ValueError(f"Unknown learning_rate_scaling {learning_rate_scaling!r}; "
                   f"expected one of {', '.join(CHOICES['learning_rate_scaling'])}.")


def get_warmup_steps(warmup_epochs: float, num_examples: int, train_batch_size: int) -> int:
  """SimCLR tf2/model.py: int(round(warmup_epochs · num_examples // train_batch_size))."""
  return int(round(warmup_epochs * num_examples // train_batch_size))


@keras.saving.register_keras_serializable(package="simclr_mura")
class WarmUpAndCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
  """Linear warm-up to the scaled lr, then cosine decay to 0 (SimCLR tf2/model.py `WarmUpAndCosineDecay`).

  lr(step) = step / warmup_steps · scaled_lr for step < warmup_steps (scaled_lr if warmup_steps is 0), else
  scaled_lr · ½(1 + cos(π · min(step − warmup_steps, decay_steps) / decay_steps)) with
  decay_steps = total_steps − warmup_steps (as tf.keras CosineDecay with alpha 0; at least 1 here, where SimCLR would
  divide by zero).
  """

  def __init__(self,
               base_learning_rate: float,
               num_examples: int,
               train_batch_size: int,
               learning_rate_scaling: str = "linear",
               warmup_epochs: float = 10,
               total_steps: int = 1,
               name: str = "WarmUpAndCosineDecay"):
    super().__init__()
    if train_batch_size <= 0:
      raise ValueError(f"train_batch_size must be positive, got {train_batch_size}.")
    self.base_learning_rate = base_learning_rate
    self.num_examples = num_examples
    self.train_batch_size = train_batch_size
    self.learning_rate_scaling = learning_rate_scaling
    self.warmup_epochs = warmup_epochs
    self.total_steps = total_steps
    self.name = name
    # Validated eagerly so a bad scaling fails at construction, not at the first step.
    self.scaled_lr = scaled_learning_rate(base_learning_rate, train_batch_size, learning_rate_scaling)
    self.warmup_steps = get_warmup_steps(warmup_epochs, num_examples, train_batch_size)
    self.decay_steps = max(1, int(total_steps) - self.warmup_steps)

  def __call__(self, step: Any) -> tf.Tensor:
    with tf.name_scope(self.name or "WarmUpAndCosineDecay"):
      step = tf.cast(step, tf.float32)
      scaled_lr = tf.constant(self.scaled_lr, tf.float32)
      if self.warmup_steps:
        warmup_lr = step / float(self.warmup_steps) * scaled_lr
      else:
        warmup_lr = scaled_lr
      decay_step = tf.minimum(step - float(self.warmup_steps), float(self.decay_steps))
      cosine_lr = scaled_lr * 0.5 * (1.0 + tf.cos(math.pi * decay_step / float(self.decay_steps)))
      return tf.where(step < float(self.warmup_steps), warmup_lr, cosine_lr)

  def get_config(self) -> Dict[str, Any]:
    return {
        "base_learning_rate": self.base_learning_rate,
        "num_examples": self.num_examples,
        "train_batch_size": self.train_batch_size,
        "learning_rate_scaling": self.learning_rate_scaling,
        "warmup_epochs": self.warmup_epochs,
        "total_steps": self.total_steps,
        "name": self.name,
    }


@dataclasses.dataclass(frozen=True)
class StepCounts:
  """SimCLR tf2/run.py step counts: the training length, one epoch, and the checkpoint/summary interval."""
  total_steps: int
  epoch_steps: int
  checkpoint_steps: int


def get_train_steps(num_train_examples: int, train_batch_size: int, train_epochs: int,
                    train_steps_flag: int = 0) -> int:
  """SimCLR tf2/model.py `get_train_steps`: train_steps or N·epochs // B + 1."""
  return int(train_steps_flag or (num_train_examples * train_epochs // train_batch_size + 1))


def step_counts(num_train_examples: int,
                train_batch_size: int,
                train_epochs: int,
                train_steps: int = 0,
                checkpoint_epochs: int = 1,
                checkpoint_steps: int = 0) -> StepCounts:
  """SimCLR tf2/run.py step counting, guarded against N < B/2.

  total_steps = train_steps or N·epochs // B + 1; epoch_steps = round(N / B), at least 1 (SimCLR gets 0 when
  N < B/2 and then loops forever or divides by zero); checkpoint_steps = checkpoint_steps or
  checkpoint_epochs · epoch_steps, at least 1.
  """
  if num_train_examples <= 0:
    raise ValueError(f"num_train_examples must be positive, got {num_train_examples} (empty training split?).")
  if train_batch_size <= 0:
    raise ValueError(f"train_batch_size must be positive, got {train_batch_size}.")
  total = get_train_steps(num_train_examples, train_batch_size, train_epochs, train_steps)
  epoch = max(1, int(round(num_train_examples / train_batch_size)))
  checkpoint = max(1, int(checkpoint_steps or checkpoint_epochs * epoch))
  return StepCounts(total_steps=total, epoch_steps=epoch, checkpoint_steps=checkpoint)


def eval_steps(num_eval_examples: int, eval_batch_size: int, eval_steps_flag: int = 0) -> int:
  """SimCLR tf2/run.py: eval_steps or ceil(num_eval_examples / eval_batch_size)."""
  if eval_steps_flag:
    return int(eval_steps_flag)
  if eval_batch_size <= 0:
    raise ValueError(f"eval_batch_size must be positive, got {eval_batch_size}.")
  return int(math.ceil(num_eval_examples / eval_batch_size))
