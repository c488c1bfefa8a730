"""The files an evaluation leaves in `model_dir` (named by `layout.RunDir`): result.json, result_<step>.json,
predictions_<split>.csv and flags.json.

Every file goes through `tf.io.gfile`, so `--model_dir=gs://...` (or any filesystem TensorFlow reaches) receives
them beside its checkpoints. Each is written to a temporary name and renamed into place, so a reader polling
`model_dir` (the report, or an `--mode=eval` job) never sees half a file: on a local or POSIX filesystem the rename is
atomic; on GCS, where a rename is a copy and a delete, each object appears only once fully uploaded, so a reader sees
the old file or the new one, never a part (a reader may briefly see the temporary name too).
"""
from __future__ import annotations

import json
import math
import numbers
import os
import uuid
from typing import Any, Dict, Iterable, Mapping, Union

import numpy as np
import pandas as pd
import tensorflow as tf

from simclr_mura.layout import STUDY_TYPES, RunDir  # STUDY_TYPES: the ClassLabel order an integer study_type maps to
from simclr_mura.training.metrics import LEVELS, METRIC_KEYS

PREDICTION_COLUMNS = ("image_id", "study_id", "patient_id", "study_type", "label", "probability")
RESULT_STR_KEYS = ("dataset", "train_mode", "train_split", "eval_split")
RESULT_KEYS = ("global_step",) + RESULT_STR_KEYS + LEVELS
_COUNT_KEYS = ("n", "n_abnormal")

PathLike = Union[str, "os.PathLike[str]"]


def atomic_write_text(path: PathLike, text: str) -> str:
  """Writes `text` to `path` (any tf.io.gfile path) through a temporary name in the same folder; returns `path`."""
  path = os.fspath(path)
  directory = os.path.dirname(path) or "."
  tf.io.gfile.makedirs(directory)
  tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
  try:
    with tf.io.gfile.GFile(tmp, "w") as f:
      f.write(text)
    tf.io.gfile.rename(tmp, path, overwrite=True)
  except BaseException:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.remove(tmp)
    raise
  return path


def read_text(path: PathLike) -> str:
  """The text of a file on any tf.io.gfile filesystem."""
  with tf.io.gfile.GFile(os.fspath(path), "r") as f:
    return f.read()


def _text(value: Any) -> str:
  if isinstance(value, (bytes, np.bytes_)):
    return bytes(value).decode("utf-8")
  return str(value)


def _study_type_name(value: Any) -> str:
  if isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, bool):
    if not 0 <= int(value) < len(STUDY_TYPES):
      raise ValueError(f"study_type index {value} out of range; names are {list(STUDY_TYPES)}")
    return STUDY_TYPES[int(value)]
  name = _text(value)
  if name not in STUDY_TYPES:
    raise ValueError(f"unknown study_type {name!r}; expected one of {list(STUDY_TYPES)} or its index")
  return name


def write_predictions(path: PathLike, rows_or_df: Union[pd.DataFrame, Iterable[Mapping[str, Any]]]) -> str:
  """Writes predictions_<split>.csv: one row per image, columns exactly PREDICTION_COLUMNS.

  Args:
    path: the CSV file to write (parent folders are created).
    rows_or_df: a DataFrame, or an iterable of mappings, with at least the PREDICTION_COLUMNS (others are dropped).
      Text fields may be bytes (as TFDS yields them); `study_type` may be its name or its ClassLabel index; `label` is
      0/1; `probability` is the probability of abnormal.

  Returns:
    The path written.
  """
  df = rows_or_df.copy() if isinstance(rows_or_df, pd.DataFrame) else pd.DataFrame(list(rows_or_df))
  missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
  if missing and not df.empty:
    raise ValueError(f"predictions lack column(s) {missing}; need {list(PREDICTION_COLUMNS)}")
  df = df.reindex(columns=list(PREDICTION_COLUMNS))
  for col in ("image_id", "study_id", "patient_id"):
    df[col] = [_text(v) for v in df[col]]
  df["study_type"] = [_study_type_name(v) for v in df["study_type"]]
  labels = pd.to_numeric(df["label"], errors="coerce").to_numpy(dtype=np.float64)
  if not np.all(np.isin(labels, (0.0, 1.0))):
    raise ValueError("label must be 0 (normal) or 1 (abnormal) in every row")
  df["label"] = labels.astype(np.int64)
  probs = pd.to_numeric(df["probability"], errors="coerce").to_numpy(dtype=np.float64)
  if not np.all(np.isfinite(probs)) or (probs.size and (probs.min() < 0 or probs.max() > 1)):
    raise ValueError("probability must be a finite number in [0, 1] in every row")
  df["probability"] = probs
  return atomic_write_text(path, df.to_csv(index=False))


