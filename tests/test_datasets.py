"""The `mura` builder on small MURA-v1.1-format trees written here: features, splits, their order, validation errors."""
import collections
import io
import os
import random
import shutil
import zlib

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import simclr_mura.datasets  # noqa: F401  (registers the builders)
from simclr_mura.datasets import layout, reader, splits

tfds.disable_progress_bar()


# --- a tiny MURA-v1.1 tree ---------------------------------------------------------------------------------------------

def _pixels(image_id: str, h: int, w: int) -> np.ndarray:
  return np.random.default_rng(zlib.crc32(image_id.encode())).integers(0, 256, (h, w), dtype=np.uint8)


def _save(path: str, pixels: np.ndarray, mode: str) -> None:
  image = Image.fromarray(pixels, mode="L")
  if mode == "I;16":
    image = Image.fromarray(pixels.astype(np.uint16) * 257)
  elif mode != "L":
    image = image.convert(mode)
  image.save(path)


def write_tree(root, studies):
  """studies: (split, type, patient, number, label, n_images, modes); returns {image_id: (pixels, mode)}."""
  mura = os.path.join(root, "MURA-v1.1")
  written = {}
  rows = {s: ([], []) for s in ("train", "valid")}
  for split, study_type, patient, number, label, n, modes in studies:
    study_id = f"MURA-v1.1/{split}/XR_{study_type.upper()}/{patient}/study{number}_{'positive' if label else 'negative'}"
    folder = os.path.join(root, study_id)
    os.makedirs(folder, exist_ok=True)
    rows[split][1].append(f"{study_id}/,{label}")
    for i in range(1, n + 1):
      image_id = f"{study_id}/image{i}.png"
      pixels = _pixels(image_id, 10 + i, 14 + number)
      mode = modes[(i - 1) % len(modes)]
      _save(os.path.join(root, image_id), pixels, mode)
      rows[split][0].append(image_id)
      written[image_id] = (pixels, mode)
    # junk that the CSVs do not list
    with open(os.path.join(folder, "._image1.png"), "wb") as f:
      f.write(b"\x00\x05\x16\x07 AppleDouble junk")
    with open(os.path.join(folder, ".DS_Store"), "wb") as f:
      f.write(b"Bud1\x00junk")
  for split, (images, labeled) in rows.items():
    with open(os.path.join(mura, f"{split}_image_paths.csv"), "w") as f:
      f.write("\n".join(images) + "\n")
    with open(os.path.join(mura, f"{split}_labeled_studies.csv"), "w") as f:
      f.write("\n".join(labeled) + "\n")
  return written


def tree_spec():
  rnd = random.Random(7)
  studies = []
  for p in range(1, 41):
    patient = f"patient{p:05d}"
    types = rnd.sample(["elbow", "hand", "shoulder", "wrist"], k=1 if p % 4 else 2)  # every 4th: several parts
    for t in types:
      for number in range(1, (3 if p % 5 == 0 else 2)):  # every 5th: two studies of a part
        modes = ["L"] if p % 3 else ["RGB", "L", "RGBA"]  # some files RGB(A)
        if p == 6:
          modes = ["I;16", "P"]
        studies.append(("train", t, patient, number, int(rnd.random() < 0.4), rnd.randint(1, 4), modes))
  for p in range(101, 107):
    studies.append(("valid", ["elbow", "hand", "shoulder"][p % 3], f"patient{p:05d}", 1, p % 2, 2, ["L", "RGB"]))
  return studies


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("mura_src"))
  written = write_tree(root, tree_spec())
  return root, written


def build(name, data_dir, manual_dir):
  builder = tfds.builder(name, data_dir=str(data_dir))
  config = tfds.download.DownloadConfig(manual_dir=str(manual_dir)) if manual_dir else None
  builder.download_and_prepare(download_config=config)
  return builder


def examples(builder, split, decode=True):
  decoders = None if decode else {"image": tfds.decode.SkipDecoding()}
  out = {}
  for ex in tfds.as_numpy(builder.as_dataset(split, decoders=decoders)):
    out[ex["image_id"].decode()] = ex
  return out


@pytest.fixture(scope="module")
def built_all(tree, tmp_path_factory):
  root, written = tree
  data_dir = tmp_path_factory.mktemp("tfds")
  return build("mura/all", data_dir, root), written, data_dir


# --- the happy path ----------------------------------------------------------------------------------------------------

