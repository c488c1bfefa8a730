"""The study's tables: their columns, the order of rows, the comparisons and the primary endpoint, and how a value, a
mean with its interval or the printed summary is written out."""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple

import pandas as pd

from simclr_mura.layout import (ARMS, DISTILL, DISTILL_ARMS, FINETUNE, LABEL_FRACTIONS, LINEAR, MICLE_ARMS, MICLE_FINETUNE, MICLE_LINEAR,
                                POOLED, SCRATCH, STUDY_TYPES)

LEVEL_ORDER = ("study", "image")  # study level first: it is the MURA paper's level
METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "auroc", "kappa")  # result.json's metrics
RESULT_COLUMNS = ("body_part", "arm", "draw", "level", "n", *METRICS)
TABLE_METRICS = METRICS + ("simclr", "scratch", "diff", "mean", "sd", "ci_low", "ci_high")  # 3 decimals in tables
SUMMARY_METRICS = ("auroc", "kappa", "accuracy", "precision", "recall", "specificity", "f1")
SUMMARY_COLUMNS = ("body_part", "arm", "level", "metric", "n_draws", "mean", "sd", "ci_low", "ci_high", "ci_method")
COMPARISON_METRICS = ("auroc", "kappa")
COMPARISON_COLUMNS = ("body_part", "fraction", "readout", "level", "metric", "simclr", "scratch", "diff", "ci_low",
                      "ci_high", "n_draws")
# (readout, family, control): `<family>_<fraction>` against `<control>_<fraction>`, paired over label draws (a row
# appears where both arms ran). The `simclr` and `scratch` columns of comparison.csv hold the family's and the
# control's values. A new family is compared by adding its lines here.
COMPARISONS: Tuple[Tuple[str, str, str], ...] = (
    ("finetune", FINETUNE, SCRATCH), ("linear", LINEAR, SCRATCH),
    ("distill", DISTILL, FINETUNE), ("distill_vs_scratch", DISTILL, SCRATCH),  # distillation − its teacher's arm
    ("micle_finetune", MICLE_FINETUNE, FINETUNE), ("micle_linear", MICLE_LINEAR, LINEAR),  # MICLe − SimCLR
    ("micle_finetune_vs_scratch", MICLE_FINETUNE, SCRATCH), ("micle_linear_vs_scratch", MICLE_LINEAR, SCRATCH))
# The primary endpoint, declared before any result: one cell of comparison.csv.
PRIMARY = {"body_part": POOLED, "fraction": "1pct", "readout": "finetune", "level": "study", "metric": "auroc"}
PRIMARY_TEXT = ("Primary endpoint (declared before any result): pooled study-level AUROC, SimCLR fine-tuning − "
                "scratch at 1% of the labels, paired over label draws, with its 95% CI.")
NULL = "—"
MINUS = "−"


def arm_family(arm: str) -> Optional[Tuple[str, str]]:
  """(family, fraction) of `<family>_<fraction>` (`simclr_finetune_1pct` -> ('simclr_finetune', '1pct')); None for
  an arm without a label fraction (baseline, pretraining)."""
  for fraction in LABEL_FRACTIONS:
    if arm.endswith("_" + fraction) and len(arm) > len(fraction) + 1:
      return arm[:-len(fraction) - 1], fraction
  return None


def arm_order(arm: str) -> Tuple[int, str]:
  """Sort key: the study's arms in `layout.ARMS` order, then the distillation's and MICLe's, extra runs after them by
  name."""
  known = ARMS + DISTILL_ARMS + MICLE_ARMS
  return (known.index(arm) if arm in known else len(known), arm)


def part_order(part: str) -> Tuple[int, str]:
  """Sort key: body parts in MURA's study-type order, others after them by name, `pooled` last."""
  if part == POOLED:
    return (len(STUDY_TYPES) + 1, part)
  return (STUDY_TYPES.index(part) if part in STUDY_TYPES else len(STUDY_TYPES), part)


def level_order(level: str) -> int:
  """Sort key: study level first."""
  return LEVEL_ORDER.index(level) if level in LEVEL_ORDER else len(LEVEL_ORDER)


