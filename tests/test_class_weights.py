"""`--class_weight=balanced`: the MURA paper's weighted cross-entropy, with weights per study type."""
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from simclr_mura.config import Config
from simclr_mura.data import input_pipeline
from simclr_mura.errors import UserError
from simclr_mura.training import metrics, trainer


def test_weights_per_study_type_follow_the_paper_formula():
  types = ["elbow"] * 4 + ["hand"] * 5
  labels = [1, 0, 0, 0] + [1, 1, 1, 0, 0]
  w = metrics.class_weights_by_study_type(types, labels)
  assert w == {"elbow": {0: 1 / 4, 1: 3 / 4}, "hand": {0: 3 / 5, 1: 2 / 5}}
  assert metrics.class_weights(labels) == {0: 4 / 9, 1: 5 / 9}  # the pooled pair differs from both
  with pytest.raises(ValueError, match="study type hand: .*5 normal and 0 abnormal"):
    metrics.class_weights_by_study_type(types, [1, 0, 0, 0, 0, 0, 0, 0, 0])


@pytest.fixture(scope="module")
def three_parts(tmp_path_factory):
  import simclr_mura.datasets  # noqa: F401
  from simclr_mura.data.prepare import prepare
  return prepare("mura_synthetic/elbow_hand_shoulder", data_dir=str(tmp_path_factory.mktemp("tfds")), scale=0.01)


@pytest.mark.slow
def test_table_on_elbow_hand_shoulder_weights_each_type_by_its_own_counts(three_parts):
  table = trainer.class_weight_table(three_parts, "train")
  meta = input_pipeline.metadata(three_parts, "train")
  names = three_parts.info.features["study_type"].names
  assert set(meta["study_type"]) == {"elbow", "hand", "shoulder"}
  for name, group in meta.groupby("study_type"):
    a, n = int(group["label"].sum()), int((group["label"] == 0).sum())
    np.testing.assert_allclose(table[names.index(name)], [a / (a + n), n / (a + n)], rtol=1e-6)
  for absent in set(names) - {"elbow", "hand", "shoulder"}:
    np.testing.assert_array_equal(table[names.index(absent)], [1.0, 1.0])
  assert len({tuple(table[names.index(t)]) for t in ("elbow", "hand", "shoulder")}) == 3

  # The training input carries each example's weight from the table, by its study type and label.
  config = Config(dataset="mura_synthetic/elbow_hand_shoulder", train_mode="finetune", image_size=32,
                  train_crop="none", model_dir="unused")
  input_fn = input_pipeline.train_input_fn(three_parts, config, "train", False, 64, class_weights=table)
  _, labels, weights = next(iter(input_fn(None)))
  allowed = {(int(l), float(w)) for t in ("elbow", "hand", "shoulder") for l, w in enumerate(table[names.index(t)])}
  assert {(int(l), float(w)) for l, w in zip(labels.numpy(), weights.numpy())} <= {
      (l, float(np.float32(w))) for l, w in allowed}


def test_a_type_without_both_classes_is_a_user_error(monkeypatch):
  class Builder:  # the two things class_weight_table reads
    class info:  # noqa: N801
      features = {"study_type": type("F", (), {"names": ["elbow", "hand"]})()}

  monkeypatch.setattr(input_pipeline, "metadata", lambda builder, split: pd.DataFrame(
      {"study_type": ["elbow", "elbow", "hand"], "label": [0, 1, 1], "patient_id": ["p1", "p2", "p3"]}))
  with pytest.raises(UserError, match=r"--class_weight=balanced on train: study type hand: .*0 normal and 1 "):
    trainer.class_weight_table(Builder, "train")


def test_weighted_loss_equals_the_weighted_mean_of_cross_entropies():
  from simclr_mura.training.steps import _supervised
  logits = tf.constant([[2.0, -1.0], [0.5, 0.5], [-1.0, 3.0]])
  labels = tf.constant([1, 0, 1])
  weights = tf.constant([0.7, 0.3, 0.6])
  loss, _ = _supervised(logits, labels, weights)
  p = tf.nn.softmax(logits).numpy()
  expected = np.mean([-0.7 * np.log(p[0, 1]), -0.3 * np.log(p[1, 0]), -0.6 * np.log(p[2, 1])])
  np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
