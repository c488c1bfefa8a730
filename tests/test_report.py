"""The study report from fake study folders written by the test (result.json, predictions_test.csv, flags.json with
fixed numbers; no training), checked against computations made here."""
import io
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from simclr_mura import layout
from simclr_mura import report as report_cli
from simclr_mura.study import collect, report, scoring, tables, uncertainty
from simclr_mura.training import metrics, results, summaries

RESULT_COLUMNS = ["body_part", "arm", "draw", "level", "n", "accuracy", "precision", "recall", "specificity", "f1",
                  "auroc", "kappa"]
SUMMARY_COLUMNS = ["body_part", "arm", "level", "metric", "n_draws", "mean", "sd", "ci_low", "ci_high", "ci_method"]
COMPARISON_COLUMNS = ["body_part", "fraction", "readout", "level", "metric", "simclr", "scratch", "diff", "ci_low",
                      "ci_high", "n_draws"]
METRICS = RESULT_COLUMNS[5:]
PRIMARY = ("Primary endpoint (declared before any result): pooled study-level AUROC, SimCLR fine-tuning − scratch at "
           "1% of the labels, paired over label draws, with its 95% CI.")
T975 = {2: 12.706205, 3: 4.302653}  # t(0.975, n-1) from a table, by n
PNG = b"\x89PNG\r\n\x1a\n"
DRAWS = 3
SINGLE = ("baseline", "scratch_100pct", "simclr_linear_100pct", "simclr_finetune_100pct")
DRAWN = ("scratch_1pct", "simclr_linear_1pct", "simclr_finetune_1pct")


def _predictions(part, seed, quality, n_studies=12):
  """Image rows of n_studies test studies (1-3 images each, alternate labels); higher quality separates better."""
  rng = np.random.default_rng(seed)
  rows = []
  for s in range(n_studies):
    label = s % 2
    study = f"MURA-v1.1/valid/XR_{part.upper()}/patient{s:05d}/study1_{'positive' if label else 'negative'}"
    for i in range(1 + s % 3):
      p = float(np.clip(0.5 + quality * (label - 0.5) + rng.normal(0, 0.25), 0, 1))
      rows.append({"image_id": f"{study}/image{i}.png", "study_id": study, "patient_id": f"patient{s:05d}",
                   "study_type": part, "label": label, "probability": p})
  return pd.DataFrame(rows)


def _write_run(model_dir, part, seed, quality, *, finished=True, train_events=False, val_auroc=None,
               val_run="validation", test_auroc=None, draw=None):
  """A run folder as the trainer leaves it; returns (predictions, result) or None when unfinished."""
  model_dir.mkdir(parents=True)
  flags = {"dataset": f"mura_synthetic/{part}", "threshold": 0.5, "validation_split": "validation",
           "data_dir": "/somewhere/tfds", "synthetic_scale": 0.05, "mura_dir": None}
  if draw is not None:
    flags.update(label_draw=draw, label_fraction=0.01)
  results.write_flags_json(model_dir, flags)
  if train_events:
    train = tf.summary.create_file_writer(str(model_dir / "train"))
    for step in (10, 20, 30):
      summaries.write_scalars(train, {"supervised_loss": 1.0 / step, "supervised_acc": step / 40.0,
                                      "learning_rate": 0.1}, step)
    train.close()
  if val_auroc is not None:  # validation curves, in the trainer's `validation/` (or `eval/`) folder
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
  preds = _predictions(part, seed, quality)
  results.write_predictions(layout.RunDir(model_dir).predictions_csv("test"), preds)
  result = {"global_step": 30, "dataset": f"mura_synthetic/{part}", "train_mode": "finetune", "train_split": "train",
            "eval_split": "test", **metrics.evaluate_predictions(preds)}
  results.write_result(model_dir, result)
  return preds, result


def _arm_dir(root, part, arm, draw=None):
  return root / part / arm / (layout.draw_folder(draw) if draw is not None else "")


