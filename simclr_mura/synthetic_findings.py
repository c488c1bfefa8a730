"""Which synthetic findings a model detects: AUROC per finding kind on `mura_synthetic` predictions.

    python -m simclr_mura.synthetic_findings RUN/predictions_test.csv [MORE.csv ...] [--seed=0]

For each predictions file (written by any evaluated run on `mura_synthetic`), each study type and each finding kind
(`synthetic.finding_of`): the AUROC of that kind's abnormal images against all normal images of the type, at image
and study level, with the number of abnormal studies. Findings are drawn per study, so this says, e.g., whether a
model learned metal hardware but not fractures. Only for `mura_synthetic` trees of the given seed (default 0).
"""
from __future__ import annotations

import os
import sys

import pandas as pd
from sklearn.metrics import roc_auc_score

from simclr_mura.errors import ArgumentParser
from simclr_mura.datasets.synthetic import finding_of
from simclr_mura.training.metrics import study_level
from simclr_mura.training.results import read_predictions

MIN_ABNORMAL_STUDIES = 3  # fewer abnormal studies of a kind give no AUROC worth printing


def finding_table(predictions: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
  """Rows `study_type, finding, abnormal_studies, image_auroc, study_auroc` (types and kinds present), plus `all`."""
  df = predictions.copy()
  df["finding"] = [finding_of(s, t, seed) if y else "normal"
                   for s, t, y in zip(df["study_id"], df["study_type"], df["label"])]
  rows = []
  for study_type, part in [*df.groupby("study_type", sort=True), ("all", df)]:
    for finding in sorted(set(part["finding"]) - {"normal"}):
      images = part[part["finding"].isin([finding, "normal"])]
      studies = study_level(images)
      abnormal = int(studies["label"].sum())
      if abnormal < MIN_ABNORMAL_STUDIES or abnormal == len(studies):
        continue
      rows.append({"study_type": study_type, "finding": finding, "abnormal_studies": abnormal,
                   "image_auroc": roc_auc_score(images["label"], images["probability"]),
                   "study_auroc": roc_auc_score(studies["label"], studies["probability"])})
  return pd.DataFrame(rows, columns=["study_type", "finding", "abnormal_studies", "image_auroc", "study_auroc"])


def run(argv: list[str] | None = None) -> int:
  parser = ArgumentParser(prog="python -m simclr_mura.synthetic_findings", description=__doc__.split("\n")[0])
  parser.add_argument("predictions", nargs="+", help="predictions_<split>.csv files of mura_synthetic runs")
  parser.add_argument("--seed", type=int, default=0, help="the mura_synthetic generation seed (default 0)")
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  for path in args.predictions:
    if not os.path.isfile(path):
      parser.error(f"{path}: no such file (pass a run's predictions_<split>.csv)")
    table = finding_table(read_predictions(path), seed=args.seed)
    print(f"\n{path}")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}") if len(table) else
          f"  no finding kind with at least {MIN_ABNORMAL_STUDIES} abnormal studies")
  return 0


if __name__ == "__main__":
  sys.exit(run())
