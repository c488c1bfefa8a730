"""TensorBoard helpers: write into a temp dir, read the event files back."""
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import plugin_event_accumulator as pea
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.util import tensor_util

from simclr_mura.training import metrics, summaries

LABELS = np.array([0, 0, 1, 1, 1, 0, 1, 0])
PROBS = np.array([0.1, 0.6, 0.7, 0.4, 0.9, 0.2, 0.8, 0.5])
STUDIES = ["a", "a", "b", "b", "c", "d", "e", "f"]


def _accumulator(logdir):
  acc = pea.EventAccumulator(logdir, size_guidance={pea.TENSORS: 0})
  acc.Reload()
  return acc


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("run"))
  writer = tf.summary.create_file_writer(os.path.join(root, "eval"))
  m = {"image": metrics.binary_metrics(LABELS, PROBS), "study": metrics.binary_metrics([0, 1, 1, 0, 1, 0],
                                                                                      [0.35, 0.55, 0.9, 0.2, 0.8, 0.5])}
  m["study"]["precision"] = None  # an undefined metric is skipped, not written as NaN
  summaries.eval_summaries(writer, m, LABELS, PROBS, step=5, study_ids=STUDIES)
  summaries.write_scalars(writer, {"loss": 0.25, "nan_metric": float("nan")}, step=3)
  summaries.write_scalars(writer, {"loss": 0.125}, step=4)
  writer.close()
  return os.path.join(root, "eval"), m


def test_eval_scalars_read_back(eval_dir):
  logdir, m = eval_dir
  scalars = summaries.read_scalars(logdir)
  assert scalars["loss"] == [(3, 0.25), (4, 0.125)]
  for level in ("image", "study"):
    for key in ("accuracy", "recall", "specificity", "f1", "auroc", "kappa"):
      ((step, value),) = scalars[f"{level}/{key}"]
      assert step == 5 and value == pytest.approx(m[level][key], abs=1e-6)
  assert "study/precision" not in scalars and "nan_metric" not in scalars
  assert "image/n" not in scalars
  assert scalars["image/precision"][0][1] == pytest.approx(m["image"]["precision"])


def test_eval_images_and_pr_curve(eval_dir):
  logdir, _ = eval_dir
  plugins = summaries.read_plugin_tags(logdir)
  for level in ("image", "study"):
    assert plugins[f"{level}/confusion_matrix"] == "images"
    assert plugins[f"{level}/roc_curve"] == "images"
    assert plugins[f"{level}/pr_curve"] == "pr_curves"
  acc = _accumulator(logdir)
  (img,) = acc.Tensors("image/confusion_matrix")
  width, height, png = tensor_util.make_ndarray(img.tensor_proto)
  assert png.startswith(b"\x89PNG") and int(width) > 100 and int(height) > 100
  (pr,) = acc.Tensors("image/pr_curve")
  data = tensor_util.make_ndarray(pr.tensor_proto)
  assert data.shape == (6, 201)
  tp, fp, tn, fn, precision, recall = data
  # threshold 0: everything positive; threshold index 100 (p >= 0.5): TP = 3 (0.7, 0.9, 0.8), FP = 2 (0.6, 0.5)
  assert (tp[0], fp[0], tn[0], fn[0]) == (4, 4, 0, 0)
  assert (tp[100], fp[100], tn[100], fn[100]) == (3, 2, 2, 1)
  assert precision[100] == pytest.approx(3 / 5) and recall[100] == pytest.approx(3 / 4)


def test_log_hparams(tmp_path):
  m = {"study": metrics.binary_metrics([0, 1, 1], [0.2, 0.7, 0.4])}
  summaries.log_hparams(str(tmp_path), {"learning_rate": 0.1, "train_split": "train_1pct", "global_bn": True,
                                        "checkpoint": None, "resnet_depth": np.int64(18)}, m, step=42,
                        trial_id="elbow/simclr_finetune_1pct")
  acc = _accumulator(str(tmp_path))
  meta = acc.SummaryMetadata("_hparams_/session_start_info")
  assert meta.plugin_data.plugin_name == "hparams"
  data = plugin_data_pb2.HParamsPluginData.FromString(meta.plugin_data.content)
  info = data.session_start_info
  assert info.group_name == "elbow/simclr_finetune_1pct"
  assert info.hparams["learning_rate"].number_value == 0.1
  assert info.hparams["train_split"].string_value == "train_1pct"
  assert info.hparams["global_bn"].bool_value is True
  assert info.hparams["checkpoint"].string_value == "none"
  assert info.hparams["resnet_depth"].number_value == 18
  scalars = summaries.read_scalars(str(tmp_path))
  assert scalars["study/accuracy"] == [(42, pytest.approx(2 / 3))]
  assert scalars["study/n"] == [(42, 3.0)]
  assert "study/auroc" in scalars


def test_image_grid_summary(tmp_path):
  rng = np.random.default_rng(0)
  view1 = rng.uniform(size=(3, 6, 5, 1)).astype(np.float32)
  view2 = np.zeros((3, 6, 5, 1), np.float32)
  writer = tf.summary.create_file_writer(str(tmp_path))
  grid = summaries.image_grid_summary(writer, "train/views", [view1, view2], step=2, max_examples=2)
  writer.close()
  # 2 rows x 2 columns of 6x5 tiles with 2-px padding
  assert grid.shape == (2 * 8 + 2, 2 * 7 + 2, 1) and grid.dtype == np.uint8
  np.testing.assert_array_equal(grid[2:8, 2:7, 0], np.round(view1[0, ..., 0] * 255).astype(np.uint8))
  assert (grid[10:16, 9:14] == 0).all()
  acc = _accumulator(str(tmp_path))
  assert acc.SummaryMetadata("train/views").plugin_data.plugin_name == "images"
  (event,) = acc.Tensors("train/views")
  assert event.step == 2
  with pytest.raises(ValueError, match="same shape"):
    summaries.image_grid([view1, view1[:, :4]])
  # One batch [B, H, W, C] (e.g. the two views side by side) is one column; [V, B, H, W, C] is V columns.
  side_by_side = np.concatenate([view1, view2], axis=2)
  grid = summaries.image_grid(side_by_side)
  assert grid.shape == (3 * 8 + 2, 10 + 4, 1)
  np.testing.assert_array_equal(grid[2:8, 2:12], summaries.image_grid(side_by_side[:1], pad=0))
  assert summaries.image_grid(np.stack([view1, view2]), max_examples=2).shape == (18, 16, 1)
  with pytest.raises(ValueError, match="got shape"):
    summaries.image_grid(np.zeros((2, 3, 4)))


def test_event_runs_and_empty_dirs(tmp_path):
  assert summaries.read_scalars(str(tmp_path)) == {}
  assert summaries.event_runs(str(tmp_path / "absent")) == {}
  for run in ("train", "eval"):
    w = tf.summary.create_file_writer(str(tmp_path / run))
    summaries.write_scalars(w, {"x": 1.0}, 0)
    w.close()
  assert summaries.event_runs(str(tmp_path)) == {"eval": str(tmp_path / "eval"), "train": str(tmp_path / "train")}


def test_eval_summaries_empty_split(tmp_path):
  writer = tf.summary.create_file_writer(str(tmp_path))
  m = {"image": metrics.binary_metrics([], []), "study": metrics.binary_metrics([], [])}
  summaries.eval_summaries(writer, m, [], [], step=1, study_ids=[])
  writer.close()
  assert summaries.read_scalars(str(tmp_path)) == {}  # every metric undefined: nothing written as a number
  assert summaries.read_plugin_tags(str(tmp_path))["image/confusion_matrix"] == "images"
