"""The synthetic MURA-v1.1 generator and the `mura_synthetic` builder (tiny scales to stay fast)."""
import collections
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import simclr_mura.datasets  # noqa: F401
from simclr_mura.datasets import layout, reader, splits, synthetic

tfds.disable_progress_bar()


def test_full_scale_roster_has_mura_counts():
  studies = synthetic.roster(seed=0, scale=1.0)
  for study_type, per_split in synthetic.MURA_V11_COUNTS.items():
    for split, (sn, sa, im_n, im_a) in per_split.items():
      mine = [s for s in studies if s.study_type == study_type and s.split == split]
      assert sum(1 for s in mine if not s.label) == sn and sum(1 for s in mine if s.label) == sa
      assert sum(s.num_images for s in mine if not s.label) == im_n
      assert sum(s.num_images for s in mine if s.label) == im_a
  assert sum(s.num_images for s in studies) == 36808 + 3197  # MURA v1.1 train + valid images (MURA paper)
  assert {s.num_images for s in studies} == {1, 2, 3, 4, 5}
  parts = collections.defaultdict(set)
  per_part = collections.Counter()
  for s in studies:
    parts[s.patient].add(s.study_type)
    per_part[(s.patient, s.study_type)] += 1
  assert sum(len(p) > 1 for p in parts.values()) > 100  # patients with several body parts
  assert max(per_part.values()) >= 2  # several studies of one part
  train_patients = {s.patient for s in studies if s.split == "train"}
  assert not train_patients & {s.patient for s in studies if s.split == "valid"}  # official splits patient-disjoint
  assert 0.75 < len(train_patients) / 11184 < 1.25


def test_test_scale_sizes_the_valid_split_only(tmp_path):
  tenth, full_test = synthetic.roster(0, 0.1), synthetic.roster(0, 0.1, test_scale=1.0)
  assert [s for s in tenth if s.split == "train"] == [s for s in full_test if s.split == "train"]
  for study_type, per_split in synthetic.MURA_V11_COUNTS.items():
    sn, sa, im_n, im_a = per_split["valid"]
    valid = [s for s in full_test if s.study_type == study_type and s.split == "valid"]
    assert (len(valid), sum(s.num_images for s in valid)) == (sn + sa, im_n + im_a)
  train_patients = {s.patient for s in full_test if s.split == "train"}
  assert not train_patients & {s.patient for s in full_test if s.split == "valid"}
  with pytest.raises(ValueError, match="test_scale must be positive"):
    synthetic.write_mura_tree(str(tmp_path), scale=0.01, test_scale=0.0)


def test_default_scale_is_a_tenth_with_mura_class_balance():
  studies = synthetic.roster(seed=0, scale=0.1)
  images = sum(s.num_images for s in studies)
  assert 3800 < images < 4200
  for study_type, share in (("elbow", 0.41), ("hand", 0.27), ("shoulder", 0.50)):
    mine = [s for s in studies if s.study_type == study_type and s.split == "train"]
    abnormal = sum(s.num_images for s in mine if s.label) / sum(s.num_images for s in mine)
    assert abs(abnormal - share) < 0.03


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
  a = synthetic.write_mura_tree(str(tmp_path_factory.mktemp("a")), seed=3, scale=0.004, study_types=("elbow",))
  b = synthetic.write_mura_tree(str(tmp_path_factory.mktemp("b")), seed=3, scale=0.004,
                                study_types=("elbow", "hand", "shoulder"), workers=2)
  return a, b


def _lines(path):
  with open(path) as f:
    return f.read().splitlines()


def test_tree_is_official_format_and_readable(trees):
  _, b = trees
  assert os.path.basename(b) == "MURA-v1.1"
  for split in ("train", "valid"):
    for line in _lines(os.path.join(b, f"{split}_image_paths.csv")):
      assert line.startswith(f"MURA-v1.1/{split}/XR_") and line.endswith(".png") and "," not in line
    for line in _lines(os.path.join(b, f"{split}_labeled_studies.csv")):
      path, label = line.split(",")
      assert path.endswith("/") and label in ("0", "1") and path.rstrip("/").endswith(
          "_positive" if label == "1" else "_negative")
  records = reader.read_mura_tree(b, ("elbow", "hand", "shoulder"))
  assert {r.study_type for r in records} == {"elbow", "hand", "shoulder"}
  modes, sizes = collections.Counter(), []
  for r in records:
    with Image.open(r.path) as im:
      modes[im.mode] += 1
      sizes.append(max(im.size))
      assert min(im.size) >= 50
  assert modes["L"] > modes["RGB"] > 0  # some files stored as RGB
  assert max(sizes) == 512 and min(sizes) >= 90


