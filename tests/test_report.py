"""The study report from a fixed set of fake runs written by the test."""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from simclr_mura.training import metrics, results, summaries
from simclr_mura import layout
from simclr_mura import report as report_cli
from simclr_mura.study import collect, report, tables

COLUMNS = ["body_part", "arm", "level", "n", "accuracy", "precision", "recall", "specificity", "f1", "auroc", "kappa"]
PNG = b"\x89PNG\r\n\x1a\n"


def _predictions(seed, quality):
  rng = np.random.default_rng(seed)
  rows = []
  for s in range(12):
    label = s % 2
    for i in range(1 + s % 3):
      p = float(np.clip(quality * label + rng.uniform(0, 1 - quality), 0, 1))
      rows.append({"image_id": f"MURA-v1.1/valid/XR_ELBOW/patient{s}/study1/image{i}.png",
                   "study_id": f"MURA-v1.1/valid/XR_ELBOW/patient{s}/study1", "patient_id": f"patient{s}",
                   "study_type": "elbow", "label": label, "probability": p})
  return pd.DataFrame(rows)


def _write_arm(study, part, arm, seed, quality, val_auroc=None, finished=True, null_precision=False,
               events=True, val_run="validation", test_auroc=None):
  model_dir = study / part / arm
  model_dir.mkdir(parents=True)
  results.write_flags_json(model_dir, {"dataset": f"mura_synthetic/{part}", "threshold": 0.5,
                                       "validation_split": "validation", "data_dir": "/somewhere/tfds"})
  if events:
    train = tf.summary.create_file_writer(str(model_dir / "train"))
    for step in (10, 20, 30):
      summaries.write_scalars(train, {"supervised_loss": 1.0 / step, "supervised_acc": step / 40.0,
                                      "learning_rate": 0.1}, step)
    train.close()
  if val_auroc is not None:  # validation curves, in the trainer's `validation/` (or the brief's `eval/`) folder
    ev = tf.summary.create_file_writer(str(model_dir / val_run))
    for step, v in zip((10, 20, 30), val_auroc):
      summaries.write_scalars(ev, {"study/auroc": v, "image/auroc": v - 0.05, "loss": 0.5}, step)
    ev.close()
  if test_auroc is not None:  # the final test evaluation under eval/ (the trainer's layout)
    ev = tf.summary.create_file_writer(str(model_dir / "eval"))
    summaries.write_scalars(ev, {"study/auroc": test_auroc}, 30)
    ev.close()
  if not finished:
    return None
  preds = _predictions(seed, quality)
  results.write_predictions(model_dir / "predictions_test.csv", preds)
  m = metrics.evaluate_predictions(preds)
  if null_precision:
    m["study"]["precision"] = None
  result = {"global_step": 30, "dataset": f"mura_synthetic/{part}", "train_mode": "finetune",
            "train_split": "train", "eval_split": "test", **m}
  results.write_result(model_dir, result)
  return result


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  root = tmp_path_factory.mktemp("study")
  expected = {}
  arms = {"baseline": 0.6, "scratch_1pct": 0.1, "scratch_100pct": 0.4, "simclr_linear": 0.3,
          "simclr_finetune_10pct": 0.5, "simclr_finetune_100pct": 0.55}
  for i, (arm, q) in enumerate(arms.items()):
    val = {"simclr_finetune_10pct": (0.6, 0.9, 0.8), "simclr_finetune_100pct": (0.7, 0.75, 0.85),
           "baseline": (0.5, 0.6, 0.7)}.get(arm)
    expected[("elbow", arm)] = _write_arm(
        root, "elbow", arm, i, q, val_auroc=val, null_precision=arm == "baseline",
        val_run="eval" if arm == "baseline" else "validation",
        test_auroc=0.99 if arm == "simclr_finetune_100pct" else None)
  _write_arm(root, "elbow", "simclr_finetune_1pct", 9, 0.2, finished=False)  # unfinished: no result.json
  pre = tf.summary.create_file_writer(str(root / "elbow" / "simclr_pretrain" / "train"))
  summaries.write_scalars(pre, {"contrast_loss": 5.0, "contrast_acc": 0.2}, 1)
  summaries.write_scalars(pre, {"contrast_loss": 4.0, "contrast_acc": 0.4}, 2)
  pre.close()
  expected[("hand", "simclr_finetune_100pct")] = _write_arm(root, "hand", "simclr_finetune_100pct", 20, 0.5)
  return root, expected


@pytest.fixture(scope="module")
def built(study):
  root, expected = study
  calls = {"explore": [], "gradcam": []}

  def explore_fn(dataset, out_dir):
    calls["explore"].append((dataset, out_dir))
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "counts.csv"), "w") as f:
      f.write("split,n\n")

  def gradcam_fn(model_dir, out_png):
    calls["gradcam"].append((model_dir, out_png))
    if "hand" in model_dir:
      raise RuntimeError("no checkpoint")
    with open(out_png, "wb") as f:
      f.write(PNG)

  rep = report.build_report(str(root), explore_fn=explore_fn, gradcam_fn=gradcam_fn)
  return root, expected, rep, calls