def read_predictions(path: PathLike) -> pd.DataFrame:
  """Reads a predictions CSV written by write_predictions (ids as text, label int, probability float)."""
  with tf.io.gfile.GFile(os.fspath(path), "r") as f:
    df = pd.read_csv(f, dtype={c: str for c in PREDICTION_COLUMNS[:4]}, keep_default_na=False)
  missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
  if missing:
    raise ValueError(f"{os.fspath(path)}: missing column(s) {missing}; expected {list(PREDICTION_COLUMNS)}")
  df = df[list(PREDICTION_COLUMNS)]
  df["label"] = df["label"].astype(np.int64)
  df["probability"] = df["probability"].astype(np.float64)
  return df


def _check_keys(value: Any, expected: tuple, what: str, kind: str) -> None:
  """A one-line ValueError unless `value` is a mapping with exactly the `expected` keys."""
  if not isinstance(value, Mapping):
    raise ValueError(f"{what} must be {kind}; got {type(value).__name__}")
  keys = set(value)
  if keys != set(expected):
    raise ValueError(f"{what} must have exactly the keys {list(expected)}; missing "
                     f"{sorted(set(expected) - keys)}, unexpected {sorted(keys - set(expected))}")


def _check_metrics(level: str, metrics: Any) -> Dict[str, Any]:
  _check_keys(metrics, METRIC_KEYS, f"result[{level!r}]", "a dict of metrics")
  out: Dict[str, Any] = {}
  for key in METRIC_KEYS:
    value = metrics[key]
    if key in _COUNT_KEYS:
      if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)) or value < 0:
        raise ValueError(f"result[{level!r}][{key!r}] must be a non-negative int; got {value!r}")
      out[key] = int(value)
    elif value is None:
      out[key] = None
    else:
      if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise ValueError(f"result[{level!r}][{key!r}] must be a float or None; got {value!r}")
      if not math.isfinite(float(value)):
        raise ValueError(f"result[{level!r}][{key!r}] is {value!r}; an undefined metric must be None (JSON null)")
      out[key] = float(value)
  if out["n_abnormal"] > out["n"]:
    raise ValueError(f"result[{level!r}]: n_abnormal ({out['n_abnormal']}) exceeds n ({out['n']})")
  return out


def validate_result(result: Mapping[str, Any]) -> Dict[str, Any]:
  """Checks a result against the result.json schema and returns a JSON-ready copy (Python ints/floats/None).

  Raises:
    ValueError: a missing or unexpected key, a wrong type, or a NaN/inf metric (undefined metrics must be None).
  """
  _check_keys(result, RESULT_KEYS, "a result", "a dict")
  step = result["global_step"]
  if isinstance(step, (bool, np.bool_)) or not isinstance(step, (numbers.Integral, np.integer)) or step < 0:
    raise ValueError(f"result['global_step'] must be a non-negative int; got {step!r}")
  out: Dict[str, Any] = {"global_step": int(step)}
  for key in RESULT_STR_KEYS:
    if not isinstance(result[key], str):
      raise ValueError(f"result[{key!r}] must be a str; got {result[key]!r}")
    out[key] = result[key]
  for level in LEVELS:
    out[level] = _check_metrics(level, result[level])
  return out


def write_result(model_dir: PathLike, result: Mapping[str, Any]) -> Dict[str, str]:
  """Validates `result` and writes `<model_dir>/result_<global_step>.json` and `<model_dir>/result.json`.

  Returns:
    {"result": path of result.json, "result_step": path of result_<step>.json}.
  """
  clean = validate_result(result)
  text = json.dumps(clean, indent=2, allow_nan=False) + "\n"
  run = RunDir(model_dir)
  step_path = atomic_write_text(run.result_step_json(clean["global_step"]), text)
  path = atomic_write_text(run.result_json, text)
  return {"result": path, "result_step": step_path}


def read_result(path: PathLike) -> Dict[str, Any]:
  """Reads and validates a result file; `path` is the JSON file or a model_dir holding result.json."""
  path = os.fspath(path)
  if tf.io.gfile.isdir(path):
    path = RunDir(path).result_json
  data = json.loads(read_text(path))
  try:
    return validate_result(data)
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from None


def _jsonable(value: Any) -> Any:
  if isinstance(value, (np.integer,)):
    return int(value)
  if isinstance(value, (np.floating,)):
    value = float(value)
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, Mapping):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  return str(value)


def write_flags_json(model_dir: PathLike, config_dict: Any) -> str:
  """Writes `<model_dir>/flags.json` with every flag's value.

  Args:
    model_dir: the run's folder.
    config_dict: a mapping of flag names to values, or an object with `to_dict()` (simclr_mura.config.Config).
  """
  if hasattr(config_dict, "to_dict"):
    config_dict = config_dict.to_dict()
  if not isinstance(config_dict, Mapping):
    raise ValueError(f"flags must be a dict (or have to_dict()); got {type(config_dict).__name__}")
  text = json.dumps(_jsonable(config_dict), indent=2, sort_keys=True, allow_nan=False) + "\n"
  return atomic_write_text(RunDir(model_dir).flags_json, text)


def read_flags_json(model_dir: PathLike) -> Dict[str, Any]:
  """Reads `<model_dir>/flags.json` ({} when absent)."""
  path = RunDir(model_dir).flags_json
  if not tf.io.gfile.exists(path):
    return {}
  return json.loads(read_text(path))
