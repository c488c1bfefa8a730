"""Collecting a study folder: its body parts, arms and label draws, each run's result.json, flags.json and test
predictions, the pretraining runs, and TensorBoard curves.

A study folder holds `<study>/<part>/<arm>/` for single-run arms (baseline and the 100% arms) and
`<study>/<part>/<arm>/draw<k>/` for the label draws of the 1% and 10% arms (draw k of every arm trains on the same
patients); pretraining is `<study>/simclr_pretrain/` (one pool) or `<study>/<part>/simclr_pretrain/` (per part) and is
not evaluated (a MICLe pretraining, `micle_pretrain/`, likewise). Arms and draws that are absent, unfinished (no result.json) or unreadable are listed as missing with the
reason; nothing here crashes on a partial study. Every file is read through tf.io.gfile (a study may be on gs://).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import pandas as pd
import tensorflow as tf

from simclr_mura.layout import (ARMS, DRAWN_FRACTIONS, POOLED, PRETRAIN_ARMS, REPORT_DIR, UNEVALUATED_ARMS, RunDir,
                                draw_folder, folder_draw)
from simclr_mura.study.tables import arm_family, arm_order, part_order
from simclr_mura.training.results import read_flags_json, read_predictions, read_result

Curves = Dict[str, Dict[str, List[Tuple[int, float]]]]  # {event run: {tag: [(step, value)]}}


@dataclasses.dataclass(frozen=True)
class Run:
  """One evaluated run: a single-run arm (draw 0) or one label draw of a drawn arm."""
  body_part: str
  arm: str
  draw: int
  model_dir: str
  result: Dict[str, Any]  # result.json
  flags: Dict[str, Any]  # flags.json ({} when absent)
  drawn: bool  # one of the arm's label draws (`<arm>/draw<k>/`)

  @property
  def threshold(self) -> float:
    """Abnormal when the (study's mean) probability is above it: the run's --threshold (default 0.5)."""
    return float(self.flags.get("threshold", 0.5))

  @property
  def name(self) -> str:
    """`elbow/scratch_1pct/draw0` or `elbow/baseline`, for messages."""
    return "/".join([self.body_part, self.arm] + ([draw_folder(self.draw)] if self.drawn else []))


@dataclasses.dataclass
class Collected:
  """What a study folder holds."""
  parts: List[str]
  runs: List[Run]  # every evaluated run with a readable result.json
  missing: List[Dict[str, Any]]  # {"body_part", "arm", "draw" (None: the whole arm), "reason"}
  n_draws: int  # label draws per drawn arm: the most any arm has (0 without drawn arms)
  curve_dirs: List[Tuple[str, str, str]]  # (part, or "" for the pool's pretraining; arm; model_dir) to draw curves of


def _listdir(path: str) -> List[str]:
  """Entry names of a folder on any tf.io.gfile filesystem (object stores mark folders with a trailing slash)."""
  return [name.rstrip("/") for name in tf.io.gfile.listdir(path)]


def is_drawn(arm: str) -> bool:
  """Whether an arm runs label draws (its fraction is one of DRAWN_FRACTIONS: `<family>_1pct`, `<family>_10pct`)."""
  family = arm_family(arm)
  return family is not None and family[1] in DRAWN_FRACTIONS


def draw_dirs(arm_dir: str) -> Dict[int, str]:
  """{k: `<arm_dir>/draw<k>`} for the draw folders of an arm, in order of k."""
  if not tf.io.gfile.isdir(arm_dir):
    return {}
  found = {}
  for name in _listdir(arm_dir):
    k = folder_draw(name)
    if k is not None and tf.io.gfile.isdir(os.path.join(arm_dir, name)):
      found[k] = os.path.join(arm_dir, name)
  return dict(sorted(found.items()))


def _holds_runs(path: str) -> bool:
  """A run folder, or an arm folder of label draws."""
  return RunDir(path).is_run() or bool(draw_dirs(path))


def find_body_parts(study_dir: str, exclude: Sequence[str] = ()) -> List[str]:
  """Sub-folders of the study that hold at least one arm (a known arm name or a run folder), in MURA order; the
  report folder and the pool's pretraining (`<study>/simclr_pretrain`, `<study>/micle_pretrain`) are not body parts."""
  skip = {REPORT_DIR, *PRETRAIN_ARMS, POOLED, *exclude}
  parts = []
  for name in _listdir(study_dir):
    path = os.path.join(study_dir, name)
    if name.startswith(".") or name in skip or not tf.io.gfile.isdir(path):
      continue
    children = [c for c in _listdir(path) if tf.io.gfile.isdir(os.path.join(path, c))]
    if any(c in ARMS or _holds_runs(os.path.join(path, c)) for c in children):
      parts.append(name)
  return sorted(parts, key=part_order)


def arms_of(part_dir: str) -> List[str]:
  """The study's arms and any other run folder (or folder of draws) of a body part, in report order."""
  extra = [c for c in _listdir(part_dir) if c not in ARMS and not c.startswith(".")
           and tf.io.gfile.isdir(os.path.join(part_dir, c)) and _holds_runs(os.path.join(part_dir, c))]
  return sorted(list(ARMS) + extra, key=arm_order)


def safe_flags(model_dir: str) -> Dict[str, Any]:
  """A run's flags.json, or {} when it is absent or unreadable."""
  try:
    return read_flags_json(model_dir) if tf.io.gfile.isdir(model_dir) else {}
  except (ValueError, OSError):
    return {}


def _read_run(part: str, arm: str, draw: int, model_dir: str, drawn: bool) -> Tuple[Optional[Run], Optional[str]]:
  """(the run, None) or (None, why it is missing)."""
  path = RunDir(model_dir).result_json
  if not tf.io.gfile.exists(path):
    return None, "unfinished (no result.json)"
  try:
    result = read_result(path)
  except (ValueError, OSError) as e:  # json.JSONDecodeError is a ValueError
    return None, f"unreadable result.json: {e}"
  return Run(part, arm, draw, model_dir, result, safe_flags(model_dir), drawn), None


def collect_runs(study_dir: str, parts: Optional[Sequence[str]] = None) -> Collected:
  """Reads every run's result.json and flags.json and lists what is missing (see `Collected`).

  Every part is expected to hold the study's arms and any arm another part holds; a drawn arm, as many draws as the
  arm with the most (draw folders 0..R−1); a drawn arm whose folder is itself a run (a study from before label draws)
  counts as draw 0.
  """
  parts = find_body_parts(study_dir) if parts is None else list(parts)
  # an arm that any part ran (MICLe's, the distillations) is expected in every part: one never started is missing
  expected = sorted({arm for part in parts for arm in arms_of(os.path.join(study_dir, part))}, key=arm_order)
  arms = {part: expected for part in parts}
  draws = {(part, arm): draw_dirs(os.path.join(study_dir, part, arm)) for part in parts for arm in arms[part]
           if is_drawn(arm)}
  n_draws = max((max(d) + 1 for d in draws.values() if d), default=0)
  pools = {arm: os.path.join(study_dir, arm) for arm in PRETRAIN_ARMS}
  pooled = {arm for arm, pool in pools.items() if tf.io.gfile.isdir(pool)}  # pretrained once for all parts
  runs: List[Run] = []
  missing: List[Dict[str, Any]] = []
  curve_dirs: List[Tuple[str, str, str]] = [("", arm, pools[arm]) for arm in PRETRAIN_ARMS if arm in pooled]

  def lack(part: str, arm: str, draw: Optional[int], reason: str) -> None:
    missing.append({"body_part": part, "arm": arm, "draw": draw, "reason": reason})

  for part in parts:
    for arm in arms[part]:
      arm_dir = os.path.join(study_dir, part, arm)
      if not tf.io.gfile.isdir(arm_dir):
        if arm not in pooled:
          lack(part, arm, None, "not run (no folder)")
        continue
      if arm in UNEVALUATED_ARMS:
        curve_dirs.append((part, arm, arm_dir))
        continue
      found = draws.get((part, arm), {})
      if not found:  # a single-run arm (or a drawn arm run as one, before label draws)
        if is_drawn(arm) and not RunDir(arm_dir).is_run():
          lack(part, arm, None, "no label draw started (no draw<k> folder)")
          continue
        curve_dirs.append((part, arm, arm_dir))
        run, why = _read_run(part, arm, 0, arm_dir, drawn=False)
        if run is None:
          lack(part, arm, None, why)
        else:
          runs.append(run)
        continue
      curve_dirs.append((part, arm, found[min(found)]))
      for k in range(n_draws):
        if k not in found:
          lack(part, arm, k, f"not run (no {draw_folder(k)} folder)")
          continue
        run, why = _read_run(part, arm, k, found[k], drawn=True)
        if run is None:
          lack(part, arm, k, why)
        else:
          runs.append(run)
  return Collected(parts=parts, runs=runs, missing=missing, n_draws=n_draws, curve_dirs=curve_dirs)


def read_run_predictions(run: Run) -> Tuple[Optional[pd.DataFrame], Optional[str]]:
  """(the run's predictions_test.csv, None), or (None, why not): the bootstrap and the pooled rows need it."""
  path = RunDir(run.model_dir).predictions_csv("test")
  if not tf.io.gfile.exists(path):
    return None, f"{run.name}: no {os.path.basename(path)}"
  try:
    return read_predictions(path), None
  except (ValueError, OSError, KeyError) as e:
    return None, f"{run.name}: unreadable {os.path.basename(path)}: {e}"


def _run_dirs(study_dir: str) -> List[str]:
  """Every folder that may hold a run's flags.json: the pool's pretraining, each arm and its first draw."""
  out = [os.path.join(study_dir, arm) for arm in PRETRAIN_ARMS]
  for part in find_body_parts(study_dir):
    for arm in arms_of(os.path.join(study_dir, part)):
      arm_dir = os.path.join(study_dir, part, arm)
      out += [arm_dir, *draw_dirs(arm_dir).values()]
  return out


def study_dataset(runs: Sequence[Run], study_dir: str) -> Optional[str]:
  """The builder ('mura' or 'mura_synthetic') the study used, from result.json or flags.json."""
  for run in runs:
    return str(run.result["dataset"]).split("/")[0]
  for model_dir in _run_dirs(study_dir):
    flags = safe_flags(model_dir)
    if flags.get("dataset"):
      return str(flags["dataset"]).split("/")[0]
  return None


def study_data_options(study_dir: str) -> Dict[str, Any]:
  """Where and at what size the study's runs read their data (from a flags.json): {"data_dir", "mura_dir", "scale"}
  as `data.explore.explore` takes them ({} when no run recorded its flags)."""
  for model_dir in _run_dirs(study_dir):
    flags = safe_flags(model_dir)
    if flags.get("dataset") and "+" not in str(flags["dataset"]):  # a body part's run (not a pool's pretraining)
      return {"data_dir": flags.get("data_dir"), "mura_dir": flags.get("mura_dir"),
              "scale": flags.get("synthetic_scale")}
  return {}


def read_arm_curves(model_dir: str) -> Curves:
  """{run: {tag: [(step, value)]}} for every event folder under a run (train, eval, validation, ...)."""
  from simclr_mura.training import summaries  # local: TensorBoard's event reader, only when curves are drawn
  curves: Curves = {}
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