def test_features_and_values(built_all):
  builder, written, _ = built_all
  info = builder.info
  assert info.features["image"].shape == (None, None, 1) and info.features["image"].dtype == np.uint8
  assert info.features["label"].names == ["normal", "abnormal"]
  assert info.features["study_type"].names == list(layout.STUDY_TYPES)
  train = examples(builder, "train")
  validation = examples(builder, "validation")
  test = examples(builder, "test")
  everything = {**train, **validation, **test}
  assert set(everything) == set(written)  # every listed image, no junk file
  for image_id, ex in everything.items():
    pixels, mode = written[image_id]  # gray, RGB(A) with R=G=B, palette and 16-bit sources all come back exactly
    assert ex["image"].dtype == np.uint8 and ex["image"].shape == pixels.shape + (1,)
    np.testing.assert_array_equal(ex["image"][..., 0], pixels, err_msg=f"{image_id} ({mode})")
    parts = image_id.split("/")
    assert ex["study_id"].decode() == "/".join(parts[:5])
    assert ex["patient_id"].decode() == parts[3]
    assert layout.STUDY_TYPES[ex["study_type"]] == parts[2][3:].lower()
    assert ex["label"] == (1 if parts[4].endswith("positive") else 0)
  assert {m for _, m in written.values()} == {"L", "RGB", "RGBA", "I;16", "P"}


def test_grayscale_png_bytes_stored_unchanged(built_all, tree):
  builder, written, _ = built_all
  root, _ = tree
  raw = {**examples(builder, "train", decode=False), **examples(builder, "test", decode=False)}
  gray = [i for i in raw if written[i][1] == "L"]
  rgb = [i for i in raw if written[i][1] == "RGB"]
  assert gray and rgb
  for image_id in gray:
    with open(os.path.join(root, image_id), "rb") as f:
      assert raw[image_id]["image"] == f.read()
  for image_id in rgb:  # converted: one channel, re-encoded
    assert Image.open(io.BytesIO(raw[image_id]["image"])).mode == "L"


def test_splits_patient_level_and_nested(built_all, tree):
  builder, written, _ = built_all
  ids = {s: examples(builder, s, decode=False) for s in layout.SPLITS}
  patients = {s: {ex["patient_id"].decode() for ex in v.values()} for s, v in ids.items()}
  assert set(builder.info.splits) == set(layout.SPLITS)
  assert patients["train"] and patients["validation"]
  assert not patients["train"] & patients["validation"]
  assert set(ids["test"]) == {i for i in written if "/valid/" in i}
  assert set(ids["train"]) | set(ids["validation"]) == {i for i in written if "/train/" in i}
  for p in patients["train"] | patients["validation"]:
    assert splits.is_validation_patient(p) == (p in patients["validation"])
  assert set(ids["train_1pct"]) <= set(ids["train_10pct"]) <= set(ids["train"])
  assert ids["train_1pct"]
  for small, big in (("train_1pct", "train_10pct"), ("train_10pct", "train")):  # whole patients
    assert {i for i, ex in ids[big].items() if ex["patient_id"].decode() in patients[small]} == set(ids[small])
  # the floor: a normal and an abnormal study of every study type train has one of (this tiny tree: more than 10%)
  cells = {s: {(int(ex["study_type"]), int(ex["label"])) for ex in v.values()} for s, v in ids.items()}
  assert len(cells["train"]) == 8
  assert cells["train_1pct"] == cells["train_10pct"] == cells["train"]


def test_multi_type_patients_keep_their_side_in_every_config(built_all, tree, tmp_path):
  builder_all, _, _ = built_all
  root, _ = tree
  elbow = build("mura/elbow", tmp_path, root)
  for split in ("train", "validation", "test"):
    exs = examples(elbow, split, decode=False)
    assert exs and all(layout.STUDY_TYPES[ex["study_type"]] == "elbow" for ex in exs.values())
    in_all = examples(builder_all, split, decode=False)
    assert set(exs) == {i for i, ex in in_all.items() if ex["study_type"] == 0}  # the same images, on the same side


def test_slicing(built_all):
  builder, _, _ = built_all
  n = builder.info.splits["train"].num_examples
  sliced = list(builder.as_dataset("train[:10%]"))
  assert len(sliced) == round(n * 10 / 100)
  assert builder.info.splits["train[:10%]"].num_examples == len(sliced)


def order_spec():
  """About 300 train patients of three study types, enough that the 10% subset is its quotas, not its floor."""
  rnd = random.Random(11)
  studies = []
  for p in range(1, 301):
    numbers = collections.Counter()
    for _ in range(rnd.choice((1, 1, 2))):
      study_type = rnd.choice(("elbow", "hand", "shoulder"))
      numbers[study_type] += 1
      studies.append(("train", study_type, f"patient{p:05d}", numbers[study_type], int(rnd.random() < 0.4),
                      rnd.randint(1, 3), ["L"]))
  for p in range(401, 407):
    studies.append(("valid", ["elbow", "hand", "shoulder"][p % 3], f"patient{p:05d}", 1, p % 2, 2, ["L"]))
  return studies


