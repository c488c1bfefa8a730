"""TensorBoard helpers for the trainer and the evaluator (TF2 `tf.summary`, eager), and a reader for event files.

Layout (`layout.RunDir`, as SimCLR's tf2/run.py): training scalars under `<model_dir>/train`, evaluation under
`<model_dir>/eval` with tags
`image/<metric>` and `study/<metric>`; hyperparameters and final metrics for the HParams dashboard via
`log_hparams(<model_dir>, ...)`, so pointing TensorBoard at a study folder compares its arms.

The precision-recall curve is TensorBoard's native PR-curve plugin: its `pb`/`raw_data_pb` helpers build TF1 protos, so
`pr_curve_summary` bins the counts itself (the same bucketing as `tensorboard.plugins.pr_curve.summary.pb`) and writes
the [6, num_thresholds] tensor with the plugin's metadata through `tf.summary.write`.
"""
from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from tensorboard.backend.event_processing import plugin_event_accumulator as pea
from tensorboard.plugins.hparams import api as hp
from tensorboard.plugins.pr_curve import metadata as pr_metadata
from tensorboard.util import tensor_util

from simclr_mura import plotting
from simclr_mura.training.metrics import study_level

_MIN_COUNT = 1e-7  # as tensorboard.plugins.pr_curve.summary: avoids 0/0 in precision/recall
_SKIP_SCALARS = ("n", "n_abnormal")


def _finite(value: Any) -> Optional[float]:
  if value is None or isinstance(value, (bool, np.bool_)):
    return None
  try:
    value = float(value)
  except (TypeError, ValueError):
    return None
  return value if math.isfinite(value) else None


def write_scalars(writer: tf.summary.SummaryWriter, scalars: Mapping[str, Any], step: int) -> None:
  """Writes each finite scalar under its tag at `step`; None/NaN values (undefined metrics) are skipped."""
  with writer.as_default():
    for tag, value in scalars.items():
      v = _finite(value)
      if v is not None:
        tf.summary.scalar(tag, v, step=int(step))
  writer.flush()


def _png_summary(tag: str, png: bytes, step: int, description: Optional[str] = None) -> None:
  image = tf.io.decode_png(png, channels=4)
  tf.summary.image(tag, image[tf.newaxis], step=int(step), description=description)


def pr_curve_summary(tag: str, labels: Sequence[int], probabilities: Sequence[float], step: int,
                     num_thresholds: int = 201) -> None:
  """Writes a native TensorBoard PR curve under the default writer (call inside `writer.as_default()`)."""
  y = np.asarray(labels, dtype=np.float64).reshape(-1)
  p = np.clip(np.asarray(probabilities, dtype=np.float64).reshape(-1), 0.0, 1.0)
  buckets = np.floor(p * (num_thresholds - 1)).astype(np.int64)
  tp_b = np.bincount(buckets, weights=y, minlength=num_thresholds)
  fp_b = np.bincount(buckets, weights=1.0 - y, minlength=num_thresholds)
  tp = np.cumsum(tp_b[::-1])[::-1]
  fp = np.cumsum(fp_b[::-1])[::-1]
  tn = fp[0] - fp
  fn = tp[0] - tp
  precision = tp / np.maximum(_MIN_COUNT, tp + fp)
  recall = tp / np.maximum(_MIN_COUNT, tp + fn)
  data = np.stack([tp, fp, tn, fn, precision, recall]).astype(np.float32)
  meta = pr_metadata.create_summary_metadata(display_name=tag, description="precision-recall, positive = abnormal",
                                             num_thresholds=num_thresholds)
  tf.summary.write(tag, tf.constant(data), step=int(step), metadata=meta.SerializeToString())


