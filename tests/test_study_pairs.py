"""MICLe's positive pairs (--positive_pairs=study): grouping stored examples into studies, partners, the training
stream on a prepared dataset (ids of each pair against the dataset's metadata), and two CPU replicas."""
import collections

import numpy as np
import pytest
import tensorflow as tf

from conftest import two_cpu_strategy
from simclr_mura.config import Config
from simclr_mura.data import input_pipeline, study_pairs
from simclr_mura.models import optim
from simclr_mura.models.model import build_model
from simclr_mura.models import objective
from simclr_mura.training import steps


def _stream(studies, repeat=2):
  """Examples in stored order: `studies` is [(study_id, n_images)]."""
  rows = [(s, f"{s}/image{i}") for s, n in studies for i in range(n)] * repeat
  return tf.data.Dataset.from_tensor_slices({
      "study_id": [s for s, _ in rows], "image_id": [i for _, i in rows], "image": [f"png:{i}" for _, i in rows],
      "label": tf.constant([len(s) % 2 for s, _ in rows], tf.int64)})


def _groups(ds, n):
  return [(g["study_id"].decode(), [x.decode() for x in g["image_ids"][:g["count"]]])
          for g in ds.take(n).as_numpy_iterator()]


def test_consecutive_images_of_a_study_form_one_group():
  groups = _groups(study_pairs.group_studies(_stream([("a", 3), ("b", 1), ("c", 2)])), 5)
  assert groups == [("a", ["a/image0", "a/image1", "a/image2"]), ("b", ["b/image0"]),
                    ("c", ["c/image0", "c/image1"]), ("a", ["a/image0", "a/image1", "a/image2"]), ("b", ["b/image0"])]


def test_a_stream_of_one_study_and_a_long_study_still_make_groups():
  # one study repeated: its first image coming again ends the group (else no group would ever end)
  assert _groups(study_pairs.group_studies(_stream([("s", 2)], repeat=3)), 2) == [("s", ["s/image0", "s/image1"])] * 2
  cut = _groups(study_pairs.group_studies(_stream([("long", 5), ("x", 1)]), max_images=2), 3)
  assert cut == [("long", ["long/image0", "long/image1"]), ("long", ["long/image2", "long/image3"]),
                 ("long", ["long/image4"])]


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_partners_are_a_permutation_without_fixed_points(count):
  tf.random.set_seed(0)
  seen = collections.Counter()
  for _ in range(200):
    p = study_pairs.partners(tf.constant(count)).numpy()
    assert sorted(p) == list(range(count))  # every image is someone's partner exactly once
    if count > 1:
      assert all(p[i] != i for i in range(count))
    seen[tuple(p)] += 1
  if count == 1:
    assert list(seen) == [(0,)]
  else:  # each image's partner varies over all the others
    for i in range(count):
      assert {q[i] for q in seen} == set(range(count)) - {i}


def _config(data_dir, **kw):
  return Config(**{"dataset": "mura_synthetic/elbow", "data_dir": data_dir, "model_dir": "unused", "image_size": 32,
                   "train_mode": "pretrain", "positive_pairs": "study", **kw})


@pytest.fixture(scope="module")
def elbow(synthetic_data_dir):
  return input_pipeline.load_builder(_config(synthetic_data_dir))


@pytest.mark.slow
@pytest.mark.parametrize("cache", [False, True])
def test_pairs_are_two_different_images_of_one_study(elbow, synthetic_data_dir, cache):
  meta = input_pipeline.metadata(elbow, "train")
  study_of = dict(zip(meta["image_id"], meta["study_id"]))
  size = meta.groupby("study_id").size()
  config = _config(synthetic_data_dir, cache_dataset=cache)
  pairs = list(input_pipeline.study_pair_examples(elbow, "train", config, seed=0, batch=8).take(
      len(meta)).as_numpy_iterator())
  anchors = collections.Counter()
  for p in pairs:
    a, b = (x.decode() for x in p["image_ids"])
    study = p["study_id"].decode()
    assert study_of[a] == study == study_of[b]
    assert (a != b) == (size[study] > 1)  # two different images whenever the study has two; else its one image
    assert p["views"][0].shape == p["views"][1].shape == (32, 32, 1)
    assert not np.array_equal(p["views"][0], p["views"][1])
    anchors[a] += 1
  # an epoch's worth of pairs anchors most images once (each slice's stream pairs every image of a study it reads)
  assert len(anchors) > 0.5 * len(meta)
  assert set(size[size == 1].index) and set(size[size > 1].index)  # the data has both kinds of study


@pytest.mark.slow
def test_two_replicas_contrast_study_pairs_against_the_global_batch(elbow, synthetic_data_dir, monkeypatch):
  config = _config(synthetic_data_dir, resnet_depth=18, width_multiplier=0.25, proj_out_dim=16, train_batch_size=8)
  seen = []

  def spy(hidden, hidden_norm=True, temperature=1.0, strategy=None):
    out = objective.contrastive_loss(hidden, hidden_norm, temperature, strategy)
    seen.append(out[1].shape)
    return out

  monkeypatch.setattr(steps, "contrastive_loss", spy)
  strategy = two_cpu_strategy()
  input_fn = input_pipeline.train_input_fn(elbow, config, "train", True, 8)
  batch = next(iter(strategy.distribute_datasets_from_function(input_fn)))
  with strategy.scope():
    model = build_model(config)
    optimizer = optim.build_optimizer(config, 0.1)
    optimizer.build(model.trainable_variables)
  metrics = strategy.run(steps.make_train_step(model, optimizer, config, strategy), args=batch)
  assert seen and all(tuple(s) == (4, 8) for s in seen)  # 4 pairs per replica, negatives from all 8
  assert all(np.isfinite(v.numpy()) for v in strategy.experimental_local_results(metrics["contrast_loss"]))
