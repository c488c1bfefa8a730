"""`simclr_mura.prepare`: building any config by name, from Python and from the command line."""
import os

import pytest
import tensorflow_datasets as tfds

from simclr_mura import prepare
from simclr_mura.datasets import synthetic
from simclr_mura.datasets.mura_synthetic import MuraSynthetic

tfds.disable_progress_bar()


@pytest.fixture(scope="module")
def mura_parent(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("src"))
  synthetic.write_mura_tree(root, seed=1, scale=0.01, study_types=("elbow",))
  return root


@pytest.mark.parametrize("name", ["mura/knee", "imagenet/elbow", "mura", "mura_synthetic/"])
def test_unknown_dataset_is_a_one_line_error_listing_the_accepted(name):
  with pytest.raises(ValueError) as e:
    prepare.prepare(name)
  message = str(e.value)
  assert "\n" not in message and repr(name) in message
  for accepted in ("mura/<config>", "mura_synthetic/<config>", "elbow_hand_shoulder", "all", "wrist"):
    assert accepted in message


def test_prepare_builds_once_and_returns_the_builder(mura_parent, tmp_path):
  builder = prepare.prepare("mura/elbow", data_dir=str(tmp_path), mura_dir=os.path.join(mura_parent, "MURA-v1.1"))
  assert builder.is_prepared()
  n = builder.info.splits["train"].num_examples
  assert n > 0
  info_file = os.path.join(builder.data_dir, "dataset_info.json")
  stamp = os.path.getmtime(info_file)
  again = prepare.prepare("mura/elbow", data_dir=str(tmp_path))  # already prepared: no MURA needed
  assert again.info.splits["train"].num_examples == n and os.path.getmtime(info_file) == stamp


def test_cli_builds_and_reports(mura_parent, tmp_path, capsys):
  prepare.run(["--dataset=mura/elbow", f"--data_dir={tmp_path}", f"--mura_dir={mura_parent}"])
  out = capsys.readouterr().out
  assert "mura/elbow ready in" in out and "train_10pct=" in out and "test=" in out
  assert tfds.builder("mura/elbow", data_dir=str(tmp_path)).is_prepared()


@pytest.mark.slow  # builds a dataset
def test_cli_synthetic_scale_and_errors(tmp_path, capsys):
  prepare.run(["--dataset=mura_synthetic/elbow", f"--data_dir={tmp_path}", "--scale=0.01"])
  assert "mura_synthetic/elbow ready in" in capsys.readouterr().out
  version = str(MuraSynthetic.VERSION)
  assert os.path.isdir(tmp_path / "mura_synthetic" / "elbow-scale0.01-seed0" / version)
  for argv, message in (
      (["--dataset=mura/knee"], "unknown dataset 'mura/knee'"),
      (["--dataset=mura/elbow"], "https://stanfordmlgroup.github.io/competitions/mura/"),
      # real MURA has one size: a --scale is refused, not ignored
      (["--dataset=mura/elbow", "--scale=0.3"], "--scale=0.3: accepted: a positive number, with mura_synthetic only")):
    with pytest.raises(SystemExit) as e:
      prepare.run([*argv, f"--data_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and err.startswith("python -m simclr_mura.prepare: error: "), err