def _read_in_order(builder, split):
  """(image_id, patient_id, study_id, study type name, label) of a split in stored order."""
  names = builder.info.features["study_type"].names
  ds = builder.as_dataset(split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
  return [(ex["image_id"].decode(), ex["patient_id"].decode(), ex["study_id"].decode(), names[ex["study_type"]],
           int(ex["label"])) for ex in tfds.as_numpy(ds)]


@pytest.mark.slow  # builds a dataset of about 900 images
def test_train_stored_in_patient_order_with_the_subsets_as_prefixes(tmp_path):
  root = str(tmp_path / "src")
  write_tree(root, order_spec())
  builder = build("mura/elbow_hand_shoulder", tmp_path / "tfds", root)
  assert builder.info.disable_shuffling
  assert tfds.builder("mura/elbow_hand_shoulder", data_dir=str(tmp_path / "tfds")).info.disable_shuffling  # on disk
  got = {s: _read_in_order(builder, s) for s in layout.SPLITS}
  train, n = got["train"], len(got["train"])
  one, ten = ({row[1] for row in got[s]} for s in ("train_1pct", "train_10pct"))
  # the promised order, from the subsets' patients and the documented walk (SHA-256 of seed, draw 0 and the id)
  walk = {p: layout.stable_hash64(f"{splits.SUBSET_SEED}/draw0/{p}") for p in {row[1] for row in train}}
  group = lambda p: 0 if p in one else 1 if p in ten else 2  # noqa: E731
  assert [row[0] for row in train] == [row[0] for row in sorted(train, key=lambda r: (group(r[1]), walk[r[1]], r[0]))]
  for name, patients in (("train_1pct", one), ("train_10pct", ten)):  # subsets in train's order: 1% leads 10%
    assert got[name] == [row for row in train if row[1] in patients]
  for name in ("validation", "test"):
    assert [row[0] for row in got[name]] == sorted(row[0] for row in got[name])
  # the 10% subset is its quotas here (the floor adds at most a patient), so train[:10%] is it up to one patient
  assert abs(len(got["train_10pct"]) - n / 10) <= 3
  head = {row[1] for row in _read_in_order(builder, "train[:10%]")}
  assert len(head ^ ten) <= 1
  head = {row[1] for row in _read_in_order(builder, "train[:1%]")}
  assert head <= one if len(got["train_1pct"]) >= round(n / 100) else len(head ^ one) <= 1
  # the trainer's label draw 0, from the stored train split, is the stored subsets
  rows = [row[1:] for row in train]
  assert splits.draw_patients(rows, 0.1, 0) == ten and splits.draw_patients(rows, 0.01, 0) == one


def test_manual_dir_can_be_mura_folder_itself(tree, tmp_path):
  root, written = tree
  builder = build("mura/hand", tmp_path, os.path.join(root, "MURA-v1.1"))
  assert builder.info.splits["test"].num_examples == sum(1 for i in written if "/valid/XR_HAND/" in i)


def test_metadata_counts(built_all):
  builder, _, _ = built_all
  counts = builder.info.metadata["image_counts"]
  for split in layout.SPLITS:
    assert sum(counts[split].values()) == builder.info.splits[split].num_examples


# --- missing download --------------------------------------------------------------------------------------------------

def test_missing_manual_dir_explains_where_to_get_mura(tmp_path):
  with pytest.raises(FileNotFoundError) as e:
    build("mura/elbow", tmp_path, None)
  message = str(e.value)
  for needle in ("https://stanfordmlgroup.github.io/competitions/mura/", "downloads/manual/MURA-v1.1", "--mura_dir",
                 "mura_synthetic"):
    assert needle in message
  assert not tfds.builder("mura/elbow", data_dir=str(tmp_path)).is_prepared()


def test_manual_dir_without_mura(tmp_path):
  empty = tmp_path / "somewhere"
  empty.mkdir()
  (empty / "readme.txt").write_text("not MURA")
  with pytest.raises(FileNotFoundError, match="holds neither MURA-v1.1/train_image_paths.csv"):
    build("mura/elbow", tmp_path / "tfds", empty)


# --- bad inputs: one error naming the file, nothing prepared -----------------------------------------------------------

SMALL = [("train", "elbow", "patient00001", 1, 0, 2, ["L"]), ("train", "elbow", "patient00002", 1, 1, 2, ["RGB"]),
         ("train", "hand", "patient00002", 1, 0, 1, ["L"]), ("train", "hand", "patient00003", 1, 1, 1, ["L"]),
         ("train", "elbow", "patient00011", 1, 0, 1, ["L"]), ("train", "hand", "patient00012", 1, 0, 1, ["L"]),
         ("valid", "elbow", "patient00101", 1, 1, 2, ["L"]), ("valid", "hand", "patient00102", 1, 0, 1, ["L"])]
# patient00011 and patient00012 land in validation (splits.is_validation_patient), the others in train
BAD = "MURA-v1.1/train/XR_ELBOW/patient00001/study1_negative/image2.png"


def _leftovers(config_dir):
  """Whatever a failed build left in the config's folder (no version dir, no incomplete.* dir)."""
  return sorted(p.name for p in config_dir.iterdir()) if config_dir.exists() else []


def _append(path, line):
  with open(path, "a") as f:
    f.write(line + "\n")


def _replace(path, old, new):
  with open(path) as f:
    text = f.read()
  with open(path, "w") as f:
    f.write(text.replace(old, new))


def _truncate(root):
  path = os.path.join(root, BAD)
  data = open(path, "rb").read()
  open(path, "wb").write(data[: len(data) // 2])


def _not_png(root):
  buf = io.BytesIO()
  Image.fromarray(np.zeros((8, 8), np.uint8)).save(buf, format="JPEG")
  open(os.path.join(root, BAD), "wb").write(buf.getvalue())


def _absurd(root):
  Image.fromarray(np.zeros((2, 5000), np.uint8)).save(os.path.join(root, BAD))


def _escape(root):
  _append(os.path.join(root, "MURA-v1.1/train_image_paths.csv"), "MURA-v1.1/train/XR_ELBOW/../../../secret.png")


def _absolute(root):
  _append(os.path.join(root, "MURA-v1.1/train_image_paths.csv"), "/etc/passwd")


def _symlink(root):
  outside = os.path.join(os.path.dirname(root), "outside.png")
  shutil.copy(os.path.join(root, BAD), outside)
  os.remove(os.path.join(root, BAD))
  os.symlink(outside, os.path.join(root, BAD))


def _label_mismatch(root):
  _replace(os.path.join(root, "MURA-v1.1/train_labeled_studies.csv"),
           "patient00002/study1_positive/,1", "patient00002/study1_positive/,0")


def _bad_row(root):
  _append(os.path.join(root, "MURA-v1.1/train_labeled_studies.csv"),
          "MURA-v1.1/train/XR_ELBOW/patient00004/study1_negative/,maybe")


def _two_columns(root):
  _append(os.path.join(root, "MURA-v1.1/valid_image_paths.csv"), "MURA-v1.1/valid/XR_ELBOW/a.png,1")


def _unlisted_study(root):
  _append(os.path.join(root, "MURA-v1.1/train_image_paths.csv"),
          "MURA-v1.1/train/XR_ELBOW/patient00005/study1_negative/image1.png")


@pytest.mark.parametrize("damage, named, reason", [
    (lambda root: os.remove(os.path.join(root, BAD)), BAD, "missing file"),
    (_truncate, BAD, "truncated"),
    (_not_png, BAD, "not a PNG"),
    (_absurd, BAD, "absurd image size 5000x2"),
    (_escape, "MURA-v1.1/train/XR_ELBOW/../../../secret.png", "escapes the dataset folder"),
    (_absolute, "/etc/passwd", "escapes the dataset folder"),
    (_symlink, BAD, "escapes the dataset folder"),
    (_label_mismatch, "MURA-v1.1/train/XR_ELBOW/patient00002/study1_positive/", "folder says positive"),
    (_bad_row, "train_labeled_studies.csv line 7", "maybe"),
    (_two_columns, "valid_image_paths.csv line 4", "expected one image path"),
    (_unlisted_study, "patient00005/study1_negative/image1.png", "not listed in train_labeled_studies.csv"),
], ids=["missing", "truncated", "not_png", "absurd", "dotdot", "absolute", "symlink", "label", "row", "columns",
        "unlisted"])
def test_bad_input_fails_naming_the_file_and_prepares_nothing(tmp_path, damage, named, reason):
  root = str(tmp_path / "src")
  write_tree(root, SMALL)
  damage(root)
  data_dir = tmp_path / "tfds"
  with pytest.raises(reader.MuraFormatError) as e:
    build("mura/elbow", data_dir, root)
  message = str(e.value)
  assert named in message and reason in message
  assert "nothing was prepared" in message
  assert not tfds.builder("mura/elbow", data_dir=str(data_dir)).is_prepared()
  assert _leftovers(data_dir / "mura" / "elbow") == []


def test_all_problems_in_one_error_with_a_limit(tmp_path):
  root = str(tmp_path / "src")
  spec = [("train", "elbow", f"patient{p:05d}", 1, 0, 1, ["L"]) for p in range(1, 31)]
  write_tree(root, spec)
  for p in range(1, 26):
    os.remove(os.path.join(root, f"MURA-v1.1/train/XR_ELBOW/patient{p:05d}/study1_negative/image1.png"))
  _truncate_path = os.path.join(root, "MURA-v1.1/train/XR_ELBOW/patient00030/study1_negative/image1.png")
  open(_truncate_path, "wb").write(b"\x89PNG\r\n\x1a\n")
  with pytest.raises(reader.MuraFormatError) as e:
    build("mura/elbow", tmp_path / "tfds", root)
  message = str(e.value)
  assert "26 problems" in message
  assert message.count("missing file") + message.count("truncated") == reader.MAX_LISTED_PROBLEMS
  assert "... and 6 more" in message


def test_problems_in_other_study_types_do_not_block_a_config(tmp_path):
  root = str(tmp_path / "src")
  write_tree(root, SMALL)
  os.remove(os.path.join(root, "MURA-v1.1/train/XR_HAND/patient00002/study1_negative/image1.png"))
  builder = build("mura/elbow", tmp_path / "tfds", root)
  assert builder.is_prepared()
  with pytest.raises(reader.MuraFormatError, match="XR_HAND/patient00002/study1_negative/image1.png: missing file"):
    build("mura/hand", tmp_path / "tfds", root)


def test_empty_split_is_a_clear_error(tmp_path):
  root = str(tmp_path / "src")
  write_tree(root, [s for s in SMALL if s[2] != "patient00011"])  # no elbow patient left for validation
  with pytest.raises(reader.MuraFormatError, match="no images for split.s. validation of config 'elbow'"):
    build("mura/elbow", tmp_path / "tfds", root)
  assert _leftovers(tmp_path / "tfds" / "mura" / "elbow") == []


# --- split selection (pure functions, realistic sizes) -----------------------------------------------------------------

def _fake_records(n_patients, seed=0, types=("elbow",)):
  rng = np.random.default_rng(seed)
  records = []
  for p in range(n_patients):
    patient = f"patient{p:05d}"
    for s in range(1 + (rng.random() < 0.2)):
      label = int(rng.random() < 0.4)
      study_type = types[rng.integers(len(types))]
      study_id = f"MURA-v1.1/train/XR_{study_type.upper()}/{patient}/study{s + 1}_{'positive' if label else 'negative'}"
      for i in range(rng.integers(1, 6)):
        records.append(layout.ImageRecord(f"{study_id}/image{i + 1}.png", study_id, patient, study_type, label,
                                          "train", ""))
  return records


def test_validation_fraction_is_about_a_fifth_and_stable():
  ids = [f"patient{i:05d}" for i in range(1, 12001)]
  share = np.mean([splits.is_validation_patient(p) for p in ids])
  assert 0.18 < share < 0.22
  # pinned: a patient's side is a function of its id alone, the same in every process (unlike Python's salted hash)
  assert splits.is_validation_patient("patient00011") and not splits.is_validation_patient("patient00001")


@pytest.mark.parametrize("types", [("elbow",), ("elbow", "hand", "shoulder")])
def test_label_subsets_hit_targets(types):
  records = _fake_records(1500, types=types)
  out = splits.assign_splits(records)
  train = out["train"]
  share = np.mean([r.label for r in train])
  biggest = max(collections.Counter(r.patient_id for r in train).values())
  for name, fraction in (("train_10pct", 0.1), ("train_1pct", 0.01)):
    sub = out[name]
    # over the target only by the floor: at most one patient per (study type, label) cell
    assert 0.9 * fraction * len(train) <= len(sub) <= fraction * len(train) + 2 * len(types) * biggest
    assert abs(np.mean([r.label for r in sub]) - share) < 0.05
    assert {(r.study_type, r.label) for r in sub} == {(t, label) for t in types for label in (0, 1)}
  assert {r.image_id for r in out["train_1pct"]} <= {r.image_id for r in out["train_10pct"]}
  again = splits.assign_splits(list(reversed(records)))
  assert {r.image_id for r in again["train_10pct"]} == {r.image_id for r in out["train_10pct"]}
