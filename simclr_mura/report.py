"""The study report (contract section 6): results.csv, results.md, figures, and the printed comparison table.

A study folder holds one trainer `model_dir` per body part and arm, `<study>/<part>/<arm>/`, each with `result.json`
(evaluated on `test`), `predictions_test.csv`, `flags.json` and `train/`, `eval/` TensorBoard event folders. Arms
that are absent or unfinished (no result.json) are reported as missing; nothing here crashes on a partial study.

  python -m simclr_mura.report --study=runs/quick [--out=DIR]
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import math
import os
import sys
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import pandas as pd

from simclr_mura import figures
from simclr_mura.results import STUDY_TYPES, read_flags_json, read_result

ARMS = ("baseline", "scratch_1pct", "scratch_10pct", "scratch_100pct", "simclr_pretrain", "simclr_linear",
        "simclr_finetune_1pct", "simclr_finetune_10pct", "simclr_finetune_100pct")
UNEVALUATED_ARMS = ("simclr_pretrain",)  # pretraining has no labels to score; it only leaves training curves
LEVEL_ORDER = ("study", "image")  # study level first: it is the MURA paper's level
RESULT_COLUMNS = ("body_part", "arm", "level", "n", "accuracy", "precision", "recall", "specificity", "f1", "auroc",
                  "kappa")
TABLE_METRICS = RESULT_COLUMNS[4:]
NULL = "—"
ARM_DESCRIPTIONS = {
    "baseline": "DenseNet-169 trained supervised on 100% of the labels: the MURA paper's architecture, as a reference",
    "scratch_1pct": "ResNet trained supervised from random initialisation on `train_1pct` (the like-for-like control)",
    "scratch_10pct": "ResNet trained supervised from random initialisation on `train_10pct`",
    "scratch_100pct": "ResNet trained supervised from random initialisation on `train`",
    "simclr_pretrain": "SimCLR contrastive pretraining of the same ResNet on `train` images, labels unused (not "
                       "evaluated; training curves only)",
    "simclr_linear": "linear evaluation: a logistic layer on the frozen SimCLR encoder (`fine_tune_after_block=4`), "
                     "trained on `train`",
    "simclr_finetune_1pct": "the SimCLR encoder fine-tuned end to end on `train_1pct`",
    "simclr_finetune_10pct": "the SimCLR encoder fine-tuned end to end on `train_10pct`",
    "simclr_finetune_100pct": "the SimCLR encoder fine-tuned end to end on `train`",
}

ExploreFn = Callable[[str, str], Any]
GradcamFn = Callable[[str, str], Any]


# --- collecting ----------------------------------------------------------------------------------------------------


def _arm_order(arm: str) -> Tuple[int, str]:
  return (ARMS.index(arm) if arm in ARMS else len(ARMS), arm)


def _part_order(part: str) -> Tuple[int, str]:
  return (STUDY_TYPES.index(part) if part in STUDY_TYPES else len(STUDY_TYPES), part)


def _is_run_dir(path: str) -> bool:
  return os.path.isdir(path) and any(
      os.path.exists(os.path.join(path, f)) for f in ("result.json", "flags.json", "train", "eval"))


def find_body_parts(study_dir: str, exclude: Sequence[str] = ("report",)) -> List[str]:
  """Sub-folders of the study that hold at least one arm (a known arm name or a run folder), in MURA order."""
  parts = []
  for name in os.listdir(study_dir):
    path = os.path.join(study_dir, name)
    if name.startswith(".") or name in exclude or not os.path.isdir(path):
      continue
    children = [c for c in os.listdir(path) if os.path.isdir(os.path.join(path, c))]
    if any(c in ARMS or _is_run_dir(os.path.join(path, c)) for c in children):
      parts.append(name)
  return sorted(parts, key=_part_order)


def _arms_of(part_dir: str) -> List[str]:
  extra = [c for c in os.listdir(part_dir)
           if c not in ARMS and not c.startswith(".") and _is_run_dir(os.path.join(part_dir, c))]
  return sorted(list(ARMS) + extra, key=_arm_order)


def collect_results(study_dir: str, parts: Optional[Sequence[str]] = None
                    ) -> Tuple[pd.DataFrame, List[Dict[str, str]], List[Dict[str, Any]]]:
  """Reads every arm's result.json.

  Returns:
    (results, missing, runs): `results` has RESULT_COLUMNS, one row per body part x arm x level; `missing` lists
    {"body_part", "arm", "reason"} for arms without a usable result (or, for simclr_pretrain, without a folder);
    `runs` lists {"body_part", "arm", "model_dir", "result"} for arms with a result.
  """
  parts = find_body_parts(study_dir) if parts is None else list(parts)
  rows: List[Dict[str, Any]] = []
  missing: List[Dict[str, str]] = []
  runs: List[Dict[str, Any]] = []
  for part in parts:
    part_dir = os.path.join(study_dir, part)
    for arm in _arms_of(part_dir):
      model_dir = os.path.join(part_dir, arm)
      if not os.path.isdir(model_dir):
        missing.append({"body_part": part, "arm": arm, "reason": "not run (no folder)"})
        continue
      if arm in UNEVALUATED_ARMS:
        continue
      path = os.path.join(model_dir, "result.json")
      if not os.path.exists(path):
        missing.append({"body_part": part, "arm": arm, "reason": "unfinished (no result.json)"})
        continue
      try:
        result = read_result(path)
      except (ValueError, OSError) as e:  # json.JSONDecodeError is a ValueError
        missing.append({"body_part": part, "arm": arm, "reason": f"unreadable result.json: {e}"})
        continue
      runs.append({"body_part": part, "arm": arm, "model_dir": model_dir, "result": result})
      for level in LEVEL_ORDER:
        m = result[level]
        rows.append({"body_part": part, "arm": arm, "level": level, **{k: m[k] for k in RESULT_COLUMNS[3:]}})
  df = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
  return sort_results(df), missing, runs


def sort_results(results: pd.DataFrame) -> pd.DataFrame:
  """Rows ordered by body part (MURA order), level (study first), arm (study order)."""
  if results.empty:
    return results.reset_index(drop=True)
  key = results.apply(lambda r: (_part_order(str(r["body_part"])), LEVEL_ORDER.index(r["level"])
                                 if r["level"] in LEVEL_ORDER else 9, _arm_order(str(r["arm"]))), axis=1)
  return results.loc[key.sort_values().index].reset_index(drop=True)


# --- tables --------------------------------------------------------------------------------------------------------


def _fmt(value: Any, column: str) -> str:
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
  cells = [[_fmt(row[c], c) for c in columns] for _, row in df.iterrows()]
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
    lines.append("| " + " | ".join(_fmt(row[c], c).replace("|", "\\|") for c in columns) + " |")
  return "\n".join(lines)


# --- event files ---------------------------------------------------------------------------------------------------


def read_arm_curves(model_dir: str) -> Dict[str, Dict[str, List[Tuple[int, float]]]]:
  """{run: {tag: [(step, value)]}} for every event folder under an arm (train, eval, validation, ...)."""
  curves: Dict[str, Dict[str, List[Tuple[int, float]]]] = {}
  if not any(f.startswith("events.out.tfevents") for _, _, files in os.walk(model_dir) for f in files):
    return curves
  from simclr_mura import summaries  # local: imports TensorFlow, which a report without event files does not need
  for run, folder in summaries.event_runs(model_dir).items():
    scalars = summaries.read_scalars(folder)
    if scalars:
      curves[run] = scalars
  return curves


def validation_series(curves: Mapping[str, Mapping[str, List[Tuple[int, float]]]],
                      metric: str = "study/auroc") -> List[Tuple[int, float]]:
  """The validation curve of `metric` from an arm's curves: a run named like 'valid*' first, then 'eval*'."""
  for prefer in ("valid", "eval"):
    for run in sorted(curves):
      if prefer not in run.split("/")[-1]:
        continue
      for tag, series in curves[run].items():
        if tag == metric or tag.endswith("/" + metric):
          return list(series)
  return []


