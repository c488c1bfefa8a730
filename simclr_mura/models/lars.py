"""LARS optimizer (classic momentum) for Keras 3 on the TensorFlow backend: a port of Google SimCLR
`tf2/lars_optimizer.py`.

"Large Batch Training of Convolutional Networks", You, Gitman & Ginsburg (arXiv:1708.03888). For a variable w with
gradient g (SimCLR `_resource_apply_dense`, classic_momentum=True, no Nesterov):

  if w is not excluded from weight decay:     g ← g + weight_decay·w
  if w is not excluded from layer adaptation: trust = eeta·‖w‖/‖g‖ if ‖w‖ > 0 and ‖g‖ > 0 else 1
  otherwise:                                  trust = 1
  v ← momentum·v + (learning_rate·trust)·g;   w ← w − v

The weight decay is coupled (added to the gradient, then trust-scaled) and lives in `update_step`; the Keras base
class's decoupled `weight_decay` is never enabled.
"""
from __future__ import annotations

import re
from typing import Any, Dict, Optional, Sequence

import keras
import tensorflow as tf
from keras import ops

# SimCLR tf2/lars_optimizer.py EETA_DEFAULT.
EETA_DEFAULT = 0.001


def _variable_path(variable: Any) -> str:
  """A Keras 3 variable's `path`; a raw tf.Variable's `name` as a fallback."""
  path = getattr(variable, "path", None)
  return path if path else variable.name


@keras.saving.register_keras_serializable(package="simclr_mura")
class LARS(keras.optimizers.Optimizer):
  """Layer-wise Adaptive Rate Scaling with classic momentum (SimCLR `LARSOptimizer`).

  Args:
    learning_rate: a float or a `keras.optimizers.schedules.LearningRateSchedule`.
    momentum: momentum m (SimCLR default 0.9).
    weight_decay: coupled L2 coefficient added to the gradient (SimCLR flag default 1e-6).
    eeta: trust coefficient (SimCLR default 0.001).
    exclude_from_weight_decay: regular expressions; a variable whose `path` matches any (`re.search`) gets no weight
      decay. SimCLR passes ['batch_normalization', 'bias', 'head_supervised'].
    exclude_from_layer_adaptation: regular expressions for skipping the trust ratio; None (or empty) falls back to
      `exclude_from_weight_decay`, as in SimCLR.
    name: optimizer name.
    **kwargs: other `keras.optimizers.Optimizer` arguments (clipnorm, ...); `weight_decay` is this class's own.
  """

  def __init__(self,
               learning_rate: Any,
               momentum: float = 0.9,
               weight_decay: float = 0.0,
               eeta: float = EETA_DEFAULT,
               exclude_from_weight_decay: Optional[Sequence[str]] = None,
               exclude_from_layer_adaptation: Optional[Sequence[str]] = None,
               name: str = "LARS",
               **kwargs):
    if isinstance(learning_rate, int):
      learning_rate = float(learning_rate)
    # weight_decay=None for the base class: its decoupled decay (w -= lr·wd·w) is not SimCLR's rule.
    kwargs.pop("weight_decay", None)
    super().__init__(learning_rate=learning_rate, weight_decay=None, name=name, **kwargs)
    self.momentum = float(momentum)
    self.lars_weight_decay = float(weight_decay or 0.0)
    self.eeta = float(eeta)
    self.exclude_from_weight_decay_patterns = list(exclude_from_weight_decay or [])
    # SimCLR: "If it is None, it will be defaulted the same as exclude_from_weight_decay" (also when empty).
    self.exclude_from_layer_adaptation_patterns = list(
        exclude_from_layer_adaptation or exclude_from_weight_decay or [])

  def _use_weight_decay_for_path(self, path: str) -> bool:
    """SimCLR `_use_weight_decay`: decay unless weight_decay is 0 or a pattern matches."""
    if not self.lars_weight_decay:
      return False
    return not any(re.search(r, path) is not None for r in self.exclude_from_weight_decay_patterns)

  def _do_layer_adaptation_for_path(self, path: str) -> bool:
    """SimCLR `_do_layer_adaptation`: adapt unless a pattern matches."""
    return not any(re.search(r, path) is not None for r in self.exclude_from_layer_adaptation_patterns)

  def build(self, variables: Sequence[Any]) -> None:
    """Creates the momentum slots and resolves the per-variable exclusions.

    The decisions are made here, on the Keras variables (which have `.path`), and stored by variable index:
    under the TF backend `update_step` may receive the underlying raw tf.Variable (or a per-replica component),
    whose name lacks the Keras path.
    """
    if self.built:
      return
    super().build(variables)
    self.momentums = self.add_optimizer_variables(variables, "momentum")
    paths = [_variable_path(v) for v in variables]
    # Plain tuples of Python bools: nothing for the tracker or a checkpoint to store.
    self._decay_flags = tuple(self._use_weight_decay_for_path(p) for p in paths)
    self._adapt_flags = tuple(self._do_layer_adaptation_for_path(p) for p in paths)

  def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
    """One LARS step for one variable (SimCLR `_resource_apply_dense`, classic momentum)."""
    index = self._get_variable_index(variable)
    dtype = variable.dtype
    learning_rate = ops.cast(learning_rate, dtype)
    grad = ops.cast(gradient, dtype)
    param = ops.convert_to_tensor(variable)
    v = self.momentums[index]

    if self._decay_flags[index]:
      grad = grad + ops.cast(self.lars_weight_decay, dtype) * param

    if self._adapt_flags[index]:
      # ‖x‖ = sqrt(2·l2_loss(x)): one fused pass over x, where square-then-sum makes two.
      w_norm = ops.sqrt(2.0 * tf.nn.l2_loss(param))
      g_norm = ops.sqrt(2.0 * tf.nn.l2_loss(grad))
      one = ops.ones((), dtype)
      # Guard the division so neither branch yields inf/nan; the selection is SimCLR's nested tf.where.
      safe_g_norm = ops.where(g_norm > 0, g_norm, one)
      trust_ratio = ops.where(
          w_norm > 0,
          ops.where(g_norm > 0, ops.cast(self.eeta, dtype) * w_norm / safe_g_norm, one),
          one)
      scaled_lr = learning_rate * trust_ratio
    else:
      scaled_lr = learning_rate

    # v ← m·v + (lr·trust)·g; w ← w − v in one kernel: TensorFlow's ResourceApplyMomentum computes
    # accum ← momentum·accum + grad; var ← var − lr·accum, so with lr = 1 and grad = (lr·trust)·g it is this rule,
    # with the momentum slot holding SimCLR's v (three separate element-wise passes and two assignments otherwise).
    tf.raw_ops.ResourceApplyMomentum(
        var=variable.handle, accum=v.handle, lr=ops.ones((), dtype), grad=scaled_lr * grad,
        momentum=ops.cast(self.momentum, dtype))

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update({
        "momentum": self.momentum,
        "weight_decay": self.lars_weight_decay,
        "eeta": self.eeta,
        "exclude_from_weight_decay": list(self.exclude_from_weight_decay_patterns),
        "exclude_from_layer_adaptation": list(self.exclude_from_layer_adaptation_patterns),
    })
    return config
