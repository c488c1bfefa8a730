"""The study report (`<study>/report/`): results.csv, summary.csv, comparison.csv, results.md, figures, data
exploration and Grad-CAM grids.

`build_report` collects the runs (`collect`), scores them with their uncertainty (`scoring`, `uncertainty`), draws the
figures (`figures`), runs the exploration and Grad-CAM hooks and writes results.md (`markdown`); `tables` formats the
summary printed at the end of the study.
"""
from __future__ import annotations

import io
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import pandas as pd
import tensorflow as tf

from simclr_mura.layout import FINETUNE, LABEL_FRACTIONS, POOLED, REPORT_DIR, draw_folder
from simclr_mura.study import collect, figures, markdown, scoring, tables
from simclr_mura.training.results import atomic_write_text, read_text

ExploreFn = Callable[[str, str], Any]
GradcamFn = Callable[[str, str], Any]


def explore_targets(builder: str, parts: Sequence[str]) -> List[Tuple[str, str]]:
  """[(dataset, sub-folder)]: one call per body part, on the per-part datasets the arms were trained on (already
  prepared: a combined config such as elbow_hand_shoulder would be built again from scratch just for its tables)."""
  parts = list(parts)
  if len(parts) == 1:
    return [(f"{builder}/{parts[0]}", "")]
  return [(f"{builder}/{p}", p) for p in parts]


def _choose_gradcam_arm(part_runs: Sequence[collect.Run],
                        curves: Mapping[str, Mapping]) -> Tuple[Optional[collect.Run], str]:
  """The fine-tuned run to illustrate, among the 100% runs and draw 0 of the others: best validation study AUROC
  (max over its curve), else the one with the most labels."""
  finetuned = [r for r in part_runs if r.draw == 0 and (tables.arm_family(r.arm) or ("",))[0] == FINETUNE]
  if not finetuned:
    return None, f"no finished {FINETUNE}_* run (100% or draw 0)"
  scored = []
  for r in finetuned:
    series = collect.validation_series(curves.get(r.arm, {}))
    if series:
      scored.append((max(v for _, v in series), r))
  if scored:
    best, run = max(scored, key=lambda x: x[0])
    return run, f"highest validation study AUROC in its TensorBoard summaries ({best:.3f})"
  run = max(finetuned, key=lambda r: LABEL_FRACTIONS[tables.arm_family(r.arm)[1]])
  return run, "no validation study AUROC in its TensorBoard summaries; the arm with the most labels"


def _run_warnings(runs: Sequence[collect.Run]) -> List[str]:
  """Runs not evaluated on test, choosing their model on the evaluation split, or in another draw's folder."""
  warnings = []
  for run in runs:
    res, flags = run.result, run.flags
    if res["eval_split"] != "test":
      warnings.append(f"{run.name} was evaluated on {res['eval_split']!r}, not 'test'.")
    val = flags.get("validation_split")
    if val is not None and val == res["eval_split"]:
      warnings.append(f"{run.name} used its evaluation split {val!r} for model selection.")
    if run.drawn and flags.get("label_draw") is not None and int(flags["label_draw"]) != run.draw:
      warnings.append(f"{run.name} was trained with --label_draw={flags['label_draw']}, not {run.draw}.")
  return warnings


def _write_csv(path: str, df: pd.DataFrame) -> pd.DataFrame:
  """Writes a table (through tf.io.gfile) and returns it as read back, so results.md shows the files' numbers."""
  atomic_write_text(path, df.to_csv(index=False))
  return pd.read_csv(io.StringIO(read_text(path)))


