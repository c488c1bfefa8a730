"""Scoring a split with a model and writing what an evaluation leaves: result.json, predictions_<split>.csv, eval/."""
from __future__ import annotations

import os
import weakref

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from simclr_mura import results, summaries
from simclr_mura.config import Config
from simclr_mura.input_pipeline import EvalData
from simclr_mura.metrics import evaluate_predictions


def predict(model: keras.Model, strategy: tf.distribute.Strategy, data: EvalData) -> pd.DataFrame:
  """The split's metadata with a `probability` column (softmax probability of abnormal), one row per image."""
  dataset = data.distributed(strategy)
  step = _predict_step(model)
  indices, probabilities, valids = [], [], []
  for images, index, valid in dataset:
    outputs = strategy.run(step, args=(images, index, valid))
    index, probability, valid = (strategy.gather(x, axis=0).numpy() for x in outputs)
    indices.append(index)
    probabilities.append(probability)
    valids.append(valid)
  index, probability, valid = (np.concatenate(x) for x in (indices, probabilities, valids))
  keep = valid > 0
  scored = np.full(len(data.metadata), np.nan)
  scored[index[keep]] = probability[keep]
  if np.isnan(scored).any():
    raise RuntimeError(f"{int(np.isnan(scored).sum())} images were not scored")
  out = data.metadata.copy()
  out["probability"] = scored
  return out


_PREDICT_STEPS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _predict_step(model: keras.Model):
  """One traced prediction function per model (validation runs every epoch: don't retrace each time)."""
  if model not in _PREDICT_STEPS:
    @tf.function
    def step(images, index, valid):
      _, logits = model(images, training=False)
      return index, tf.nn.softmax(tf.cast(logits, tf.float32))[:, 1], valid
    _PREDICT_STEPS[model] = step
  return _PREDICT_STEPS[model]


def log_loss(predictions: pd.DataFrame) -> float:
  """Image-level cross-entropy of the predicted probabilities (the validation loss of the plateau schedule)."""
  p = np.clip(predictions["probability"].to_numpy(), 1e-7, 1 - 1e-7)
  y = predictions["label"].to_numpy()
  return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def write_evaluation(predictions: pd.DataFrame, config: Config, split: str, global_step: int,
                     writer: tf.summary.SummaryWriter | None) -> dict:
  """Metrics at image and study level; result.json, result_<step>.json, predictions_<split>.csv and eval/ summaries."""
  metrics = evaluate_predictions(predictions, threshold=config.threshold)
  result = {"global_step": int(global_step), "dataset": config.dataset, "train_mode": config.train_mode,
            "train_split": config.train_split, "eval_split": split, **metrics}
  results.write_predictions(os.path.join(config.model_dir, f"predictions_{_file_safe(split)}.csv"), predictions)
  results.write_result(config.model_dir, result)
  if writer is not None:
    summaries.eval_summaries(writer, metrics, predictions["label"].to_numpy(),
                             predictions["probability"].to_numpy(), global_step,
                             threshold=config.threshold, study_ids=predictions["study_id"].to_numpy())
    writer.flush()
  return result


def _file_safe(split: str) -> str:
  return "".join(c if c.isalnum() or c in "_-" else "_" for c in split).strip("_")