def test_results_csv_equals_inputs(built):
  root, expected, rep, _ = built
  assert rep["results_csv"] == str(root / "report" / "results.csv")
  df = pd.read_csv(rep["results_csv"])
  assert list(df.columns) == COLUMNS
  assert len(df) == 2 * len(expected)
  for (part, arm), result in expected.items():
    for level in ("image", "study"):
      (row,) = df[(df.body_part == part) & (df.arm == arm) & (df.level == level)].to_dict("records")
      for key in COLUMNS[3:]:
        want = result[level][key]
        if want is None:
          assert np.isnan(row[key]), (part, arm, level, key)
        else:
          assert row[key] == want, (part, arm, level, key)
  # study level first within each body part, parts in MURA order
  assert list(df.body_part.unique()) == ["elbow", "hand"]
  elbow = df[df.body_part == "elbow"]
  assert list(elbow.level[:6]) == ["study"] * 6
  assert list(elbow.arm[:3]) == ["baseline", "scratch_1pct", "scratch_100pct"]


def test_missing_arms_reported(built):
  _, _, rep, _ = built
  missing = {(m["body_part"], m["arm"]): m["reason"] for m in rep["missing"]}
  assert missing[("elbow", "simclr_finetune_1pct")] == "unfinished (no result.json)"
  assert missing[("elbow", "scratch_10pct")] == "not run (no folder)"
  assert ("elbow", "simclr_pretrain") not in missing
  assert ("hand", "simclr_pretrain") in missing and ("hand", "baseline") in missing
  md = open(rep["results_md"]).read()
  assert "- elbow / `simclr_finetune_1pct`: unfinished (no result.json)" in md
  assert "- hand / `baseline`: not run (no folder)" in md


def test_results_md_tables_and_links(built):
  root, expected, rep, _ = built
  md = open(rep["results_md"]).read()
  assert md.index("## Results: study level") < md.index("## Results: image level")
  assert "| arm | n | accuracy | precision | recall | specificity | f1 | auroc | kappa |" in md
  s = expected[("elbow", "scratch_100pct")]["study"]
  assert (f"| scratch_100pct | {s['n']} | {s['accuracy']:.3f} | {s['precision']:.3f} | {s['recall']:.3f} | "
          f"{s['specificity']:.3f} | {s['f1']:.3f} | {s['auroc']:.3f} | {s['kappa']:.3f} |") in md
  b = expected[("elbow", "baseline")]["study"]
  assert f"| baseline | {b['n']} | {b['accuracy']:.3f} | — |" in md  # null precision
  assert "validation" in md and "like-for-like" in md and "DenseNet-169" in md
  for fig in rep["figures"]:
    rel = os.path.relpath(fig, rep["out_dir"])
    assert f"({rel})" in md, rel


def test_figures_are_pngs(built):
  root, _, rep, _ = built
  out = root / "report"
  names = {os.path.basename(f) for f in rep["figures"]}
  expected = {"label_fraction_elbow.png", "label_fraction_hand.png", "validation_auroc_elbow.png",
              "gradcam_elbow.png"} | {f"curves_elbow_{a}.png" for a in (
                  "baseline", "scratch_1pct", "scratch_100pct", "simclr_pretrain", "simclr_linear",
                  "simclr_finetune_1pct", "simclr_finetune_10pct", "simclr_finetune_100pct")} | {
                      "curves_hand_simclr_finetune_100pct.png"}
  assert names == expected
  for name in expected:
    with open(out / name, "rb") as f:
      assert f.read(8) == PNG, name


def test_hooks(built):
  root, _, rep, calls = built
  out = str(root / "report")
  assert calls["explore"] == [("mura_synthetic/elbow", os.path.join(out, "data", "elbow")),
                              ("mura_synthetic/hand", os.path.join(out, "data", "hand"))]
  # elbow: fine-tune 10% has the best validation study AUROC (0.9 > 0.85), though 100% has more labels and a
  # higher test AUROC in eval/ (0.99), which must not be used for the choice
  assert calls["gradcam"][0] == (str(root / "elbow" / "simclr_finetune_10pct"), os.path.join(out, "gradcam_elbow.png"))
  assert rep["gradcam"]["elbow"]["status"] == "done"
  assert "(0.900)" in rep["gradcam"]["elbow"]["why"]
  # hand: no validation curves -> the 100% arm; its failure is noted, not raised
  assert rep["gradcam"]["hand"]["arm"] == "simclr_finetune_100pct"
  assert rep["gradcam"]["hand"]["status"] == "failed"
  md = open(rep["results_md"]).read()
  assert "RuntimeError: no checkpoint" in md
  assert "[data/elbow/counts.csv](data/elbow/counts.csv)" in md