def _curve_figures(study_dir: str, out_dir: str, collected: collect.Collected
                   ) -> Tuple[Dict[str, List[Tuple[str, str]]], Dict[str, str], Dict[str, Dict[str, Dict]]]:
  """Training curves of the pretraining run(s) and the single runs (the label draws' are in TensorBoard: a figure
  each would cost the quick study a minute), and each part's validation AUROC per arm, draw 0 of the drawn ones:
  ({part or "": [(label, png)]}, {part: png}, curves)."""
  curve_figs: Dict[str, List[Tuple[str, str]]] = {}
  validation_figs: Dict[str, str] = {}
  all_curves: Dict[str, Dict[str, Dict]] = {}
  for part, arm, model_dir in collected.curve_dirs:
    curves = collect.read_arm_curves(model_dir)
    all_curves.setdefault(part, {})[arm] = curves
    if os.path.basename(os.path.normpath(model_dir)) == draw_folder(0):
      continue
    label = os.path.relpath(model_dir, study_dir).replace(os.sep, "/")
    name = f"curves_{part}_{arm}.png" if part else f"curves_{arm}.png"
    path = figures.training_curves_figure(collect.training_runs(curves),
                                          f"{label}: training (solid) and validation (dashed) curves",
                                          os.path.join(out_dir, name))
    if path:
      curve_figs.setdefault(part, []).append((label, path))
  for part in collected.parts:
    series = {arm: collect.validation_series(c) for arm, c in all_curves.get(part, {}).items()}
    path = figures.comparison_curves_figure(series, "validation study AUROC",
                                            f"{part}: validation study AUROC during training, per arm (draw 0)",
                                            os.path.join(out_dir, f"validation_auroc_{part}.png"))
    if path:
      validation_figs[part] = path
  return curve_figs, validation_figs, all_curves