def _training_runs(curves: Mapping[str, Mapping]) -> Dict[str, Mapping]:
  """The runs to draw as training/validation curves: with a 'validation' run, 'eval' holds the final test
  evaluation (the trainer's layout), which belongs in the tables, not among the validation curves."""
  if any("valid" in run.split("/")[-1] for run in curves):
    return {run: c for run, c in curves.items() if not run.split("/")[-1].startswith("eval")}
  return dict(curves)


# --- the report ----------------------------------------------------------------------------------------------------


def _rel(path: str, start: str) -> str:
  return os.path.relpath(path, start).replace(os.sep, "/")


def _study_dataset(runs: Sequence[Dict[str, Any]], study_dir: str, parts: Sequence[str]) -> Optional[str]:
  """The builder ('mura' or 'mura_synthetic') the study used, from result.json or flags.json."""
  for run in runs:
    return str(run["result"]["dataset"]).split("/")[0]
  for part in parts:
    for arm in ARMS:
      flags = _safe_flags(os.path.join(study_dir, part, arm))
      if flags.get("dataset"):
        return str(flags["dataset"]).split("/")[0]
  return None


def _safe_flags(model_dir: str) -> Dict[str, Any]:
  try:
    return read_flags_json(model_dir) if os.path.isdir(model_dir) else {}
  except (ValueError, OSError):
    return {}


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
    series = validation_series(curves.get(r["arm"], {}))
    if series:
      scored.append((max(v for _, v in series), r))
  if scored:
    best, run = max(scored, key=lambda x: x[0])
    return run, f"highest validation study AUROC in its TensorBoard summaries ({best:.3f})"
  run = max(finetuned, key=lambda r: (figures.arm_fraction(r["arm"]) or ("", 0.0))[1])
  return run, "no validation study AUROC in its TensorBoard summaries; the arm with the most labels"


