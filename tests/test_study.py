"""The whole study (`./run.sh`, `python -m simclr_mura.study`, `simclr-mura-study`) end to end on a tiny preset, from
a non-editable install in another folder; skip-and-resume; bad arguments; and how `run.sh` hands its arguments on.

The study runs with this interpreter (`sys.executable`), never through `run.sh`'s own venv: no test installs into or
changes the environment it runs in.
"""
import json
import os
import shutil
import stat
import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO
from simclr_mura.layout import ARMS as ALL_ARMS
from simclr_mura.layout import RunDir, UNEVALUATED_ARMS
from simclr_mura.study import arms as study_arms
from simclr_mura.study import cli, runner

ARMS = [a for a in ALL_ARMS if a not in UNEVALUATED_ARMS]


def _env(**extra):
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", **extra)


def _study(*args, timeout=900):
  """`python -m simclr_mura.study ARGS` from the repository, with this interpreter (the source tree's package)."""
  return subprocess.run([sys.executable, "-m", "simclr_mura.study", *args], cwd=REPO, env=_env(), capture_output=True,
                        text=True, timeout=timeout)


def _install(tmp_path_factory) -> tuple[str, dict[str, str]]:
  """A non-editable install of a copy of the source tree into a folder that this interpreter imports through
  PYTHONPATH (no venv is touched, nothing is downloaded): setuptools' `build_py` lays out exactly the files a wheel of
  this pure-Python package holds (packages and package data), `egg_info` its console scripts.

  (`pip wheel --no-build-isolation` would need a setuptools recent enough for the installed `wheel`, which the
  environment running the tests need not have.) Returns (the folder, {console script: "module:function"}).
  """
  src = tmp_path_factory.mktemp("src")
  files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
  for name in filter(None, files.split("\0")):
    path = os.path.join(REPO, name)
    if os.path.islink(path) or not os.path.isfile(path):
      continue  # the top-level flags/ link: not part of the package
    os.makedirs(src / os.path.dirname(name), exist_ok=True)
    shutil.copy2(path, src / name)
  site, info = tmp_path_factory.mktemp("site"), tmp_path_factory.mktemp("egg_info")
  subprocess.run([sys.executable, "setup.py", "-q", "build_py", f"--build-lib={site}", "egg_info",
                  f"--egg-base={info}"], cwd=src, check=True, capture_output=True, timeout=300)
  (egg,) = os.listdir(info)
  scripts = {}
  with open(os.path.join(info, egg, "entry_points.txt")) as f:
    for line in f:
      if "=" in line:
        name, target = (x.strip() for x in line.split("=", 1))
        scripts[name] = target
  return str(site), scripts


def _console_script(target: str) -> list[str]:
  """The command a console script `module:function` runs (what pip's generated launcher does)."""
  module, function = target.split(":")
  return [sys.executable, "-c", f"import sys; from {module} import {function}; sys.exit({function}())"]


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
  """The tiny study run by the installed console script `simclr-mura-study` from an unrelated folder, two arms side by
  side, preparing its data as a first run does (the arms' worker processes render mura_synthetic)."""
  site, scripts = _install(tmp_path_factory)
  for name in ("simclr-mura", "simclr-mura-prepare", "simclr-mura-explore", "simclr-mura-predict", "simclr-mura-report",
               "simclr-mura-study", "simclr-mura-benchmark"):
    assert name in scripts, name
  elsewhere = tmp_path_factory.mktemp("elsewhere")
  env = _env(PYTHONPATH=site)
  where = subprocess.run([sys.executable, "-c", "import simclr_mura.study.arms as a; print(a.__file__); "
                          "print(a.presets_dir())"], cwd=elsewhere, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
  assert all(p.startswith(site) for p in where), where  # the installed copy, not the source tree
  assert os.path.isfile(os.path.join(where[1], "tiny.cfg"))
  out = str(tmp_path_factory.mktemp("study"))
  proc = subprocess.run([*_console_script(scripts["simclr-mura-study"]), "--preset=tiny", "--parts=elbow",
                         f"--out={out}", f"--data_dir={tmp_path_factory.mktemp('tfds')}", "--jobs=2"],
                        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert not os.path.exists(os.path.join(elsewhere, "runs"))  # --out given: nothing written in the current folder
  return out, proc.stdout


@pytest.mark.slow
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


@pytest.mark.slow
def test_two_jobs_run_arms_side_by_side_after_their_pretraining(tiny_study):
  """--jobs=2: arms overlap in time, each leaves its output in its log, and no arm that restores the pretraining
  starts before the pretraining finished."""
  out, stdout = tiny_study
  times = {}
  for arm in ["simclr_pretrain", *ARMS]:
    run_dir = RunDir(os.path.join(out, "elbow", arm))
    with open(run_dir.done_json) as f:
      done = json.load(f)
    times[arm] = (done["started"], done["finished"])
    with open(run_dir.log) as f:
      log = f.read()
    assert log.startswith("python run.py ") and "--model_dir=" + run_dir.path in log.splitlines()[0], arm
  for arm in ("simclr_linear", "simclr_finetune_1pct", "simclr_finetune_10pct", "simclr_finetune_100pct"):
    assert times[arm][0] >= times["simclr_pretrain"][1], arm
  spans = sorted(times.values())
  assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))  # two arms ran at once
  assert "2 side by side" in stdout and "started" in stdout and "finished in" in stdout


def tf_checkpoint_exists(model_dir):
  import tensorflow as tf
  return tf.train.latest_checkpoint(model_dir) is not None


