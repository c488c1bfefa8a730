"""Input pipeline choices the study relies on: whole-image training views, evaluation images cached across calls."""
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from simclr_mura.data import augment, input_pipeline
from simclr_mura.training import evaluation
from simclr_mura.config import Config
from simclr_mura.models.model import build_model


def _top_half_bright(height=64, width=48) -> tf.Tensor:
  image = np.zeros([height, width, 1], np.uint8)
  image[: height // 2] = 255
  return tf.constant(image)


def _bright_fraction(crop: str, samples: int = 24) -> tuple[np.ndarray, np.ndarray]:
  preprocess = input_pipeline.train_preprocess(Config(image_size=32, train_crop=crop, model_dir="unused"),
                                               pretrain=False)
  out = np.stack([preprocess({"image": _top_half_bright(), "label": tf.constant(0)})[0].numpy()
                  for _ in range(samples)])
  assert out.shape == (samples, 32, 32, 1)
  return out, (out > 0.5).mean(axis=(1, 2, 3))


def test_train_crop_none_resizes_the_whole_image():
  out, fraction = _bright_fraction("none")
  np.testing.assert_allclose(fraction, 0.5, atol=1 / 32)  # the bright half stays half, every time
  assert (out[:, :14] > 0.95).all() and (out[:, 18:] < 0.05).all()  # top rows bright, bottom rows dark (flip is LR)


def test_train_crop_random_is_simclr_random_resized_crop():
  _, fraction = _bright_fraction("random")
  assert fraction.std() > 0.1  # crops of 8-100% of the area: some mostly bright, some mostly dark


def _crop_widths(crop_min_area: float, samples: int = 40) -> np.ndarray:
  """Width of each random crop as a fraction of the image's, read off a left-to-right ramp (flips keep the range)."""
  ramp = tf.constant(np.tile(np.linspace(0, 255, 96), (96, 1))[:, :, None].astype(np.uint8))
  preprocess = input_pipeline.train_preprocess(
      Config(image_size=32, train_crop="random", crop_min_area=crop_min_area, model_dir="unused"), pretrain=False)
  views = np.stack([preprocess({"image": ramp, "label": tf.constant(0)})[0].numpy() for _ in range(samples)])
  return views.max(axis=(1, 2, 3)) - views.min(axis=(1, 2, 3))


def test_crop_min_area_bounds_the_random_crop():
  # area = width * height >= min_area and height <= 1, so every crop is at least min_area wide (less the half pixel
  # at each edge that a 32-px view samples)
  assert _crop_widths(0.6).min() > 0.6 - 0.05
  assert _crop_widths(0.08).min() < 0.5  # SimCLR's default reaches far smaller crops
  np.testing.assert_allclose(_crop_widths(1.0, samples=5), _crop_widths(1.0, samples=1)[0], atol=1e-6)  # whole


def test_bad_crop_min_area_is_refused():
  from simclr_mura import flags
  for bad in ("0", "1.5"):
    with pytest.raises(Exception, match="crop_min_area"):
      flags.config_from_argv(["--model_dir=m", f"--crop_min_area={bad}"])


def test_bad_train_crop_flag_is_refused():
  from simclr_mura import flags
  with pytest.raises(Exception, match="train_crop"):
    flags.config_from_argv(["--model_dir=m", "--train_crop=centre"])


def test_eval_images_are_preprocessed_once_then_served_from_the_cache(synthetic_data_dir, monkeypatch):
  decoded = []  # one entry per image the evaluation pipeline preprocesses
  preprocess = augment.preprocess_for_eval

  def counting(image, *args, **kwargs):
    out = preprocess(image, *args, **kwargs)
    tick = tf.py_function(lambda: decoded.append(1) or 0, [], tf.int32)
    with tf.control_dependencies([tick]):
      return tf.identity(out)

  monkeypatch.setattr(augment, "preprocess_for_eval", counting)
  config = Config(dataset="mura_synthetic/elbow", data_dir=synthetic_data_dir, image_size=32, resnet_depth=18,
                  width_multiplier=0.25, train_mode="finetune", cache_dataset=True, model_dir="unused")
  builder = input_pipeline.load_builder(config)
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  with strategy.scope():
    model = build_model(config)
  step = evaluation.make_predict_step(model)
  cached = input_pipeline.eval_data(builder, config, "validation", 16)
  padded = cached.num_batches * 16
  first = evaluation.predict(step, strategy, cached)
  assert len(decoded) == padded
  again = evaluation.predict(step, strategy, cached)  # every epoch's validation after the first
  assert len(decoded) == padded  # nothing preprocessed again: served from the cache
  fresh = input_pipeline.eval_data(builder, Config(**{**config.to_dict(), "cache_dataset": False}), "validation", 16)
  uncached = evaluation.predict(step, strategy, fresh)
  evaluation.predict(step, strategy, fresh)
  assert len(decoded) == 3 * padded  # without --cache_dataset each pass preprocesses every image
  assert len(first) == input_pipeline.num_examples(builder, "validation")
  pd.testing.assert_frame_equal(first, again)
  np.testing.assert_allclose(first["probability"], uncached["probability"], rtol=1e-5, atol=1e-6)


def test_eval_crop_picks_the_evaluation_views(synthetic_data_dir):
  """--eval_crop=center: SimCLR's centre crop; none: the whole film resized, the geometry --train_crop=none trains on."""
  base = Config(dataset="mura_synthetic/elbow", data_dir=synthetic_data_dir, image_size=48, model_dir="unused")
  builder = input_pipeline.load_builder(base)
  raw = [augment.to_float(e["image"]) for e in builder.as_dataset(split="validation", shuffle_files=False).take(4)]
  for eval_crop, crop in (("center", True), ("none", False)):
    data = input_pipeline.eval_data(builder, base.replace(eval_crop=eval_crop), "validation", 4)
    images, index, _ = next(iter(data.input_fn(None)))
    np.testing.assert_array_equal(index.numpy(), [0, 1, 2, 3])
    for image, expected in zip(images.numpy(), raw):
      np.testing.assert_allclose(image, augment.preprocess_for_eval(expected, 48, 48, crop=crop).numpy(), atol=1e-6)
  assert not np.allclose(augment.preprocess_for_eval(raw[0], 48, 48, crop=True),
                         augment.preprocess_for_eval(raw[0], 48, 48, crop=False), atol=0.05)


def test_eval_crop_rule_and_flag():
  assert augment.eval_crops(64, "center") and not augment.eval_crops(32, "center")  # SimCLR: crop above 32 px
  assert not augment.eval_crops(64, "none")
  with pytest.raises(ValueError, match="eval_crop"):
    augment.eval_crops(64, "centre")
  from simclr_mura import flags
  with pytest.raises(Exception, match="eval_crop"):
    flags.config_from_argv(["--model_dir=m", "--eval_crop=centre"])
  assert flags.config_from_argv(["--model_dir=m"]).eval_crop == "center"


@pytest.mark.slow  # builds a dataset
def test_synthetic_scale_prepares_another_size_in_its_own_folder(tmp_path):
  import tensorflow_datasets as tfds
  from simclr_mura.datasets import synthetic
  from simclr_mura.errors import UserError
  config = Config(dataset="mura_synthetic/elbow", data_dir=str(tmp_path), synthetic_scale=0.02, model_dir="unused")
  builder = input_pipeline.load_builder(config)
  assert "elbow-scale0.02-seed0" in builder.data_dir
  released = [s for s in synthetic.roster(scale=0.02) if s.study_type == "elbow"]
  splits = builder.info.splits
  assert splits["train"].num_examples + splits["validation"].num_examples == sum(
      s.num_images for s in released if s.split == "train")
  assert splits["test"].num_examples == 235 + 230  # test keeps MURA v1.1's elbow valid images (MURA v1.1's CSVs)
  assert not tfds.builder("mura_synthetic/elbow", data_dir=str(tmp_path)).is_prepared()  # the default size untouched
  with pytest.raises(UserError, match="applies to mura_synthetic only, not to 'mura/elbow'"):
    input_pipeline.load_builder(config.replace(dataset="mura/elbow"))


def test_views_from_integers_equal_views_from_floats():
  # The pipelines crop the decoded uint8 image and scale after the resize; the result is `to_float` first.
  image = tf.constant(np.random.default_rng(0).integers(0, 256, [57, 43, 1]), tf.uint8)
  for crop in (True, False):
    np.testing.assert_allclose(augment.preprocess_for_eval(image, 32, 32, crop=crop).numpy(),
                               augment.preprocess_for_eval(augment.to_float(image), 32, 32, crop=crop).numpy(),
                               atol=1e-6)
  # Training views: the same rule with a fixed crop box in place of the random one.
  def crop(x):
    return augment._resize_bicubic(tf.slice(x, [3, 5, 0], [40, 30, 1]), 32, 32)  # pylint: disable=protected-access

  np.testing.assert_allclose(augment._crop_then_scale(image, crop).numpy(),  # pylint: disable=protected-access
                             crop(augment.to_float(image)).numpy(), atol=1e-6)


def test_pretraining_batches_are_a_pair_of_view_batches():
  config = Config(image_size=32, model_dir="unused")
  preprocess = input_pipeline.train_preprocess(config, pretrain=True)
  ds = tf.data.Dataset.from_tensors({"image": _top_half_bright(), "label": tf.constant(1, tf.int64)}).repeat(3)
  (view1, view2), labels = next(iter(ds.map(preprocess).batch(3)))
  assert view1.shape == view2.shape == (3, 32, 32, 1) and view1.dtype == tf.float32
  assert labels.numpy().tolist() == [1, 1, 1]
  assert not np.allclose(view1.numpy(), view2.numpy())  # two independent augmentations
  # Host views are cropped and resized only (bicubic may overshoot [0, 1]); the train step's device_augment adds
  # flip, colour jitter and blur, and clips.
  out = input_pipeline.device_augment(tf.concat([view1, view2], 0), config, pretrain=True).numpy()
  assert out.shape == (6, 32, 32, 1) and out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("split", ["train", "train[:10%]", "train[:50%]+validation"])
def test_workers_read_disjoint_shares_that_cover_the_split(synthetic_data_dir, split):
  """Multi-worker input: each of two input pipelines (what each worker's input_fn gets) reads its own share; together
  they read every image of the split once."""
  builder = input_pipeline.load_builder(Config(dataset="mura_synthetic/elbow", data_dir=synthetic_data_dir,
                                               model_dir="unused"))

  def ids(share):
    ds = builder.as_dataset(split=share, decoders={"image": tfds.decode.SkipDecoding()})
    return [x.decode() for x in ds.map(lambda e: e["image_id"]).as_numpy_iterator()]

  seen = [ids(input_pipeline.worker_split(split, tf.distribute.InputContext(2, i, 2))) for i in range(2)]
  assert not set(seen[0]) & set(seen[1])
  assert sorted(seen[0] + seen[1]) == sorted(ids(split))
  assert input_pipeline.worker_split(split, None) == split
  assert input_pipeline.worker_split(split, tf.distribute.InputContext(1, 0, 1)) == split


_WORKER_SCRIPT = """
import json, sys
import simclr_mura  # noqa: F401  (CPU defaults before TensorFlow)
import tensorflow as tf
import tensorflow_datasets as tfds
import simclr_mura.datasets  # noqa: F401
from simclr_mura.data import input_pipeline

strategy = tf.distribute.MultiWorkerMirroredStrategy()
builder = tfds.builder("mura_synthetic/elbow", data_dir=sys.argv[1])

def input_fn(context):
  share = input_pipeline.worker_split("train", context)
  ds = builder.as_dataset(split=share, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
  return ds.map(lambda e: e["image_id"]).batch(1)

seen = []
for batch in strategy.distribute_datasets_from_function(input_fn):
  seen += [x.decode() for t in strategy.experimental_local_results(batch) for x in t.numpy()]
with open(sys.argv[2], "w") as f:
  json.dump(seen, f)
"""


@pytest.mark.slow
def test_two_workers_on_localhost_see_disjoint_shares_covering_train(synthetic_data_dir, tmp_path):
  """Two MultiWorkerMirroredStrategy workers on localhost read the training split through
  `distribute_datasets_from_function` as the trainer does: the image ids each saw in one epoch are disjoint and
  together every image of `train` once."""
  import json
  import os
  import socket
  import subprocess
  import sys

  from conftest import REPO

  ports = []
  for _ in range(2):
    with socket.socket() as s:
      s.bind(("localhost", 0))
      ports.append(s.getsockname()[1])
  cluster = {"worker": [f"localhost:{p}" for p in ports]}
  script = tmp_path / "worker.py"
  script.write_text(_WORKER_SCRIPT)
  procs, outs = [], [str(tmp_path / f"ids_{i}.json") for i in range(2)]
  for index in range(2):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
    procs.append(subprocess.Popen([sys.executable, str(script), synthetic_data_dir, outs[index]], cwd=REPO, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
  logs = [p.communicate(timeout=300)[0] for p in procs]
  assert all(p.returncode == 0 for p in procs), "\n".join(log[-2000:] for log in logs)
  seen = []
  for out in outs:
    with open(out) as f:
      seen.append(json.load(f))
  builder = tfds.builder("mura_synthetic/elbow", data_dir=synthetic_data_dir)
  everything = [e["image_id"].decode() for e in builder.as_dataset(
      split="train", decoders={"image": tfds.decode.SkipDecoding()}).as_numpy_iterator()]
  assert seen[0] and seen[1] and not set(seen[0]) & set(seen[1])
  assert sorted(seen[0] + seen[1]) == sorted(everything)
