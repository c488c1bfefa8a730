"""Fine-tuning, linear evaluation, model selection, evaluation files, continuous eval, export and predict."""
import json
import os
import shutil
import threading

import numpy as np
import pandas as pd
import keras
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from conftest import TINY_FLAGS, run_trainer
from simclr_mura import predict
from simclr_mura.training import checkpoints, distribute, summaries, trainer
from simclr_mura.data import input_pipeline
from simclr_mura.config import Config
from simclr_mura.errors import UserError
from simclr_mura.models.model import build_model

TINY = dict(resnet_depth=18, width_multiplier=0.25, image_size=32, train_batch_size=32, eval_batch_size=64,
            proj_out_dim=16, warmup_epochs=0, cache_dataset=True)


@pytest.fixture(scope="module")
def finetuned_dir(synthetic_data_dir, pretrained_dir, tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp("finetune"))
  out = run_trainer("--train_mode=finetune", "--mode=train_then_eval", f"--checkpoint={pretrained_dir}",
                    "--dataset=mura_synthetic/elbow", f"--data_dir={synthetic_data_dir}", f"--model_dir={model_dir}",
                    "--train_split=train_10pct", "--eval_split=test", "--train_epochs=4", "--ft_proj_selector=1",
                    "--optimizer=adam", "--learning_rate=0.01", *TINY_FLAGS)
  return model_dir, out.stdout


def _encoder_weights(model):
  return [v.numpy() for v in model.encoder.weights]


def _model_from(prefix, **overrides):
  model = build_model(Config(**{**TINY, **overrides}))
  tf.train.Checkpoint(model=model).restore(prefix).expect_partial()
  return model


def _job(config):
  strategy = distribute.make_strategy(config)
  return trainer._set_up(config, strategy, input_pipeline.load_builder(config))


def test_finetune_restores_the_pretrained_encoder(synthetic_data_dir, pretrained_dir, tmp_path):
  config = Config(**TINY, train_mode="finetune", dataset="mura_synthetic/elbow", data_dir=synthetic_data_dir,
                  model_dir=str(tmp_path), checkpoint=pretrained_dir, ft_proj_selector=1,
                  zero_init_logits_layer=True)
  job = _job(config)
  pretrained = _model_from(tf.train.latest_checkpoint(pretrained_dir), train_mode="pretrain")
  for got, want in zip(_encoder_weights(job.model), _encoder_weights(pretrained)):
    np.testing.assert_array_equal(got, want)
  # ft_proj_selector=1: the first projection-head layer (SimCLRv2 fine-tunes from it) comes from the checkpoint too
  got, want = job.model.projection_head.linear_layers[0].weights, pretrained.projection_head.linear_layers[0].weights
  assert got and len(got) == len(want)
  for g, w in zip(got, want):
    np.testing.assert_array_equal(g.numpy(), w.numpy())
  assert all(not np.any(v.numpy()) for v in job.model.supervised_head.weights)  # zero_init_logits_layer


def test_checkpoint_of_another_width_stops_before_training(synthetic_data_dir, pretrained_dir, tmp_path):
  proc = run_trainer("--train_mode=finetune", f"--checkpoint={pretrained_dir}", "--dataset=mura_synthetic/elbow",
                     f"--data_dir={synthetic_data_dir}", f"--model_dir={tmp_path}", *TINY_FLAGS,
                     "--width_multiplier=0.5", check=False)
  assert proc.returncode != 0
  errors = [line for line in proc.stderr.splitlines() if line.startswith("simclr_mura: error:")]
  assert len(errors) == 1 and "another architecture" in errors[0] and "width_multiplier=0.25" in errors[0]
  assert tf.train.latest_checkpoint(str(tmp_path)) is None


def test_checkpoint_with_another_depth_and_no_flags_json(pretrained_dir, tmp_path):
  prefix = tf.train.latest_checkpoint(pretrained_dir)
  for suffix in (".index", ".data-00000-of-00001"):
    shutil.copy(prefix + suffix, tmp_path / ("ckpt-1" + suffix))
  model = build_model(Config(**{**TINY, "resnet_depth": 34}, train_mode="finetune"))
  with pytest.raises(UserError, match="another architecture"):
    checkpoints.restore_pretrained(model, str(tmp_path / "ckpt-1"), Config(**{**TINY, "resnet_depth": 34}))