def eval_summaries(writer: tf.summary.SummaryWriter, metrics: Mapping[str, Mapping[str, Any]],
                   labels: Sequence[int], probabilities: Sequence[float], step: int, threshold: float = 0.5,
                   study_ids: Optional[Sequence[str]] = None) -> None:
  """Writes an evaluation's metrics and plots (the writer is created on `<model_dir>/eval`).

  Scalars `image/<metric>` and `study/<metric>` from `metrics` ({"image": METRICS, "study": METRICS}; undefined
  metrics are skipped); images `image/confusion_matrix` and `image/roc_curve`; the PR curve `image/pr_curve`. With
  `study_ids` (one per image) the same plots are written for the study level (mean probability per study).
  """
  levels = [("image", np.asarray(labels), np.asarray(probabilities, dtype=np.float64))]
  if study_ids is not None:
    import pandas as pd  # local: only needed here
    studies = study_level(pd.DataFrame({"study_id": list(study_ids), "label": levels[0][1],
                                        "probability": levels[0][2]}))
    levels.append(("study", studies["label"].to_numpy(), studies["probability"].to_numpy()))
  scalars = {f"{level}/{k}": v for level, m in metrics.items() for k, v in m.items() if k not in _SKIP_SCALARS}
  write_scalars(writer, scalars, step)
  with writer.as_default():
    for level, y, p in levels:
      cm = plotting.confusion_matrix_figure(y, p, threshold, title=f"{level} level, step {step}")
      _png_summary(f"{level}/confusion_matrix", plotting.figure_to_png(cm), step)
      roc = plotting.roc_curve_figure(y, p, title=f"{level} level ROC, step {step}")
      _png_summary(f"{level}/roc_curve", plotting.figure_to_png(roc), step)
      pr_curve_summary(f"{level}/pr_curve", y, p, step)
  writer.flush()


def _hparam_value(value: Any) -> Any:
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  if isinstance(value, (int, np.integer)):
    return int(value)
  if isinstance(value, (float, np.floating)):
    return float(value) if math.isfinite(float(value)) else str(value)
  if value is None:
    return "none"
  return str(value)