@pytest.mark.slow
def test_mura_dir_runs_the_same_grid_on_a_mura_format_tree(tmp_path):
  """`./run.sh --mura_dir=DIR`: the real `mura` builder prepared from a MURA-v1.1 tree, every arm, the report."""
  from simclr_mura.datasets import synthetic
  synthetic.write_mura_tree(str(tmp_path / "download"), study_types=("elbow",))  # any MURA-v1.1-format tree
  out, data_dir = str(tmp_path / "study"), str(tmp_path / "tfds")
  proc = _study(f"--mura_dir={tmp_path / 'download'}", "--preset=tiny", "--parts=elbow", f"--out={out}",
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


@pytest.mark.slow
def test_rerun_skips_finished_arms_and_resumes_an_interrupted_one(tiny_study, synthetic_data_dir):
  out, _ = tiny_study
  arm = RunDir(os.path.join(out, "elbow", "scratch_100pct"))
  os.remove(arm.done_json)  # as if the run stopped after its last checkpoint
  os.remove(arm.result_json)
  proc = _study("--preset=tiny", "--parts=elbow", f"--out={out}", f"--data_dir={synthetic_data_dir}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.count("done earlier, skipped") == 8
  assert "Already trained to step" in proc.stdout  # resumed from its checkpoint, not retrained
  assert os.path.isfile(arm.result_json)


@pytest.mark.parametrize("args, message", [
    (["--parts=elbow,knee"], "unknown body part(s) knee"),
    (["--preset=huge"], "invalid choice: 'huge'"),
    (["--mura_dir=/nonexistent/MURA"], "is not a folder"),
    (["--jobs=0"], "--jobs=0: accepted: a whole number of at least 1"),
    (["--jobs=two"], "argument --jobs: invalid int value: 'two'"),
])
def test_bad_arguments_get_a_usage_message(args, message):
  proc = _study(*args, timeout=120)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("./run.sh: error: ") and message in lines[0], proc.stderr


def test_arm_commands_name_every_arm_and_its_inputs():
  names = [a.name for a in study_arms.arms("paper")]
  assert sorted(names) == sorted(ARMS + ["simclr_pretrain"])
  assert names[0] == "simclr_pretrain"
  args = cli.parse_args(["--mura_dir=/tmp", "--parts=hand"])
  assert args.preset == "paper" and args.builder == "mura"
  finetune = next(a for a in study_arms.arms("paper") if a.name == "simclr_finetune_1pct")
  argv = runner.arm_argv(finetune, "hand", args)
  assert f"--checkpoint={os.path.join(args.out, 'hand', 'simclr_pretrain')}" in argv
  assert "--train_split=train_1pct" in argv and "--dataset=mura/hand" in argv and "--mura_dir=/tmp" in argv
  assert args.jobs == 1  # the paper preset's arms share one GPU
  assert cli.parse_args(["--parts=hand"]).jobs == min(2, os.cpu_count())
  scratch = runner.arm_argv(next(a for a in study_arms.arms("paper") if a.name == "scratch_1pct"), "hand", args)
  assert not any(a.startswith("--checkpoint") for a in scratch)


@pytest.mark.parametrize("preset", ["quick", "paper"])
def test_supervised_arms_evaluate_on_the_views_they_train_on(preset):
  from simclr_mura import flags as trainer_flags
  args = cli.parse_args([f"--preset={preset}", "--parts=elbow"])
  for arm in study_arms.arms(preset):
    config = trainer_flags.config_from_argv(runner.arm_argv(arm, "elbow", args))
    if arm.name == "simclr_pretrain":
      assert (config.train_crop, config.eval_crop) == ("random", "center"), arm.name  # SimCLR's views and probe
    else:  # whole films in training and evaluation (a centre crop would zoom in on what training saw whole)
      assert (config.train_crop, config.eval_crop) == ("none", "none"), arm.name


def _fake_repo(tmp_path):
  """A copy of run.sh and setup.py beside a fake `.venv/bin/python` that logs its arguments instead of running."""
  shutil.copy2(os.path.join(REPO, "run.sh"), tmp_path / "run.sh")
  shutil.copy2(os.path.join(REPO, "setup.py"), tmp_path / "setup.py")
  python = tmp_path / ".venv" / "bin" / "python"
  python.parent.mkdir(parents=True)
  python.write_text('#!/bin/sh\necho "$*" >> "$(dirname "$0")/../calls.log"\n')
  python.chmod(python.stat().st_mode | stat.S_IEXEC)
  return tmp_path / ".venv" / "calls.log"


def _calls(log):
  return log.read_text().splitlines() if log.exists() else []


def test_run_sh_hands_its_arguments_on_and_installs_once(tmp_path):
  log = _fake_repo(tmp_path)
  run_sh = [str(tmp_path / "run.sh")]
  subprocess.run([*run_sh, "test", "-m", "not slow"], check=True, capture_output=True, env=_env())
  assert _calls(log) == ["-m pip install --quiet --upgrade pip", "-m pip install --quiet -e .[test]",
                         "-m pytest tests -m not slow"]
  # an install with the test extra serves the study too: no reinstall, the arguments go to the study module
  subprocess.run([*run_sh, "--parts=hand", "--preset=tiny"], check=True, capture_output=True, env=_env())
  assert _calls(log)[3:] == ["-m simclr_mura.study --parts=hand --preset=tiny"]
  subprocess.run([*run_sh, "test", "-x"], check=True, capture_output=True, env=_env())
  assert _calls(log)[4:] == ["-m pytest tests -x"]
