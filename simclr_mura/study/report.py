"""The study report (`<study>/report/`): results.csv, results.md, figures, data exploration and Grad-CAM grids.

`build_report` collects the arms (`collect`), draws the figures (`figures`), runs the exploration and Grad-CAM hooks
and writes results.md (`markdown`); `tables` formats the comparison table printed at the end of the study.
"""
from __future__ import annotations

import io
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import pandas as pd
import tensorflow as tf

from simclr_mura.layout import REPORT_DIR
from simclr_mura.study import collect, figures, markdown, tables
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


def _choose_gradcam_arm(part_runs: Sequence[Dict[str, Any]],
                        curves: Mapping[str, Mapping]) -> Tuple[Optional[Dict[str, Any]], str]:
  """The fine-tuned arm to illustrate: best validation study AUROC (max over its curve), else the largest fraction."""
  finetuned = [r for r in part_runs if r["arm"].startswith("simclr_finetune")]
  if not finetuned:
    return None, "no finished simclr_finetune_* arm"
  scored = []
  for r in finetuned:
    series = collect.validation_series(curves.get(r["arm"], {}))
    if series:
      scored.append((max(v for _, v in series), r))
  if scored:
    best, run = max(scored, key=lambda x: x[0])
    return run, f"highest validation study AUROC in its TensorBoard summaries ({best:.3f})"
  run = max(finetuned, key=lambda r: (figures.arm_fraction(r["arm"]) or ("", 0.0))[1])
  return run, "no validation study AUROC in its TensorBoard summaries; the arm with the most labels"


