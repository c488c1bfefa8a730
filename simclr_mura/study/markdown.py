"""results.md: the study report's text, from what `report.build_report` collected, scored and drew.

It opens with the primary endpoint, declared before any number, then its value; then the paired comparisons, each
arm's mean with its 95% interval, the label-efficiency figures, what is missing, warnings, training curves, data
exploration, Grad-CAM and the runs.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Sequence, Set, Tuple

import pandas as pd

from simclr_mura.layout import ARM_DESCRIPTIONS, POOLED, draw_folder
from simclr_mura.study import uncertainty
from simclr_mura.study.collect import Run
from simclr_mura.study.tables import (COMPARISONS, LEVEL_ORDER, NULL, PRIMARY_TEXT, SUMMARY_METRICS, arm_order,
                                      difference_text, markdown_table, mean_ci, part_order)


@dataclasses.dataclass
class ReportContent:
  """Everything results.md shows."""
  study_dir: str
  out_dir: str
  parts: Sequence[str]
  summary: pd.DataFrame  # summary.csv as read back
  comparison: pd.DataFrame  # comparison.csv as read back
  primary: Dict[str, Any]  # scoring.primary_endpoint
  runs: List[Run]  # every evaluated run
  n_draws: int  # label draws per drawn arm
  missing: List[Dict[str, Any]]  # {"body_part", "arm", "draw", "reason"}
  warnings: List[str]
  thresholds: Set[float]
  efficiency_figs: Dict[str, str]  # part or pooled -> label-efficiency figure
  curve_figs: Dict[str, List[Tuple[str, str]]]  # part ("" for the pool's pretraining) -> [(run, training curves)]
  validation_figs: Dict[str, str]  # part -> validation AUROC figure
  explore: Dict[str, Any]  # {"status", "files", "note", "datasets"}
  gradcam: Dict[str, Dict[str, Any]]  # part -> {"status", "arm", "why", "png", "note"}


def relative_link(path: str, start: str) -> str:
  """`path` relative to `start`, with forward slashes (a markdown link)."""
  return os.path.relpath(path, start).replace(os.sep, "/")


def _comparison_section(comparison: pd.DataFrame) -> List[str]:
  """The paired differences of `tables.COMPARISONS` (SimCLR − scratch first), one table per level."""
  lines = ["## Paired comparisons: SimCLR against scratch, and the variants against their controls", "",
           "Each row: an arm minus its control trained on the same labels (`" +
           "`, `".join(f"{readout}`: `{family}_X` − `{control}_X" for readout, family, control in COMPARISONS) +
           "`). With several label draws, the mean of the per-draw differences (draw k of both arms trained on the "
           "same patients) with a Student-t 95% CI over the draws both arms have; with one run each, the difference "
           "with a paired percentile bootstrap over test studies (the same resampled studies for both models). "
           "`simclr` and `scratch` are the means over the counted draws of the row's arm and of its control (for "
           "`distill`: the distilled student and its SimCLR fine-tuned teacher arm); "
           "`n_draws` counts the draws where both are defined.", ""]
  if comparison.empty:
    return lines + ["_No pair of arms to compare._", ""]
  for level in LEVEL_ORDER:
    rows = comparison[comparison["level"] == level]
    if rows.empty:
      continue
    table = rows.assign(difference=[difference_text(r) for r in rows.to_dict("records")])
    lines += [f"### {level} level", "",
              markdown_table(table, ["body_part", "fraction", "readout", "metric", "simclr", "scratch", "difference"],
                             right=[False, False, False, False, True, True, True]), ""]
  return lines


def _summary_section(summary: pd.DataFrame, parts: Sequence[str]) -> List[str]:
  """Each arm's test metrics as mean [95% CI], per body part and pooled, study level first."""
  lines = ["## Results: mean [95% CI] per arm", "",
           f"Cells: the mean over label draws [Student-t 95% CI] (`{uncertainty.T_METHOD}`) for the 1% and 10% arms, "
           f"the one run's value [percentile bootstrap over test studies, B = {uncertainty.BOOTSTRAP_SAMPLES}, fixed "
           f"seed] (`{uncertainty.BOOTSTRAP_METHOD}`; pooled: resampled within each body part) for the others. The sd "
           "and the method of every cell are in [summary.csv](summary.csv); each run's numbers in "
           "[results.csv](results.csv). With few draws a t interval is wide and may reach past the metric's range; it "
           "is shown as computed.", ""]
  cells = {(r["body_part"], r["level"], r["arm"], r["metric"]): r for r in summary.to_dict("records")}
  for level, title in (("study", "study level (the MURA paper's level)"), ("image", "image level")):
    lines += [f"### {title}", ""]
    for part in list(parts) + [POOLED]:
      arms = sorted({a for p, l, a, _ in cells if p == part and l == level}, key=arm_order)
      lines += [f"#### {part}", ""]
      if not arms:
        lines += ["_no finished arm_", ""]
        continue
      rows = []
      for arm in arms:
        found = [cells[part, level, arm, m] for m in SUMMARY_METRICS if (part, level, arm, m) in cells]
        row = {"arm": arm, "n_draws": max(int(c["n_draws"]) for c in found)}
        for metric in SUMMARY_METRICS:
          c = cells.get((part, level, arm, metric))
          row[metric] = mean_ci(c["mean"], c["ci_low"], c["ci_high"]) if c else NULL
        rows.append(row)
      lines += [markdown_table(pd.DataFrame(rows), ["arm", "n_draws", *SUMMARY_METRICS],
                               right=[False, True] + [True] * len(SUMMARY_METRICS)), ""]
  return lines