def test_linear_evaluation_leaves_encoder_bit_identical(synthetic_data_dir, pretrained_dir, tmp_path):
  run_trainer("--train_mode=finetune", f"--checkpoint={pretrained_dir}", "--dataset=mura_synthetic/elbow",
              f"--data_dir={synthetic_data_dir}", f"--model_dir={tmp_path}", "--fine_tune_after_block=4",
              "--train_steps=3", "--optimizer=momentum", "--learning_rate=1.0", *TINY_FLAGS)
  before = _model_from(tf.train.latest_checkpoint(pretrained_dir), train_mode="pretrain")
  after = _model_from(tf.train.latest_checkpoint(str(tmp_path)), train_mode="finetune")
  for b, a in zip(_encoder_weights(before), _encoder_weights(after)):
    np.testing.assert_array_equal(a, b)  # kernels and BN moving statistics
  assert not np.array_equal(before.supervised_head.kernel.numpy(), after.supervised_head.kernel.numpy())


def test_result_json_recomputes_from_predictions(finetuned_dir, synthetic_data_dir):
  model_dir, _ = finetuned_dir
  with open(os.path.join(model_dir, "result.json")) as f:
    result = json.load(f)
  assert set(result) == {"global_step", "dataset", "train_mode", "train_split", "eval_split", "image", "study"}
  assert os.path.isfile(os.path.join(model_dir, f"result_{result['global_step']}.json"))
  predictions = pd.read_csv(os.path.join(model_dir, "predictions_test.csv"))
  assert list(predictions.columns) == ["image_id", "study_id", "patient_id", "study_type", "label", "probability"]
  builder = tfds.builder("mura_synthetic/elbow", data_dir=synthetic_data_dir)
  split_ids = {e["image_id"].decode() for e in builder.as_dataset(
      split="test", decoders={"image": tfds.decode.SkipDecoding()}).as_numpy_iterator()}
  assert sorted(predictions["image_id"]) == sorted(split_ids)  # every test image exactly once
  study = predictions.groupby("study_id").agg(label=("label", "first"), probability=("probability", "mean"))
  for level, table in (("image", predictions), ("study", study)):
    y, p = table["label"].to_numpy(), table["probability"].to_numpy()
    assert result[level]["n"] == len(table) and result[level]["n_abnormal"] == int(y.sum())
    assert result[level]["auroc"] == pytest.approx(roc_auc_score(y, p))
    assert result[level]["accuracy"] == pytest.approx(np.mean((p > 0.5) == y))
    kappa = cohen_kappa_score(y, (p > 0.5).astype(int))
    assert (result[level]["kappa"] is None) if np.isnan(kappa) else result[level]["kappa"] == pytest.approx(kappa)


def test_model_selection_evaluates_best_validation_checkpoint(finetuned_dir):
  model_dir, stdout = finetuned_dir
  curve = summaries.read_scalars(os.path.join(model_dir, "validation"))["study/auroc"]
  best = max(v for _, v in curve)
  # The summaries hold float32 values: steps whose AUROCs differ below float32 precision tie here.
  candidates = {s for s, v in curve if v == best}
  with open(os.path.join(model_dir, "result.json")) as f:
    step = json.load(f)["global_step"]
  assert step in candidates
  assert f"best/ckpt-{step}" in stdout
  assert "test" not in os.listdir(model_dir) and "validation" in os.listdir(model_dir)


