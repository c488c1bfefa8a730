"""Contrastive (NT-Xent) loss, its metrics, the weight-decay term and SimCLRv2's distillation loss.

A port of Google SimCLR `tf2/objective.py` (`add_contrastive_loss`), the pretraining metrics of `tf2/metrics.py`
(`update_pretrain_metrics_train`) and `add_weight_decay` of `tf2/model.py` (google-research/simclr). Library code:
explicit arguments only, no absl flags.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional, Tuple

import tensorflow as tf

# SimCLR tf2/objective.py: LARGE_NUM masks a row's similarity with itself out of the softmax.
LARGE_NUM = 1e9


def _cross_replica_concat(tensor: tf.Tensor, replica_context: tf.distribute.ReplicaContext) -> tf.Tensor:
  """Concatenates `tensor` from every replica along axis 0, in replica order, differentiably.

  Plays the role of SimCLR's `tpu_cross_replica_concat` (scatter into zeros + all_reduce SUM). `all_gather` is
  differentiable under MirroredStrategy: its gradient sums the upstream gradients of all replicas and hands each
  replica the slice of its own rows — the same gradient as SimCLR's all_reduce pattern (checked in
  tests/test_objective.py against a single-device computation).
  """
  return replica_context.all_gather(tensor, axis=0)


def contrastive_loss(hidden: tf.Tensor,
                     hidden_norm: bool = True,
                     temperature: float = 1.0,
                     strategy: Optional[tf.distribute.Strategy] = None) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """NT-Xent loss with the values of SimCLR's `add_contrastive_loss` (tf2/objective.py).

  Args:
    hidden: (2n, d) projections, `[view1; view2]` stacked on axis 0.
    hidden_norm: l2-normalise each row first (SimCLR default True).
    temperature: softmax temperature τ (SimCLR flag default 0.1; this function's default 1.0 as in SimCLR).
    strategy: a `tf.distribute.Strategy`; with several replicas this must be called inside `strategy.run`, and
      negatives are gathered from every replica.

  Returns:
    `(loss, logits_ab, labels)`: `loss` is the mean over this replica's n rows of CE([ab | aa]) + CE([ba | bb]) (the
    sum of both directions); `logits_ab` is (n, n·R); `labels` is one-hot (n, 2·n·R) with the positive at
    `replica_id·n + i`.
  """
  # Always compute in float32, also under a mixed_float16 policy.
  hidden = tf.cast(hidden, tf.float32)
  if hidden_norm:
    hidden = tf.math.l2_normalize(hidden, -1)
  hidden1, hidden2 = tf.split(hidden, 2, 0)
  batch_size = tf.shape(hidden1)[0]

  num_replicas = strategy.num_replicas_in_sync if strategy is not None else 1
  if num_replicas > 1:
    replica_context = tf.distribute.get_replica_context()
    if replica_context is None:
      raise ValueError("contrastive_loss with a multi-replica strategy must be called inside strategy.run "
                       "(replica context); it was called in cross-replica context.")
    hidden1_large = _cross_replica_concat(hidden1, replica_context)
    hidden2_large = _cross_replica_concat(hidden2, replica_context)
    enlarged_batch_size = tf.shape(hidden1_large)[0]
    replica_id = tf.cast(replica_context.replica_id_in_sync_group, tf.int32)
    labels_idx = tf.range(batch_size) + replica_id * batch_size
  else:
    hidden1_large, hidden2_large = hidden1, hidden2
    enlarged_batch_size = batch_size
    labels_idx = tf.range(batch_size)
  labels = tf.one_hot(labels_idx, enlarged_batch_size * 2)
  masks = tf.one_hot(labels_idx, enlarged_batch_size)

  temperature = tf.cast(temperature, tf.float32)
  logits_aa = tf.matmul(hidden1, hidden1_large, transpose_b=True) / temperature
  logits_aa = logits_aa - masks * LARGE_NUM
  logits_bb = tf.matmul(hidden2, hidden2_large, transpose_b=True) / temperature
  logits_bb = logits_bb - masks * LARGE_NUM
  logits_ab = tf.matmul(hidden1, hidden2_large, transpose_b=True) / temperature
  logits_ba = tf.matmul(hidden2, hidden1_large, transpose_b=True) / temperature

  loss_a = tf.nn.softmax_cross_entropy_with_logits(labels, tf.concat([logits_ab, logits_aa], 1))
  loss_b = tf.nn.softmax_cross_entropy_with_logits(labels, tf.concat([logits_ba, logits_bb], 1))
  loss = tf.reduce_mean(loss_a + loss_b)
  return loss, logits_ab, labels


def contrast_accuracy(logits_ab: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
  """Fraction of rows whose argmax over `logits_ab` is the positive (SimCLR tf2/metrics.py contrast_acc).

  `labels` has 2·n·R columns and `logits_ab` n·R; the positive lies in the first half, so argmax(labels) indexes
  `logits_ab` directly, exactly as SimCLR compares them.
  """
  hits = tf.equal(tf.argmax(labels, 1), tf.argmax(logits_ab, axis=1))
  return tf.reduce_mean(tf.cast(hits, tf.float32))


def contrast_entropy(logits_ab: tf.Tensor) -> tf.Tensor:
  """Mean entropy of softmax(logits_ab) over rows (SimCLR tf2/metrics.py, with its +1e-8 inside the log)."""
  prob = tf.nn.softmax(tf.cast(logits_ab, tf.float32))
  return -tf.reduce_mean(tf.reduce_sum(prob * tf.math.log(prob + 1e-8), -1))


def _variable_path(variable: Any) -> str:
  """A Keras 3 variable's `path` (e.g. 'model/head_supervised/kernel'); a raw tf.Variable's `name`."""
  path = getattr(variable, "path", None)
  return path if path else variable.name


def weight_decay_loss(variables: Iterable, weight_decay: float, optimizer_name: str) -> tf.Tensor:
  """SimCLR's `add_weight_decay(model, adjust_per_optimizer=True)` (tf2/model.py) on explicit arguments.

  With LARS (`'lars' in optimizer_name`) the optimizer decays everything it does not exclude, so only the supervised
  head's non-bias weights (path contains 'head_supervised' and not 'bias') get `weight_decay·Σ l2_loss(v)` here.
  Otherwise (momentum, adam) every variable whose path does not contain 'batch_norm' (SimCLR:
  'batch_normalization') gets it. `l2_loss(v) = Σv²/2`. Pass the model's trainable variables.

  Returns a float32 scalar (0 when no variable matches).
  """
  variables = list(variables)
  if "lars" in optimizer_name:
    selected = [v for v in variables
                if "head_supervised" in _variable_path(v) and "bias" not in _variable_path(v)]
  else:
    selected = [v for v in variables if "batch_norm" not in _variable_path(v)]
  if not selected:
    return tf.constant(0.0, tf.float32)
  l2 = tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in selected])
  return tf.cast(weight_decay, tf.float32) * l2


def distillation_loss(teacher_logits: tf.Tensor, student_logits: tf.Tensor, temperature: float = 1.0) -> tf.Tensor:
  """SimCLRv2's distillation loss (Chen et al. 2020, arXiv 2006.10029, eq. 2), the mean over the batch of
  −Σ_y P_T(y|x; τ) log P_S(y|x; τ), where P(y|x; τ) = softmax(logits / τ): the cross-entropy of the student's
  softened prediction against the teacher's. The teacher's side is a constant (no gradient reaches the teacher);
  unlike Hinton et al. (2015), nothing rescales it by τ².
  """
  temperature = tf.cast(temperature, tf.float32)
  targets = tf.stop_gradient(tf.nn.softmax(tf.cast(teacher_logits, tf.float32) / temperature))
  return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(targets, tf.cast(student_logits, tf.float32) / temperature))
