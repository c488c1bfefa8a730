"""Metrics at image and study level against scikit-learn and hand computations."""
import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from simclr_mura.training import metrics

KEYS = ["n", "n_abnormal", "accuracy", "precision", "recall", "specificity", "f1", "auroc", "kappa"]


def test_hand_computed_example():
  labels = [1, 1, 1, 0, 0, 0, 0, 1]
  probs = [0.9, 0.6, 0.4, 0.2, 0.7, 0.5, 0.1, 0.5]  # the two 0.5s are predicted normal
  m = metrics.binary_metrics(labels, probs)
  assert list(m) == KEYS
  # predictions 1,1,0,0,1,0,0,0 -> TP=2, FN=2, FP=1, TN=3
  assert m["n"] == 8 and m["n_abnormal"] == 4
  assert m["accuracy"] == pytest.approx(5 / 8)
  assert m["precision"] == pytest.approx(2 / 3)
  assert m["recall"] == pytest.approx(1 / 2)
  assert m["specificity"] == pytest.approx(3 / 4)
  assert m["f1"] == pytest.approx(4 / 7)
  # po = 5/8, pe = 3/8 * 4/8 + 5/8 * 4/8 = 1/2
  assert m["kappa"] == pytest.approx(0.25)
  # pairwise: 4 + 3 + 2 + 2.5 (one tie at 0.5) of 16 pairs
  assert m["auroc"] == pytest.approx(11.5 / 16)
  for k in KEYS:
    assert type(m[k]) is (int if k in ("n", "n_abnormal") else float)


