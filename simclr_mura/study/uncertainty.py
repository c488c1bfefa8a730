"""The report's 95% intervals: a Student-t interval over label draws, and a percentile bootstrap over test studies.

Several label draws of an arm: the mean, the sample sd and mean ± t(0.975, n−1)·sd/√n (`t_over_draws`), which covers
the variation between label draws (and training runs) as well as the test set's. One run: a percentile bootstrap that
resamples test studies with replacement (`bootstrap_studies`), B = 1000 with a fixed seed, so the report is the same on
every build. The unit is the study: at image level a resampled study brings all its images, which are not independent
(one patient, one label); pooled over body parts the studies are resampled within each part (stratified), so every
resample keeps each part's number of studies. A paired bootstrap scores two models on the same resampled studies.

The metrics of a resample are computed for all B resamples at once from resampling counts (a study drawn twice counts
twice), with `training.metrics.binary_metrics`'s definitions; a metric undefined in a resample (AUROC with one class) is
left out of its percentiles.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from scipy import stats

from simclr_mura.training.metrics import study_level

CONFIDENCE = 0.95
BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 1712_06957  # fixed: the same resamples on every build (MURA's arXiv number)
T_METHOD = "t_over_draws"
BOOTSTRAP_METHOD = "bootstrap_studies"
NO_CI = "none"
STRATUM = "stratum"  # the predictions column a pooled bootstrap resamples within (the body part)

Interval = Tuple[Optional[float], Optional[float]]


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Tuple[float, Optional[float], Interval]:
  """(mean, sample sd, (low, high)) of values: mean ± t((1+confidence)/2, n−1)·sd/√n; sd and interval None for n < 2."""
  x = np.asarray(values, dtype=np.float64)
  mean = float(x.mean())
  if x.size < 2:
    return mean, None, (None, None)
  sd = float(x.std(ddof=1))
  half = float(stats.t.ppf((1.0 + confidence) / 2.0, x.size - 1)) * sd / math.sqrt(x.size)
  return mean, sd, (mean - half, mean + half)


def percentile_interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> Interval:
  """The percentile interval of the defined (finite) bootstrap samples; (None, None) when none is defined."""
  x = np.asarray(samples, dtype=np.float64)
  x = x[np.isfinite(x)]
  if x.size == 0:
    return None, None
  alpha = (1.0 - confidence) / 2.0
  low, high = np.percentile(x, [100.0 * alpha, 100.0 * (1.0 - alpha)])
  return float(low), float(high)


def resample_counts(strata: Sequence[str], n_samples: int = BOOTSTRAP_SAMPLES,
                    seed: int = BOOTSTRAP_SEED) -> np.ndarray:
  """[n_samples, n_studies] how often each study is drawn: each stratum's studies resampled with replacement to its
  own size (one stratum: the plain bootstrap)."""
  strata = np.asarray(strata, dtype=object)
  rng = np.random.default_rng(seed)
  counts = np.zeros((n_samples, strata.size), dtype=np.float64)
  for stratum in sorted(set(strata.tolist())):
    idx = np.flatnonzero(strata == stratum)
    drawn = rng.integers(0, idx.size, size=(n_samples, idx.size)) + idx.size * np.arange(n_samples)[:, None]
    counts[:, idx] = np.bincount(drawn.ravel(), minlength=n_samples * idx.size).reshape(n_samples, idx.size)
  return counts


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _weighted_auroc(weights_t: np.ndarray, labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
  """The Mann-Whitney AUROC (ties count one half, as sklearn's ROC area) of each column of weights_t [N, B]; NaN
  with one class."""
  if probabilities.size == 0:
    return np.full(weights_t.shape[1], np.nan)
  order = np.argsort(probabilities, kind="stable")
  p = probabilities[order]
  first = np.r_[True, p[1:] != p[:-1]]  # groups of tied probabilities, ascending
  start = np.maximum.accumulate(np.where(first, np.arange(p.size), 0))  # each example's group: first and last row
  end = np.r_[np.flatnonzero(first)[1:] - 1, p.size - 1][np.cumsum(first) - 1]
  w = weights_t[order]
  y = labels[order][:, None]
  pos, neg = w * y, w * (1 - y)
  upto = np.cumsum(neg, axis=0)  # negatives up to and including each row
  before = upto[start] - neg[start]  # negatives with a lower probability than the example's group
  ties = upto[end] - before  # negatives tied with it
  num = (pos * (before + 0.5 * ties)).sum(axis=0)
  return _ratio(num, pos.sum(axis=0) * neg.sum(axis=0))


def _metrics_block(w: np.ndarray, y: np.ndarray, p: np.ndarray, threshold: float) -> Dict[str, np.ndarray]:
  """weighted_metrics of weights w [N, b]."""
  pred = (p > threshold).astype(np.float64)
  tp, fp = (y * pred) @ w, ((1 - y) * pred) @ w
  fn, tn = (y * (1 - pred)) @ w, ((1 - y) * (1 - pred)) @ w
  n = tp + fp + fn + tn
  out = {"n": n, "n_abnormal": tp + fn, "accuracy": _ratio(tp + tn, n), "precision": _ratio(tp, tp + fp),
         "recall": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp)}
  f1 = _ratio(2 * tp, 2 * tp + fp + fn)
  out["f1"] = np.where(np.isfinite(out["precision"]) & np.isfinite(out["recall"]), f1, np.nan)
  chance = _ratio((tp + fp) * (tp + fn) + (tn + fn) * (tn + fp), n * n)  # Cohen's expected agreement
  kappa = _ratio(out["accuracy"] - chance, 1.0 - chance)
  out["kappa"] = np.where(np.isfinite(chance) & (chance < 1.0 - 1e-12), kappa, np.nan)
  out["auroc"] = _weighted_auroc(w, y, p)
  return out


def weighted_metrics(weights: np.ndarray, labels: Sequence[int], probabilities: Sequence[float],
                     threshold: float = 0.5, columns: Optional[np.ndarray] = None,
                     block: int = 64) -> Dict[str, np.ndarray]:
  """`binary_metrics` of each row of `weights` [B, N] (how often each example counts): {metric: [B]}, NaN where it
  is undefined; `n` and `n_abnormal` are the weighted counts.

  `columns` (optional) gives each example's column of `weights` (an image's study); the rows are computed `block` at
  a time, so that the working arrays stay in cache.
  """
  weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
  y = np.asarray(labels, dtype=np.float64).reshape(-1)
  p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
  blocks = []
  for i in range(0, max(len(weights), 1), block):
    w = np.ascontiguousarray(weights[i:i + block].T)  # [N, b]: rows gather fast
    blocks.append(_metrics_block(w if columns is None else w[columns], y, p, threshold))
  return {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}


def _study_strata(predictions: pd.DataFrame) -> Dict[str, str]:
  """{study_id: stratum} (one stratum without a STRATUM column)."""
  if STRATUM in predictions.columns:
    return predictions.groupby("study_id", sort=False)[STRATUM].first().astype(str).to_dict()
  return {k: "" for k in pd.unique(predictions["study_id"])}


def bootstrap_samples(predictions: Sequence[pd.DataFrame], thresholds: Sequence[float], level: str,
                      n_samples: int = BOOTSTRAP_SAMPLES,
                      seed: int = BOOTSTRAP_SEED) -> Sequence[Dict[str, np.ndarray]]:
  """Each model's metrics on the same resampled test studies: [{metric: [n_samples]}] in the order of `predictions`.

  Args:
    predictions: per model, image-level rows (study_id, label, probability; STRATUM to resample within it). Several
      models (a paired bootstrap) are scored on the studies they all have.
    thresholds: per model, abnormal when the (study's mean) probability is above it.
    level: "study" (a study's probability is its images' mean) or "image" (every image of a drawn study counts).
    n_samples, seed: the bootstrap's size and its fixed seed.
  """
  strata = [_study_strata(df) for df in predictions]
  common = set(strata[0])
  for s in strata[1:]:
    common &= set(s)
  keys = sorted(common, key=lambda k: (strata[0][k], str(k)))
  counts = resample_counts([strata[0][k] for k in keys], n_samples, seed)
  position = {k: i for i, k in enumerate(keys)}
  out = []
  for df, threshold in zip(predictions, thresholds):
    df = df[df["study_id"].isin(common)]
    if level == "study":
      studies = study_level(df).set_index("study_id").loc[keys]
      out.append(weighted_metrics(counts, studies["label"].to_numpy(), studies["probability"].to_numpy(), threshold))
    else:
      idx = df["study_id"].map(position).to_numpy()
      out.append(weighted_metrics(counts, df["label"].to_numpy(), df["probability"].to_numpy(), threshold, idx))
  return out
