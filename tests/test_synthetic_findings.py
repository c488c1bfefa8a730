"""AUROC per synthetic finding kind: the kind is the one the generator drew, and the table's values are right."""
import subprocess
import sys

import numpy as np
import pandas as pd

from conftest import REPO
from simclr_mura import synthetic_findings
from simclr_mura.training import results
from simclr_mura.datasets import synthetic


def _abnormal(study_type: str, split: str = "valid", scale: float = 1.0):
  return [s for s in synthetic.roster(0, scale) if s.study_type == study_type and s.split == split and s.label]


def test_finding_of_is_the_draw_render_image_makes(monkeypatch):
  drawn = []
  real = synthetic._finding_params

  def spy(study_type, rng):
    params = real(study_type, rng)
    drawn.append(params)
    return params

  monkeypatch.setattr(synthetic, "_finding_params", spy)
  studies = _abnormal("shoulder", scale=0.1)[:6]
  for study in studies:
    synthetic.render_image(study, 1)
  monkeypatch.setattr(synthetic, "_finding_params", real)
  kinds = [synthetic.finding_of(s.study_id, s.study_type) for s in studies]
  expected = [f"hardware/{p['hardware']}" if p["kind"] == "hardware" else p["kind"] for p in drawn]
  assert kinds == expected
  assert synthetic.finding_of(studies[0].study_id, "shoulder", seed=1) in (
      "fracture", "lesion", "dislocation", "hardware/plate", "hardware/wires", "hardware/screws")


def _predictions(rng) -> pd.DataFrame:
  """Elbow valid studies at full scale: hardware scored above every normal, fractures below, lesions at random."""
  rows = []
  normal = [s for s in synthetic.roster(0, 1.0) if s.study_type == "elbow" and s.split == "valid" and not s.label]
  for study in _abnormal("elbow") + normal:
    kind = synthetic.finding_of(study.study_id, "elbow") if study.label else "normal"
    for image_id in study.image_ids():
      p = {"normal": rng.uniform(0.3, 0.6), "fracture": rng.uniform(0.0, 0.2)}.get(kind, rng.uniform(0.7, 1.0))
      rows.append({"image_id": image_id, "study_id": study.study_id, "patient_id": study.patient,
                   "study_type": "elbow", "label": study.label, "probability": p})
  return pd.DataFrame(rows)


def test_finding_table_values():
  predictions = _predictions(np.random.default_rng(0))
  table = synthetic_findings.finding_table(predictions).set_index(["study_type", "finding"])
  counts = pd.Series([synthetic.finding_of(s.study_id, "elbow") for s in _abnormal("elbow")]).value_counts()
  kinds = set(counts[counts >= synthetic_findings.MIN_ABNORMAL_STUDIES].index)
  assert "fracture" in kinds and any(k.startswith("hardware") for k in kinds)
  assert set(table.loc["elbow"].index) == kinds  # kinds with too few abnormal studies are left out
  assert (counts < synthetic_findings.MIN_ABNORMAL_STUDIES).any()  # (and this data has one)
  for finding in kinds:
    row = table.loc[("elbow", finding)]
    expected = 0.0 if finding == "fracture" else 1.0  # fractures all below normals, others all above
    assert row["image_auroc"] == expected and row["study_auroc"] == expected
    assert row["abnormal_studies"] == counts[finding]
  assert set(table.loc["all"].index) == kinds  # one study type: "all" repeats it


def test_cli_prints_the_table_and_refuses_a_missing_file(tmp_path):
  path = tmp_path / "predictions_test.csv"
  results.write_predictions(path, _predictions(np.random.default_rng(1)))
  out = subprocess.run([sys.executable, "-m", "simclr_mura.synthetic_findings", str(path)], cwd=REPO,
                       capture_output=True, text=True, check=True).stdout
  assert "fracture" in out and "study_auroc" in out
  proc = subprocess.run([sys.executable, "-m", "simclr_mura.synthetic_findings", str(tmp_path / "nope.csv")],
                        cwd=REPO, capture_output=True, text=True)
  assert proc.returncode == 2 and "no such file" in proc.stderr
