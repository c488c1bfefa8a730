"""Scoring a split with a model and writing what an evaluation leaves: result.json, predictions_<split>.csv, eval/."""
from __future__ import annotations

from typing import Callable

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from simclr_mura.training import results, summaries
from simclr_mura.config import Config
from simclr_mura.layout import RunDir
from simclr_mura.data.input_pipeline import EvalData
from simclr_mura.training.metrics import evaluate_predictions


def predict(step: Callable, strategy: tf.distribute.Strategy, data: EvalData) -> pd.DataFrame:
  """The split's metadata with a `probability` column (softmax probability of abnormal), one row per image.

  `step` is `make_predict_step(model)`, made once per job (validation runs every epoch: don't retrace each time).
  """
  dataset = data.distributed(strategy)
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


def make_predict_step(model: keras.Model) -> Callable:
  """The per-replica prediction function `predict` runs: (images, index, valid) -> (index, P(abnormal), valid)."""

  @tf.function
  def step(images, index, valid):
    _, logits = model(images, training=False)
    return index, tf.nn.softmax(tf.cast(logits, tf.float32))[:, 1], valid

  return step


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
  results.write_predictions(RunDir(config.model_dir).predictions_csv(split), predictions)
  results.write_result(config.model_dir, result)
  if writer is not None:
    summaries.eval_summaries(writer, metrics, predictions["label"].to_numpy(),
                             predictions["probability"].to_numpy(), global_step,
                             threshold=config.threshold, study_ids=predictions["study_id"].to_numpy())
    writer.flush()
  return result

