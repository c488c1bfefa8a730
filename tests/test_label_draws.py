"""Label draws in the trainer (--label_fraction, --label_draw), the training stream over patient-ordered storage, and
datasets read as a union of configs (the study's pooled SimCLR pretraining)."""
import collections

import pytest
import tensorflow_datasets as tfds

from simclr_mura.config import Config
from simclr_mura.data import input_pipeline
from simclr_mura.data.prepare import prepare
from simclr_mura.datasets import splits
from simclr_mura.training import trainer


def _config(data_dir, **kw):
  return Config(**{"dataset": "mura_synthetic/elbow", "data_dir": data_dir, "model_dir": "unused", "image_size": 32,
                   **kw})


def _patients(ds, limit=None):
  ids = [e["patient_id"].decode() for e in tfds.as_numpy(ds.take(limit) if limit else ds)]
  return ids


@pytest.fixture(scope="module")
def elbow(synthetic_data_dir):
  return input_pipeline.load_builder(_config(synthetic_data_dir))


@pytest.mark.slow
@pytest.mark.parametrize("fraction, subset", [(0.01, "train_1pct"), (0.1, "train_10pct")])
def test_draw_0_is_the_builders_subset_and_other_draws_differ(elbow, synthetic_data_dir, fraction, subset):
  config = _config(synthetic_data_dir, label_fraction=fraction, label_draw=0)
  patients, n_images = trainer.label_draw(elbow, config)
  stored = input_pipeline.metadata(elbow, subset)
  assert patients == frozenset(stored["patient_id"]) and n_images == len(stored)
  again, _ = trainer.label_draw(elbow, config)
  other, _ = trainer.label_draw(elbow, config.replace(label_draw=1))
  assert again == patients and other != patients
  # the floor: a normal and an abnormal study in every draw
  meta = input_pipeline.metadata(elbow, "train")
  chosen = meta[meta["patient_id"].isin(other)].drop_duplicates("study_id")
  assert set(chosen["label"]) == {0, 1}


@pytest.mark.slow
def test_a_label_draw_trains_on_its_patients_only_with_a_full_shuffle(elbow, synthetic_data_dir):
  config = _config(synthetic_data_dir, label_fraction=0.1, label_draw=3)
  patients, n_images = trainer.label_draw(elbow, config)
  stream = input_pipeline.training_examples(elbow, "train", config, seed=0, batch=8, patients=sorted(patients))
  seen = _patients(stream, 3 * n_images)
  assert set(seen) == set(patients)  # nothing else, and all of them
  epochs = [seen[i * n_images:(i + 1) * n_images] for i in range(3)]
  assert all(collections.Counter(e) == collections.Counter(epochs[0]) for e in epochs)  # whole epochs, reshuffled
  assert epochs[0] != epochs[1]


@pytest.mark.slow
def test_the_training_stream_mixes_the_patient_ordered_split(elbow, synthetic_data_dir):
  """`train` is stored with its label subsets first; the stream samples slices at random, so the first batches of
  an epoch are not the subsets' patients, and an epoch's worth of examples covers most of the split."""
  config = _config(synthetic_data_dir)
  meta = input_pipeline.metadata(elbow, "train")
  n = len(meta)
  seen = _patients(input_pipeline.training_examples(elbow, "train", config, seed=0, batch=8), n)
  stored_order = list(meta["patient_id"])
  head = set(stored_order[:n // 10])
  first = seen[:n // 10]
  assert sum(p in head for p in first) < 0.5 * len(first)  # a sequential read would give 100%
  assert len(set(seen)) > 0.5 * meta["patient_id"].nunique()


@pytest.mark.slow
def test_a_union_of_configs_reads_every_part(tmp_path):
  config = _config(str(tmp_path), dataset="mura_synthetic/elbow+hand", synthetic_scale=0.01)
  union = input_pipeline.load_builder(config)
  parts = [prepare(f"mura_synthetic/{p}", data_dir=str(tmp_path), scale=0.01) for p in ("elbow", "hand")]
  for split in ("train", "test", "train[:50%]"):
    assert union.info.splits[split].num_examples == sum(b.info.splits[split].num_examples for b in parts)
  meta = input_pipeline.metadata(union, "train")
  assert sorted(set(meta["study_type"])) == ["elbow", "hand"] and len(meta) == union.info.splits["train"].num_examples
  seen = _patients(input_pipeline.training_examples(union, "train", config, seed=0, batch=4), 4 * len(meta))
  assert set(seen) == set(meta["patient_id"])
  assert input_pipeline.validate_split(union, "train") == len(meta)


def test_draw_patients_is_what_the_trainer_calls():
  rows = [(f"patient{i:05d}", f"study{i}", "elbow", i % 2) for i in range(200)]
  assert splits.draw_patients(rows, 0.1, 2) == splits.draw_patients(list(reversed(rows)), 0.1, 2)
  assert len(splits.draw_patients(rows, 1.0, 0)) == 200
  with pytest.raises(ValueError, match="fraction"):
    splits.draw_patients(rows, 0.0, 0)
  assert splits.draw_patients(rows, 0.1, 0) != splits.draw_patients(rows, 0.1, 1)
