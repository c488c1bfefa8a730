"""The trainer's per-replica step: negatives gathered from every replica, loss divided by the replica count."""
import numpy as np
import pytest
import tensorflow as tf

from conftest import two_cpu_strategy
from simclr_mura.models import objective, optim
from simclr_mura.training import steps
from simclr_mura.config import Config
from simclr_mura.models.model import build_model

CONFIG = Config(resnet_depth=18, width_multiplier=0.25, image_size=32, train_batch_size=8, proj_out_dim=8,
                use_blur=False, model_dir="unused")


def _run_step(strategy, monkeypatch, config=CONFIG):
  seen = []

  def spy(hidden, hidden_norm=True, temperature=1.0, strategy=None):
    out = objective.contrastive_loss(hidden, hidden_norm, temperature, strategy)
    seen.append(out[1].shape)  # logits_ab: [rows of this replica, rows of all replicas]
    return out

  monkeypatch.setattr(steps, "contrastive_loss", spy)
  with strategy.scope():
    model = build_model(config)
    optimizer = optim.build_optimizer(config, 0.1)
    optimizer.build(model.trainable_variables)
  step = steps.make_train_step(model, optimizer, config, strategy)
  images = (tf.random.stateless_uniform([8, 32, 32, 1], seed=[1, 2]),  # the pipeline's pair of view batches
            tf.random.stateless_uniform([8, 32, 32, 1], seed=[3, 4]))
  labels = tf.constant([0, 1] * 4)
  dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors((images, labels)))
  metrics = strategy.run(step, args=next(iter(dataset)))  # eagerly: the spy sees concrete shapes
  return seen, metrics


def test_two_replicas_contrast_against_the_global_batch(monkeypatch):
  strategy = two_cpu_strategy()
  seen, metrics = _run_step(strategy, monkeypatch)
  assert seen and all(tuple(s) == (4, 8) for s in seen)  # 4 images per replica, negatives from all 8


def test_one_device_contrasts_its_own_batch(monkeypatch):
  seen, metrics = _run_step(tf.distribute.OneDeviceStrategy("/cpu:0"), monkeypatch)
  assert [tuple(s) for s in seen] == [(8, 8)]
  assert np.isfinite(float(metrics["total_loss"]))
  assert float(metrics["total_loss"]) == pytest.approx(
      float(metrics["contrast_loss"] + metrics["supervised_loss"] + metrics["weight_decay"]), rel=1e-5)


def test_graph_optimization_flag_switches_grappler_per_run():
  # A study's worker runs arm after arm in one process: each run sets it, both ways.
  from simclr_mura.training import distribute
  try:
    distribute.set_up_runtime(CONFIG.replace(graph_optimization=False))
    assert tf.config.optimizer.get_experimental_options()["disable_meta_optimizer"] is True
    distribute.set_up_runtime(CONFIG)
    assert tf.config.optimizer.get_experimental_options()["disable_meta_optimizer"] is False
  finally:
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": False})