def _pretraining(model_dir):
  writer = tf.summary.create_file_writer(str(model_dir / "train"))
  summaries.write_scalars(writer, {"contrast_loss": 5.0, "contrast_acc": 0.2}, 1)
  summaries.write_scalars(writer, {"contrast_loss": 4.0, "contrast_acc": 0.4}, 2)
  writer.close()
  results.write_flags_json(model_dir, {"dataset": "mura_synthetic/elbow+hand", "train_mode": "pretrain"})


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  """elbow and hand, every 100% arm, the 1% arms with 3 label draws; pretraining on the pool at <out>/simclr_pretrain;
  the 10% arms not run."""
  root = tmp_path_factory.mktemp("study")
  runs = {}
  quality = {"baseline": 0.6, "scratch_100pct": 0.4, "simclr_linear_100pct": 0.3, "simclr_finetune_100pct": 0.55,
             "scratch_1pct": 0.2, "simclr_linear_1pct": 0.25, "simclr_finetune_1pct": 0.35}
  events = {("elbow", "baseline", None): dict(val_auroc=(0.5, 0.6, 0.7), val_run="eval"),
            ("elbow", "simclr_finetune_100pct", None): dict(train_events=True, val_auroc=(0.7, 0.75, 0.85),
                                                            test_auroc=0.99),
            ("elbow", "simclr_finetune_1pct", 0): dict(train_events=True, val_auroc=(0.6, 0.9, 0.8)),
            ("elbow", "simclr_finetune_1pct", 1): dict(val_auroc=(0.95, 0.96, 0.97)),  # draw 1: not drawn, not chosen
            ("hand", "simclr_finetune_100pct", None): dict(train_events=True)}
  for p, part in enumerate(("elbow", "hand")):
    for a, arm in enumerate(SINGLE):
      runs[part, arm, 0] = _write_run(_arm_dir(root, part, arm), part, 100 * p + a, quality[arm],
                                      **events.get((part, arm, None), {}))
    for a, arm in enumerate(DRAWN):
      for k in range(DRAWS):
        runs[part, arm, k] = _write_run(_arm_dir(root, part, arm, k), part, 100 * p + 10 * (a + 1) + k,
                                        quality[arm] + 0.05 * k, draw=k, **events.get((part, arm, k), {}))
  _pretraining(root / layout.PRETRAIN_ARM)
  return root, runs


@pytest.fixture(scope="module")
def built(study):
  root, runs = study
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
  return root, runs, rep, calls


def _score(frames):
  """Image- and study-level binary_metrics of concatenated predictions (a study's probability: its images' mean)."""
  df = pd.concat(frames, ignore_index=True)
  studies = df.groupby("study_id").agg(label=("label", "first"), probability=("probability", "mean"))
  return {"image": metrics.binary_metrics(df["label"], df["probability"]),
          "study": metrics.binary_metrics(studies["label"], studies["probability"])}


def _check_row(row, want, where):
  for key in ["n"] + METRICS:
    if want[key] is None:
      assert np.isnan(row[key]), (where, key)
    else:
      assert row[key] == pytest.approx(want[key], abs=1e-12), (where, key)


def _t(values):
  """mean, sample sd and the 95% t interval, by hand."""
  n = len(values)
  mean = sum(values) / n
  sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
  half = T975[n] * sd / math.sqrt(n)
  return mean, sd, mean - half, mean + half


# --- (1) results.csv ------------------------------------------------------------------------------------------------


