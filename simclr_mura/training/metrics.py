"""Binary classification metrics at image and study level, the way the MURA paper scores them.

Positive class = abnormal = 1. An image (or study) is predicted abnormal when its probability is strictly above the
threshold (`--threshold`: "abnormal when the (mean) probability is above it"), so a probability of
exactly 0.5 is normal at the default threshold.

Study level follows the MURA paper (Rajpurkar et al. 2017, arXiv:1712.06957): a study's
probability is the arithmetic mean of its images' probabilities; the study's label is the label of its images (MURA
labels studies, and every image of a study carries the study's label).

A metric that has no defined value is `None` (JSON null), never a made-up number:
  * precision is None without positive predictions (TP + FP = 0);
  * recall is None without positive labels (TP + FN = 0);
  * specificity is None without negative labels (TN + FP = 0);
  * f1 is the harmonic mean of precision and recall, so it is None whenever either of them is None; when both are
    defined it is 2TP / (2TP + FP + FN), which is 0.0 when TP = 0 (precision = recall = 0, the limit of the harmonic
    mean and the value of the count formula - a real worst score, not a filler);
  * auroc is None unless both classes are present;
  * kappa (Cohen's) is None when chance agreement is 1 (labels and predictions are the same constant), where
    sklearn returns nan;
  * with no examples at all every metric is None and n = n_abnormal = 0.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, Iterable, Optional

import numpy as np
import pandas as pd
from sklearn import metrics as skm

METRIC_KEYS = ("n", "n_abnormal", "accuracy", "precision", "recall", "specificity", "f1", "auroc", "kappa")
LEVELS = ("image", "study")


def _as_labels(labels: Iterable[Any], name: str = "labels") -> np.ndarray:
  arr = np.asarray(labels)
  if arr.ndim != 1:
    arr = arr.reshape(-1)
  if arr.size == 0:
    return arr.astype(np.int64)
  if arr.dtype == bool:
    return arr.astype(np.int64)
  try:
    as_float = arr.astype(np.float64)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{name} must be 0 (normal) or 1 (abnormal); got values of type {arr.dtype}") from e
  bad = ~np.isin(as_float, (0.0, 1.0))
  if bad.any():
    raise ValueError(f"{name} must be 0 (normal) or 1 (abnormal); got {sorted(set(arr[bad].tolist()))[:5]}")
  return as_float.astype(np.int64)


def _as_probabilities(probabilities: Iterable[Any], n: int) -> np.ndarray:
  arr = np.asarray(probabilities, dtype=np.float64).reshape(-1)
  if arr.size != n:
    raise ValueError(f"labels and probabilities differ in length: {n} labels, {arr.size} probabilities")
  if not np.all(np.isfinite(arr)):
    raise ValueError(f"probabilities must be finite; got {int((~np.isfinite(arr)).sum())} NaN/inf values")
  if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
    raise ValueError(f"probabilities must lie in [0, 1]; got range [{arr.min()}, {arr.max()}]")
  return arr


def _ratio(num: int, den: int) -> Optional[float]:
  return float(num) / float(den) if den > 0 else None


def binary_metrics(labels: Iterable[Any], probabilities: Iterable[Any], threshold: float = 0.5) -> Dict[str, Any]:
  """Scores abnormal-vs-normal predictions.

  Args:
    labels: 0 (normal) / 1 (abnormal) per example.
    probabilities: the probability of abnormal per example, in [0, 1].
    threshold: predicted abnormal when probability > threshold.

  Returns:
    {"n", "n_abnormal", "accuracy", "precision", "recall", "specificity", "f1", "auroc", "kappa"}: ints for the counts,
    Python floats or None (undefined, see the module docstring) for the metrics.
  """
  y = _as_labels(labels)
  p = _as_probabilities(probabilities, y.size)
  n = int(y.size)
  out: Dict[str, Any] = {k: None for k in METRIC_KEYS}
  out["n"] = n
  out["n_abnormal"] = int(y.sum())
  if n == 0:
    return out
  pred = (p > threshold).astype(np.int64)
  tn, fp, fn, tp = (int(v) for v in skm.confusion_matrix(y, pred, labels=[0, 1]).ravel())
  out["accuracy"] = float(tp + tn) / n
  out["precision"] = _ratio(tp, tp + fp)
  out["recall"] = _ratio(tp, tp + fn)
  out["specificity"] = _ratio(tn, tn + fp)
  if out["precision"] is not None and out["recall"] is not None:
    # 2TP + FP + FN > 0 here: precision defined means TP + FP > 0.
    out["f1"] = 2.0 * tp / (2.0 * tp + fp + fn)
  if 0 < out["n_abnormal"] < n:
    out["auroc"] = float(skm.roc_auc_score(y, p))
  with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
    warnings.simplefilter("ignore")
    kappa = float(skm.cohen_kappa_score(y, pred, labels=[0, 1]))
  out["kappa"] = kappa if np.isfinite(kappa) else None
  return out


def _check_columns(df: pd.DataFrame, required: Iterable[str], what: str) -> None:
  missing = [c for c in required if c not in df.columns]
  if missing:
    raise ValueError(f"{what} lacks column(s) {missing}; has {list(df.columns)}")


def study_level(predictions: pd.DataFrame) -> pd.DataFrame:
  """One row per study: the mean of its images' probabilities and their common label (the MURA paper's rule).

  Args:
    predictions: image-level rows with at least `study_id`, `label`, `probability` (and usually `patient_id`,
      `study_type`, which are kept).

  Returns:
    Columns `study_id, patient_id, study_type, label, probability, n_images` (those of the first three that exist),
    one row per study, in order of first appearance.

  Raises:
    ValueError: a study whose images disagree on the label (or on patient/study type), naming the studies.
  """
  _check_columns(predictions, ("study_id", "label", "probability"), "predictions")
  keep = [c for c in ("patient_id", "study_type") if c in predictions.columns]
  df = predictions.copy()
  df["label"] = _as_labels(df["label"].to_numpy())
  df["probability"] = _as_probabilities(df["probability"].to_numpy(), len(df))
  grouped = df.groupby("study_id", sort=False)
  for col in ["label"] + keep:
    counts = grouped[col].nunique(dropna=False)
    bad = counts[counts > 1].index.tolist()
    if bad:
      shown = ", ".join(str(s) for s in bad[:10]) + (f" (and {len(bad) - 10} more)" if len(bad) > 10 else "")
      raise ValueError(f"images of the same study disagree on {col!r} in {len(bad)} stud"
                       f"{'y' if len(bad) == 1 else 'ies'}: {shown}")
  agg = {c: "first" for c in keep}
  agg.update(label="first", probability="mean")
  out = grouped.agg(agg)
  out["n_images"] = grouped.size()
  out = out.reset_index()
  return out[["study_id"] + keep + ["label", "probability", "n_images"]]


def evaluate_predictions(predictions: pd.DataFrame, threshold: float = 0.5) -> Dict[str, Dict[str, Any]]:
  """Image- and study-level metrics of a predictions table: {"image": METRICS, "study": METRICS}."""
  _check_columns(predictions, ("study_id", "label", "probability"), "predictions")
  studies = study_level(predictions)
  return {
      "image": binary_metrics(predictions["label"].to_numpy(), predictions["probability"].to_numpy(), threshold),
      "study": binary_metrics(studies["label"].to_numpy(), studies["probability"].to_numpy(), threshold),
  }


def class_weights(labels: Iterable[Any]) -> Dict[int, float]:
  """The MURA paper's class weights for the weighted binary cross-entropy (`--class_weight=balanced`).

  MURA paper (arXiv:1712.06957): w_abnormal = N / (A + N), w_normal = A / (A + N), with A and
  N the numbers of abnormal and normal images in the training set. The rarer class gets the larger weight; the weights
  sum to 1.

  Returns:
    {0: w_normal, 1: w_abnormal}.

  Raises:
    ValueError: a class is absent (its weight would be 0 and the other class's 1).
  """
  y = _as_labels(labels)
  a = int(y.sum())
  n = int(y.size - a)
  if a == 0 or n == 0:
    raise ValueError(f"class_weight=balanced needs both classes in the training labels; got {n} normal and {a} "
                     "abnormal images")
  return {0: a / (a + n), 1: n / (a + n)}


def class_weights_by_study_type(study_types: Iterable[Any], labels: Iterable[Any]) -> Dict[Any, Dict[int, float]]:
  """The MURA paper's class weights computed per study type, as the paper does (arXiv:1712.06957, section 3: "w_T,1 =
  |N_T| / (|A_T| + |N_T|) and w_T,0 = |A_T| / (|A_T| + |N_T|) where |A_T| and |N_T| are the number of abnormal images
  and normal images of study type T in the training set"): {study type: {0: w_normal, 1: w_abnormal}}.

  Raises:
    ValueError: a study type lacks one of the classes.
  """
  types = np.asarray(list(study_types))
  y = _as_labels(labels)
  if types.shape != y.shape:
    raise ValueError(f"{types.size} study types for {y.size} labels")
  out = {}
  for t in sorted(set(types.tolist())):
    try:
      out[t] = class_weights(y[types == t])
    except ValueError as e:
      raise ValueError(f"study type {t}: {e}") from e
  return out