def build_report(study_dir: str, out_dir: Optional[str] = None, explore_fn: Optional[ExploreFn] = None,
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
  if not os.path.isdir(study_dir):
    raise FileNotFoundError(f"study folder {study_dir!r} does not exist")
  out_dir = out_dir or os.path.join(study_dir, "report")
  os.makedirs(out_dir, exist_ok=True)
  exclude = ("report",) + ((os.path.basename(os.path.normpath(out_dir)),)
                           if os.path.abspath(os.path.dirname(os.path.normpath(out_dir))) ==
                           os.path.abspath(study_dir) else ())
  parts = find_body_parts(study_dir, exclude=exclude)
  results, missing, runs = collect_results(study_dir, parts)
  skip_reasons = dict(skip_reasons or {})

  results_csv = os.path.join(out_dir, "results.csv")
  results.to_csv(results_csv, index=False)
  table = pd.read_csv(results_csv)  # results.md is built from results.csv itself

  warnings: List[str] = []
  thresholds = set()
  for run in runs:
    res = run["result"]
    if res["eval_split"] != "test":
      warnings.append(f"{run['body_part']}/{run['arm']} was evaluated on {res['eval_split']!r}, not 'test'.")
    flags = _safe_flags(run["model_dir"])
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
    for arm in _arms_of(os.path.join(study_dir, part)):
      model_dir = os.path.join(study_dir, part, arm)
      if not os.path.isdir(model_dir):
        continue
      curves = read_arm_curves(model_dir)
      all_curves[part][arm] = curves
      path = figures.training_curves_figure(
          _training_runs(curves), f"{part} / {arm}: training (solid) and validation (dashed) curves",
          os.path.join(out_dir, f"curves_{part}_{arm}.png"))
      if path:
        curve_figs[part].append((arm, path))
        made.append(path)
    series = {arm: validation_series(c) for arm, c in all_curves[part].items()}
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
    builder = _study_dataset(runs, study_dir, parts)
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
      info["status"] = "done" if os.path.exists(png) else "failed"
      if not os.path.exists(png):
        info["note"] = "the Grad-CAM function wrote no file"
      else:
        made.append(png)
    except Exception as e:  # pylint: disable=broad-except
      info.update(status="failed", note=f"{type(e).__name__}: {e}")
    gradcam_info[part] = info

  md = _markdown(study_dir, out_dir, parts, table, runs, missing, warnings, thresholds, fraction_figs, curve_figs,
                 validation_figs, explore_info, gradcam_info)
  results_md = os.path.join(out_dir, "results.md")
  with open(results_md, "w", encoding="utf-8") as f:
    f.write(md)
  return {"out_dir": out_dir, "results": table, "results_csv": results_csv, "results_md": results_md,
          "figures": made, "missing": missing, "warnings": warnings, "explore": explore_info,
          "gradcam": gradcam_info, "table": format_table(table)}


def _markdown(study_dir, out_dir, parts, table, runs, missing, warnings, thresholds, fraction_figs, curve_figs,
              validation_figs, explore_info, gradcam_info) -> str:
  threshold = ", ".join(str(t) for t in sorted(thresholds)) if thresholds else "0.5"
  lines = [
      "# SimCLR on MURA: study report", "",
      f"Study folder: `{os.path.abspath(study_dir)}`. Every number is on the `test` split (MURA v1.1's official "
      "`valid` images), read from each arm's `result.json`; the same numbers are in [results.csv](results.csv).", "",
      "## The arms", "",
  ]
  present = {(r["body_part"], r["arm"]) for r in runs}
  arms_seen = sorted({a for p in parts for a in _arms_of(os.path.join(study_dir, p))}, key=_arm_order)
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
      rel = _rel(fraction_figs[part], out_dir)
      lines += [f"Test metrics against the label fraction: [{rel}]({rel})", "", f"![{part} label fraction]({rel})", ""]
    else:
      lines += ["_No test results to plot against the label fraction._", ""]
    if part in validation_figs:
      rel = _rel(validation_figs[part], out_dir)
      lines += [f"Validation study AUROC during training, per arm: [{rel}]({rel})", ""]
    if curve_figs.get(part):
      links = ", ".join(f"[{arm}]({_rel(p, out_dir)})" for arm, p in curve_figs[part])
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
      rel = _rel(path, out_dir)
      lines.append(f"- [{rel}]({rel})")
  lines += ["", "## Grad-CAM", ""]
  for part in parts:
    info = gradcam_info.get(part, {})
    if info.get("status") == "done":
      rel = _rel(info["png"], out_dir)
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


# --- command line --------------------------------------------------------------------------------------------------


def _load_hook(module: str, attr: str) -> Tuple[Optional[Callable], Optional[str]]:
  try:
    mod = importlib.import_module(module)
  except ModuleNotFoundError as e:
    if e.name == module:
      return None, f"`{module}` is not available"
    return None, f"importing `{module}` failed: {e}"
  except Exception as e:  # pylint: disable=broad-except  (a broken hook must not stop the report)
    return None, f"importing `{module}` failed: {type(e).__name__}: {e}"
  fn = getattr(mod, attr, None)
  if not callable(fn):
    return None, f"`{module}` has no `{attr}`"
  return fn, None


def _study_data_dir(study_dir: str) -> Optional[str]:
  for part in find_body_parts(study_dir):
    for arm in ARMS:
      flags = _safe_flags(os.path.join(study_dir, part, arm))
      if flags.get("data_dir"):
        return str(flags["data_dir"])
  return None


def run(argv: Optional[Sequence[str]] = None) -> int:
  """`python -m simclr_mura.report --study=DIR [--out=DIR]`: builds the report and prints the table."""
  parser = argparse.ArgumentParser(prog="simclr-mura-report", description=__doc__.split("\n\n")[0])
  parser.add_argument("--study", required=True, help="the study folder (<study>/<part>/<arm>/)")
  parser.add_argument("--out", default=None, help="where to write the report (default <study>/report)")
  parser.add_argument("--skip_explore", action="store_true", help="skip the data-exploration section")
  parser.add_argument("--skip_gradcam", action="store_true", help="skip the Grad-CAM section")
  args = parser.parse_args(argv)
  if not os.path.isdir(args.study):
    parser.error(f"--study={args.study}: no such folder")
  reasons: Dict[str, str] = {}
  explore_fn = gradcam_fn = None
  if args.skip_explore:
    reasons["explore"] = "--skip_explore"
  else:
    explore_fn, reasons["explore"] = _load_hook("simclr_mura.explore", "explore")
    data_dir = _study_data_dir(args.study)
    if explore_fn is not None and data_dir:
      try:
        accepts = "data_dir" in inspect.signature(explore_fn).parameters
      except (TypeError, ValueError):
        accepts = False
      if accepts:
        raw = explore_fn
        explore_fn = lambda dataset, out: raw(dataset, out, data_dir=data_dir)  # noqa: E731
  if args.skip_gradcam:
    reasons["gradcam"] = "--skip_gradcam"
  else:
    gradcam_fn, reasons["gradcam"] = _load_hook("simclr_mura.gradcam", "gradcam_grid")
  reasons = {k: v for k, v in reasons.items() if v}
  report = build_report(args.study, args.out, explore_fn=explore_fn, gradcam_fn=gradcam_fn, skip_reasons=reasons)
  print(report["table"])
  for m in report["missing"]:
    print(f"missing: {m['body_part']}/{m['arm']}: {m['reason']}")
  for w in report["warnings"]:
    print(f"warning: {w}", file=sys.stderr)
  for name, why in reasons.items():
    print(f"note: {name} skipped: {why}", file=sys.stderr)
  print(f"report: {report['results_md']}")
  return 0


if __name__ == "__main__":
  sys.exit(run())
