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
from simclr_mura.layout import DISTILL_ARMS
from simclr_mura.layout import MICLE_ARMS, STUDY_TYPES, RunDir, UNEVALUATED_ARMS
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


def _runs(out: str, part: str = "elbow", draws: int = 1, arms=(*ARMS, *DISTILL_ARMS)) -> list[str]:
  """The evaluated run folders of one body part of a study with `draws` label draws (the tiny preset runs the
  distillation arms too)."""
  folders = []
  for arm in arms:
    drawn = not arm.endswith("100pct") and arm != "baseline"
    folders += [os.path.join(out, part, arm, f"draw{k}") for k in range(draws)] if drawn else [
        os.path.join(out, part, arm)]
  return folders


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
  """The tiny study (one label draw) run by the installed console script `simclr-mura-study` from an unrelated
  folder, two runs side by side, preparing its data as a first run does (the runs' worker processes render
  mura_synthetic)."""
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
                         "--draws=1", f"--out={out}", f"--data_dir={tmp_path_factory.mktemp('tfds')}", "--jobs=2"],
                        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert not os.path.exists(os.path.join(elsewhere, "runs"))  # --out given: nothing written in the current folder
  return out, proc.stdout


@pytest.mark.slow
def test_every_arm_ran_and_the_report_is_complete(tiny_study):
  out, stdout = tiny_study
  runs = _runs(out)
  for folder in runs:
    assert os.path.isfile(os.path.join(folder, "result.json")), folder
    assert os.path.isfile(os.path.join(folder, "predictions_test.csv")), folder
  assert tf_checkpoint_exists(os.path.join(out, "simclr_pretrain"))  # union pretraining: one for the study
  report = os.path.join(out, "report")
  results = pd.read_csv(os.path.join(report, "results.csv"))
  assert list(results.columns) == ["body_part", "arm", "draw", "level", "n", "accuracy", "precision", "recall",
                                   "specificity", "f1", "auroc", "kappa"]
  elbow = results[results["body_part"] == "elbow"]
  assert sorted(zip(elbow["arm"], elbow["draw"], elbow["level"])) == sorted(
      (a, 0, l) for a in (*ARMS, *DISTILL_ARMS) for l in ("image", "study"))
  assert set(results["body_part"]) == {"elbow", "pooled"}
  summary = pd.read_csv(os.path.join(report, "summary.csv"))
  assert list(summary.columns) == ["body_part", "arm", "level", "metric", "n_draws", "mean", "sd", "ci_low",
                                   "ci_high", "ci_method"]
  comparison = pd.read_csv(os.path.join(report, "comparison.csv"))
  assert list(comparison.columns) == ["body_part", "fraction", "readout", "level", "metric", "simclr", "scratch",
                                      "diff", "ci_low", "ci_high", "n_draws"]
  assert {"finetune", "linear", "distill", "distill_vs_scratch"} == set(comparison["readout"])
  with open(os.path.join(report, "results.md")) as f:
    md = f.read()
  assert md.index("Primary endpoint") < md.index("0.")  # declared before any number
  pngs = [f for f in os.listdir(report) if f.endswith(".png")]
  for name in ("label_efficiency_elbow.png", "label_efficiency_pooled.png", "gradcam_elbow.png"):
    assert name in pngs and name in md, name
  assert any(f.startswith("curves_elbow_") for f in pngs)
  assert os.path.isfile(os.path.join(report, "data", "counts.md"))
  for png in pngs:
    with open(os.path.join(report, png), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert "Primary endpoint" in stdout and "[13/13]" in stdout  # progress lines and the printed table


@pytest.mark.slow
def test_label_draw_arms_train_on_the_same_patients(tiny_study):
  """Draw 0 of the 1% arms: scratch, linear and fine-tuning train on the same patients, as their flags say."""
  out, _ = tiny_study
  flags = []
  for family in ("scratch", "simclr_linear", "simclr_finetune"):
    with open(os.path.join(out, "elbow", f"{family}_1pct", "draw0", "flags.json")) as f:
      flags.append(json.load(f))
  assert {(f["train_split"], f["label_fraction"], f["label_draw"]) for f in flags} == {("train", 0.01, 0)}
  with open(os.path.join(out, "elbow", "scratch_1pct", "draw0", RunDir.LOG)) as f:
    log = f.read()
  assert "Label draw 0 of 0.01 of train:" in log


@pytest.mark.slow
def test_two_jobs_run_arms_side_by_side_after_their_pretraining(tiny_study):
  """--jobs=2: runs overlap in time, each leaves its output in its log, and no run that restores the pretraining
  starts before the pretraining finished."""
  out, stdout = tiny_study
  times = {}
  for folder in [os.path.join(out, "simclr_pretrain"), *_runs(out)]:
    run_dir = RunDir(folder)
    with open(run_dir.done_json) as f:
      done = json.load(f)
    times[folder] = (done["started"], done["finished"])
    with open(run_dir.log) as f:
      log = f.read()
    assert log.startswith("python run.py ") and "--model_dir=" + run_dir.path in log.splitlines()[0], folder
  pretraining = times[os.path.join(out, "simclr_pretrain")]
  for folder, (started, _) in times.items():
    if "simclr_linear" in folder or "simclr_finetune" in folder:
      assert started >= pretraining[1], folder
    if "simclr_distill" in folder:  # after its teacher, the fine-tuning run of its draw
      assert started >= times[folder.replace("simclr_distill", "simclr_finetune")][1], folder
  spans = sorted(times.values())
  assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))  # two runs at once
  assert "2 side by side" in stdout and "started" in stdout and "finished in" in stdout


