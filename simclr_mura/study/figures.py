"""The study report's figures: test metrics against the label fraction, training curves, per-arm comparisons."""
from __future__ import annotations

import math
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from simclr_mura.plotting import new_figure, save_figure

Series = Sequence[Tuple[int, float]]  # (step, value) pairs

FRACTION_METRICS = ("auroc", "kappa", "accuracy", "precision", "recall")
METRIC_TITLES = {"auroc": "AUROC", "kappa": "Cohen's kappa", "accuracy": "Accuracy", "precision": "Precision",
                 "recall": "Recall (sensitivity)", "specificity": "Specificity", "f1": "F1"}
_FRACTION_ARM = re.compile(r"^(?P<family>.+)_(?P<pct>\d+)pct$")
_FAMILIES = (("simclr_finetune", "SimCLR fine-tune", "tab:blue"), ("scratch", "ResNet from scratch", "tab:orange"))
_REFERENCES = (("baseline", "DenseNet-169 baseline (100%)", "black", "-."),
               ("simclr_linear", "SimCLR linear eval (100%)", "tab:purple", ":"))


def arm_fraction(arm: str) -> Optional[Tuple[str, float]]:
  """('simclr_finetune', 0.1) for 'simclr_finetune_10pct'; None for arms without a label fraction."""
  m = _FRACTION_ARM.match(arm)
  if not m:
    return None
  return m.group("family"), int(m.group("pct")) / 100.0


def _value(x) -> float:
  return float("nan") if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def label_fraction_figure(results: pd.DataFrame, body_part: str, path: str,
                          metrics: Sequence[str] = FRACTION_METRICS) -> Optional[str]:
  """Test metrics against the label fraction (log x) for one body part; returns the path, or None without data.

  Lines: SimCLR fine-tune and ResNet-from-scratch at 1/10/100% (study level solid, image level dashed); horizontal
  references: the DenseNet-169 baseline and SimCLR linear evaluation (both on 100% of labels, study level).

  Args:
    results: rows of results.csv (body_part, arm, level and the metric columns).
    body_part: the part to plot.
    path: the PNG to write.
    metrics: metric columns, one panel each.
  """
  part = results[results["body_part"] == body_part]
  if part.empty:
    return None
  ncols = 3
  nrows = int(math.ceil((len(metrics) + 1) / ncols))
  fig = new_figure(5.0 * ncols, 3.8 * nrows)
  axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(nrows * ncols)]
  handles: Dict[str, object] = {}
  for ax, metric in zip(axes, metrics):
    values: List[float] = []
    for family, name, colour in _FAMILIES:
      for level, style in (("study", "-"), ("image", "--")):
        pts = []
        for _, row in part[part["level"] == level].iterrows():
          fam = arm_fraction(str(row["arm"]))
          if fam and fam[0] == family:
            pts.append((fam[1] * 100.0, _value(row[metric])))
        if not pts:
          continue
        pts.sort()
        xs, ys = zip(*pts)
        values.extend(ys)
        label = f"{name} ({level} level)"
        (h,) = ax.plot(xs, ys, linestyle=style, marker="o", color=colour, alpha=1.0 if level == "study" else 0.6,
                       label=label)
        handles.setdefault(label, h)
    for arm, name, colour, style in _REFERENCES:
      rows = part[(part["arm"] == arm) & (part["level"] == "study")]
      if rows.empty or not np.isfinite(_value(rows.iloc[0][metric])):
        continue
      v = _value(rows.iloc[0][metric])
      values.append(v)
      h = ax.axhline(v, color=colour, linestyle=style, label=f"{name}, study level")
      handles.setdefault(h.get_label(), h)
    ax.set_xscale("log")
    ax.set_xticks([1, 10, 100], labels=["1%", "10%", "100%"])
    ax.set_xlim(0.7, 140)
    finite = [v for v in values if np.isfinite(v)]
    ax.set_ylim(min([0.0] + [v - 0.05 for v in finite]), 1.02)
    ax.set_xlabel("fraction of training labels")
    ax.set_ylabel(METRIC_TITLES.get(metric, metric))
    ax.set_title(f"{METRIC_TITLES.get(metric, metric)} on test")
    ax.grid(True, alpha=0.3)
    if not finite:
      ax.text(10, 0.5, "no defined values", ha="center", va="center")
  legend_ax = axes[len(metrics)]
  legend_ax.axis("off")
  if handles:
    legend_ax.legend(list(handles.values()), list(handles.keys()), loc="center", frameon=False)
  else:
    legend_ax.text(0.5, 0.5, "no SimCLR/scratch/baseline results", ha="center", va="center")
  for ax in axes[len(metrics) + 1:]:
    ax.axis("off")
  fig.suptitle(f"{body_part}: test metrics vs label fraction (study level solid, image level dashed)")
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
