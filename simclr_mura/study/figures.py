"""The study report's figures: label efficiency (test metrics against the label fraction), training curves, per-arm
validation curves."""
from __future__ import annotations

import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from simclr_mura.layout import (BASELINE_ARM, DISTILL, FINETUNE, LABEL_FRACTIONS, LINEAR, MICLE_FINETUNE, MICLE_LINEAR,
                                SCRATCH, arm_name)
from simclr_mura.plotting import new_figure, save_figure
from simclr_mura.study.tables import arm_family, is_null

Series = Sequence[Tuple[int, float]]  # (step, value) pairs

EFFICIENCY_METRICS = ("auroc", "kappa", "accuracy")
METRIC_TITLES = {"auroc": "AUROC", "kappa": "Cohen's kappa", "accuracy": "Accuracy", "precision": "Precision",
                 "recall": "Recall (sensitivity)", "specificity": "Specificity", "f1": "F1"}
FAMILY_STYLES = {SCRATCH: ("ResNet from scratch", "tab:orange"), LINEAR: ("SimCLR linear eval", "tab:purple"),
                 FINETUNE: ("SimCLR fine-tune", "tab:blue"), MICLE_LINEAR: ("MICLe linear eval", "tab:pink"),
                 MICLE_FINETUNE: ("MICLe fine-tune", "tab:green"), DISTILL: ("SimCLRv2 distilled", "tab:red")}
# (an unknown family gets matplotlib's first colour: give every family of the study its own here)
BASELINE_STYLE = ("DenseNet-169 baseline (100%)", "black")


def _value(x) -> float:
  return float("nan") if is_null(x) else float(x)


def label_efficiency_figure(summary: pd.DataFrame, body_part: str, path: str,
                            metrics: Sequence[str] = EFFICIENCY_METRICS) -> Optional[str]:
  """Study-level test metrics against the label fraction (1%, 10%, 100% on a log axis) for one body part (or pooled):
  per family the mean over label draws with its 95% CI as a band (and bars), the DenseNet-169 baseline as a point
  with its CI at 100%; returns the path, or None without data.

  Args:
    summary: rows of summary.csv (body_part, arm, level, metric, mean, ci_low, ci_high).
    body_part: the part to plot, or `pooled`.
    path: the PNG to write.
    metrics: one panel each.
  """
  part = summary[(summary["body_part"] == body_part) & (summary["level"] == "study")]
  if part.empty or not part["mean"].map(lambda v: not is_null(v)).any():
    return None
  families = list(FAMILY_STYLES) + sorted({f for f, _ in filter(None, map(arm_family, part["arm"]))} -
                                           set(FAMILY_STYLES))
  fig = new_figure(4.6 * len(metrics) + 2.4, 4.0)
  axes = [fig.add_subplot(1, len(metrics), i + 1) for i in range(len(metrics))]
  handles: Dict[str, object] = {}
  for ax, metric in zip(axes, metrics):
    rows = part[part["metric"] == metric]
    values: List[float] = []
    for i, family in enumerate(families):
      shift = 1.06 ** (i - (len(families) - 1) / 2)  # side by side on the log axis, so the bars do not overlap
      name, colour = FAMILY_STYLES.get(family, (family, None))
      pts = []
      for fraction, share in LABEL_FRACTIONS.items():
        row = rows[rows["arm"] == arm_name(family, fraction)]
        if not row.empty and not is_null(row.iloc[0]["mean"]):
          pts.append((share * 100.0 * shift, *(_value(row.iloc[0][c]) for c in ("mean", "ci_low", "ci_high"))))
      if not pts:
        continue
      x, mean, low, high = (np.array(v) for v in zip(*pts))
      (line,) = ax.plot(x, mean, marker="o", color=colour, label=name)
      colour = line.get_color()
      ax.fill_between(x, low, high, color=colour, alpha=0.2, linewidth=0)
      ok = np.isfinite(low) & np.isfinite(high)
      ax.errorbar(x[ok], mean[ok], yerr=[mean[ok] - low[ok], high[ok] - mean[ok]], fmt="none", ecolor=colour,
                  capsize=3, alpha=0.7)
      handles.setdefault(name, line)
      values += [v for v in (*mean, *low, *high) if np.isfinite(v)]
    base = rows[rows["arm"] == BASELINE_ARM]
    if not base.empty and not is_null(base.iloc[0]["mean"]):
      mean, low, high = (_value(base.iloc[0][c]) for c in ("mean", "ci_low", "ci_high"))
      yerr = [[mean - low], [high - mean]] if np.isfinite(low) and np.isfinite(high) else None
      h = ax.errorbar([100.0 * 1.06 ** ((len(families) + 1) / 2)], [mean], yerr=yerr, fmt="s",
                      color=BASELINE_STYLE[1], capsize=4, label=BASELINE_STYLE[0])
      handles.setdefault(BASELINE_STYLE[0], h)
      values += [v for v in (mean, low, high) if np.isfinite(v)]
    ax.set_xscale("log")
    ax.set_xticks([100.0 * v for v in LABEL_FRACTIONS.values()],
                  labels=[f"{100.0 * v:g}%" for v in LABEL_FRACTIONS.values()])
    ax.minorticks_off()
    ax.set_xlim(0.7, 160)
    floor = -1.02 if metric == "kappa" else -0.02  # the metric's range (a t interval over few draws may leave it)
    ax.set_ylim(max(floor, min([0.0] + [v - 0.05 for v in values])), 1.02)
    ax.set_xlabel("fraction of training labels")
    ax.set_ylabel(METRIC_TITLES.get(metric, metric))
    ax.set_title(f"{METRIC_TITLES.get(metric, metric)} (study level, test)")
    ax.grid(True, alpha=0.3)
    if not values:
      ax.text(10, 0.5, "no defined values", ha="center", va="center")
  fig.legend(list(handles.values()), list(handles.keys()), loc="outside right center", frameon=False)
  fig.suptitle(f"{body_part}: label efficiency (mean over label draws, shaded: 95% CI)")
  return save_figure(fig, path)