def tf_checkpoint_exists(model_dir):
  import tensorflow as tf
  return tf.train.latest_checkpoint(model_dir) is not None


@pytest.mark.slow
def test_mura_dir_runs_the_study_on_a_mura_format_tree(tmp_path):
  """`./run.sh --mura_dir=DIR`: the real `mura` builder prepared from a MURA-v1.1 tree, a label-draw arm, the
  report (--arms keeps it to one run: the grid itself is the synthetic study's)."""
  from simclr_mura.datasets import synthetic
  synthetic.write_mura_tree(str(tmp_path / "download"), study_types=("elbow",))  # any MURA-v1.1-format tree
  out, data_dir = str(tmp_path / "study"), str(tmp_path / "tfds")
  proc = _study(f"--mura_dir={tmp_path / 'download'}", "--preset=tiny", "--parts=elbow", "--draws=1",
                "--arms=scratch_1pct", f"--out={out}", f"--data_dir={data_dir}")
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "Study: mura elbow, preset tiny" in proc.stdout and "1 runs" in proc.stdout
  with open(os.path.join(out, "elbow", "scratch_1pct", "draw0", "result.json")) as f:
    assert json.load(f)["dataset"] == "mura/elbow"
  assert os.path.isdir(os.path.join(data_dir, "mura", "elbow"))
  assert not os.path.exists(os.path.join(data_dir, "mura_synthetic"))
  results = pd.read_csv(os.path.join(out, "report", "results.csv"))
  assert set(zip(results["body_part"], results["arm"])) == {("elbow", "scratch_1pct"), ("pooled", "scratch_1pct")}
  with open(os.path.join(out, "report", "data", "counts.md")) as f:
    assert f.read().startswith("# Data exploration: `mura/elbow`")