def test_generation_is_deterministic_and_type_subset_independent(trees):
  a, b = trees
  elbow_a = _lines(os.path.join(a, "train_image_paths.csv"))
  elbow_b = [line for line in _lines(os.path.join(b, "train_image_paths.csv")) if "/XR_ELBOW/" in line]
  assert elbow_a == elbow_b
  for image_id in elbow_a[:5]:
    rel = image_id[len("MURA-v1.1/"):]
    with open(os.path.join(a, rel), "rb") as fa, open(os.path.join(b, rel), "rb") as fb:
      assert fa.read() == fb.read()


def test_brightness_alone_does_not_separate_the_classes():
  means = {0: [], 1: []}
  for i in range(30):
    for label in (0, 1):
      study = synthetic.Study("train", "elbow", f"patient{i:05d}", 1, label, 2)
      pixels, _ = synthetic.render_image(study, 1 + i % 2, seed=0)
      means[label].append(pixels.mean())
  # AUROC of "mean brightness" as an abnormality score: near chance
  wins = sum((a > n) + 0.5 * (a == n) for a in means[1] for n in means[0])
  assert 0.3 < wins / (len(means[0]) * len(means[1])) < 0.7


@pytest.fixture(scope="module")
def visits():
  """The rendered views of 60 training studies with two or more views each (elbow, hand and shoulder)."""
  studies = [s for s in synthetic.roster(0, 0.1) if s.split == "train" and s.num_images >= 2
             and s.study_type in ("elbow", "hand", "shoulder")][:60]
  return [[synthetic.render_image(s, i)[0] for i in range(1, s.num_images + 1)] for s in studies]


def test_the_views_of_a_study_share_the_visit(visits):
  """One detector and one exposure technique per visit: the film's long side is the study's, and the films'
  brightness varies far less within a study than between studies."""
  long_sides = [{max(view.shape) for view in views} for views in visits]
  assert all(len(sides) == 1 for sides in long_sides), long_sides
  assert len(set.union(*long_sides)) > 1  # the detector differs between visits
  brightness = [[float(view.mean()) for view in views] for views in visits]
  within = np.mean([np.var(b) for b in brightness])
  total = np.var(np.concatenate(brightness))
  assert within < 0.4 * total, (within, total)  # drawn per film, the ratio is about 0.6


def test_the_views_of_a_study_are_different_projections(visits):
  """Views differ in projection, centring and noise: no two films of a study look alike pixel for pixel."""
  for views in visits:
    small = [np.asarray(Image.fromarray(v).resize((64, 64)), np.float32) for v in views]
    for i in range(len(small)):
      for j in range(i + 1, len(small)):
        assert np.abs(small[i] - small[j]).mean() > 3.0


def test_findings_change_the_image():
  view = synthetic.anatomy.View(squeeze=1.0, flex=0.0, young=False, size=1.0)
  for kind in ("fracture", "hardware", "lesion"):
    params = synthetic._finding_params("hand", np.random.default_rng(0))  # pylint: disable=protected-access
    params.update(kind=kind, target=0.0, size=1.4, depth=0.9)
    renders = []
    for finding in (None, params):
      shapes, targets = synthetic.anatomy.hand(view, np.random.default_rng(1))
      if finding:
        synthetic._apply_finding(shapes, synthetic._site(shapes, targets, finding), finding)  # pylint: disable=protected-access
      film = synthetic.xray.Film(256, 200, synthetic.xray.Affine(60, 0.0, 1.0, 100, 128))
      for shape in shapes:
        film.add(shape)
      renders.append(film.attenuation())
    assert np.abs(renders[0] - renders[1]).max() > 0.3, kind


FINGERPRINT_VERSION = "1.4.0"  # the mura_synthetic VERSION whose images and splits the fingerprints describe
# First view of the first normal and abnormal train study per type at the default size: (study, shape, mean grey).
RENDER_FINGERPRINT = [
    ("MURA-v1.1/train/XR_ELBOW/patient00007/study1_negative", (512, 403), 32.587),
    ("MURA-v1.1/train/XR_ELBOW/patient00030/study1_positive", (512, 365), 41.415),
    ("MURA-v1.1/train/XR_HAND/patient00003/study1_negative", (512, 456), 41.262),
    ("MURA-v1.1/train/XR_HAND/patient00035/study1_positive", (379, 235), 22.010),
    ("MURA-v1.1/train/XR_SHOULDER/patient00006/study1_negative", (311, 512), 52.730),
    ("MURA-v1.1/train/XR_SHOULDER/patient00009/study1_positive", (430, 512), 48.841),
]


