"""result.json, result_<step>.json, predictions_<split>.csv and flags.json on disk."""
import json
import os

import numpy as np
import pandas as pd
import pytest

from simclr_mura.training import metrics, results
from simclr_mura.config import Config


def _rows():
  return [
      {"image_id": b"MURA-v1.1/valid/XR_ELBOW/patient1/study1_positive/image1.png",
       "study_id": b"MURA-v1.1/valid/XR_ELBOW/patient1/study1_positive", "patient_id": b"patient1",
       "study_type": 0, "label": 1, "probability": np.float32(0.75), "extra": "dropped"},
      {"image_id": "MURA-v1.1/valid/XR_HAND/patient2/study1_negative/image1.png",
       "study_id": "MURA-v1.1/valid/XR_HAND/patient2/study1_negative", "patient_id": "patient2",
       "study_type": "hand", "label": np.int64(0), "probability": 0.125},
  ]


def test_predictions_csv_roundtrip(tmp_path):
  path = tmp_path / "sub" / "predictions_test.csv"
  results.write_predictions(path, _rows())
  with open(path) as f:
    assert f.readline().strip() == "image_id,study_id,patient_id,study_type,label,probability"
  df = results.read_predictions(path)
  assert list(df.columns) == list(results.PREDICTION_COLUMNS)
  assert list(df["study_type"]) == ["elbow", "hand"]
  assert list(df["label"]) == [1, 0]
  assert list(df["probability"]) == [0.75, 0.125]
  assert df["patient_id"][0] == "patient1"
  assert df["study_id"][0].endswith("study1_positive")
  results.write_predictions(tmp_path / "again.csv", df)  # a DataFrame works too
  pd.testing.assert_frame_equal(results.read_predictions(tmp_path / "again.csv"), df)


@pytest.mark.parametrize("change,match", [
    ({"label": 2}, "label must be 0"),
    ({"probability": float("nan")}, "probability must be"),
    ({"study_type": "knee"}, "unknown study_type 'knee'"),
    ({"study_type": 9}, "out of range"),
])
def test_predictions_rejects_bad_rows(tmp_path, change, match):
  rows = _rows()
  rows[1].update(change)
  with pytest.raises(ValueError, match=match):
    results.write_predictions(tmp_path / "p.csv", rows)
  assert not os.path.exists(tmp_path / "p.csv")


def test_predictions_missing_column(tmp_path):
  df = pd.DataFrame(_rows()).drop(columns=["patient_id"])
  with pytest.raises(ValueError, match="patient_id"):
    results.write_predictions(tmp_path / "p.csv", df)


def _result(step=120):
  df = pd.DataFrame({"study_id": ["a", "a", "b", "c"], "label": [1, 1, 0, 0],
                     "probability": [0.9, 0.7, 0.2, 0.1]})
  m = metrics.evaluate_predictions(df)
  return {"global_step": np.int64(step), "dataset": "mura_synthetic/elbow", "train_mode": "finetune",
          "train_split": "train_10pct", "eval_split": "test", **m}


def test_write_result_files_and_nulls(tmp_path):
  r = _result()
  assert r["study"]["precision"] == 1.0
  r["image"]["auroc"] = np.float32(0.5)
  paths = results.write_result(tmp_path, r)
  assert paths == {"result": str(tmp_path / "result.json"), "result_step": str(tmp_path / "result_120.json")}
  with open(tmp_path / "result.json") as f:
    data = json.load(f)
  with open(tmp_path / "result_120.json") as f:
    assert json.load(f) == data
  assert data["global_step"] == 120 and data["eval_split"] == "test"
  assert data["image"]["auroc"] == 0.5 and data["study"]["n"] == 3 and data["study"]["n_abnormal"] == 1
  assert results.read_result(tmp_path) == data
  # An undefined metric is written as JSON null and read back as None.
  r2 = _result(7)
  r2["study"]["precision"] = None
  results.write_result(tmp_path, r2)
  with open(tmp_path / "result.json") as f:
    text = f.read()
  assert '"precision": null' in text
  assert json.loads(text)["study"]["precision"] is None
  assert os.path.exists(tmp_path / "result_7.json") and os.path.exists(tmp_path / "result_120.json")


@pytest.mark.parametrize("mutate,match", [
    (lambda r: r["study"].update(kappa=float("nan")), "must be None \\(JSON null\\)"),
    (lambda r: r["image"].update(auroc=float("inf")), "must be None"),
    (lambda r: r.pop("eval_split"), "missing \\['eval_split'\\]"),
    (lambda r: r.update(extra=1), "unexpected \\['extra'\\]"),
    (lambda r: r["image"].pop("f1"), "missing \\['f1'\\]"),
    (lambda r: r.update(global_step=1.5), "global_step"),
    (lambda r: r["image"].update(n=-1), "non-negative int"),
    (lambda r: r["image"].update(accuracy="0.9"), "float or None"),
    (lambda r: r.update(dataset=None), "'dataset'"),
])
def test_write_result_validates(tmp_path, mutate, match):
  r = _result()
  mutate(r)
  with pytest.raises(ValueError, match=match):
    results.write_result(tmp_path, r)
  assert not os.listdir(tmp_path)


def test_read_result_rejects_bad_file(tmp_path):
  (tmp_path / "result.json").write_text(json.dumps({"global_step": 1}))
  with pytest.raises(ValueError, match="result.json.*missing"):
    results.read_result(tmp_path / "result.json")


def test_flags_json(tmp_path):
  path = results.write_flags_json(tmp_path, Config(model_dir=str(tmp_path), learning_rate=0.1))
  with open(path) as f:
    flags = json.load(f)
  assert flags["learning_rate"] == 0.1 and flags["checkpoint"] is None and flags["model_dir"] == str(tmp_path)
  assert set(flags) == set(Config().to_dict())
  results.write_flags_json(tmp_path, {"x": np.float32(2.0), "y": float("nan"), "z": (1, 2)})
  assert results.read_flags_json(tmp_path) == {"x": 2.0, "y": None, "z": [1, 2]}
  with pytest.raises(ValueError, match="flags must be a dict"):
    results.write_flags_json(tmp_path, [1, 2])