@pytest.mark.slow
def test_rerun_skips_finished_arms_and_resumes_an_interrupted_one(tiny_study, synthetic_data_dir):
  out, _ = tiny_study
  arm = RunDir(os.path.join(out, "elbow", "scratch_100pct"))
  os.remove(arm.done_json)  # as if the run stopped after its last checkpoint
  os.remove(arm.result_json)
  proc = _study("--preset=tiny", "--parts=elbow", "--draws=1", f"--out={out}", f"--data_dir={synthetic_data_dir}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.count("done earlier, skipped") == 12
  assert "Already trained to step" in proc.stdout  # resumed from its checkpoint, not retrained
  assert os.path.isfile(arm.result_json)


@pytest.mark.parametrize("args, message", [
    (["--parts=elbow,knee"], "unknown body part(s) knee"),
    (["--preset=huge"], "invalid choice: 'huge'"),
    (["--mura_dir=/nonexistent/MURA"], "is not a folder"),
    (["--jobs=0"], "--jobs=0: accepted: a whole number of at least 1"),
    (["--jobs=two"], "argument --jobs: invalid int value: 'two'"),
    (["--draws=0"], "--draws=0: accepted: a whole number of at least 1"),
    (["--pretrain_pool=everything"], "argument --pretrain_pool: invalid choice: 'everything'"),
    (["--arms=simclr_finetune_5pct"], "--arms: unknown arm(s) simclr_finetune_5pct; accepted: baseline"),
    (["--positive_pairs=patient"], "argument --positive_pairs: invalid choice: 'patient'"),
    (["--arms=micle_finetune_1pct"], "(MICLe's micle_* with --positive_pairs=both)"),
])
def test_bad_arguments_get_a_usage_message(args, message):
  proc = _study(*args, timeout=120)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("./run.sh: error: ") and message in lines[0], proc.stderr


def _plan(*argv):
  args = cli.parse_args(list(argv))
  return args, runner.study_plan(args)


def _flag(run, name):
  values = [a.split("=", 1)[1] for a in run.argv if a.startswith(f"--{name}=")]
  return values[-1] if values else None


@pytest.mark.parametrize("pool, datasets", [
    ("union", {"mura_synthetic/elbow+hand"}),
    ("per_part", {"mura_synthetic/elbow", "mura_synthetic/hand"}),
    ("all", {"mura_synthetic/" + "+".join(STUDY_TYPES)}),
])
def test_pretrain_pool_decides_what_simclr_pretrains_on_and_what_the_arms_restore(pool, datasets):
  args, runs = _plan("--parts=elbow,hand", f"--pretrain_pool={pool}", "--draws=2", "--out=/study")
  pretraining = [r for r in runs if r.arm == "simclr_pretrain"]
  assert {_flag(r, "dataset") for r in pretraining} == datasets
  assert runs[:len(pretraining)] == pretraining  # first: the SimCLR arms restore it
  for r in pretraining:  # labels unused, validation and test images never enter it
    assert (_flag(r, "train_split"), _flag(r, "mode"), _flag(r, "lineareval_while_pretraining")) == (
        "train", "train", "false")
  where = {r.part: r.model_dir for r in pretraining}
  for r in runs:
    if r.arm.startswith(("simclr_linear", "simclr_finetune")):
      expected = where[r.part] if pool == "per_part" else where[None]
      assert _flag(r, "checkpoint") == expected == r.waits_for, r.title
    elif r.arm != "simclr_pretrain":
      assert _flag(r, "checkpoint") is None and r.waits_for is None, r.title
      assert _flag(r, "dataset") == f"mura_synthetic/{r.part}"
  expected_dirs = ({os.path.join("/study", p, "simclr_pretrain") for p in ("elbow", "hand")} if pool == "per_part"
                   else {os.path.join("/study", "simclr_pretrain")})
  assert {r.model_dir for r in pretraining} == expected_dirs


def test_every_arm_and_draw_is_planned_with_paired_label_draws():
  args, runs = _plan("--parts=elbow,hand", "--draws=3", "--out=/study")
  per_part = [r for r in runs if r.part == "elbow"]
  assert sorted({r.arm for r in per_part}) == sorted(ARMS)
  from simclr_mura import flags as trainer_flags
  for r in per_part:
    config = trainer_flags.config_from_argv(list(r.argv))
    assert (config.train_split, config.eval_split, config.validation_split) == ("train", "test", "validation"), r.title
    if r.arm.endswith(("1pct", "10pct")):
      fraction = "0.01" if r.arm.endswith("_1pct") else "0.1"
      assert _flag(r, "label_fraction") == fraction and _flag(r, "label_draw") == str(r.draw), r.title
      assert r.model_dir == os.path.join("/study", "elbow", r.arm, f"draw{r.draw}")
    else:
      assert _flag(r, "label_fraction") is None and r.draw is None, r.title
  # draw k of every family: the same fraction, draw and training length (they differ only in initial weights)
  for fraction in ("1pct", "10pct"):
    for k in range(3):
      scratch, finetune = (next(r for r in per_part if r.arm == f"{family}_{fraction}" and r.draw == k)
                           for family in ("scratch", "simclr_finetune"))
      strip = lambda argv: [a for a in argv if not a.startswith(("--checkpoint=", "--model_dir="))]  # noqa: E731
      assert strip(scratch.argv) == strip(finetune.argv)
  assert len([r for r in per_part if r.draw is not None]) == 2 * 3 * 3


@pytest.mark.parametrize("pool", ["union", "per_part"])
def test_positive_pairs_both_adds_micle_arms_on_the_same_draws(pool):
  _, simclr = _plan("--parts=elbow,hand", f"--pretrain_pool={pool}", "--draws=2", "--out=/study")
  _, both = _plan("--parts=elbow,hand", f"--pretrain_pool={pool}", "--draws=2", "--out=/study",
                  "--positive_pairs=both")
  assert [r for r in both if not r.arm.startswith("micle")] == simclr  # SimCLR's runs unchanged
  micle = [r for r in both if r.arm.startswith("micle")]
  pretraining = [r for r in micle if r.arm == "micle_pretrain"]
  assert all(_flag(r, "positive_pairs") == "study" for r in pretraining)
  assert both[:len(pretraining) * 2] == [r for r in both if r.arm.endswith("_pretrain")]  # pretrainings first
  where = {r.part: r.model_dir for r in pretraining}
  for r in micle:
    if r.arm == "micle_pretrain":
      continue
    assert _flag(r, "checkpoint") == r.waits_for == (where[r.part] if pool == "per_part" else where[None])
    twin = next(t for t in simclr if t.part == r.part and t.draw == r.draw and
                t.arm == r.arm.replace("micle_", "simclr_"))  # the SimCLR arm of the same draw and recipe
    strip = lambda argv: [a for a in argv if not a.startswith(("--checkpoint=", "--model_dir="))]  # noqa: E731
    assert strip(r.argv) == strip(twin.argv), r.title
  assert {r.arm for r in micle} == set(MICLE_ARMS)


def test_positive_pairs_study_pretrains_simclrs_arms_on_study_pairs():
  _, runs = _plan("--parts=elbow", "--positive_pairs=study", "--out=/study")
  assert {r.arm for r in runs} == set(ALL_ARMS)
  assert [_flag(r, "positive_pairs") for r in runs if r.arm == "simclr_pretrain"] == ["study"]
  assert all(_flag(r, "positive_pairs") is None for r in runs if r.arm != "simclr_pretrain")


def test_presets_default_draws_and_data_size():
  args, runs = _plan("--preset=cpu", "--parts=elbow")
  assert args.draws >= 5 and all(_flag(r, "synthetic_scale") == "1" for r in runs)
  assert all(_flag(r, "graph_optimization") is None for r in runs)
  _, quick = _plan("--parts=elbow")  # the quick preset's short supervised runs skip Grappler; its pretraining not
  assert {r.arm for r in quick if _flag(r, "graph_optimization") != "false"} == {"simclr_pretrain"}
  args, runs = _plan("--mura_dir=/tmp", "--parts=hand")
  assert args.preset == "paper" and args.builder == "mura" and args.jobs == 1  # the paper arms share one GPU
  assert all(_flag(r, "mura_dir") == "/tmp" and _flag(r, "synthetic_scale") is None for r in runs)
  assert cli.parse_args(["--parts=hand"]).jobs == min(2, os.cpu_count())
  args, runs = _plan("--parts=elbow,hand", "--arms=simclr_finetune_1pct,baseline", "--draws=2")
  assert [r.title for r in runs] == ["pool simclr_pretrain", "elbow baseline", "elbow simclr_finetune_1pct draw 0",
                                     "elbow simclr_finetune_1pct draw 1", "hand baseline",
                                     "hand simclr_finetune_1pct draw 0", "hand simclr_finetune_1pct draw 1"]


@pytest.mark.parametrize("preset", ["quick", "cpu", "paper"])
def test_every_run_of_a_preset_passes_validation_and_sees_whole_films(preset):
  from simclr_mura import config as config_lib
  from simclr_mura import flags as trainer_flags
  args, runs = _plan(f"--preset={preset}", "--parts=elbow")
  for run in runs:
    config = trainer_flags.config_from_argv(list(run.argv))
    config_lib.validate(config, pending=run.waits_for)  # the run it waits for is checked once it exists
    if run.arm == "simclr_pretrain":
      assert (config.train_crop, config.eval_crop) == ("random", "center"), run.title  # SimCLR's views and probe
    else:  # whole films in training and evaluation (a centre crop would zoom in on what training saw whole)
      assert (config.train_crop, config.eval_crop) == ("none", "none"), run.title


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


def test_distillation_arms_learn_from_the_finetuning_run_of_their_draw():
  """The cpu preset distils every 1% and 10% SimCLR fine-tuning run: the student of draw k waits for the teacher of
  draw k, trains on all of the part's `train` images as long as the arms on all labels, and is compared with it."""
  _, runs = _plan("--preset=cpu", "--parts=elbow", "--draws=2", "--out=/study")
  students = [r for r in runs if r.arm in DISTILL_ARMS]
  assert sorted((r.arm, r.draw) for r in students) == sorted((a, k) for a in DISTILL_ARMS for k in range(2))
  by_dir = {r.model_dir: r for r in runs}
  full = next(r for r in runs if r.arm == "scratch_100pct")
  for r in students:
    teacher = by_dir[r.waits_for]
    assert _flag(r, "teacher") == teacher.model_dir and _flag(r, "checkpoint") is None, r.title
    assert teacher.arm == r.arm.replace("simclr_distill", "simclr_finetune") and teacher.draw == r.draw
    assert (_flag(r, "train_mode"), _flag(r, "train_split"), _flag(r, "train_epochs")) == (
        "distill", "train", _flag(full, "train_epochs"))
    assert _flag(r, "label_draw") == str(r.draw)
  _, quick = _plan("--parts=elbow", "--out=/study")  # not in the quick preset (its 15 minutes)
  assert not [r for r in quick if r.arm in DISTILL_ARMS]
  _, asked = _plan("--parts=elbow", "--draws=1", "--arms=simclr_distill_10pct", "--out=/study")
  assert [r.title for r in asked] == ["pool simclr_pretrain", "elbow simclr_finetune_10pct draw 0",
                                      "elbow simclr_distill_10pct draw 0"]  # with its teacher and the teacher's source
