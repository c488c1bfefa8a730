"""Grad-CAM (Selvaraju et al., 2017) grids of a run's test predictions: true/false positives and negatives.

The MURA paper shows class activation maps of its DenseNet; the seed study showed "successful and unsuccessful
predictions". `gradcam_grid(model_dir, out_png)` rebuilds the run's model from `flags.json`, restores the checkpoint
that was evaluated (the best validation one when it exists), and overlays the Grad-CAM of the abnormal logit on the
most confident images of each outcome in `predictions_test.csv`.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_datasets as tfds

from simclr_mura.data import augment, input_pipeline
from simclr_mura.training import checkpoints, results
from simclr_mura import plotting
from simclr_mura.config import Config
from simclr_mura.layout import RunDir
from simclr_mura.models.model import build_model

OUTCOMES = (("TP", 1, True), ("TN", 0, False), ("FP", 0, True), ("FN", 1, False))


def gradcam(model, images: tf.Tensor, class_index: int = 1) -> np.ndarray:
  """Grad-CAM heat maps [N, H, W] in [0, 1] of `class_index`'s logit over the encoder's last feature map."""
  with tf.GradientTape() as tape:
    fmap, logits = model.feature_map_and_logits(images, training=False)
    tape.watch(fmap)
    score = tf.reduce_sum(logits[:, class_index])
  grads = tape.gradient(score, fmap)
  weights = tf.reduce_mean(grads, axis=[1, 2], keepdims=True)  # global-average-pooled gradients
  cam = tf.nn.relu(tf.reduce_sum(weights * fmap, axis=-1, keepdims=True))
  cam = tf.image.resize(cam, images.shape[1:3], method="bilinear")[..., 0].numpy()
  peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
  return np.where(peak > 0, cam / np.maximum(peak, 1e-12), 0.0)


def pick_examples(predictions: pd.DataFrame, threshold: float, per_outcome: int = 3) -> dict[str, pd.DataFrame]:
  """The most confident images of each outcome (TP, TN, FP, FN) at image level."""
  predicted = predictions["probability"] > threshold
  picked = {}
  for name, label, positive in OUTCOMES:
    rows = predictions[(predictions["label"] == label) & (predicted == positive)]
    confidence = rows["probability"] if positive else 1 - rows["probability"]
    picked[name] = rows.assign(confidence=confidence).sort_values("confidence", ascending=False).head(per_outcome)
  return picked


def gradcam_grid(model_dir: str, out_png: str, per_outcome: int = 3) -> str:
  """Writes the TP/TN/FP/FN Grad-CAM grid of a finished fine-tuning run; returns `out_png`."""
  flags = results.read_flags_json(model_dir)
  if not flags:
    raise FileNotFoundError(f"{model_dir} holds no flags.json (not a finished run)")
  config = Config(**flags)
  predictions = pd.read_csv(RunDir(model_dir).predictions_csv("test"))
  picked = pick_examples(predictions, config.threshold, per_outcome)
  wanted = set(pd.concat(picked.values())["image_id"]) if picked else set()

  model = build_model(config.replace(zero_init_logits_layer=False))
  prefix = checkpoints.selected_checkpoint(config.replace(model_dir=model_dir))  # the evaluated one
  if prefix is None:
    raise FileNotFoundError(f"{model_dir} holds no checkpoint")
  tf.train.Checkpoint(model=model).restore(prefix).expect_partial()

  builder = input_pipeline.load_builder(config)
  images = {}
  crop = augment.eval_crops(config.image_size, config.eval_crop)  # the evaluation's views
  test = builder.as_dataset(split="test", decoders={"image": tfds.decode.SkipDecoding()})  # decode only the picked
  for example in test.as_numpy_iterator():
    image_id = example["image_id"].decode()
    if image_id in wanted:
      image = tf.io.decode_png(example["image"], channels=1)
      images[image_id] = augment.preprocess_for_eval(augment.to_float(image), config.image_size, config.image_size,
                                                     crop=crop).numpy()

  columns = max(per_outcome, 1)
  fig = plotting.new_figure(2.2 * columns, 2.4 * len(OUTCOMES))
  for row, (name, _, _) in enumerate(OUTCOMES):
    rows = picked[name]
    batch = [images[i] for i in rows["image_id"] if i in images]
    cams = gradcam(model, tf.constant(np.stack(batch))) if batch else []
    for col in range(columns):
      ax = fig.add_subplot(len(OUTCOMES), columns, row * columns + col + 1)
      ax.set_xticks([])
      ax.set_yticks([])
      if col < len(batch):
        ax.imshow(batch[col][..., 0], cmap="gray", vmin=0, vmax=1)
        ax.imshow(cams[col], cmap="jet", alpha=0.35, vmin=0, vmax=1)
        ax.set_title(f"{name}  p={rows['probability'].iloc[col]:.2f}", fontsize=8)
      else:
        for spine in ax.spines.values():
          spine.set_visible(False)
        if col == 0:
          ax.text(0.5, 0.5, f"no {name}", ha="center", va="center", transform=ax.transAxes)
      if col == 0:
        ax.set_ylabel({"TP": "true positive", "TN": "true negative", "FP": "false positive",
                       "FN": "false negative"}[name], fontsize=9)
  fig.suptitle(f"Grad-CAM of the abnormal logit — {config.dataset}, {os.path.basename(model_dir.rstrip('/'))}",
               fontsize=10)
  plotting.save_figure(fig, out_png)
  return out_png
