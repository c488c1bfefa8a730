"""The teacher of a distillation (`--train_mode=distill --teacher=MODEL_DIR`): a fine-tuned run, frozen.

SimCLRv2 (Chen et al. 2020, arXiv 2006.10029, section 2) uses the fine-tuned network as a teacher whose predictions
label the unlabelled images for a student. Here the teacher is a fine-tuned run's selected checkpoint (the best on
validation, as its own evaluation used), its architecture read from the run's flags.json.
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from simclr_mura.config import Config
from simclr_mura.errors import UserError
from simclr_mura.layout import RunDir
from simclr_mura.training import checkpoints, results


def teacher_config(config: Config) -> Config:
  """The teacher run's configuration (from its flags.json), checked: a classifier of this run's dataset, classes and
  image size, with a checkpoint. Every refusal is one line naming `--teacher`."""
  where = f"--teacher={config.teacher}"
  saved = results.read_flags_json(config.teacher) if tf.io.gfile.isdir(config.teacher) else {}
  if not saved:
    raise UserError(f"{where}: not a run folder (no {RunDir.FLAGS}); accepted: the model_dir of a fine-tuned run")
  known = {f.name for f in dataclasses.fields(Config)}
  teacher = Config(**{k: v for k, v in saved.items() if k in known}).replace(model_dir=config.teacher)
  if not teacher.classifies:
    raise UserError(f"{where} is a {teacher.train_mode} run without a fine-tuned classifier; accepted: the model_dir "
                    "of a --train_mode=finetune (or distill) run")
  if teacher.num_classes != config.num_classes:
    raise UserError(f"{where} predicts {teacher.num_classes} classes, this run {config.num_classes}; accepted: a "
                    "teacher of the student's --num_classes")
  if teacher.dataset != config.dataset:  # its predictions are about its own body parts' images
    raise UserError(f"{where} was fine-tuned on {teacher.dataset}, this run trains on {config.dataset}; accepted: a "
                    "teacher of the student's --dataset")
  if teacher.image_size != config.image_size:
    raise UserError(f"{where} sees {teacher.image_size} px images, this run {config.image_size} px; accepted: a "
                    "teacher of the student's --image_size")
  if checkpoints.selected_checkpoint(teacher) is None:
    raise UserError(f"{where} holds no checkpoint yet; accepted: a fine-tuned run that has trained")
  return teacher


def load_teacher(config: Config) -> keras.Model:
  """The teacher model with its selected checkpoint restored, frozen (no trainable variables: the optimizer never
  sees them). Call inside the strategy's scope; the train step runs it with `training=False` (batch norm uses its
  moving statistics and leaves them unchanged)."""
  from simclr_mura.models.model import build_model  # lazy: builds Keras layers

  teacher = teacher_config(config)
  # its own weights come from the checkpoint: no ImageNet download or weights file for a DenseNet teacher
  model = build_model(teacher.replace(mode="eval", backbone_weights="none"))
  prefix = checkpoints.selected_checkpoint(teacher)
  tf.train.Checkpoint(model=model).restore(prefix).expect_partial().assert_existing_objects_matched()
  model.trainable = False
  print(f"Teacher: {prefix} ({teacher.backbone} depth {teacher.resnet_depth} width {teacher.width_multiplier:g}, "
        f"fine-tuned on {teacher.train_split}"
        f"{f' label draw {teacher.label_draw} of {teacher.label_fraction:g}' if teacher.label_fraction else ''})")
  return model