def sort_results(results: pd.DataFrame) -> pd.DataFrame:
  """Rows ordered by body part (MURA order, pooled last), level (study first), arm (study order), draw."""
  if results.empty:
    return results.reset_index(drop=True)
  key = results.apply(lambda r: (part_order(str(r["body_part"])), level_order(r["level"]), arm_order(str(r["arm"])),
                                 int(r["draw"])), axis=1)
  return results.loc[key.sort_values().index].reset_index(drop=True)


def is_null(value: Any) -> bool:
  """None, NaN or a blank CSV cell."""
  return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def format_value(value: Any, column: str) -> str:
  """One cell: metrics to 3 decimals, counts as integers, NULL for a missing value."""
  if is_null(value):
    return NULL
  if isinstance(value, str):
    return value
  if column in ("n", "draw", "n_draws"):
    return str(int(value))
  if column in TABLE_METRICS:
    return f"{float(value):.3f}"
  return str(value)


def signed(value: float) -> str:
  """`+0.012` / `−0.030`: a difference to 3 decimals with its sign (a typographic minus)."""
  text = f"{float(value):+.3f}"
  return text.replace("-", MINUS)


def mean_ci(mean: Any, low: Any, high: Any) -> str:
  """`0.812 [0.780, 0.844]`, the mean alone without an interval, NULL without a mean."""
  if is_null(mean):
    return NULL
  if is_null(low) or is_null(high):
    return f"{float(mean):.3f}"
  return f"{float(mean):.3f} [{float(low):.3f}, {float(high):.3f}]"


def difference_text(row: Optional[Dict[str, Any]]) -> str:
  """`+0.012 (95% CI −0.030 to +0.054, 3 draws)` for a comparison.csv row (1 draw: a paired bootstrap interval)."""
  if row is None or is_null(row.get("diff")):
    return NULL
  n = int(row["n_draws"])
  how = f"{n} draws" if n > 1 else "1 run each, paired bootstrap over test studies"
  if is_null(row.get("ci_low")) or is_null(row.get("ci_high")):
    return f"{signed(row['diff'])} (no 95% CI, {how})"
  return f"{signed(row['diff'])} (95% CI {signed(row['ci_low'])} to {signed(row['ci_high'])}, {how})"


def format_table(summary: pd.DataFrame, primary_line: str = "") -> str:
  """The summary in short, as aligned plain text (printed at the end of the study): the primary endpoint first, then
  one line per body part x arm at study level with n_draws, AUROC and kappa as mean [95% CI]."""
  head = [primary_line, ""] if primary_line else []
  if summary is None or summary.empty:
    return "\n".join(head + ["(no results)"])
  study = summary[summary["level"] == "study"]
  keys = sorted({(str(p), str(a)) for p, a in zip(study["body_part"], study["arm"])},
                key=lambda k: (part_order(k[0]), arm_order(k[1])))
  columns = ["body_part", "arm", "n_draws", "AUROC mean [95% CI]", "kappa mean [95% CI]"]
  cells = []
  for part, arm in keys:
    rows = study[(study["body_part"] == part) & (study["arm"] == arm)].set_index("metric")
    n = max((int(v) for v in rows["n_draws"] if not is_null(v)), default=0)
    cells.append([part, arm, str(n)] + [mean_ci(*rows.loc[m, ["mean", "ci_low", "ci_high"]]) if m in rows.index
                                        else NULL for m in ("auroc", "kappa")])
  widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
  numeric = [False, False, True, True, True]

  def line(values: Sequence[str]) -> str:
    return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

  out = head + [line(columns), line(["-" * w for w in widths])]
  previous = None
  for values in cells:
    if previous is not None and values[0] != previous:
      out.append("")
    previous = values[0]
    out.append(line(values))
  return "\n".join(out)


def markdown_table(df: pd.DataFrame, columns: Sequence[str], headers: Optional[Sequence[str]] = None,
                   right: Optional[Sequence[bool]] = None) -> str:
  """A GitHub markdown table of `columns` (metrics to 3 decimals, NULL for missing values)."""
  headers = list(headers or columns)
  right = list(right) if right is not None else [c in ("n", "draw", "n_draws") or c in TABLE_METRICS for c in columns]
  lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" if r else "---" for r in right) + "|"]
  for _, row in df.iterrows():
    lines.append("| " + " | ".join(format_value(row[c], c).replace("|", "\\|") for c in columns) + " |")
  return "\n".join(lines)
