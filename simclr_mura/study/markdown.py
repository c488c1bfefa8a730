"""results.md: the study report's text, from what `report.build_report` collected and drew."""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Sequence, Set, Tuple

import pandas as pd

from simclr_mura.layout import ARM_DESCRIPTIONS
from simclr_mura.study.collect import arms_of
from simclr_mura.study.tables import NULL, RESULT_COLUMNS, arm_order, markdown_table


@dataclasses.dataclass
class ReportContent:
  """Everything results.md shows."""
  study_dir: str
  out_dir: str
  parts: Sequence[str]
  table: pd.DataFrame  # results.csv as read back
  runs: List[Dict[str, Any]]  # {"body_part", "arm", "model_dir", "result"} of every finished arm
  missing: List[Dict[str, str]]  # {"body_part", "arm", "reason"}
  warnings: List[str]
  thresholds: Set[float]
  fraction_figs: Dict[str, str]  # part -> label-fraction figure
  curve_figs: Dict[str, List[Tuple[str, str]]]  # part -> [(arm, training-curves figure)]
  validation_figs: Dict[str, str]  # part -> validation AUROC figure
  explore: Dict[str, Any]  # {"status", "files", "note", "datasets"}
  gradcam: Dict[str, Dict[str, Any]]  # part -> {"status", "arm", "why", "png", "note"}


def relative_link(path: str, start: str) -> str:
  """`path` relative to `start`, with forward slashes (a markdown link)."""
  return os.path.relpath(path, start).replace(os.sep, "/")


def render(report: ReportContent) -> str:
  """results.md's text."""
  study_dir, out_dir, parts, table, runs = report.study_dir, report.out_dir, report.parts, report.table, report.runs
  missing, warnings, thresholds = report.missing, report.warnings, report.thresholds
  fraction_figs, curve_figs, validation_figs = report.fraction_figs, report.curve_figs, report.validation_figs
  explore_info, gradcam_info = report.explore, report.gradcam
  threshold = ", ".join(str(t) for t in sorted(thresholds)) if thresholds else "0.5"
  lines = [
      "# SimCLR on MURA: study report", "",
      f"Study folder: `{os.path.abspath(study_dir)}`. Every number is on the `test` split (MURA v1.1's official "
      "`valid` images), read from each arm's `result.json`; the same numbers are in [results.csv](results.csv).", "",
      "## The arms", "",
  ]
  arms_seen = sorted({a for p in parts for a in arms_of(os.path.join(study_dir, p))}, key=arm_order)
  for arm in arms_seen:
    lines.append(f"- `{arm}`: {ARM_DESCRIPTIONS.get(arm, 'an extra run found in the study folder')}.")
  lines += [
      "",
      "The `scratch_*` arms use the same ResNet, input pipeline and label fractions as the `simclr_finetune_*` arms, "
      "so the two differ only in the initialisation (random vs SimCLR-pretrained): that pair is the like-for-like "
      "comparison. The DenseNet-169 `baseline` follows the MURA paper (Rajpurkar et al., arXiv 1712.06957).",
      "",
      "Model selection (checkpoint choice, learning-rate plateaus) used the `validation` split only "
      "(patients held out of `train`); the test split was evaluated once per arm and never used to choose anything.",
      "",
      f"**Study level** (the MURA paper's level): a study's probability is the mean of its images' probabilities; "
      f"abnormal when above the threshold ({threshold}). **Image level** scores each image on its own. Positive class "
      f"= abnormal; kappa is Cohen's kappa; `{NULL}` marks a metric with no defined value (e.g. precision without "
      "positive predictions, AUROC with one class).",
      "",
  ]
  cols = ["arm"] + list(RESULT_COLUMNS[3:])
  for level, title in (("study", "study level (the MURA paper's level)"), ("image", "image level")):
    lines += [f"## Results: {title}", ""]
    for part in parts:
      rows = table[(table["body_part"] == part) & (table["level"] == level)]
      lines.append(f"### {part}")
      lines.append("")
      lines.append(markdown_table(rows, cols) if not rows.empty else "_no finished arm_")
      lines.append("")
  lines += ["## Missing or unfinished arms", ""]
  if missing:
    for m in missing:
      lines.append(f"- {m['body_part']} / `{m['arm']}`: {m['reason']}")
  else:
    lines.append("None: every arm finished.")
  lines.append("")
  if warnings:
    lines += ["## Warnings", ""] + [f"- {w}" for w in warnings] + [""]
  lines += ["## Figures", ""]
  for part in parts:
    lines += [f"### {part}", ""]
    if part in fraction_figs:
      rel = relative_link(fraction_figs[part], out_dir)
      lines += [f"Test metrics against the label fraction: [{rel}]({rel})", "", f"![{part} label fraction]({rel})", ""]
    else:
      lines += ["_No test results to plot against the label fraction._", ""]
    if part in validation_figs:
      rel = relative_link(validation_figs[part], out_dir)
      lines += [f"Validation study AUROC during training, per arm: [{rel}]({rel})", ""]
    if curve_figs.get(part):
      links = ", ".join(f"[{arm}]({relative_link(p, out_dir)})" for arm, p in curve_figs[part])
      lines += [f"Training and validation curves: {links}", ""]
    else:
      lines += ["_No TensorBoard event files with scalars._", ""]
  lines += ["## Data exploration", ""]
  if explore_info["status"] == "skipped":
    lines.append(f"Skipped: {explore_info.get('note', '')}.")
  else:
    lines.append(f"Datasets: {', '.join('`%s`' % d for d in explore_info.get('datasets', []))}.")
    if explore_info.get("note"):
      lines.append(f"Failed: {explore_info['note']}")
    for path in explore_info["files"]:
      rel = relative_link(path, out_dir)
      lines.append(f"- [{rel}]({rel})")
  lines += ["", "## Grad-CAM", ""]
  for part in parts:
    info = gradcam_info.get(part, {})
    if info.get("status") == "done":
      rel = relative_link(info["png"], out_dir)
      lines += [f"- {part}: `{info['arm']}`, chosen by {info['why']}: [{rel}]({rel})", "",
                f"  ![{part} Grad-CAM]({rel})"]
    elif info.get("arm"):
      lines.append(f"- {part}: `{info['arm']}` ({info['why']}) failed: {info.get('note', '')}")
    else:
      lines.append(f"- {part}: skipped: {info.get('note', '')}.")
  lines += ["", "## Runs", ""]
  if runs:
    run_df = pd.DataFrame([{"body_part": r["body_part"], "arm": r["arm"], "dataset": r["result"]["dataset"],
                            "train_mode": r["result"]["train_mode"], "train_split": r["result"]["train_split"],
                            "eval_split": r["result"]["eval_split"], "global_step": r["result"]["global_step"]}
                           for r in runs])
    lines.append(markdown_table(run_df, list(run_df.columns)))
  else:
    lines.append("_No finished runs._")
  lines.append("")
  return "\n".join(lines)
