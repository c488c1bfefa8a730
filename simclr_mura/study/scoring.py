"""The report's numbers: results.csv (every run, and the body parts pooled), summary.csv (each arm's mean with its 95%
interval) and comparison.csv (each SimCLR readout minus scratch, paired), and the primary endpoint.

Pooled (`body_part=pooled`): for each arm and draw that every body part has, the parts' test predictions are
concatenated (each part's model on its own test studies) and scored together. Intervals (see `uncertainty`): over
label draws with a Student-t interval when an arm has several, else a percentile bootstrap over test studies (pooled:
stratified by body part), paired for a difference.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from simclr_mura.layout import LABEL_FRACTIONS, POOLED, arm_name, draw_folder
from simclr_mura.study import uncertainty
from simclr_mura.study.collect import Run, read_run_predictions
from simclr_mura.study.tables import (COMPARISON_COLUMNS, COMPARISON_METRICS, COMPARISONS, LEVEL_ORDER, METRICS,
                                      PRIMARY, RESULT_COLUMNS, SUMMARY_COLUMNS, SUMMARY_METRICS, arm_order,
                                      difference_text, is_null, level_order, part_order, sort_results)
from simclr_mura.training.metrics import evaluate_predictions

Key = Tuple[str, str, int]  # (body part or POOLED, arm, draw)
Samples = Dict[str, np.ndarray]  # {metric: [B]}


class Bootstrap:
  """Bootstrap samples of each scored run's metrics over its test studies, computed once and kept."""

  def __init__(self, predictions: Dict[Key, pd.DataFrame], thresholds: Dict[Key, float],
               n_samples: int = uncertainty.BOOTSTRAP_SAMPLES, seed: int = uncertainty.BOOTSTRAP_SEED):
    self.predictions, self.thresholds = predictions, thresholds
    self.n_samples, self.seed = n_samples, seed
    self._cache: Dict[Tuple, Any] = {}

  def samples(self, part: str, arm: str, draw: int, level: str) -> Optional[Samples]:
    """One run's metrics on B resamples of its test studies (pooled: within each part); None without predictions."""
    key = (part, arm, int(draw))
    if key not in self.predictions:
      return None
    if (key, level) not in self._cache:
      (self._cache[key, level],) = uncertainty.bootstrap_samples(
          [self.predictions[key]], [self.thresholds[key]], level, self.n_samples, self.seed)
    return self._cache[key, level]

  def paired(self, part: str, arm_a: str, arm_b: str, draw: int, level: str) -> Optional[Tuple[Samples, Samples]]:
    """Two runs' metrics on the same B resamples of the test studies they share; None without predictions."""
    a, b = (part, arm_a, int(draw)), (part, arm_b, int(draw))
    if a not in self.predictions or b not in self.predictions:
      return None
    if (a, b, level) not in self._cache:
      self._cache[a, b, level] = tuple(uncertainty.bootstrap_samples(
          [self.predictions[a], self.predictions[b]], [self.thresholds[a], self.thresholds[b]], level, self.n_samples,
          self.seed))
    return self._cache[a, b, level]


def _scoring_frame(part: str, predictions: pd.DataFrame) -> pd.DataFrame:
  """A run's predictions with its part as the bootstrap's stratum and study ids made unique across parts."""
  return predictions.assign(**{uncertainty.STRATUM: part, "study_id": part + "/" + predictions["study_id"].astype(str)})


