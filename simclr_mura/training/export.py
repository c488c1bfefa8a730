"""The model for inference: a SavedModel in `model_dir/export/` that loads without this package's code.

`tf.saved_model.load(export_dir).serve(images)` maps float32 images [N, S, S, 1] in [0, 1] (preprocessed as for
evaluation: `augment.preprocess_for_eval`) to the probability of abnormal [N]. `preprocessing.json` beside it records
what the images need (size, crop) and the decision threshold.
"""
from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from simclr_mura.data import augment
from simclr_mura.config import Config

PREPROCESSING_FILE = "preprocessing.json"


def export_model(model: keras.Model, config: Config, export_dir: str, global_step: int) -> str:
  """Writes the SavedModel and its preprocessing record; returns `export_dir`.

  After `train_then_eval` the model holds the evaluated (selected) checkpoint's weights, so the export is the model
  that `result.json` describes.
  """
  size = config.image_size

  class Exported(tf.Module):
    def __init__(self):
      super().__init__()
      # Only the weights are tracked: saving the Keras model itself walks every layer's object graph (about twice as
      # slow); the SavedModel needs only the variables and `serve`.
      self.weights = list(model.variables)

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 1], tf.float32, name="images")])
    def serve(self, images):
      _, logits = model(images, training=False)
      return tf.nn.softmax(tf.cast(logits, tf.float32))[:, 1]

  module = Exported()
  tf.saved_model.save(module, export_dir, signatures={"serving_default": module.serve})
  with tf.io.gfile.GFile(os.path.join(export_dir, PREPROCESSING_FILE), "w") as f:
    json.dump({"image_size": size, "channels": 1, "value_range": [0.0, 1.0],
               "center_crop": augment.eval_crops(size, config.eval_crop),
               "center_crop_proportion": augment.CROP_PROPORTION, "global_step": global_step,
               "threshold": config.threshold, "dataset": config.dataset, "train_mode": config.train_mode,
               "backbone": config.backbone}, f, indent=2)
  return export_dir
