"""`./run.sh`: the whole study end to end on a tiny preset, skip-and-resume, and bad arguments."""
import json
import os
import shutil
import subprocess

import pandas as pd
import pytest

from conftest import REPO
from simclr_mura.study import runner as study

ARMS = ["baseline", "scratch_1pct", "scratch_10pct", "scratch_100pct", "simclr_linear", "simclr_finetune_1pct",
        "simclr_finetune_10pct", "simclr_finetune_100pct"]


def _run_sh(*args, timeout=900):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  return subprocess.run([os.path.join(REPO, "run.sh"), *args], cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=timeout)


@pytest.fixture(scope="module")
def tiny_study(synthetic_data_dir, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("study"))
  proc = _run_sh("--preset=tiny", "--parts=elbow", f"--out={out}", f"--data_dir={synthetic_data_dir}")
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return out, proc.stdout


def test_every_arm_ran_and_the_report_is_complete(tiny_study):
  out, stdout = tiny_study
  for arm in ARMS:
    assert os.path.isfile(os.path.join(out, "elbow", arm, "result.json")), arm
    assert os.path.isfile(os.path.join(out, "elbow", arm, "predictions_test.csv")), arm
  assert tf_checkpoint_exists(os.path.join(out, "elbow", "simclr_pretrain"))
  report = os.path.join(out, "report")
  results = pd.read_csv(os.path.join(report, "results.csv"))
  assert list(results.columns) == ["body_part", "arm", "level", "n", "accuracy", "precision", "recall",
                                   "specificity", "f1", "auroc", "kappa"]
  assert sorted(zip(results["arm"], results["level"])) == sorted((a, l) for a in ARMS for l in ("image", "study"))
  with open(os.path.join(report, "results.md")) as f:
    md = f.read()
  pngs = [f for f in os.listdir(report) if f.endswith(".png")]
  for name in ("label_fraction_elbow.png", "gradcam_elbow.png"):
    assert name in pngs and name in md
  assert any(f.startswith("curves_elbow_") for f in pngs)
  assert os.path.isfile(os.path.join(report, "data", "counts.md"))
  for png in pngs:
    with open(os.path.join(report, png), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert "simclr_finetune_10pct" in stdout and "[9/9]" in stdout  # progress lines and the printed table


def tf_checkpoint_exists(model_dir):
  import tensorflow as tf
  return tf.train.latest_checkpoint(model_dir) is not None


def test_mura_dir_runs_the_same_grid_on_a_mura_format_tree(tmp_path):
  """`./run.sh --mura_dir=DIR`: the real `mura` builder prepared from a MURA-v1.1 tree, every arm, the report."""
  from simclr_mura.datasets import synthetic
  synthetic.write_mura_tree(str(tmp_path / "download"), study_types=("elbow",))  # any MURA-v1.1-format tree
  out, data_dir = str(tmp_path / "study"), str(tmp_path / "tfds")
  proc = _run_sh(f"--mura_dir={tmp_path / 'download'}", "--preset=tiny", "--parts=elbow", f"--out={out}",
                 f"--data_dir={data_dir}")
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "Study: mura elbow, preset tiny, 9 runs" in proc.stdout
  for arm in ARMS:
    with open(os.path.join(out, "elbow", arm, "result.json")) as f:
      assert json.load(f)["dataset"] == "mura/elbow", arm
  assert os.path.isdir(os.path.join(data_dir, "mura", "elbow"))
  assert not os.path.exists(os.path.join(data_dir, "mura_synthetic"))
  results = pd.read_csv(os.path.join(out, "report", "results.csv"))
  assert sorted(zip(results["arm"], results["level"])) == sorted((a, l) for a in ARMS for l in ("image", "study"))
  assert set(results["body_part"]) == {"elbow"}
  with open(os.path.join(out, "report", "data", "counts.md")) as f:
    assert f.read().startswith("# Data exploration: `mura/elbow`")


def test_rerun_skips_finished_arms_and_resumes_an_interrupted_one(tiny_study, synthetic_data_dir):
  out, _ = tiny_study
  arm = os.path.join(out, "elbow", "scratch_100pct")
  os.remove(os.path.join(arm, study.DONE_FILE))  # as if the run stopped after its last checkpoint
  os.remove(os.path.join(arm, "result.json"))
  proc = _run_sh("--preset=tiny", "--parts=elbow", f"--out={out}", f"--data_dir={synthetic_data_dir}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.count("done earlier, skipped") == 8
  assert "Already trained to step" in proc.stdout  # resumed from its checkpoint, not retrained
  assert os.path.isfile(os.path.join(arm, "result.json"))


@pytest.mark.parametrize("args, message", [
    (["--parts=elbow,knee"], "unknown body part(s) knee"),
    (["--preset=huge"], "invalid choice: 'huge'"),
    (["--mura_dir=/nonexistent/MURA"], "is not a folder"),
])
def test_bad_arguments_get_a_usage_message(args, message):
  proc = _run_sh(*args, timeout=120)
  assert proc.returncode == 2
  assert "usage: ./run.sh" in proc.stderr and message in proc.stderr


def test_arm_commands_follow_the_contract():
  names = [a.name for a in study.arms("paper")]
  assert sorted(names) == sorted(ARMS + ["simclr_pretrain"])
  assert names[0] == "simclr_pretrain"
  args = study._parse(["--mura_dir=/tmp", "--parts=hand"])
  assert args.preset == "paper" and args.builder == "mura"
  finetune = next(a for a in study.arms("paper") if a.name == "simclr_finetune_1pct")
  argv = study.arm_argv(finetune, "hand", args)
  assert f"--checkpoint={os.path.join(args.out, 'hand', 'simclr_pretrain')}" in argv
  assert "--train_split=train_1pct" in argv and "--dataset=mura/hand" in argv and "--mura_dir=/tmp" in argv
  scratch = study.arm_argv(next(a for a in study.arms("paper") if a.name == "scratch_1pct"), "hand", args)
  assert not any(a.startswith("--checkpoint") for a in scratch)


@pytest.mark.parametrize("preset", ["quick", "paper"])
def test_supervised_arms_evaluate_on_the_views_they_train_on(preset):
  from simclr_mura import flags as trainer_flags
  args = study._parse([f"--preset={preset}", "--parts=elbow"])
  for arm in study.arms(preset):
    config = trainer_flags.config_from_argv(study.arm_argv(arm, "elbow", args))
    if arm.name == "simclr_pretrain":
      assert (config.train_crop, config.eval_crop) == ("random", "center"), arm.name  # SimCLR's views and probe
    else:  # whole films in training and evaluation (a centre crop would zoom in on what training saw whole)
      assert (config.train_crop, config.eval_crop) == ("none", "none"), arm.name