def _rows(part: str, arm: str, draw: int, metrics: Dict[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
  return [{"body_part": part, "arm": arm, "draw": int(draw), "level": level, "n": metrics[level]["n"],
           **{k: metrics[level][k] for k in METRICS}} for level in LEVEL_ORDER]


def score_runs(runs: Sequence[Run], parts: Sequence[str]
               ) -> Tuple[pd.DataFrame, Bootstrap, List[Dict[str, Any]], List[str]]:
  """results.csv's rows: each run's result.json, then the pooled rows scored from the concatenated predictions.

  Returns:
    (results with RESULT_COLUMNS, the Bootstrap over every run's and pooled run's predictions, missing pooled runs as
    {"body_part": POOLED, "arm", "draw", "reason"}, warnings).
  """
  rows: List[Dict[str, Any]] = []
  predictions: Dict[Key, pd.DataFrame] = {}
  thresholds: Dict[Key, float] = {}
  warnings: List[str] = []
  for run in runs:
    rows += _rows(run.body_part, run.arm, run.draw, run.result)
    df, why = read_run_predictions(run)
    if df is None:
      warnings.append(f"{why}: no bootstrap interval and no pooled score for it")
      continue
    predictions[run.body_part, run.arm, run.draw] = _scoring_frame(run.body_part, df)
    thresholds[run.body_part, run.arm, run.draw] = run.threshold

  missing: List[Dict[str, Any]] = []
  drawn = {(r.arm, r.draw): r.drawn for r in runs}
  for arm, draw in sorted(drawn, key=lambda k: (arm_order(k[0]), k[1])):
    lacking = [p for p in parts if (p, arm, draw) not in predictions]
    if lacking:
      without = [p for p in lacking if any(r.body_part == p and r.arm == arm and r.draw == draw for r in runs)]
      reason = (f"not in every body part (lacks {', '.join(sorted(set(lacking) - set(without), key=part_order))})"
                if set(lacking) - set(without) else "")
      if without:
        reason += ("; " if reason else "") + f"no test predictions in {', '.join(without)}"
      missing.append({"body_part": POOLED, "arm": arm, "draw": draw if drawn[arm, draw] else None,
                      "reason": reason})
      continue
    keys = [(p, arm, draw) for p in parts]
    used = sorted({thresholds[k] for k in keys})
    if len(used) > 1:
      warnings.append(f"pooled {arm} draw {draw}: the parts' runs use different thresholds {used}; pooled at "
                      f"{thresholds[keys[0]]}")
    pooled = pd.concat([predictions[k] for k in keys], ignore_index=True)
    predictions[POOLED, arm, draw] = pooled
    thresholds[POOLED, arm, draw] = thresholds[keys[0]]
    rows += _rows(POOLED, arm, draw, evaluate_predictions(pooled, thresholds[keys[0]]))
  results = sort_results(pd.DataFrame(rows, columns=list(RESULT_COLUMNS)))
  return results, Bootstrap(predictions, thresholds), missing, warnings


def _defined(rows: pd.DataFrame, metric: str) -> Dict[int, float]:
  """{draw: value} of the draws where the metric is defined."""
  return {int(d): float(v) for d, v in zip(rows["draw"], rows[metric]) if not is_null(v)}


def _group_order(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
  if df.empty:
    return df.reset_index(drop=True)
  order = {"body_part": part_order, "arm": arm_order, "level": level_order,
           "metric": lambda m: SUMMARY_METRICS.index(m), "fraction": lambda f: list(LABEL_FRACTIONS).index(f),
           "readout": lambda r: [c[0] for c in COMPARISONS].index(r)}
  key = df.apply(lambda r: tuple(order[c](r[c]) for c in columns), axis=1)
  return df.loc[key.sort_values().index].reset_index(drop=True)


def summary_table(results: pd.DataFrame, bootstrap: Optional[Bootstrap]) -> pd.DataFrame:
  """summary.csv: per body part x arm x level x metric, the mean over label draws with a t interval (several draws),
  or the one run's value with a percentile bootstrap over test studies (pooled: stratified by part)."""
  rows = []
  for (part, arm, level), group in results.groupby(["body_part", "arm", "level"], sort=False):
    for metric in SUMMARY_METRICS:
      values = _defined(group, metric)
      row = {"body_part": part, "arm": arm, "level": level, "metric": metric, "n_draws": len(values), "mean": None,
             "sd": None, "ci_low": None, "ci_high": None, "ci_method": uncertainty.NO_CI}
      if len(values) >= 2:
        mean, sd, (low, high) = uncertainty.t_interval(list(values.values()))
        row.update(mean=mean, sd=sd, ci_low=low, ci_high=high, ci_method=uncertainty.T_METHOD)
      elif len(values) == 1:
        (draw, value), = values.items()
        row["mean"] = value
        samples = bootstrap.samples(part, arm, draw, level) if bootstrap is not None else None
        if samples is not None:
          low, high = uncertainty.percentile_interval(samples[metric])
          row.update(ci_low=low, ci_high=high, ci_method=uncertainty.BOOTSTRAP_METHOD if low is not None
                     else uncertainty.NO_CI)
      rows.append(row)
  df = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
  return _group_order(df, ("body_part", "level", "arm", "metric"))


def comparison_table(results: pd.DataFrame, bootstrap: Optional[Bootstrap]) -> pd.DataFrame:
  """comparison.csv: each (readout, family) of `tables.COMPARISONS` against its control at each label fraction, body
  part (and pooled) and level, paired: several draws, the mean of the per-draw differences with a t interval over
  the draws both arms have (an undefined metric leaves its draw out); one run each, a paired bootstrap over test
  studies (percentile interval)."""
  rows = []
  parts = sorted(set(results["body_part"]), key=part_order)
  for part in parts:
    at = results[results["body_part"] == part]
    for fraction in LABEL_FRACTIONS:
      for readout, family, control in COMPARISONS:
        arm_a, arm_b = arm_name(family, fraction), arm_name(control, fraction)
        for level in LEVEL_ORDER:
          a = at[(at["arm"] == arm_a) & (at["level"] == level)]
          b = at[(at["arm"] == arm_b) & (at["level"] == level)]
          if a.empty or b.empty:
            continue
          for metric in COMPARISON_METRICS:
            va, vb = _defined(a, metric), _defined(b, metric)
            draws = sorted(set(va) & set(vb))
            row = {"body_part": part, "fraction": fraction, "readout": readout, "level": level, "metric": metric,
                   "simclr": None, "scratch": None, "diff": None, "ci_low": None, "ci_high": None,
                   "n_draws": len(draws)}
            if draws:
              row.update(simclr=float(np.mean([va[d] for d in draws])), scratch=float(np.mean([vb[d] for d in draws])))
            if len(draws) >= 2:
              mean, _, (low, high) = uncertainty.t_interval([va[d] - vb[d] for d in draws])
              row.update({"diff": mean, "ci_low": low, "ci_high": high})
            elif len(draws) == 1:
              row["diff"] = va[draws[0]] - vb[draws[0]]
              pair = bootstrap.paired(part, arm_a, arm_b, draws[0], level) if bootstrap is not None else None
              if pair is not None:
                row["ci_low"], row["ci_high"] = uncertainty.percentile_interval(pair[0][metric] - pair[1][metric])
            rows.append(row)
  df = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
  return _group_order(df, ("body_part", "fraction", "readout", "level", "metric")) if not df.empty else df


def primary_endpoint(comparison: pd.DataFrame, missing: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
  """The primary endpoint's comparison.csv row: {"row" (dict or None), "available", "value" (text), "reason"}."""
  match = comparison
  for column, value in PRIMARY.items():
    match = match[match[column] == value]
  row = match.iloc[0].to_dict() if not match.empty else None
  if row is not None and not is_null(row["diff"]):
    return {"row": row, "available": True, "value": difference_text(row), "reason": ""}
  if row is not None:
    reason = "the metric is undefined in every paired draw"
  else:
    arms = sorted({arm_name(arm, PRIMARY["fraction"]) for readout, family, control in COMPARISONS
                   if readout == PRIMARY["readout"] for arm in (family, control)}, key=arm_order)
    lacking = sorted((m for m in missing if m["arm"] in arms), key=lambda m: m["body_part"] != POOLED)
    shown = "; ".join(f"{m['body_part']}/{m['arm']}" + (f"/{draw_folder(m['draw'])}" if m.get("draw") is not None
                                                        else "") + f": {m['reason']}" for m in lacking[:3])
    more = f"; and {len(lacking) - 3} more in the missing runs" if len(lacking) > 3 else ""
    reason = f"no pooled pair of {' and '.join(arms)} runs" + (f" ({shown}{more})" if shown else "")
  return {"row": row, "available": False, "value": f"not available: {reason}", "reason": reason}