def test_random_predictions_match_sklearn():
  rng = np.random.default_rng(0)
  y = rng.integers(0, 2, 200)
  p = np.clip(0.35 * y + rng.uniform(0, 0.7, 200), 0, 1)
  for threshold in (0.3, 0.5, 0.7):
    m = metrics.binary_metrics(y, p, threshold=threshold)
    pred = (p > threshold).astype(int)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert m["specificity"] == pytest.approx(skm.recall_score(y, pred, pos_label=0))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["auroc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert m["kappa"] == pytest.approx(skm.cohen_kappa_score(y, pred))
    assert m["n_abnormal"] == int(y.sum())


def test_threshold_is_strict():
  m = metrics.binary_metrics([1, 0], [0.5, 0.5])
  assert m["precision"] is None  # 0.5 is normal: no positive predictions
  assert m["recall"] == 0.0 and m["specificity"] == 1.0
  m = metrics.binary_metrics([1, 0], [0.5000001, 0.5])
  assert m["precision"] == 1.0 and m["recall"] == 1.0
  m = metrics.binary_metrics([1, 0], [0.5, 0.2], threshold=0.2)
  assert m["accuracy"] == 1.0


def test_all_correct():
  m = metrics.binary_metrics([0, 1, 1, 0], [0.1, 0.9, 0.8, 0.3])
  assert all(m[k] == 1.0 for k in KEYS[2:])


def test_one_class_only():
  m = metrics.binary_metrics([1, 1, 1], [0.9, 0.2, 0.7])
  assert m["auroc"] is None and m["specificity"] is None
  assert m["precision"] == 1.0 and m["recall"] == pytest.approx(2 / 3)
  assert m["f1"] == pytest.approx(skm.f1_score([1, 1, 1], [1, 0, 1]))
  assert m["kappa"] == 0.0  # chance agreement equals observed agreement
  m = metrics.binary_metrics([0, 0], [0.1, 0.2])
  assert m["auroc"] is None and m["precision"] is None and m["recall"] is None and m["f1"] is None
  assert m["kappa"] is None  # labels and predictions the same constant: sklearn gives nan
  assert m["accuracy"] == 1.0 and m["specificity"] == 1.0


def test_no_positive_predictions():
  m = metrics.binary_metrics([1, 0, 1], [0.1, 0.2, 0.3])
  assert m["precision"] is None and m["f1"] is None
  assert m["recall"] == 0.0 and m["specificity"] == 1.0
  assert m["kappa"] == pytest.approx(skm.cohen_kappa_score([1, 0, 1], [0, 0, 0]))


def test_f1_zero_when_precision_and_recall_zero():
  m = metrics.binary_metrics([1, 0], [0.2, 0.9])
  assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0
  assert m["f1"] == skm.f1_score([1, 0], [0, 1], zero_division=np.nan)


def test_empty():
  m = metrics.binary_metrics([], [])
  assert m == {**{k: None for k in KEYS}, "n": 0, "n_abnormal": 0}


@pytest.mark.parametrize("labels,probs,match", [
    ([0, 2], [0.1, 0.2], "0 \\(normal\\) or 1"),
    ([0, 1], [0.1, float("nan")], "finite"),
    ([0, 1], [0.1], "differ in length"),
    ([0, 1], [0.1, 1.2], "in \\[0, 1\\]"),
])
def test_bad_inputs(labels, probs, match):
  with pytest.raises(ValueError, match=match):
    metrics.binary_metrics(labels, probs)


def _predictions():
  return pd.DataFrame({
      "image_id": [f"img{i}" for i in range(7)],
      "study_id": ["s1", "s1", "s2", "s3", "s3", "s3", "s4"],
      "patient_id": ["p1", "p1", "p1", "p2", "p2", "p2", "p3"],
      "study_type": ["elbow"] * 7,
      "label": [1, 1, 0, 1, 1, 1, 0],
      "probability": [0.8, 0.3, 0.6, 0.2, 0.5, 0.5, 0.1],
  })


def test_study_level_mean_and_label():
  s = metrics.study_level(_predictions())
  assert list(s.columns) == ["study_id", "patient_id", "study_type", "label", "probability", "n_images"]
  assert list(s["study_id"]) == ["s1", "s2", "s3", "s4"]
  assert np.allclose(s["probability"], [0.55, 0.6, 0.4, 0.1])
  assert list(s["label"]) == [1, 0, 1, 0]
  assert list(s["n_images"]) == [2, 1, 3, 1]
  assert list(s["patient_id"]) == ["p1", "p1", "p2", "p3"]


def test_evaluate_predictions_levels():
  df = _predictions()
  r = metrics.evaluate_predictions(df)
  assert r["image"] == metrics.binary_metrics(df["label"], df["probability"])
  # studies: s1 0.55 -> 1 (label 1), s2 0.6 -> 1 (label 0), s3 0.4 -> 0 (label 1), s4 0.1 -> 0 (label 0)
  st = r["study"]
  assert st["n"] == 4 and st["n_abnormal"] == 2
  assert st["accuracy"] == 0.5 and st["precision"] == 0.5 and st["recall"] == 0.5 and st["specificity"] == 0.5
  assert st["auroc"] == pytest.approx(skm.roc_auc_score([1, 0, 1, 0], [0.55, 0.6, 0.4, 0.1]))
  assert st["kappa"] == pytest.approx(0.0)
  r7 = metrics.evaluate_predictions(df, threshold=0.35)
  assert r7["study"]["recall"] == 1.0  # s3's mean 0.4 is above 0.35


def test_study_label_disagreement_names_study():
  df = _predictions()
  df.loc[1, "label"] = 0
  with pytest.raises(ValueError, match="disagree on 'label'.*s1"):
    metrics.study_level(df)
  with pytest.raises(ValueError, match="lacks column"):
    metrics.study_level(df.drop(columns=["probability"]))


def test_class_weights_mura_formula():
  # A = 3 abnormal, N = 1 normal: w_abnormal = N/(A+N) = 1/4, w_normal = A/(A+N) = 3/4
  assert metrics.class_weights([1, 1, 1, 0]) == {0: 0.75, 1: 0.25}
  w = metrics.class_weights(np.array([0] * 2925 + [1] * 2006))  # MURA elbow train images
  assert w[1] == pytest.approx(2925 / 4931) and w[0] == pytest.approx(2006 / 4931)
  assert math.isclose(w[0] + w[1], 1.0)
  with pytest.raises(ValueError, match="both classes.*3 normal and 0 abnormal"):
    metrics.class_weights([0, 0, 0])
