"""`simclr_mura.explore`: counts tables and figures for a prepared dataset."""
import os

import pandas as pd
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from simclr_mura import explore as explore_cli
from simclr_mura.data import explore
from simclr_mura.datasets import synthetic

tfds.disable_progress_bar()

TYPES = ("elbow", "hand", "shoulder")


@pytest.fixture(scope="module")
def explored(tmp_path_factory):
  src = str(tmp_path_factory.mktemp("src"))
  synthetic.write_mura_tree(src, seed=2, scale=0.008, study_types=TYPES)
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  out = str(tmp_path_factory.mktemp("explore"))
  paths = explore.explore("mura/elbow_hand_shoulder", out, data_dir=data_dir, mura_dir=src)
  builder = tfds.builder("mura/elbow_hand_shoulder", data_dir=data_dir)
  return paths, builder


def test_writes_every_output(explored):
  paths, _ = explored
  expected = {"counts_csv", "counts_md", "label_distribution"} | {f"samples_{t}" for t in TYPES}
  assert set(paths) == expected
  for name, path in paths.items():
    assert os.path.getsize(path) > 0, name
  assert os.path.basename(paths["counts_csv"]) == "counts.csv"
  assert os.path.basename(paths["samples_hand"]) == "samples_hand.png"


def test_counts_match_the_dataset(explored):
  paths, builder = explored
  counts = pd.read_csv(paths["counts_csv"])
  for split, info in builder.info.splits.items():
    total = counts[(counts["split"] == split) & (counts["study_type"] == "total")].iloc[0]
    assert total["images"] == info.num_examples == total["normal_images"] + total["abnormal_images"]
    per_type = counts[(counts["split"] == split) & (counts["study_type"] != "total")]
    assert per_type["images"].sum() == info.num_examples
    assert set(per_type["study_type"]) <= set(TYPES)
  train = counts[(counts["split"] == "train") & (counts["study_type"] == "elbow")].iloc[0]
  assert train["abnormal_share"] == pytest.approx(train["abnormal_images"] / train["images"], abs=1e-4)


def test_markdown_tables(explored):
  paths, builder = explored
  text = open(paths["counts_md"]).read()
  assert "| Part | Normal | Abnormal | Total | Abnormal share |" in text
  assert text.count("| **Total** |") == 6  # five split tables + the per-split overview
  train_table = text.split("Table 1: Train split")[1].split("Table 2")[0]
  total_row = [line for line in train_table.splitlines() if line.startswith("| **Total** |")][0]
  cells = [c.strip() for c in total_row.strip("|").split("|")]
  assert int(cells[3]) == builder.info.splits["train"].num_examples == int(cells[1]) + int(cells[2])
  for part in ("Elbow", "Hand", "Shoulder"):
    assert f"| {part} |" in text


def test_figures_are_readable_images(explored):
  paths, _ = explored
  for name in ["label_distribution"] + [f"samples_{t}" for t in TYPES]:
    with Image.open(paths[name]) as im:
      im.load()
      assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 200


def test_cli_prints_the_written_files(explored, capsys, tmp_path):
  _, builder = explored
  data_dir = os.path.dirname(os.path.dirname(os.path.dirname(builder.data_dir)))
  explore_cli.run(["--dataset=mura/elbow_hand_shoulder", f"--data_dir={data_dir}", f"--out={tmp_path}"])
  out = capsys.readouterr().out
  assert f"counts_md: {tmp_path / 'counts.md'}" in out and os.path.exists(tmp_path / "samples_shoulder.png")