# (studies, images, abnormal studies) per official split of elbow, hand and shoulder at the default size, as the builder
# writes them: train a tenth of MURA's; valid (the `test` split) MURA's own counts (MURA v1.1's CSVs).
SPLIT_FINGERPRINT = {
    ("elbow", "train"): (175, 493, 66), ("elbow", "valid"): (158, 465, 66),
    ("hand", "train"): (202, 554, 52), ("hand", "valid"): (167, 460, 66),
    ("shoulder", "train"): (282, 838, 146), ("shoulder", "valid"): (194, 563, 95),
}


def test_rendered_images_match_the_builder_version():
  """A change to the rendered images or the splits must come with a new `mura_synthetic` VERSION: prepared copies of
  the old data would otherwise be reused as if they were the new."""
  from simclr_mura.datasets import mura_synthetic
  from simclr_mura.datasets.mura_synthetic import MuraSynthetic
  released = synthetic.roster(0, mura_synthetic.DEFAULT_SCALE, mura_synthetic.scale_of_test(mura_synthetic.DEFAULT_SCALE))
  counts = {}
  for s in released:
    n = counts.get((s.study_type, s.split), (0, 0, 0))
    counts[(s.study_type, s.split)] = (n[0] + 1, n[1] + s.num_images, n[2] + s.label)
  assert {k: counts[k] for k in SPLIT_FINGERPRINT} == SPLIT_FINGERPRINT, (
      "mura_synthetic's splits changed: bump MuraSynthetic.VERSION with a RELEASE_NOTES line, then re-pin "
      "SPLIT_FINGERPRINT and FINGERPRINT_VERSION")
  studies = {s.study_id: s for s in released if s.split == "train"}
  got = []
  for study_id, _, _ in RENDER_FINGERPRINT:
    pixels, _ = synthetic.render_image(studies[study_id], 1)
    got.append((study_id, pixels.shape, round(float(pixels.mean()), 3)))
  changed = [(want, have) for want, have in zip(RENDER_FINGERPRINT, got)
             if want[1] != have[1] or abs(want[2] - have[2]) > 0.05]
  assert not changed, (f"mura_synthetic's images changed {changed}: bump MuraSynthetic.VERSION with a RELEASE_NOTES "
                       "line, then re-pin RENDER_FINGERPRINT and FINGERPRINT_VERSION")
  assert str(MuraSynthetic.VERSION) == FINGERPRINT_VERSION, "a new VERSION: re-pin the fingerprints for its data"


@pytest.mark.slow  # builds a dataset
def test_synthetic_builder_small_scale(tmp_path):
  from simclr_mura.datasets import mura_synthetic
  builder = tfds.builder("mura_synthetic/elbow", data_dir=str(tmp_path), scale=0.02, seed=0)
  assert builder.data_dir.endswith(os.path.join("mura_synthetic", "elbow-scale0.02-seed0", FINGERPRINT_VERSION))
  builder.download_and_prepare()
  assert set(builder.info.splits) == set(layout.SPLITS)
  expected = {i for s in synthetic.roster(0, 0.02, mura_synthetic.scale_of_test(0.02)) if s.study_type == "elbow"
              for i in s.image_ids()}
  seen = set()
  for split in ("train", "validation", "test"):
    for ex in tfds.as_numpy(builder.as_dataset(split)):
      image_id, patient = ex["image_id"].decode(), ex["patient_id"].decode()
      seen.add(image_id)
      assert ex["image"].ndim == 3 and ex["image"].shape[2] == 1 and ex["image"].dtype == np.uint8
      assert ex["study_type"] == 0
      if split != "test":
        assert splits.is_validation_patient(patient) == (split == "validation")
  assert seen == expected
  assert not [d for d in os.listdir(tmp_path / "downloads") if d.startswith("mura_synthetic")]  # temp tree removed
  # the default size lives in the usual folder
  assert tfds.builder("mura_synthetic/elbow", data_dir=str(tmp_path)).data_dir.endswith(
      os.path.join("mura_synthetic", "elbow", FINGERPRINT_VERSION))


def test_bad_scale_rejected(tmp_path):
  with pytest.raises(ValueError, match="scale must be positive"):
    tfds.builder("mura_synthetic/elbow", data_dir=str(tmp_path), scale=0)
  with pytest.raises(ValueError, match="unknown study types"):
    synthetic.write_mura_tree(str(tmp_path), study_types=("knee",))
