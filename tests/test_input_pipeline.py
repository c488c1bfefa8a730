"""Input pipeline choices the study relies on: whole-image training views, evaluation images cached across calls."""
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from simclr_mura import evaluation, input_pipeline
from simclr_mura.config import Config
from simclr_mura.model import build_model


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


def test_bad_train_crop_flag_is_refused():
  from simclr_mura import flags
  with pytest.raises(Exception, match="train_crop"):
    flags.config_from_argv(["--model_dir=m", "--train_crop=centre"])


def test_eval_data_is_distributed_once_and_gives_the_same_scores(synthetic_data_dir):
  config = Config(dataset="mura_synthetic/elbow", data_dir=synthetic_data_dir, image_size=32, resnet_depth=18,
                  width_multiplier=0.25, train_mode="finetune", cache_dataset=True, model_dir="unused")
  builder = input_pipeline.load_builder(config)
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  with strategy.scope():
    model = build_model(config)
  cached = input_pipeline.eval_data(builder, config, "validation", 16)
  first = evaluation.predict(model, strategy, cached)
  again = evaluation.predict(model, strategy, cached)  # second pass: images from the in-memory cache
  assert cached.distributed(strategy) is cached.distributed(strategy)
  fresh = input_pipeline.eval_data(builder, Config(**{**config.to_dict(), "cache_dataset": False}), "validation", 16)
  uncached = evaluation.predict(model, strategy, fresh)
  assert len(first) == input_pipeline.num_examples(builder, "validation")
  pd.testing.assert_frame_equal(first, again)
  np.testing.assert_allclose(first["probability"], uncached["probability"], rtol=1e-5, atol=1e-6)