_LOSS = re.compile(r"loss", re.I)
_SCORE = re.compile(r"(^|[/_])(acc|accuracy|auroc|auc|kappa)($|[/_])", re.I)
_LR = re.compile(r"learning_rate|(^|[/_])lr($|[/_])", re.I)


def _series_label(run: str, tag: str) -> str:
  if run in ("", "."):
    return tag
  return tag if tag.startswith(run + "/") else f"{run}/{tag}"


def training_curves_figure(curves: Mapping[str, Mapping[str, Series]], title: str, path: str) -> Optional[str]:
  """Loss, accuracy/AUROC/kappa and learning-rate curves against the step; returns the path, or None without data.

  Args:
    curves: {run: {tag: [(step, value), ...]}} as read from an arm's event folders (run = 'train', 'eval', ...).
    title: the figure's title.
    path: the PNG to write.
  """
  panels = (("Loss", _LOSS), ("Accuracy / AUROC / kappa", _SCORE), ("Learning rate", _LR))
  chosen: List[Tuple[str, List[Tuple[str, Series]]]] = []
  for name, pattern in panels:
    lines = []
    for run in sorted(curves):
      for tag in sorted(curves[run]):
        series = curves[run][tag]
        if not series or not pattern.search(tag):
          continue
        if name != "Learning rate" and _LR.search(tag):
          continue
        if name == "Accuracy / AUROC / kappa" and _LOSS.search(tag):
          continue
        lines.append((_series_label(run, tag), series))
    if lines:
      chosen.append((name, lines))
  if not chosen:
    return None
  fig = new_figure(5.6 * len(chosen), 4.4)
  for i, (name, lines) in enumerate(chosen):
    ax = fig.add_subplot(1, len(chosen), i + 1)
    for label, series in lines:
      steps, values = zip(*series)
      ax.plot(steps, values, marker="o" if len(steps) <= 20 else None, markersize=3,
              linestyle="--" if not label.startswith("train") else "-", label=label)
    ax.set_xlabel("global step")
    ax.set_ylabel(name.lower())
    ax.set_title(name)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
  fig.suptitle(title)
  return save_figure(fig, path)


def comparison_curves_figure(series_by_arm: Mapping[str, Series], metric: str, title: str,
                             path: str) -> Optional[str]:
  """One metric's validation curve per arm on shared axes; returns the path, or None without data."""
  series_by_arm = {arm: s for arm, s in series_by_arm.items() if s}
  if not series_by_arm:
    return None
  fig = new_figure(7.0, 4.6)
  ax = fig.add_subplot(1, 1, 1)
  for arm, series in series_by_arm.items():
    steps, values = zip(*series)
    ax.plot(steps, values, marker="o" if len(steps) <= 20 else None, markersize=3, label=arm)
  ax.set_xlabel("global step")
  ax.set_ylabel(metric)
  ax.set_title(title)
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize="small")
  return save_figure(fig, path)
