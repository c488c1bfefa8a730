"""The study's tables: the order of rows, and the comparison table as aligned text (printed) and as markdown."""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple

import pandas as pd

from simclr_mura.layout import ARMS, STUDY_TYPES

LEVEL_ORDER = ("study", "image")  # study level first: it is the MURA paper's level
RESULT_COLUMNS = ("body_part", "arm", "level", "n", "accuracy", "precision", "recall", "specificity", "f1", "auroc",
                  "kappa")
TABLE_METRICS = RESULT_COLUMNS[4:]
NULL = "—"


def arm_order(arm: str) -> Tuple[int, str]:
  """Sort key: the study's arms in `layout.ARMS` order, extra runs after them by name."""
  return (ARMS.index(arm) if arm in ARMS else len(ARMS), arm)


def part_order(part: str) -> Tuple[int, str]:
  """Sort key: body parts in MURA's study-type order, others after them by name."""
  return (STUDY_TYPES.index(part) if part in STUDY_TYPES else len(STUDY_TYPES), part)


def sort_results(results: pd.DataFrame) -> pd.DataFrame:
  """Rows ordered by body part (MURA order), level (study first), arm (study order)."""
  if results.empty:
    return results.reset_index(drop=True)
  key = results.apply(lambda r: (part_order(str(r["body_part"])), LEVEL_ORDER.index(r["level"])
                                 if r["level"] in LEVEL_ORDER else 9, arm_order(str(r["arm"]))), axis=1)
  return results.loc[key.sort_values().index].reset_index(drop=True)


def format_value(value: Any, column: str) -> str:
  """One cell: metrics to 3 decimals, counts as integers, NULL for a missing value."""
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return NULL
  if column == "n":
    return str(int(value))
  if column in TABLE_METRICS:
    return f"{float(value):.3f}"
  return str(value)


def format_table(results_df: pd.DataFrame) -> str:
  """The comparison table as aligned plain text (printed at the end of the study); metrics to 3 decimals."""
  if results_df is None or results_df.empty:
    return "(no results)"
  df = sort_results(results_df)
  columns = [c for c in RESULT_COLUMNS if c in df.columns]
  cells = [[format_value(row[c], c) for c in columns] for _, row in df.iterrows()]
  widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
  numeric = [c == "n" or c in TABLE_METRICS for c in columns]

  def line(values: Sequence[str]) -> str:
    return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

  out = [line(columns), line(["-" * w for w in widths])]
  previous = None
  for values, (_, row) in zip(cells, df.iterrows()):
    group = (row["body_part"], row["level"])
    if previous is not None and group != previous:
      out.append("")
    previous = group
    out.append(line(values))
  return "\n".join(out)


def markdown_table(df: pd.DataFrame, columns: Sequence[str], headers: Optional[Sequence[str]] = None) -> str:
  """A GitHub markdown table of `columns` (metrics to 3 decimals, NULL for missing values)."""
  headers = list(headers or columns)
  right = [c == "n" or c in TABLE_METRICS for c in columns]
  lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" if r else "---" for r in right) + "|"]
  for _, row in df.iterrows():
    lines.append("| " + " | ".join(format_value(row[c], c).replace("|", "\\|") for c in columns) + " |")
  return "\n".join(lines)