def test_continuous_eval_picks_up_a_new_checkpoint(finetuned_dir, synthetic_data_dir, tmp_path):
  model_dir, _ = finetuned_dir
  with open(os.path.join(model_dir, "flags.json")) as f:
    config = Config(**json.load(f)).replace(mode="eval", model_dir=str(tmp_path), checkpoint=None)
  final = tf.train.latest_checkpoint(model_dir)
  earlier = [p for p in tf.train.get_checkpoint_state(model_dir).all_model_checkpoint_paths if p != final][0]

  def copy(prefix):
    for suffix in (".index", ".data-00000-of-00001"):
      shutil.copy(prefix + suffix, tmp_path / (os.path.basename(prefix) + suffix))
    name = os.path.basename(prefix)  # the `checkpoint` index file that tf.train.latest_checkpoint reads
    (tmp_path / "checkpoint").write_text(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')

  copy(earlier)
  job = _job(config)
  writer = threading.Timer(3.0, copy, args=(final,))
  writer.start()
  result = trainer.continuous_eval(job, poll_seconds=1, timeout=120)
  writer.join()
  steps = sorted(int(f[len("result_"):-len(".json")]) for f in os.listdir(tmp_path) if f.startswith("result_"))
  assert steps == [int(earlier.rsplit("-", 1)[1]), int(final.rsplit("-", 1)[1])]
  assert result["global_step"] == job.total_steps


def test_export_then_predict_matches_evaluation(finetuned_dir, synthetic_data_dir, tmp_path, capsys):
  model_dir, _ = finetuned_dir
  # The export holds the evaluated (selected) checkpoint, so predict must reproduce predictions_test.csv.
  expected = pd.read_csv(os.path.join(model_dir, "predictions_test.csv")).set_index("image_id")["probability"]
  with open(os.path.join(model_dir, "export", "preprocessing.json")) as f:
    with open(os.path.join(model_dir, "result.json")) as g:
      assert json.load(f)["global_step"] == json.load(g)["global_step"]
  builder = tfds.builder("mura_synthetic/elbow", data_dir=synthetic_data_dir)
  raw = builder.as_dataset(split="test", decoders={"image": tfds.decode.SkipDecoding()})
  studies, files = tmp_path / "studies", {}
  for e in raw.take(6).as_numpy_iterator():
    image_id = e["image_id"].decode()
    path = studies / e["study_id"].decode().replace("/", "_") / os.path.basename(image_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(e["image"])
    files[str(path)] = image_id
  (studies / "broken.png").write_bytes(b"not a png")
  folders = sorted({os.path.dirname(p) for p in files})
  per_image, per_study, errors = predict.predict_paths(model_dir, folders + [str(studies / "broken.png"),
                                                                             str(studies / "missing.png")])
  assert len(errors) == 2 and any("broken.png" in e and "not a readable PNG" in e for e in errors)
  assert any("missing.png" in e and "no such file" in e for e in errors)
  assert len(per_image) == len(files)
  for _, row in per_image.iterrows():
    assert row["probability"] == pytest.approx(expected[files[row["image"]]], abs=1e-5)
  for _, row in per_study.iterrows():
    assert row["probability"] == pytest.approx(per_image[per_image["study"] == row["study"]]["probability"].mean())

  # An export written before preprocessing.json recorded `center_crop` predicts the same.
  older = tmp_path / "older_run"
  shutil.copytree(os.path.join(model_dir, "export"), older / "export")
  prep = json.loads((older / "export" / "preprocessing.json").read_text())
  del prep["center_crop"]
  (older / "export" / "preprocessing.json").write_text(json.dumps(prep))
  again, _, _ = predict.predict_paths(str(older), folders)
  np.testing.assert_allclose(again["probability"], per_image["probability"], atol=1e-6)

  capsys.readouterr()
  code = predict.run([f"--model_dir={model_dir}", folders[0], f"--out={tmp_path / 'p.csv'}"])
  assert code == 0 and "probability" in capsys.readouterr().out
  table = pd.read_csv(tmp_path / "p.csv")
  assert set(table["level"]) == {"image", "study"}


def _bn_layers(model):
  return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]


@pytest.mark.parametrize("freeze_bn_below, frozen", [(10_000, True), (0, False)])
def test_freeze_bn_below_keeps_batch_norm_as_pretrained_on_a_small_label_draw(
    synthetic_data_dir, pretrained_dir, tmp_path, freeze_bn_below, frozen):
  """Below --freeze_bn_below training images, fine-tuning leaves every batch-norm layer's moving statistics, scale and
  offset as the checkpoint has them, while the convolutions still train; without it they change."""
  config = Config(**TINY, train_mode="finetune", dataset="mura_synthetic/elbow", data_dir=synthetic_data_dir,
                  model_dir=str(tmp_path), checkpoint=pretrained_dir, ft_proj_selector=1, label_fraction=0.1,
                  optimizer="adam", learning_rate=0.01, train_steps=3, freeze_bn_below=freeze_bn_below)
  job = _job(config)
  layers = _bn_layers(job.model)
  before = [[w.numpy() for w in layer.weights] for layer in layers]
  kernels = [v.numpy() for v in job.model.encoder.weights if "kernel" in v.path]
  trainer.train(job)
  after = [[w.numpy() for w in layer.weights] for layer in layers]
  same = all(np.array_equal(a, b) for x, y in zip(before, after) for a, b in zip(x, y))
  assert same == frozen
  assert not all(np.array_equal(a, v.numpy()) for a, v in zip(
      kernels, [v for v in job.model.encoder.weights if "kernel" in v.path]))  # the encoder trained either way