def _missing_line(m: Dict[str, Any]) -> str:
  draw = f" / {draw_folder(m['draw'])}" if m.get("draw") is not None else ""
  return f"- {m['body_part']} / `{m['arm']}`{draw}: {m['reason']}"


def render(report: ReportContent) -> str:
  """results.md's text."""
  study_dir, out_dir, parts, runs = report.study_dir, report.out_dir, report.parts, report.runs
  threshold = ", ".join(str(t) for t in sorted(report.thresholds)) if report.thresholds else "0.5"
  lines = ["# SimCLR on MURA: study report", "", PRIMARY_TEXT, "", f"**Result:** {report.primary['value']}", ""]
  lines += [
      f"Study folder: `{study_dir}`. Every number is on the `test` split (MURA v1.1's official `valid` images), from "
      "each run's `result.json` and `predictions_test.csv`; the numbers are in [results.csv](results.csv) (every run "
      "and label draw), [summary.csv](summary.csv) (each arm's mean and 95% CI) and [comparison.csv](comparison.csv) "
      "(the paired differences).", "",
      "## The arms", "",
  ]
  arms_seen = sorted({r.arm for r in runs} | {m["arm"] for m in report.missing}, key=arm_order)
  for arm in arms_seen:
    lines.append(f"- `{arm}`: {ARM_DESCRIPTIONS.get(arm, 'an extra run found in the study folder')}.")
  lines += [
      "",
      f"The 1% and 10% arms run {report.n_draws or 'several'} paired label draws each (`<arm>/draw<k>/`): draw k of "
      "every arm trains on the same patients, so SimCLR and scratch are compared draw by draw. The `scratch_*` arms "
      "use the same ResNet, input pipeline and labels as the `simclr_*` arms, so they differ only in the "
      "initialisation (random vs SimCLR-pretrained): that pair is the like-for-like comparison. The DenseNet-169 "
      "`baseline` follows the MURA paper (Rajpurkar et al., arXiv 1712.06957). `pooled` scores all body parts' test "
      "studies together, each part's model on its own studies, for the arms and draws every part has.",
      "",
      "Model selection (checkpoint choice, learning-rate plateaus) used the `validation` split only "
      "(patients held out of `train`); the test split was evaluated once per run and never used to choose anything.",
      "",
      f"**Study level** (the MURA paper's level): a study's probability is the mean of its images' probabilities; "
      f"abnormal when above the threshold ({threshold}). **Image level** scores each image on its own; its bootstrap "
      f"still resamples whole studies (images of one study are not independent). Positive class = abnormal; kappa is "
      f"Cohen's kappa; `{NULL}` marks a metric with no defined value (e.g. precision without positive predictions, "
      "AUROC with one class); a draw where a metric is undefined is left out of its mean.",
      "",
  ]
  lines += _comparison_section(report.comparison)
  lines += _summary_section(report.summary, parts)
  lines += ["## Label efficiency", ""]
  for part in list(parts) + [POOLED]:
    if part in report.efficiency_figs:
      rel = relative_link(report.efficiency_figs[part], out_dir)
      lines += [f"### {part}", "", f"![{part} label efficiency]({rel})", "", f"[{rel}]({rel})", ""]
    else:
      lines += [f"### {part}", "", "_No study-level test results to plot._", ""]
  lines += ["## Missing or unfinished runs", ""]
  lines += [_missing_line(m) for m in report.missing] if report.missing else ["None: every arm and draw finished."]
  lines.append("")
  if report.warnings:
    lines += ["## Warnings", ""] + [f"- {w}" for w in report.warnings] + [""]
  lines += ["## Training curves", "",
            "Pretraining, the single runs and draw 0 of each drawn arm (the other draws' curves are in TensorBoard: "
            f"`tensorboard --logdir {study_dir}`).", ""]
  if report.curve_figs.get(""):
    links = ", ".join(f"[{label}]({relative_link(p, out_dir)})" for label, p in report.curve_figs[""])
    lines += [f"Pretraining on the pool: {links}", ""]
  for part in parts:
    lines += [f"### {part}", ""]
    if part in report.validation_figs:
      rel = relative_link(report.validation_figs[part], out_dir)
      lines += [f"Validation study AUROC during training, per arm: [{rel}]({rel})", ""]
    if report.curve_figs.get(part):
      links = ", ".join(f"[{label}]({relative_link(p, out_dir)})" for label, p in report.curve_figs[part])
      lines += [f"Training and validation curves: {links}", ""]
    else:
      lines += ["_No TensorBoard event files with scalars._", ""]
  lines += ["## Data exploration", ""]
  explore_info = report.explore
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
    info = report.gradcam.get(part, {})
    if info.get("status") == "done":
      rel = relative_link(info["png"], out_dir)
      lines += [f"- {part}: `{relative_link(info['model_dir'], study_dir)}`, chosen by {info['why']}: [{rel}]({rel})",
                "", f"  ![{part} Grad-CAM]({rel})"]
    elif info.get("arm"):
      lines.append(f"- {part}: `{info['arm']}` ({info['why']}) failed: {info.get('note', '')}")
    else:
      lines.append(f"- {part}: skipped: {info.get('note', '')}.")
  lines += ["", "## Runs", ""]
  if runs:
    run_df = pd.DataFrame([{"body_part": r.body_part, "arm": r.arm, "draw": r.draw, "dataset": r.result["dataset"],
                            "train_mode": r.result["train_mode"], "train_split": r.result["train_split"],
                            "eval_split": r.result["eval_split"], "global_step": r.result["global_step"]}
                           for r in sorted(runs, key=lambda r: (part_order(r.body_part), arm_order(r.arm), r.draw))])
    lines.append(markdown_table(run_df, list(run_df.columns)))
  else:
    lines.append("_No finished runs._")
  lines.append("")
  return "\n".join(lines)