def test_curves_of_an_arm(study):
  root, _ = study
  curves = collect.read_arm_curves(str(root / "elbow" / "simclr_finetune_100pct"))
  assert set(curves) == {"train", "validation", "eval"}
  assert curves["validation"]["study/auroc"] == [(10, pytest.approx(0.7)), (20, pytest.approx(0.75)),
                                                 (30, pytest.approx(0.85))]
  assert collect.validation_series(curves) == curves["validation"]["study/auroc"]
  assert set(collect.training_runs(curves)) == {"train", "validation"}  # eval/ = the test evaluation
  baseline = collect.read_arm_curves(str(root / "elbow" / "baseline"))
  assert set(collect.training_runs(baseline)) == {"train", "eval"}  # eval/ holds the validation curves here
  assert collect.validation_series(baseline)[-1] == (30, pytest.approx(0.7))
  assert collect.read_arm_curves(str(root / "hand" / "simclr_finetune_100pct"))["train"]["learning_rate"][0] == (
      10, pytest.approx(0.1))


def test_explore_targets():
  assert report.explore_targets("mura", ["hand", "elbow"]) == [("mura/hand", "hand"), ("mura/elbow", "elbow")]
  assert report.explore_targets("mura", ["wrist"]) == [("mura/wrist", "")]


def test_format_table(built):
  _, expected, rep, _ = built
  text = tables.format_table(rep["results"])
  lines = text.splitlines()
  assert lines[0].split() == COLUMNS
  header_cols = [len(c) for c in lines[1].split()]
  assert all(len(line) <= sum(header_cols) + 2 * (len(COLUMNS) - 1) for line in lines)
  s = expected[("hand", "simclr_finetune_100pct")]["image"]
  (row,) = [l for l in lines if l.startswith("hand") and " image " in l]
  assert row.split() == ["hand", "simclr_finetune_100pct", "image", str(s["n"])] + [
      f"{s[k]:.3f}" for k in COLUMNS[4:]]
  (base,) = [l for l in lines if l.startswith("elbow") and "baseline" in l and " study " in l]
  assert base.split()[5] == "—"
  # every line's columns start at the same offsets (right-aligned numbers end at the same place)
  assert len({len(l) for l in lines if l and not l.startswith("-")}) == 1
  assert tables.format_table(pd.DataFrame(columns=COLUMNS)) == "(no results)"


def test_hooks_skipped_and_empty_study(tmp_path):
  (tmp_path / "elbow" / "baseline").mkdir(parents=True)
  (tmp_path / "elbow" / "simclr_linear").mkdir()
  (tmp_path / "elbow" / "simclr_linear" / "result.json").write_text('{"global_step": 3, "image": {}}')
  rep = report.build_report(str(tmp_path), out_dir=str(tmp_path / "out"))
  assert pd.read_csv(rep["results_csv"]).empty
  assert list(pd.read_csv(rep["results_csv"]).columns) == COLUMNS
  assert len(rep["missing"]) == len(layout.ARMS)
  (bad,) = [m for m in rep["missing"] if m["arm"] == "simclr_linear"]
  assert bad["reason"].startswith("unreadable result.json:") and "missing" in bad["reason"]
  md = open(rep["results_md"]).read()
  assert "Skipped: no explore function given." in md and "skipped: no Grad-CAM function given" in md
  with pytest.raises(FileNotFoundError, match="does not exist"):
    report.build_report(str(tmp_path / "nope"))
  fn, why = report_cli._load_hook("simclr_mura.no_such_module", "explore")
  assert fn is None and "not available" in why


@pytest.fixture
def small_study(tmp_path):
  root = tmp_path / "small"
  result = _write_arm(root, "shoulder", "simclr_finetune_100pct", 3, 0.5, events=False)
  (root / "shoulder" / "baseline").mkdir()
  return root, result


def test_cli(small_study, tmp_path, capsys):
  root, result = small_study
  out = tmp_path / "cli_report"
  assert report_cli.run([f"--study={root}", f"--out={out}", "--skip_explore", "--skip_gradcam"]) == 0
  captured = capsys.readouterr()
  lines = captured.out.splitlines()
  assert lines[0].split() == COLUMNS
  assert lines[2].split()[:4] == ["shoulder", "simclr_finetune_100pct", "study", str(result["study"]["n"])]
  assert "missing: shoulder/baseline: unfinished (no result.json)" in captured.out
  assert (out / "results.csv").exists() and (out / "label_fraction_shoulder.png").exists()
  assert "Skipped: --skip_explore." in (out / "results.md").read_text()
  with pytest.raises(SystemExit):
    report_cli.run([f"--study={tmp_path / 'absent'}"])


def test_module_entry_point(small_study, tmp_path):
  root, _ = small_study
  proc = subprocess.run([sys.executable, "-m", "simclr_mura.report", f"--study={root}", "--skip_explore",
                         "--skip_gradcam"], capture_output=True, text=True, timeout=120,
                        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.splitlines()[0].split() == COLUMNS
  assert pd.read_csv(root / "report" / "results.csv").shape == (2, 11)
