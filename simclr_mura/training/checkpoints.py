"""Checkpoints as SimCLR writes them (tf.train.Checkpoint of model, optimizer, global_step + a CheckpointManager),
and the partial restore that starts fine-tuning from a pretraining run."""
from __future__ import annotations

import json
import os
import tensorflow as tf

from simclr_mura.config import Config
from simclr_mura.errors import UserError
from simclr_mura.layout import RunDir

ARCHITECTURE_KEYS = ("backbone", "resnet_depth", "width_multiplier", "sk_ratio", "se_ratio", "image_size",
                     "proj_head_mode", "num_proj_layers", "proj_out_dim")


def resolve(path: str) -> str:
  """A checkpoint prefix from a model_dir or a checkpoint path, or a one-line `UserError`."""
  if tf.io.gfile.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if latest is None:
      raise UserError(f"--checkpoint={path}: the folder holds no checkpoint; pass a pretraining model_dir or a "
                      "checkpoint path such as MODEL_DIR/ckpt-100")
    return latest
  if tf.io.gfile.exists(path + ".index"):
    return path
  raise UserError(f"--checkpoint={path} does not exist; pass a pretraining model_dir or a checkpoint path such as "
                  "MODEL_DIR/ckpt-100")


def _saved_config(prefix: str) -> dict:
  flags_file = RunDir(os.path.dirname(prefix)).flags_json
  if tf.io.gfile.exists(flags_file):
    with tf.io.gfile.GFile(flags_file) as f:
      return json.load(f)
  return {}


def _architecture_mismatch(prefix: str, config: Config) -> str:
  saved = _saved_config(prefix)
  diffs = [f"{k}={saved[k]} (this run: {getattr(config, k)})"
           for k in ARCHITECTURE_KEYS if k in saved and saved[k] != getattr(config, k)]
  return "; ".join(diffs)


def restore_pretrained(model, prefix: str, config: Config) -> None:
  """Restores a pretraining checkpoint's weights into `model` (encoder, kept projection layers, supervised head).

  SimCLR tf2/run.py `try_restore_from_checkpoint`: the model's weights only, not the optimizer or the step. Stops with
  one line when the checkpoint holds another architecture or width.
  """
  expected = (f"backbone={config.backbone}, resnet_depth={config.resnet_depth}, "
              f"width_multiplier={config.width_multiplier}")
  mismatch = _architecture_mismatch(prefix, config)
  if mismatch and any(k in mismatch for k in ("backbone", "resnet_depth", "width_multiplier", "sk_ratio", "se_ratio")):
    raise UserError(f"--checkpoint={prefix} holds another architecture: {mismatch}")
  try:
    encoder_status = tf.train.Checkpoint(model=tf.train.Checkpoint(encoder=model.encoder)).restore(prefix)
    encoder_status.assert_existing_objects_matched().expect_partial()
    tf.train.Checkpoint(model=model).restore(prefix).expect_partial()
  except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as e:
    detail = mismatch or str(e).splitlines()[0][:200]
    raise UserError(f"--checkpoint={prefix} holds another architecture (expected {expected}): {detail}") from e


class Checkpointer:
  """Saves and restores the full training state (model, optimizer, global_step, the trainer's model-selection state)
  in `model_dir`.

  Under MultiWorkerMirroredStrategy every worker must take part in a save; only the chief writes to `model_dir`, the
  others write to a scratch folder that is removed at the end (TF's multi-worker checkpointing recipe).
  """

  def __init__(self, model, optimizer, global_step: tf.Variable, model_dir: str, max_to_keep: int,
               chief: bool = True, task_id: int = 0, selection: tf.Module | None = None):
    self.state = tf.train.Checkpoint(model=model, optimizer=optimizer, global_step=global_step)
    self.selection = selection
    extra = {"selection": selection} if selection is not None else {}
    self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, global_step=global_step, **extra)
    self.model_dir = model_dir
    self.write_dir = model_dir if chief else os.path.join(model_dir, f".worker_{task_id}_scratch")
    self.manager = tf.train.CheckpointManager(self.checkpoint, self.write_dir, max_to_keep=max_to_keep,
                                              checkpoint_name=RunDir.CHECKPOINT_PREFIX)

  def restore_latest(self) -> str | None:
    """Restores the newest checkpoint of `model_dir` (resuming a run); returns its path or None."""
    latest = tf.train.latest_checkpoint(self.model_dir)
    if latest:
      self.state.restore(latest).assert_existing_objects_matched()
      if self.selection is not None:  # absent from checkpoints written before it existed: the defaults stay
        tf.train.Checkpoint(selection=self.selection).restore(latest).expect_partial()
    return latest

  def save(self, step: int) -> str:
    return self.manager.save(checkpoint_number=step)

  def cleanup(self) -> None:
    if self.write_dir != self.model_dir and tf.io.gfile.exists(self.write_dir):
      tf.io.gfile.rmtree(self.write_dir)


def selected_checkpoint(config: Config) -> str | None:
  """The checkpoint `train_then_eval` evaluates: the best on validation (fine-tuning or distillation with
  --model_selection=best, when one was saved), else the latest."""
  if config.classifies and config.model_selection == "best":
    best = tf.train.latest_checkpoint(RunDir(config.model_dir).best_dir)
    if best:
      return best
  return tf.train.latest_checkpoint(config.model_dir)
