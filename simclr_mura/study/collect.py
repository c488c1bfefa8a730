"""Collecting a study folder: its body parts and arms, each arm's result.json and flags.json, and its TensorBoard curves.

A study folder holds one trainer run per body part and arm, `<study>/<part>/<arm>/`, each laid out as `layout.RunDir`
names it. Arms that are absent or unfinished (no result.json) are reported as missing; nothing here crashes on a
partial study.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import pandas as pd
import tensorflow as tf

from simclr_mura.layout import ARMS, REPORT_DIR, UNEVALUATED_ARMS, RunDir
from simclr_mura.study.tables import LEVEL_ORDER, RESULT_COLUMNS, arm_order, part_order, sort_results
from simclr_mura.training.results import read_flags_json, read_result

Curves = Dict[str, Dict[str, List[Tuple[int, float]]]]  # {event run: {tag: [(step, value)]}}


def _listdir(path: str) -> List[str]:
  """Entry names of a folder on any tf.io.gfile filesystem (object stores mark folders with a trailing slash)."""
  return [name.rstrip("/") for name in tf.io.gfile.listdir(path)]


def find_body_parts(study_dir: str, exclude: Sequence[str] = (REPORT_DIR,)) -> List[str]:
  """Sub-folders of the study that hold at least one arm (a known arm name or a run folder), in MURA order."""
  parts = []
  for name in _listdir(study_dir):
    path = os.path.join(study_dir, name)
    if name.startswith(".") or name in exclude or not tf.io.gfile.isdir(path):
      continue
    children = [c for c in _listdir(path) if tf.io.gfile.isdir(os.path.join(path, c))]
    if any(c in ARMS or RunDir(os.path.join(path, c)).is_run() for c in children):
      parts.append(name)
  return sorted(parts, key=part_order)


def arms_of(part_dir: str) -> List[str]:
  """The study's arms and any other run folder of a body part, in report order."""
  extra = [c for c in _listdir(part_dir)
           if c not in ARMS and not c.startswith(".") and RunDir(os.path.join(part_dir, c)).is_run()]
  return sorted(list(ARMS) + extra, key=arm_order)


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
    for arm in arms_of(part_dir):
      run = RunDir(os.path.join(part_dir, arm))
      model_dir = run.path
      if not tf.io.gfile.isdir(model_dir):
        missing.append({"body_part": part, "arm": arm, "reason": "not run (no folder)"})
        continue
      if arm in UNEVALUATED_ARMS:
        continue
      path = run.result_json
      if not tf.io.gfile.exists(path):
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


def safe_flags(model_dir: str) -> Dict[str, Any]:
  """A run's flags.json, or {} when it is absent or unreadable."""
  try:
    return read_flags_json(model_dir) if tf.io.gfile.isdir(model_dir) else {}
  except (ValueError, OSError):
    return {}


def study_dataset(runs: Sequence[Dict[str, Any]], study_dir: str, parts: Sequence[str]) -> Optional[str]:
  """The builder ('mura' or 'mura_synthetic') the study used, from result.json or flags.json."""
  for run in runs:
    return str(run["result"]["dataset"]).split("/")[0]
  for part in parts:
    for arm in ARMS:
      flags = safe_flags(os.path.join(study_dir, part, arm))
      if flags.get("dataset"):
        return str(flags["dataset"]).split("/")[0]
  return None


def study_data_dir(study_dir: str) -> Optional[str]:
  """The TFDS data_dir the study's runs read (from their flags.json), if any recorded one."""
  for part in find_body_parts(study_dir):
    for arm in ARMS:
      flags = safe_flags(os.path.join(study_dir, part, arm))
      if flags.get("data_dir"):
        return str(flags["data_dir"])
  return None


def read_arm_curves(model_dir: str) -> Curves:
  """{run: {tag: [(step, value)]}} for every event folder under an arm (train, eval, validation, ...)."""
  curves: Curves = {}
  if not any(f.startswith("events.out.tfevents") for _, _, files in os.walk(model_dir) for f in files):
    return curves
  from simclr_mura.training import summaries  # local: imports TensorFlow, which a report without event files does not need
  for run, folder in summaries.event_runs(model_dir).items():
    scalars = summaries.read_scalars(folder)
    if scalars:
      curves[run] = scalars
  return curves


def validation_series(curves: Mapping[str, Mapping[str, List[Tuple[int, float]]]],
                      metric: str = "study/auroc") -> List[Tuple[int, float]]:
  """The validation curve of `metric` from an arm's curves: the `validation` run first, then `eval` (an arm without
  per-epoch validation evaluates on its eval_split)."""
  for prefer in (RunDir.VALIDATION, RunDir.EVAL):
    for run in sorted(curves):
      if not run.split("/")[-1].startswith(prefer):
        continue
      for tag, series in curves[run].items():
        if tag == metric or tag.endswith("/" + metric):
          return list(series)
  return []


def training_runs(curves: Mapping[str, Mapping]) -> Dict[str, Mapping]:
  """The runs to draw as training/validation curves: with a `validation` run, `eval` holds the final test
  evaluation (`RunDir`'s layout), which belongs in the tables, not among the validation curves."""
  if any(run.split("/")[-1].startswith(RunDir.VALIDATION) for run in curves):
    return {run: c for run, c in curves.items() if not run.split("/")[-1].startswith(RunDir.EVAL)}
  return dict(curves)
