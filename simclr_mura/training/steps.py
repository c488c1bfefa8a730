"""Per-replica training steps (SimCLR tf2/run.py `single_step`), run by the trainer inside `strategy.run`.

Each step computes its replica's losses, divides the total by the number of replicas (gradients are summed across
replicas), and applies the gradients with the Keras optimizer. It returns the replica's scalar metrics under SimCLR's
names; the trainer averages them over replicas.
"""
from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf

from simclr_mura.data import input_pipeline
from simclr_mura.config import Config
from simclr_mura.models.objective import (contrast_accuracy, contrast_entropy, contrastive_loss, distillation_loss,
                                          weight_decay_loss)

PRETRAIN_METRICS = ("contrast_loss", "contrast_acc", "contrast_entropy", "supervised_loss", "supervised_acc",
                    "weight_decay", "total_loss")
FINETUNE_METRICS = ("supervised_loss", "supervised_acc", "weight_decay", "total_loss")
# distill: the distillation loss, how often the student's class is the teacher's, and (with a labelled weight) the
# labelled cross-entropy on the labelled images of the batch
DISTILL_METRICS = ("distill_loss", "teacher_agreement", "supervised_loss", "weight_decay", "total_loss")


def metric_names(config: Config) -> tuple[str, ...]:
  if config.train_mode == "finetune":
    return FINETUNE_METRICS
  if config.train_mode == "distill":
    return tuple(m for m in DISTILL_METRICS if m != "supervised_loss" or config.distill_labeled_weight > 0)
  if config.lineareval_while_pretraining:
    return PRETRAIN_METRICS
  return tuple(m for m in PRETRAIN_METRICS if not m.startswith("supervised"))


def _supervised(logits: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor | None):
  logits = tf.cast(logits, tf.float32)
  per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
  if weights is not None:  # MURA paper's weighted cross-entropy: each example's weight by its study type and label
    per_example *= tf.cast(weights, tf.float32)
  correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=labels.dtype), labels), tf.float32)
  return tf.reduce_mean(per_example), tf.reduce_mean(correct)


def _distilled(teacher: keras.Model, logits: tf.Tensor, images: tf.Tensor, labels: tf.Tensor,
               labeled: tf.Tensor | None, config: Config, replicas: int = 1) -> tuple[tf.Tensor, dict]:
  """SimCLRv2's loss (arXiv 2006.10029 eq. 3): (1 − w) · the distillation loss against the frozen teacher's
  predictions on the same view + w · the cross-entropy on the batch's labelled images (`labeled`: 1 for an image of
  the label draw; None: all are). The labelled term is the mean over the global batch's labelled images: each of
  `replicas` replicas sums its own and divides by the count of all (the step then sums the replicas' gradients)."""
  teacher_logits = tf.stop_gradient(tf.cast(teacher(images, training=False)[1], tf.float32))
  logits = tf.cast(logits, tf.float32)
  loss = distillation_loss(teacher_logits, logits, config.distill_temperature)
  agree = tf.cast(tf.equal(tf.argmax(logits, -1), tf.argmax(teacher_logits, -1)), tf.float32)
  metrics = {"distill_loss": loss, "teacher_agreement": tf.reduce_mean(agree)}
  weight = config.distill_labeled_weight
  if weight <= 0:
    return loss, metrics
  per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
  mask = tf.ones_like(per_example) if labeled is None else tf.cast(labeled, tf.float32)
  count = tf.reduce_sum(mask)
  if replicas > 1:
    count = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, count) / replicas
  labeled_loss = tf.math.divide_no_nan(tf.reduce_sum(per_example * mask), count)  # 0 without labels
  metrics["supervised_loss"] = labeled_loss
  return (1.0 - weight) * loss + weight * labeled_loss, metrics


def make_train_step(model: keras.Model, optimizer: keras.optimizers.Optimizer, config: Config,
                    strategy: tf.distribute.Strategy, teacher: keras.Model | None = None) -> Callable:
  """The function `strategy.run` calls once per step with a per-replica `(images, labels)` batch, or
  `(images, labels, weights)` with per-example loss weights (`--class_weight=balanced`; when distilling, 1 for the
  label draw's images). `teacher`: the frozen teacher of `--train_mode=distill`, run on the student's view."""
  pretrain = config.train_mode == "pretrain"
  distill = config.train_mode == "distill"
  if distill and teacher is None:
    raise ValueError("--train_mode=distill needs the teacher model")
  replicas = strategy.num_replicas_in_sync
  contrastive_strategy = strategy if replicas > 1 else None

  def losses(images: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor | None) -> dict:
    labels = tf.cast(labels, tf.int32)
    metrics = {}
    total = 0.0
    if pretrain:
      # The pipeline delivers the two views apart; SimCLR concatenates them on the batch axis.
      images = tf.concat(images, axis=0)
      labels = tf.concat([labels, labels], axis=0)
    images = input_pipeline.device_augment(images, config, pretrain)
    projection, logits = model(images, training=True)
    if distill:
      loss, distill_metrics = _distilled(teacher, logits, images, labels, weights, config, replicas)
      metrics.update(distill_metrics)
      total += loss
    elif pretrain:
      con_loss, logits_ab, con_labels = contrastive_loss(
          projection, hidden_norm=config.hidden_norm, temperature=config.temperature, strategy=contrastive_strategy)
      metrics.update(contrast_loss=con_loss, contrast_acc=contrast_accuracy(logits_ab, con_labels),
                     contrast_entropy=contrast_entropy(logits_ab))
      total += con_loss
    if logits is not None and not distill:
      sup_loss, sup_acc = _supervised(logits, labels, None if pretrain else weights)
      metrics.update(supervised_loss=sup_loss, supervised_acc=sup_acc)
      total += sup_loss
    wd = tf.cast(weight_decay_loss(model.trainable_variables, config.weight_decay, config.optimizer), tf.float32)
    metrics.update(weight_decay=wd, total_loss=total + wd)
    return metrics

  def grads_and_metrics(images: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor | None = None):
    with tf.GradientTape() as tape:
      metrics = losses(images, labels, weights)
      loss = optimizer.scale_loss(metrics["total_loss"] / replicas)
    return tape.gradient(loss, model.trainable_variables), metrics

  if config.jit_compile:  # Keras' jit_compile="auto" silently drops XLA under strategies: compile explicitly.
    grads_and_metrics = tf.function(grads_and_metrics, jit_compile=True)

  def step(images: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor | None = None) -> dict:
    grads, metrics = grads_and_metrics(images, labels, weights)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return metrics

  return step


def make_train_loop(strategy: tf.distribute.Strategy, step_fn: Callable, names: tuple[str, ...],
                    global_step: tf.Variable | None = None) -> Callable:
  """`loop(iterator, num_steps)`: `num_steps` of `strategy.run(step_fn)` in one tf.function (SimCLR's loop shape),
  returning each metric averaged over replicas and steps; increments `global_step` per step when given."""

  @tf.function
  def loop(iterator, num_steps):
    totals = {name: tf.constant(0.0) for name in names}
    for _ in tf.range(num_steps):
      per_replica = strategy.run(step_fn, args=next(iterator))
      totals = {name: totals[name] + strategy.reduce("MEAN", per_replica[name], axis=None) for name in names}
      if global_step is not None:
        global_step.assign_add(1)
    return {name: total / tf.cast(num_steps, tf.float32) for name, total in totals.items()}

  return loop