def build_report(study_dir: str, out_dir: Optional[str] = None, *, explore_fn: Optional[ExploreFn] = None,
                 gradcam_fn: Optional[GradcamFn] = None,
                 skip_reasons: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
  """Writes `<out_dir>` (default `<study_dir>/report/`): results.csv, results.md and the figures.

  Args:
    study_dir: the study folder, `<study>/<part>/<arm>/`.
    out_dir: where to write the report.
    explore_fn: `explore(dataset, out_dir)`; called once for the study's dataset into `<out_dir>/data/`.
    gradcam_fn: `gradcam(model_dir, out_png)`; called for each body part's chosen fine-tuned arm.
    skip_reasons: why a hook is None ({"explore": ..., "gradcam": ...}), shown in results.md.

  Returns:
    {"out_dir", "results" (DataFrame), "results_csv", "results_md", "figures" (paths), "missing" (list of
    {"body_part", "arm", "reason"}), "warnings", "explore", "gradcam" ({part: {...}}), "table" (format_table text)}.
  """
  if not tf.io.gfile.isdir(study_dir):
    raise FileNotFoundError(f"study folder {study_dir!r} does not exist")
  out_dir = out_dir or os.path.join(study_dir, REPORT_DIR)
  tf.io.gfile.makedirs(out_dir)
  exclude = (REPORT_DIR,) + ((os.path.basename(os.path.normpath(out_dir)),)
                           if os.path.abspath(os.path.dirname(os.path.normpath(out_dir))) ==
                           os.path.abspath(study_dir) else ())
  parts = collect.find_body_parts(study_dir, exclude=exclude)
  results, missing, runs = collect.collect_results(study_dir, parts)
  skip_reasons = dict(skip_reasons or {})

  results_csv = os.path.join(out_dir, "results.csv")
  atomic_write_text(results_csv, results.to_csv(index=False))
  table = pd.read_csv(io.StringIO(read_text(results_csv)))  # results.md is built from results.csv itself

  warnings: List[str] = []
  thresholds = set()
  for run in runs:
    res = run["result"]
    if res["eval_split"] != "test":
      warnings.append(f"{run['body_part']}/{run['arm']} was evaluated on {res['eval_split']!r}, not 'test'.")
    flags = collect.safe_flags(run["model_dir"])
    if "threshold" in flags:
      thresholds.add(flags["threshold"])
    val = flags.get("validation_split")
    if val is not None and val == res["eval_split"]:
      warnings.append(f"{run['body_part']}/{run['arm']} used its evaluation split {val!r} for model selection.")

  # Figures.
  made: List[str] = []
  fraction_figs: Dict[str, str] = {}
  curve_figs: Dict[str, List[Tuple[str, str]]] = {}
  validation_figs: Dict[str, str] = {}
  all_curves: Dict[str, Dict[str, Dict]] = {}
  for part in parts:
    path = figures.label_fraction_figure(table, part, os.path.join(out_dir, f"label_fraction_{part}.png"))
    if path:
      fraction_figs[part] = path
      made.append(path)
    all_curves[part] = {}
    curve_figs[part] = []
    for arm in collect.arms_of(os.path.join(study_dir, part)):
      model_dir = os.path.join(study_dir, part, arm)
      if not os.path.isdir(model_dir):
        continue
      curves = collect.read_arm_curves(model_dir)
      all_curves[part][arm] = curves
      path = figures.training_curves_figure(
          collect.training_runs(curves), f"{part} / {arm}: training (solid) and validation (dashed) curves",
          os.path.join(out_dir, f"curves_{part}_{arm}.png"))
      if path:
        curve_figs[part].append((arm, path))
        made.append(path)
    series = {arm: collect.validation_series(c) for arm, c in all_curves[part].items()}
    path = figures.comparison_curves_figure(series, "validation study AUROC",
                                            f"{part}: validation study AUROC during training, per arm",
                                            os.path.join(out_dir, f"validation_auroc_{part}.png"))
    if path:
      validation_figs[part] = path
      made.append(path)

  # Data exploration.
  explore_info: Dict[str, Any] = {"status": "skipped", "files": []}
  if explore_fn is None:
    explore_info["note"] = skip_reasons.get("explore", "no explore function given")
  else:
    builder = collect.study_dataset(runs, study_dir, parts)
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
      if os.path.isdir(data_dir):
        explore_info["files"] = sorted(os.path.join(r, f) for r, _, fs in os.walk(data_dir) for f in fs)

  # Grad-CAM.
  gradcam_info: Dict[str, Dict[str, Any]] = {}
  for part in parts:
    part_runs = [r for r in runs if r["body_part"] == part]
    if gradcam_fn is None:
      gradcam_info[part] = {"status": "skipped", "note": skip_reasons.get("gradcam", "no Grad-CAM function given")}
      continue
    chosen, why = _choose_gradcam_arm(part_runs, all_curves.get(part, {}))
    if chosen is None:
      gradcam_info[part] = {"status": "skipped", "note": why}
      continue
    png = os.path.join(out_dir, f"gradcam_{part}.png")
    info = {"arm": chosen["arm"], "model_dir": chosen["model_dir"], "why": why, "png": png}
    try:
      gradcam_fn(chosen["model_dir"], png)
      info["status"] = "done" if tf.io.gfile.exists(png) else "failed"
      if not tf.io.gfile.exists(png):
        info["note"] = "the Grad-CAM function wrote no file"
      else:
        made.append(png)
    except Exception as e:  # pylint: disable=broad-except
      info.update(status="failed", note=f"{type(e).__name__}: {e}")
    gradcam_info[part] = info

  md = markdown.render(markdown.ReportContent(
      study_dir=study_dir, out_dir=out_dir, parts=parts, table=table, runs=runs, missing=missing, warnings=warnings,
      thresholds=thresholds, fraction_figs=fraction_figs, curve_figs=curve_figs, validation_figs=validation_figs,
      explore=explore_info, gradcam=gradcam_info))
  results_md = os.path.join(out_dir, "results.md")
  atomic_write_text(results_md, md)
  return {"out_dir": out_dir, "results": table, "results_csv": results_csv, "results_md": results_md,
          "figures": made, "missing": missing, "warnings": warnings, "explore": explore_info,
          "gradcam": gradcam_info, "table": tables.format_table(table)}