def test_results_csv_rows_and_pooled_rows(built):
  root, runs, rep, _ = built
  assert rep["results_csv"] == str(root / "report" / "results.csv")
  df = pd.read_csv(rep["results_csv"])
  assert list(df.columns) == RESULT_COLUMNS
  arm_draws = {(arm, k) for (_, arm, k) in runs}
  assert len(df) == 2 * (len(runs) + len(arm_draws))  # every run and every pooled (arm, draw), both levels
  for (part, arm, k), (_, result) in runs.items():
    for level in ("study", "image"):
      (row,) = df[(df.body_part == part) & (df.arm == arm) & (df.draw == k) & (df.level == level)].to_dict("records")
      _check_row(row, result[level], (part, arm, k, level))
  for arm, k in arm_draws:
    want = _score([runs["elbow", arm, k][0], runs["hand", arm, k][0]])
    for level in ("study", "image"):
      (row,) = df[(df.body_part == "pooled") & (df.arm == arm) & (df.draw == k) & (df.level == level)].to_dict(
          "records")
      _check_row(row, want[level], ("pooled", arm, k, level))
  assert set(df[df.arm.isin(SINGLE)].draw) == {0} and set(df[df.arm.isin(DRAWN)].draw) == set(range(DRAWS))
  # parts in MURA order, pooled last; study level first within a part
  assert list(df.body_part.unique()) == ["elbow", "hand", "pooled"]
  elbow = df[df.body_part == "elbow"]
  assert list(elbow.level[:len(elbow) // 2]) == ["study"] * (len(elbow) // 2)
  assert list(elbow.arm[:2]) == ["baseline", "scratch_1pct"] and list(elbow.draw[1:4]) == [0, 1, 2]


# --- (2) summary: t over draws, bootstrap for one run --------------------------------------------------------------


def _results_frame(rows):
  out = []
  for part, arm, draw, level, values in rows:
    out.append({"body_part": part, "arm": arm, "draw": draw, "level": level, "n": 10,
                **{m: values.get(m, 0.5) for m in METRICS}})
  return pd.DataFrame(out, columns=RESULT_COLUMNS)


def test_summary_t_interval_on_fixed_numbers():
  df = _results_frame([("elbow", "scratch_1pct", k, "study", {"auroc": v, "kappa": kap})
                       for k, (v, kap) in enumerate([(0.6, 0.1), (0.7, None), (0.8, 0.3)])])
  summary = scoring.summary_table(df, None)
  assert list(summary.columns) == SUMMARY_COLUMNS
  (auroc,) = summary[summary.metric == "auroc"].to_dict("records")
  half = 4.302653 * 0.1 / math.sqrt(3)
  assert auroc["n_draws"] == 3 and auroc["ci_method"] == "t_over_draws"
  assert auroc["mean"] == pytest.approx(0.7) and auroc["sd"] == pytest.approx(0.1)
  assert (auroc["ci_low"], auroc["ci_high"]) == (pytest.approx(0.7 - half, abs=1e-6), pytest.approx(0.7 + half,
                                                                                                     abs=1e-6))
  (kappa,) = summary[summary.metric == "kappa"].to_dict("records")  # the undefined draw is left out
  half = 12.706205 * math.sqrt(0.02) / math.sqrt(2)
  assert kappa["n_draws"] == 2 and kappa["mean"] == pytest.approx(0.2) and kappa["sd"] == pytest.approx(
      math.sqrt(0.02))
  assert kappa["ci_low"] == pytest.approx(0.2 - half, abs=1e-5) and kappa["ci_high"] == pytest.approx(0.2 + half,
                                                                                                      abs=1e-5)
  assert list(summary.metric) == ["auroc", "kappa", "accuracy", "precision", "recall", "specificity", "f1"]


def test_summary_csv_of_the_study(built):
  _, _, rep, _ = built
  summary = pd.read_csv(rep["summary_csv"])
  results_df = pd.read_csv(rep["results_csv"])
  assert list(summary.columns) == SUMMARY_COLUMNS
  for part in ("elbow", "pooled"):
    draws = results_df[(results_df.body_part == part) & (results_df.arm == "simclr_finetune_1pct")
                       & (results_df.level == "study")].sort_values("draw")
    mean, sd, low, high = _t(list(draws.auroc))
    (row,) = summary[(summary.body_part == part) & (summary.arm == "simclr_finetune_1pct") & (summary.level == "study")
                     & (summary.metric == "auroc")].to_dict("records")
    assert row["n_draws"] == 3 and row["ci_method"] == "t_over_draws"
    assert (row["mean"], row["sd"], row["ci_low"], row["ci_high"]) == pytest.approx((mean, sd, low, high), abs=1e-5)
  single = summary[summary.arm.isin(SINGLE)]
  assert set(single.ci_method) == {"bootstrap_studies"} and set(single.n_draws) == {1} and single.sd.isna().all()
  for row in single.to_dict("records"):  # the one run's own value, inside its interval
    (value,) = results_df[(results_df.body_part == row["body_part"]) & (results_df.arm == row["arm"])
                          & (results_df.level == row["level"])][row["metric"]]
    assert row["mean"] == pytest.approx(value)
    assert row["ci_low"] - 1e-9 <= row["mean"] <= row["ci_high"] + 1e-9, row
  assert set(summary.body_part) == {"elbow", "hand", "pooled"}


# --- (3) bootstrap over test studies --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_metrics_equal_binary_metrics_on_the_repeated_examples(seed):
  rng = np.random.default_rng(seed)
  n = 30
  labels, probs = rng.integers(0, 2, n), np.round(rng.uniform(0, 1, n), 1)  # rounded: tied probabilities
  counts = rng.integers(0, 4, (5, n))
  counts[0] = 1
  got = uncertainty.weighted_metrics(counts, labels, probs, 0.5, block=2)
  for b in range(len(counts)):
    want = metrics.binary_metrics(np.repeat(labels, counts[b]), np.repeat(probs, counts[b]), 0.5)
    for key, value in want.items():
      assert (np.isnan(got[key][b]) if value is None else got[key][b] == pytest.approx(value)), (b, key)


def test_bootstrap_is_deterministic_and_perfect_separation_gives_one():
  preds = _predictions("elbow", 5, 0.4, n_studies=40)
  first = uncertainty.bootstrap_samples([preds], [0.5], "image")[0]
  second = uncertainty.bootstrap_samples([preds], [0.5], "image")[0]
  for key in first:
    np.testing.assert_array_equal(first[key], second[key])
  assert first["auroc"].shape == (uncertainty.BOOTSTRAP_SAMPLES,)
  point = _score([preds])
  for level in ("study", "image"):
    samples = uncertainty.bootstrap_samples([preds], [0.5], level)[0]
    for metric in ("auroc", "kappa", "accuracy"):
      low, high = uncertainty.percentile_interval(samples[metric])
      assert low <= point[level][metric] <= high, (level, metric)
      assert high - low > 0.01
  perfect = preds.assign(probability=np.where(preds["label"] == 1, 0.9, 0.1))
  for level in ("study", "image"):
    samples = uncertainty.bootstrap_samples([perfect], [0.5], level)[0]
    assert uncertainty.percentile_interval(samples["auroc"]) == (1.0, 1.0)
    assert uncertainty.percentile_interval(samples["kappa"]) == (1.0, 1.0)


def test_bootstrap_resamples_whole_studies():
  # study A: 1 image, right; study B: 9 images, all wrong. Resampling studies, the image-level accuracy of a resample
  # is 1 (A, A), 0 (B, B) or 1/10 (A and B), about a quarter, a quarter and half of the time; resampling images would
  # give any k/10.
  a = [{"study_id": "A", "image_id": "A0", "label": 1, "probability": 0.9}]
  b = [{"study_id": "B", "image_id": f"B{i}", "label": 0, "probability": 0.8} for i in range(9)]
  samples = uncertainty.bootstrap_samples([pd.DataFrame(a + b)], [0.5], "image")[0]
  values, counts = np.unique(np.round(samples["accuracy"], 9), return_counts=True)
  assert list(values) == [0.0, 0.1, 1.0]
  assert counts[1] / counts.sum() == pytest.approx(0.5, abs=0.06)
  assert set(samples["n"]) == {2.0, 10.0, 18.0}
  # pooled: resampled within each part, so each part keeps its number of studies in every resample
  frames = [pd.DataFrame([{"study_id": f"{part}{s}", "label": label, "probability": 0.3 + 0.1 * (s % 5),
                           uncertainty.STRATUM: part} for s in range(n)])
            for part, n, label in (("elbow", 5, 1), ("hand", 7, 0))]
  samples = uncertainty.bootstrap_samples([pd.concat(frames, ignore_index=True)], [0.5], "study")[0]
  assert set(samples["n_abnormal"]) == {5.0} and set(samples["n"]) == {12.0}


# --- (4) paired differences ------------------------------------------------------------------------------------------


def test_paired_difference_over_draws_on_fixed_numbers():
  simclr = [0.70, 0.75, 0.80, 0.90]
  scratch = [0.65, 0.60, 0.70, None]  # draw 3 undefined for scratch: left out
  rows = [("pooled", "simclr_finetune_1pct", k, "study", {"auroc": v}) for k, v in enumerate(simclr)]
  rows += [("pooled", "scratch_1pct", k, "study", {"auroc": v}) for k, v in enumerate(scratch)]
  comparison = scoring.comparison_table(_results_frame(rows), None)
  assert list(comparison.columns) == COMPARISON_COLUMNS
  (row,) = comparison[comparison.metric == "auroc"].to_dict("records")
  half = 4.302653 * 0.05 / math.sqrt(3)  # differences 0.05, 0.15, 0.10: mean 0.1, sd 0.05
  assert (row["body_part"], row["fraction"], row["readout"], row["level"]) == ("pooled", "1pct", "finetune", "study")
  assert row["n_draws"] == 3 and row["diff"] == pytest.approx(0.1)
  assert row["simclr"] == pytest.approx(0.75) and row["scratch"] == pytest.approx(0.65)
  assert (row["ci_low"], row["ci_high"]) == (pytest.approx(0.1 - half, abs=1e-6), pytest.approx(0.1 + half, abs=1e-6))
  assert tables.difference_text(row) == f"+0.100 (95% CI {0.1 - half:+.3f} to {0.1 + half:+.3f}, 3 draws)".replace(
      "-", "−")


def test_paired_bootstrap_of_single_runs():
  preds = _predictions("elbow", 7, 0.4, n_studies=30)
  other = _predictions("elbow", 8, 0.2, n_studies=30)
  framed = {("elbow", arm, 0): p.assign(**{uncertainty.STRATUM: "elbow"}) for arm, p in
            (("simclr_finetune_100pct", preds), ("scratch_100pct", preds), ("simclr_linear_100pct", other))}
  boot = scoring.Bootstrap(framed, {k: 0.5 for k in framed})
  rows = [("elbow", arm, 0, level, _score([p])[level]) for (_, arm, _), p in
          zip(framed, (preds, preds, other)) for level in ("study", "image")]
  comparison = scoring.comparison_table(_results_frame(rows), boot)
  same = comparison[comparison.readout == "finetune"]
  assert len(same) == 4 and set(same.n_draws) == {1}
  assert (same["diff"] == 0).all() and (same.ci_low == 0).all() and (same.ci_high == 0).all()
  (linear,) = comparison[(comparison.readout == "linear") & (comparison.level == "study")
                         & (comparison.metric == "auroc")].to_dict("records")
  want = _score([other])["study"]["auroc"] - _score([preds])["study"]["auroc"]
  assert linear["diff"] == pytest.approx(want) and linear["ci_low"] < want < linear["ci_high"]
  sa, sb = boot.paired("elbow", "simclr_linear_100pct", "scratch_100pct", 0, "study")
  assert (linear["ci_low"], linear["ci_high"]) == uncertainty.percentile_interval(sa["auroc"] - sb["auroc"])


def test_comparison_csv_of_the_study(built):
  _, _, rep, _ = built
  comparison = pd.read_csv(rep["comparison_csv"])
  results_df = pd.read_csv(rep["results_csv"])
  assert list(comparison.columns) == COMPARISON_COLUMNS
  # every part and pooled, the 1% and 100% fractions (10% was not run), both readouts, levels and metrics
  assert len(comparison) == 3 * 2 * 2 * 2 * 2
  assert set(comparison.fraction) == {"1pct", "100pct"}
  for part in ("hand", "pooled"):
    at = results_df[(results_df.body_part == part) & (results_df.level == "study")]
    a = at[at.arm == "simclr_linear_1pct"].sort_values("draw").kappa.to_numpy()
    b = at[at.arm == "scratch_1pct"].sort_values("draw").kappa.to_numpy()
    (row,) = comparison[(comparison.body_part == part) & (comparison.fraction == "1pct")
                        & (comparison.readout == "linear") & (comparison.level == "study")
                        & (comparison.metric == "kappa")].to_dict("records")
    mean, _, low, high = _t(list(a - b))
    assert row["n_draws"] == 3 and (row["diff"], row["ci_low"], row["ci_high"]) == pytest.approx((mean, low, high))
  single = comparison[comparison.fraction == "100pct"]
  assert set(single.n_draws) == {1} and ((single.ci_low <= single["diff"]) & (single["diff"] <= single.ci_high)).all()


# --- (5) results.md and the printed table ----------------------------------------------------------------------------


def test_results_md_opens_with_the_primary_endpoint(built):
  _, _, rep, _ = built
  md = open(rep["results_md"]).read()
  start = md.index(PRIMARY)
  assert not any(c.isdigit() for c in md[:start])  # declared before any number
  results_df = pd.read_csv(rep["results_csv"])
  at = results_df[(results_df.body_part == "pooled") & (results_df.level == "study")]
  diffs = (at[at.arm == "simclr_finetune_1pct"].sort_values("draw").auroc.to_numpy()
           - at[at.arm == "scratch_1pct"].sort_values("draw").auroc.to_numpy())
  mean, _, low, high = _t(list(diffs))
  value = f"{mean:+.3f} (95% CI {low:+.3f} to {high:+.3f}, 3 draws)".replace("-", "−")
  assert md[start + len(PRIMARY):].lstrip().startswith(f"**Result:** {value}")
  assert rep["primary"]["available"] and rep["table"].splitlines()[0] == f"{PRIMARY} {value}"
  order = [md.index(s) for s in ("## Paired comparisons: SimCLR against scratch", "## Results: mean [95% CI] per arm",
                                 "### study level (the MURA paper's level)", "### image level\n\n#### elbow",
                                 "## Label efficiency",
                                 "## Missing or unfinished runs", "## Training curves", "## Data exploration",
                                 "## Grad-CAM", "## Runs")]
  assert order == sorted(order)
  assert "validation" in md and "like-for-like" in md and "DenseNet-169" in md and "MURA paper" in md
  summary = pd.read_csv(rep["summary_csv"])
  (s,) = summary[(summary.body_part == "hand") & (summary.arm == "scratch_100pct") & (summary.level == "study")
                 & (summary.metric == "auroc")].to_dict("records")
  assert f"{s['mean']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]" in md
  for fig in rep["figures"]:
    rel = os.path.relpath(fig, rep["out_dir"])
    assert f"({rel})" in md, rel


def test_format_table(built):
  _, _, rep, _ = built
  lines = rep["table"].splitlines()
  assert lines[0].startswith(PRIMARY) and lines[1] == ""
  assert lines[2].split() == ["body_part", "arm", "n_draws", "AUROC", "mean", "[95%", "CI]", "kappa", "mean", "[95%",
                              "CI]"]
  summary = pd.read_csv(rep["summary_csv"]).set_index(["body_part", "arm", "level", "metric"])
  (row,) = [l for l in lines if l.startswith("pooled ") and " simclr_finetune_1pct " in l]
  cells = []
  for metric in ("auroc", "kappa"):
    s = summary.loc[("pooled", "simclr_finetune_1pct", "study", metric)]
    cells += [f"{s['mean']:.3f}", f"[{s['ci_low']:.3f},", f"{s['ci_high']:.3f}]"]
  assert row.split() == ["pooled", "simclr_finetune_1pct", "3"] + cells
  body = [l for l in lines[2:] if l and not l.startswith("-")]
  assert len({len(l) for l in body}) == 1  # right-aligned columns end at the same place
  assert len(body) == 1 + 3 * len(SINGLE + DRAWN)
  assert tables.format_table(pd.DataFrame(columns=SUMMARY_COLUMNS)) == "(no results)"


# --- (6) a partial study -------------------------------------------------------------------------------------------


def test_partial_study_lists_what_is_missing_and_writes_every_file(tmp_path):
  root = tmp_path / "partial"
  _write_run(_arm_dir(root, "elbow", "baseline"), "elbow", 1, 0.5)
  for k in (0, 1):
    _write_run(_arm_dir(root, "elbow", "scratch_1pct", k), "elbow", 2 + k, 0.3, draw=k)
  _write_run(_arm_dir(root, "elbow", "simclr_finetune_1pct", 0), "elbow", 4, 0.4, draw=0)  # draw 1 absent
  _write_run(_arm_dir(root, "elbow", "scratch_100pct"), "elbow", 5, 0.4)
  (root / "elbow" / "scratch_100pct" / "result.json").write_text("{not json")
  _write_run(_arm_dir(root, "elbow", "simclr_finetune_10pct", 0), "elbow", 6, 0.4, finished=False, draw=0)
  _pretraining(root / "elbow" / layout.PRETRAIN_ARM)  # per-part pretraining
  for k in (0, 1):
    _write_run(_arm_dir(root, "hand", "simclr_finetune_1pct", k), "hand", 7 + k, 0.4, draw=k)
  (root / "hand" / "simclr_linear_1pct").mkdir()  # started, no draw folder yet
  _write_run(_arm_dir(root, "hand", "simclr_distill_1pct", 0), "hand", 9, 0.4, draw=0)  # an arm elbow never began

  rep = report.build_report(str(root), out_dir=str(tmp_path / "out"))
  missing = {(m["body_part"], m["arm"], m["draw"]): m["reason"] for m in rep["missing"]}
  assert missing[("elbow", "simclr_finetune_1pct", 1)] == "not run (no draw1 folder)"
  assert missing[("elbow", "simclr_linear_1pct", None)] == "not run (no folder)"
  assert missing[("elbow", "scratch_100pct", None)].startswith("unreadable result.json:")
  assert missing[("elbow", "simclr_finetune_10pct", 0)] == "unfinished (no result.json)"
  assert missing[("elbow", "simclr_finetune_10pct", 1)] == "not run (no draw1 folder)"
  assert missing[("hand", "scratch_1pct", None)] == "not run (no folder)"
  assert missing[("hand", "simclr_linear_1pct", None)].startswith("no label draw started")
  assert missing[("hand", "simclr_pretrain", None)] == "not run (no folder)"
  assert missing[("elbow", "simclr_distill_1pct", None)] == "not run (no folder)"
  assert missing[("hand", "simclr_distill_1pct", 1)] == "not run (no draw1 folder)"
  assert ("elbow", "simclr_pretrain", None) not in missing
  assert missing[("pooled", "simclr_finetune_1pct", 1)] == "not in every body part (lacks elbow)"
  assert missing[("pooled", "scratch_1pct", 0)] == "not in every body part (lacks hand)"
  for name in ("results.csv", "summary.csv", "comparison.csv", "results.md", "label_efficiency_elbow.png",
               "label_efficiency_hand.png", "label_efficiency_pooled.png", "curves_elbow_simclr_pretrain.png"):
    assert (tmp_path / "out" / name).is_file(), name
  df = pd.read_csv(rep["results_csv"])
  assert set(zip(df[df.body_part == "pooled"].arm, df[df.body_part == "pooled"].draw)) == {
      ("simclr_finetune_1pct", 0)}
  comparison = pd.read_csv(rep["comparison_csv"])
  (row,) = comparison[(comparison.body_part == "elbow") & (comparison.readout == "finetune")
                      & (comparison.level == "study") & (comparison.metric == "auroc")].to_dict("records")
  at = df[(df.body_part == "elbow") & (df.level == "study") & (df.draw == 0)].set_index("arm").auroc
  assert row["n_draws"] == 1 and row["diff"] == pytest.approx(at["simclr_finetune_1pct"] - at["scratch_1pct"])
  assert row["ci_low"] <= row["diff"] <= row["ci_high"]
  summary = pd.read_csv(rep["summary_csv"])
  (two,) = summary[(summary.body_part == "elbow") & (summary.arm == "scratch_1pct") & (summary.level == "study")
                   & (summary.metric == "auroc")].to_dict("records")
  assert two["n_draws"] == 2 and two["ci_method"] == "t_over_draws"
  assert not rep["primary"]["available"]
  md = open(rep["results_md"]).read()
  assert md.index(PRIMARY) < md.index("**Result:** not available: no pooled pair of")
  assert "- elbow / `simclr_finetune_1pct` / draw1: not run (no draw1 folder)" in md
  assert "- hand / `scratch_1pct`: not run (no folder)" in md


def test_hooks_skipped_and_empty_study(tmp_path):
  (tmp_path / "elbow" / "baseline").mkdir(parents=True)
  (tmp_path / "elbow" / "simclr_linear_100pct").mkdir()
  (tmp_path / "elbow" / "simclr_linear_100pct" / "result.json").write_text('{"global_step": 3, "image": {}}')
  rep = report.build_report(str(tmp_path), out_dir=str(tmp_path / "out"))
  for name, columns in (("results_csv", RESULT_COLUMNS), ("summary_csv", SUMMARY_COLUMNS),
                        ("comparison_csv", COMPARISON_COLUMNS)):
    df = pd.read_csv(rep[name])
    assert df.empty and list(df.columns) == columns
  assert len(rep["missing"]) == len(layout.ARMS)
  (bad,) = [m for m in rep["missing"] if m["arm"] == "simclr_linear_100pct"]
  assert bad["reason"].startswith("unreadable result.json:") and "missing" in bad["reason"]
  md = open(rep["results_md"]).read()
  assert "Skipped: no explore function given." in md and "skipped: no Grad-CAM function given" in md
  assert "not available" in md and rep["table"].endswith("(no results)")
  with pytest.raises(FileNotFoundError, match="does not exist"):
    report.build_report(str(tmp_path / "nope"))
  fn, why = report_cli._load_hook("simclr_mura.no_such_module", "explore")
  assert fn is None and "not available" in why


# --- (7) figures and hooks -------------------------------------------------------------------------------------------


def test_figures_are_pngs(built):
  root, _, rep, _ = built
  out = root / "report"
  names = {os.path.basename(f) for f in rep["figures"]}
  expected = {"label_efficiency_elbow.png", "label_efficiency_hand.png", "label_efficiency_pooled.png",
              "validation_auroc_elbow.png", "gradcam_elbow.png", "curves_simclr_pretrain.png",
              "curves_elbow_baseline.png", "curves_elbow_simclr_finetune_100pct.png",
              "curves_hand_simclr_finetune_100pct.png"}
  assert names == expected  # single runs only: the label draws' curves are in TensorBoard
  assert set(f for f in os.listdir(out) if f.endswith(".png")) == expected
  for name in expected:
    with open(out / name, "rb") as f:
      assert f.read(8) == PNG, name
  md = open(rep["results_md"]).read()
  assert "[elbow/simclr_finetune_100pct](curves_elbow_simclr_finetune_100pct.png)" in md


def test_hooks(built):
  root, _, rep, calls = built
  out = str(root / "report")
  assert calls["explore"] == [("mura_synthetic/elbow", os.path.join(out, "data", "elbow")),
                              ("mura_synthetic/hand", os.path.join(out, "data", "hand"))]
  # elbow: 1% draw 0 has the best validation study AUROC (0.9 > 0.85); draw 1 (0.97) is not a candidate, nor is
  # the 100% arm's test AUROC in eval/ (0.99)
  assert calls["gradcam"][0] == (str(root / "elbow" / "simclr_finetune_1pct" / "draw0"),
                                 os.path.join(out, "gradcam_elbow.png"))
  assert rep["gradcam"]["elbow"]["status"] == "done" and "(0.900)" in rep["gradcam"]["elbow"]["why"]
  # hand: no validation curves -> the arm with the most labels; its failure is noted, not raised
  assert rep["gradcam"]["hand"]["arm"] == "simclr_finetune_100pct"
  assert rep["gradcam"]["hand"]["status"] == "failed"
  md = open(rep["results_md"]).read()
  assert "RuntimeError: no checkpoint" in md
  assert "[data/elbow/counts.csv](data/elbow/counts.csv)" in md


def test_collect_finds_parts_arms_and_draws(built):
  root, runs, rep, _ = built
  assert collect.find_body_parts(str(root)) == ["elbow", "hand"]  # not simclr_pretrain, not report
  collected = collect.collect_runs(str(root))
  assert collected.n_draws == DRAWS
  assert {(r.body_part, r.arm, r.draw) for r in collected.runs} == set(runs)
  assert {(m["body_part"], m["arm"]) for m in collected.missing} == {
      (p, layout.arm_name(f, "10pct")) for p in ("elbow", "hand") for f in layout.FAMILIES}
  assert ("", "simclr_pretrain", str(root / "simclr_pretrain")) in collected.curve_dirs
  # the report explores the data the runs read: same place, same size
  assert collect.study_data_options(str(root)) == {"data_dir": "/somewhere/tfds", "mura_dir": None, "scale": 0.05}
  assert not rep["warnings"]


def test_curves_of_an_arm(study):
  root, _ = study
  curves = collect.read_arm_curves(str(root / "elbow" / "simclr_finetune_100pct"))
  assert set(curves) == {"train", "validation", "eval"}
  assert curves["validation"]["study/auroc"] == [(10, pytest.approx(0.7)), (20, pytest.approx(0.75)),
                                                 (30, pytest.approx(0.85))]
  assert collect.validation_series(curves) == curves["validation"]["study/auroc"]
  assert set(collect.training_runs(curves)) == {"train", "validation"}  # eval/ = the test evaluation
  baseline = collect.read_arm_curves(str(root / "elbow" / "baseline"))
  assert set(collect.training_runs(baseline)) == {"eval"}  # eval/ holds the validation curves here
  assert collect.validation_series(baseline)[-1] == (30, pytest.approx(0.7))
  assert collect.read_arm_curves(str(root / "hand" / "simclr_finetune_100pct"))["train"]["learning_rate"][0] == (
      10, pytest.approx(0.1))


def test_explore_targets():
  assert report.explore_targets("mura", ["hand", "elbow"]) == [("mura/hand", "hand"), ("mura/elbow", "elbow")]
  assert report.explore_targets("mura", ["wrist"]) == [("mura/wrist", "")]


# --- the command line ------------------------------------------------------------------------------------------------


@pytest.fixture
def small_study(tmp_path):
  root = tmp_path / "small"
  _, result = _write_run(_arm_dir(root, "shoulder", "simclr_finetune_100pct"), "shoulder", 3, 0.5)
  (root / "shoulder" / "baseline").mkdir()
  return root, result


def test_cli(small_study, tmp_path, capsys):
  root, result = small_study
  out = tmp_path / "cli_report"
  assert report_cli.run([f"--study={root}", f"--out={out}", "--skip_explore", "--skip_gradcam"]) == 0
  captured = capsys.readouterr()
  lines = captured.out.splitlines()
  assert lines[0].startswith(PRIMARY + " not available: no pooled pair of")
  assert lines[2].split()[:3] == ["body_part", "arm", "n_draws"]
  assert lines[4].split()[:4] == ["shoulder", "simclr_finetune_100pct", "1", f"{result['study']['auroc']:.3f}"]
  assert "missing: shoulder/baseline: unfinished (no result.json)" in captured.out
  assert "missing: shoulder/scratch_1pct: not run (no folder)" in captured.out
  assert (out / "results.csv").exists() and (out / "label_efficiency_shoulder.png").exists()
  assert "Skipped: --skip_explore." in (out / "results.md").read_text()
  with pytest.raises(SystemExit):
    report_cli.run([f"--study={tmp_path / 'absent'}"])


def test_module_entry_point(small_study):
  root, _ = small_study
  proc = subprocess.run([sys.executable, "-m", "simclr_mura.report", f"--study={root}", "--skip_explore",
                         "--skip_gradcam"], capture_output=True, text=True, timeout=120,
                        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.splitlines()[0].startswith(PRIMARY)
  assert pd.read_csv(root / "report" / "results.csv").shape == (4, 12)  # shoulder and pooled, both levels


def test_report_on_a_tf_filesystem(tmp_path, monkeypatch):
  """A study on TensorFlow's in-memory filesystem (standing in for gs://): the report reads and writes through
  tf.io.gfile only."""
  monkeypatch.chdir(tmp_path)  # a file written through os.* would land under ./ram:/...
  root = "ram://report_test/study"
  preds = {}
  for part in ("elbow", "hand"):
    for arm, draws in (("simclr_finetune_1pct", (0, 1)), ("scratch_1pct", (0, 1)), ("baseline", (None,))):
      for k in draws:
        model_dir = "/".join([root, part, arm] + ([layout.draw_folder(k)] if k is not None else []))
        p = _predictions(part, len(preds), 0.3)
        preds[part, arm, k] = p
        results.write_flags_json(model_dir, {"threshold": 0.5, "dataset": f"mura_synthetic/{part}"})
        results.write_predictions(layout.RunDir(model_dir).predictions_csv("test"), p)
        results.write_result(model_dir, {"global_step": 1, "dataset": f"mura_synthetic/{part}",
                                         "train_mode": "finetune", "train_split": "train", "eval_split": "test",
                                         **metrics.evaluate_predictions(p)})
  writer = tf.summary.create_file_writer(f"{root}/{layout.PRETRAIN_ARM}/train")
  with writer.as_default():
    tf.summary.scalar("contrast_loss", 3.0, step=1)
    tf.summary.scalar("contrast_loss", 2.0, step=2)
  writer.close()
  rep = report.build_report(root)
  out = f"{root}/report"
  for name in ("results.csv", "summary.csv", "comparison.csv", "results.md", "label_efficiency_elbow.png",
               "label_efficiency_pooled.png", "curves_simclr_pretrain.png"):
    assert tf.io.gfile.exists(f"{out}/{name}"), name
  df = pd.read_csv(io.StringIO(results.read_text(f"{out}/results.csv")))
  (row,) = df[(df.body_part == "pooled") & (df.arm == "scratch_1pct") & (df.draw == 1) & (df.level == "study")
              ].to_dict("records")
  _check_row(row, _score([preds["elbow", "scratch_1pct", 1], preds["hand", "scratch_1pct", 1]])["study"], "pooled")
  assert rep["primary"]["available"] and "2 draws" in rep["primary"]["value"]
  assert os.listdir(tmp_path) == []