def build_report(study_dir: str, out_dir: Optional[str] = None, *, explore_fn: Optional[ExploreFn] = None,
                 gradcam_fn: Optional[GradcamFn] = None,
                 skip_reasons: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
  """Writes `<out_dir>` (default `<study_dir>/report/`): results.csv, summary.csv, comparison.csv, results.md and
  the figures.

  Args:
    study_dir: the study folder, `<study>/<part>/<arm>/[draw<k>/]`.
    out_dir: where to write the report.
    explore_fn: `explore(dataset, out_dir)`; called once per body part into `<out_dir>/data/`.
    gradcam_fn: `gradcam(model_dir, out_png)`; called for each body part's chosen fine-tuned run.
    skip_reasons: why a hook is None ({"explore": ..., "gradcam": ...}), shown in results.md.

  Returns:
    {"out_dir", "results", "summary", "comparison" (DataFrames as read back from their CSV files), "results_csv",
    "summary_csv", "comparison_csv", "results_md", "primary" ({"row", "available", "value", "reason"}), "figures"
    (paths), "missing" (list of {"body_part", "arm", "draw" (None: the whole arm), "reason"}), "warnings", "explore",
    "gradcam" ({part: {...}}), "table" (format_table text: the primary endpoint, then the summary in short)}.
  """
  if not tf.io.gfile.isdir(study_dir):
    raise FileNotFoundError(f"study folder {study_dir!r} does not exist")
  out_dir = out_dir or os.path.join(study_dir, REPORT_DIR)
  tf.io.gfile.makedirs(out_dir)
  exclude = (REPORT_DIR,) + ((os.path.basename(os.path.normpath(out_dir)),)
                           if os.path.abspath(os.path.dirname(os.path.normpath(out_dir))) ==
                           os.path.abspath(study_dir) else ())
  parts = collect.find_body_parts(study_dir, exclude=exclude)
  collected = collect.collect_runs(study_dir, parts)
  runs = collected.runs
  skip_reasons = dict(skip_reasons or {})

  results, bootstrap, pooled_missing, warnings = scoring.score_runs(runs, parts)
  missing = collected.missing + pooled_missing
  warnings = _run_warnings(runs) + warnings
  thresholds = {run.threshold for run in runs}
  results_csv, summary_csv, comparison_csv = (os.path.join(out_dir, f"{name}.csv")
                                              for name in ("results", "summary", "comparison"))
  results = _write_csv(results_csv, results)
  summary = _write_csv(summary_csv, scoring.summary_table(results, bootstrap))
  comparison = _write_csv(comparison_csv, scoring.comparison_table(results, bootstrap))
  primary = scoring.primary_endpoint(comparison, missing)

  # Figures.
  made: List[str] = []
  efficiency_figs: Dict[str, str] = {}
  for part in list(parts) + [POOLED]:
    path = figures.label_efficiency_figure(summary, part, os.path.join(out_dir, f"label_efficiency_{part}.png"))
    if path:
      efficiency_figs[part] = path
      made.append(path)
  curve_figs, validation_figs, all_curves = _curve_figures(study_dir, out_dir, collected)
  made += [p for figs in curve_figs.values() for _, p in figs] + list(validation_figs.values())

  # Data exploration.
  explore_info: Dict[str, Any] = {"status": "skipped", "files": []}
  if explore_fn is None:
    explore_info["note"] = skip_reasons.get("explore", "no explore function given")
  else:
    builder = collect.study_dataset(runs, study_dir)
    if builder is None:
      explore_info["note"] = "the study's dataset is unknown (no result.json or flags.json)"
    else:
      data_dir = os.path.join(out_dir, "data")
      errors = []
      for dataset, sub in explore_targets(builder, parts):
        try:
          explore_fn(dataset, os.path.join(data_dir, sub) if sub else data_dir)
        except Exception as e:  # pylint: disable=broad-except  (the report must still be written)
          errors.append(f"{dataset}: {type(e).__name__}: {e}")
      explore_info.update(status="failed" if errors else "done", datasets=[d for d, _ in explore_targets(builder,
                                                                                                        parts)])
      if errors:
        explore_info["note"] = "; ".join(errors)
      if tf.io.gfile.isdir(data_dir):
        explore_info["files"] = sorted(os.path.join(r, f) for r, _, fs in tf.io.gfile.walk(data_dir) for f in fs)

  # Grad-CAM.
  gradcam_info: Dict[str, Dict[str, Any]] = {}
  for part in parts:
    if gradcam_fn is None:
      gradcam_info[part] = {"status": "skipped", "note": skip_reasons.get("gradcam", "no Grad-CAM function given")}
      continue
    chosen, why = _choose_gradcam_arm([r for r in runs if r.body_part == part], all_curves.get(part, {}))
    if chosen is None:
      gradcam_info[part] = {"status": "skipped", "note": why}
      continue
    png = os.path.join(out_dir, f"gradcam_{part}.png")
    info = {"arm": chosen.arm, "model_dir": chosen.model_dir, "why": why, "png": png}
    try:
      gradcam_fn(chosen.model_dir, png)
      info["status"] = "done" if tf.io.gfile.exists(png) else "failed"
      if not tf.io.gfile.exists(png):
        info["note"] = "the Grad-CAM function wrote no file"
      else:
        made.append(png)
    except Exception as e:  # pylint: disable=broad-except
      info.update(status="failed", note=f"{type(e).__name__}: {e}")
    gradcam_info[part] = info

  md = markdown.render(markdown.ReportContent(
      study_dir=study_dir, out_dir=out_dir, parts=parts, summary=summary, comparison=comparison, primary=primary,
      runs=runs, n_draws=collected.n_draws, missing=missing, warnings=warnings, thresholds=thresholds,
      efficiency_figs=efficiency_figs, curve_figs=curve_figs, validation_figs=validation_figs, explore=explore_info,
      gradcam=gradcam_info))
  results_md = os.path.join(out_dir, "results.md")
  atomic_write_text(results_md, md)
  return {"out_dir": out_dir, "results": results, "summary": summary, "comparison": comparison,
          "results_csv": results_csv, "summary_csv": summary_csv, "comparison_csv": comparison_csv,
          "results_md": results_md, "primary": primary, "figures": made, "missing": missing, "warnings": warnings,
          "explore": explore_info, "gradcam": gradcam_info,
          "table": tables.format_table(summary, f"{tables.PRIMARY_TEXT} {primary['value']}")}