def _flatten(metrics: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
  out: Dict[str, Any] = {}
  for key, value in metrics.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      out.update(_flatten(value, name + "/"))
    else:
      out[name] = value
  return out


def log_hparams(logdir: str, hparams: Mapping[str, Any], metrics: Mapping[str, Any], step: int = 0,
                trial_id: Optional[str] = None) -> None:
  """Logs a run's hyperparameters and final metrics for TensorBoard's HParams dashboard.

  Args:
    logdir: the run's folder (its `model_dir`); TensorBoard started on the study folder then lists every arm.
    hparams: flag values (None becomes "none", other non-scalars their str()).
    metrics: final metric values, flat ({"study/auroc": 0.8}) or nested ({"study": {"auroc": 0.8}}); written as
      scalars under those tags (undefined values skipped; the counts n/n_abnormal are kept as metrics too).
    step: the step the metrics are logged at (the final global step).
    trial_id: the session name shown in the dashboard (default: a hash of the hparams).
  """
  writer = tf.summary.create_file_writer(logdir)
  try:
    with writer.as_default():
      hp.hparams({str(k): _hparam_value(v) for k, v in hparams.items()}, trial_id=trial_id)
    write_scalars(writer, _flatten(metrics), step)
  finally:
    writer.close()


def _to_uint8(view: Any) -> np.ndarray:
  arr = np.asarray(view)
  if arr.ndim == 3:
    arr = arr[..., np.newaxis]
  if arr.ndim != 4:
    raise ValueError(f"each view must be a batch [B, H, W] or [B, H, W, C]; got shape {arr.shape}")
  if arr.dtype != np.uint8:
    arr = (np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
  return arr


def image_grid(images: Any, max_examples: int = 8, pad: int = 2) -> np.ndarray:
  """A [H, W, C] uint8 grid: one row per example, one column per view.

  Args:
    images: the views, as a sequence of V batches [B, H, W(, C)], one array [V, B, H, W, C], or one batch
      [B, H, W, C] (a single column, e.g. views already placed side by side); floats in [0, 1] (SimCLR's input
      range) or uint8.
    max_examples: the number of rows (examples) shown at most.
    pad: white pixels between tiles.
  """
  if isinstance(images, (tf.Tensor, np.ndarray)) or hasattr(images, "numpy"):
    images = np.asarray(images)
    if images.ndim == 4:
      images = images[np.newaxis]
    elif images.ndim != 5:
      raise ValueError(f"images must be [B, H, W, C] or [V, B, H, W, C]; got shape {images.shape}")
  views = [_to_uint8(v) for v in images]
  if not views:
    raise ValueError("image_grid needs at least one view")
  shape = views[0].shape
  if any(v.shape != shape for v in views):
    raise ValueError(f"all views must have the same shape; got {[v.shape for v in views]}")
  b, h, w, c = shape
  rows = min(b, max_examples)
  grid = np.full((rows * (h + pad) + pad, len(views) * (w + pad) + pad, c), 255, dtype=np.uint8)
  for i in range(rows):
    for j, view in enumerate(views):
      y, x = pad + i * (h + pad), pad + j * (w + pad)
      grid[y:y + h, x:x + w] = view[i]
  return grid


def image_grid_summary(writer: tf.summary.SummaryWriter, tag: str, images: Any, step: int,
                       max_examples: int = 8) -> np.ndarray:
  """Writes a grid of augmented view pairs (rows: examples, columns: views) as one image; returns the grid."""
  grid = image_grid(images, max_examples=max_examples)
  with writer.as_default():
    tf.summary.image(tag, grid[np.newaxis], step=int(step),
                     description="rows: examples; columns: the augmented views fed to the model")
  writer.flush()
  return grid


# --- reading event files -------------------------------------------------------------------------------------------


def event_runs(root: str) -> Dict[str, str]:
  """{run name: folder} for every folder under `root` (itself included, as '.') holding TensorBoard event files."""
  runs: Dict[str, str] = {}
  if not tf.io.gfile.isdir(root):
    return runs
  for folder, dirs, files in tf.io.gfile.walk(root):
    dirs.sort()
    if any(f.startswith("events.out.tfevents") for f in files):
      rel = os.path.relpath(folder, root) if folder != root else "."
      runs[rel.replace(os.sep, "/")] = folder
  return runs


def read_scalars(logdir: str) -> Dict[str, List[Tuple[int, float]]]:
  """Every scalar series of one event folder (TF2 tensor summaries and TF1 simple values alike).

  Returns:
    {tag: [(step, value), ...]} sorted by step; when a step was logged more than once (a resumed run), the last write
    wins.
  """
  if not tf.io.gfile.glob(os.path.join(logdir, "events.out.tfevents*")):
    return {}
  acc = pea.EventAccumulator(logdir, size_guidance={pea.TENSORS: 0},
                             tensor_size_guidance={"images": 1, "pr_curves": 1, "hparams": 1})
  acc.Reload()
  out: Dict[str, List[Tuple[int, float]]] = {}
  for tag in acc.Tags().get(pea.TENSORS, []):
    if acc.SummaryMetadata(tag).plugin_data.plugin_name != "scalars":
      continue
    by_step: Dict[int, float] = {}
    for event in acc.Tensors(tag):
      value = tensor_util.make_ndarray(event.tensor_proto)
      if value.size == 1:
        by_step[int(event.step)] = float(value.reshape(()))
    if by_step:
      out[tag] = sorted(by_step.items())
  return out


def read_plugin_tags(logdir: str) -> Dict[str, str]:
  """{tag: plugin name} of every tensor summary in one event folder (e.g. 'images', 'pr_curves', 'scalars')."""
  acc = pea.EventAccumulator(logdir, size_guidance={pea.TENSORS: 1})
  acc.Reload()
  return {tag: acc.SummaryMetadata(tag).plugin_data.plugin_name for tag in acc.Tags().get(pea.TENSORS, [])}
