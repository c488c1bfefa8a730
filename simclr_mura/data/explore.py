"""Data exploration: counts per split x study type x label (the study's Tables 1-3), a label bar chart, sample grids;
the library behind `python -m simclr_mura.explore`."""
from __future__ import annotations

import io
import os
from typing import Sequence

import numpy as np
import pandas as pd
import tensorflow_datasets as tfds
from PIL import Image

from simclr_mura import plotting
from simclr_mura.data import input_pipeline
from simclr_mura.data import prepare as prepare_lib
from simclr_mura.datasets import layout

SPLIT_TITLES = {"train": "Train", "validation": "Validation", "test": "Test (official valid)",
                "train_10pct": "Train 10%", "train_1pct": "Train 1%"}
SAMPLES_PER_LABEL = 4
_COLORS = {"normal": "#4c72b0", "abnormal": "#dd8452"}


def image_table(builder: tfds.core.DatasetBuilder) -> pd.DataFrame:
  """One row per example and split: image_id, study_id, patient_id, study_type, label (names), split; images are not
  decoded (`input_pipeline.metadata`)."""
  table = pd.concat([input_pipeline.metadata(builder, split).assign(split=split) for split in builder.info.splits],
                    ignore_index=True)
  table["label"] = table["label"].map(layout.LABELS.__getitem__)
  return table


def count_table(table: pd.DataFrame, study_types: Sequence[str] = layout.STUDY_TYPES) -> pd.DataFrame:
  """Per split x study type (plus a `total` row per split): images, studies and patients by label (zeros included)."""
  rows = []
  for split in [s for s in layout.SPLITS if s in set(table["split"])]:
    part = table[table["split"] == split]
    for study_type in list(study_types) + ["total"]:
      sub = part if study_type == "total" else part[part["study_type"] == study_type]
      normal, abnormal = sub[sub["label"] == "normal"], sub[sub["label"] == "abnormal"]
      rows.append({
          "split": split, "study_type": study_type,
          "normal_images": len(normal), "abnormal_images": len(abnormal), "images": len(sub),
          "abnormal_share": round(len(abnormal) / len(sub), 4) if len(sub) else float("nan"),
          "normal_studies": normal["study_id"].nunique(), "abnormal_studies": abnormal["study_id"].nunique(),
          "studies": sub["study_id"].nunique(), "patients": sub["patient_id"].nunique(),
      })
  return pd.DataFrame(rows)


def _md_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def counts_markdown(counts: pd.DataFrame, dataset: str) -> str:
  """Tables like the study's: one per split (normal / abnormal / total per part), then images per split and part."""
  out = [f"# Data exploration: `{dataset}`", ""]
  splits = list(dict.fromkeys(counts["split"]))
  for i, split in enumerate(splits, start=1):
    part = counts[counts["split"] == split]
    rows = [[r.study_type.capitalize() if r.study_type != "total" else "**Total**", r.normal_images, r.abnormal_images,
             r.images, f"{100 * r.abnormal_share:.1f}%" if r.images else "-", f"{r.normal_studies} / {r.abnormal_studies}", r.patients]
            for r in part.itertuples()]
    out += [f"Table {i}: {SPLIT_TITLES.get(split, split)} split (images; studies normal / abnormal)", "",
            _md_table(["Part", "Normal", "Abnormal", "Total", "Abnormal share", "Studies N / A", "Patients"], rows), ""]
  pivot = counts.pivot(index="study_type", columns="split", values="images")
  types = [t for t in list(layout.STUDY_TYPES) + ["total"] if t in pivot.index]
  rows = [[t.capitalize() if t != "total" else "**Total**"] + [int(pivot.loc[t, s]) for s in splits]
          for t in types]
  out += [f"Table {len(splits) + 1}: images per split and part", "",
          _md_table(["Part"] + [SPLIT_TITLES.get(s, s) for s in splits], rows), ""]
  return "\n".join(out)


def plot_label_distribution(counts: pd.DataFrame, path: str, dataset: str) -> None:
  """Grouped bars (normal vs abnormal images) per study type, one panel per split."""
  splits = [s for s in ("train", "validation", "test") if s in set(counts["split"])]
  fig = plotting.new_figure(4.2 * len(splits), 3.8)
  axes = fig.subplots(1, len(splits), squeeze=False)
  for ax, split in zip(axes[0], splits):
    part = counts[(counts["split"] == split) & (counts["study_type"] != "total")]
    x = np.arange(len(part))
    for offset, label in ((-0.2, "normal"), (0.2, "abnormal")):
      bars = ax.bar(x + offset, part[f"{label}_images"], width=0.4, label=label, color=_COLORS[label])
      ax.bar_label(bars, fontsize=7, padding=1)
    ax.set_xticks(x, [t.capitalize() for t in part["study_type"]], rotation=30 if len(part) > 3 else 0)
    ax.set_title(SPLIT_TITLES[split])
    ax.set_ylabel("images")
    ax.margins(y=0.15)
  axes[0][0].legend()
  fig.suptitle(f"Label distribution per study type: {dataset}")
  fig.savefig(path, dpi=110)


def collect_samples(builder: tfds.core.DatasetBuilder, split: str, study_types: Sequence[str],
                    n: int = SAMPLES_PER_LABEL) -> dict[tuple[str, str], list[tuple[str, np.ndarray]]]:
  """Up to n (image_id, pixels) per (study type, label), the first ones in the split's stored order."""
  want = {(t, l): [] for t in study_types for l in layout.LABELS}
  ds = builder.as_dataset(split, decoders={"image": tfds.decode.SkipDecoding()})
  for ex in tfds.as_numpy(ds):
    key = (layout.STUDY_TYPES[ex["study_type"]], layout.LABELS[ex["label"]])
    if key in want and len(want[key]) < n:
      want[key].append((ex["image_id"].decode(), np.asarray(Image.open(io.BytesIO(ex["image"])).convert("L"))))
      if all(len(v) >= n for v in want.values()):
        break
  return want


def plot_samples(samples: dict, study_type: str, path: str, split: str) -> None:
  """Rows normal / abnormal, columns the samples, each titled by patient and study."""
  n = max(1, max(len(samples[(study_type, l)]) for l in layout.LABELS))
  fig = plotting.new_figure(2.6 * n, 5.8)
  axes = fig.subplots(2, n, squeeze=False)
  for row, label in enumerate(layout.LABELS):
    items = samples[(study_type, label)]
    for col in range(n):
      ax = axes[row][col]
      ax.set_xticks([])
      ax.set_yticks([])
      if col < len(items):
        image_id, pixels = items[col]
        ax.imshow(pixels, cmap="gray", vmin=0, vmax=255)
        parts = image_id.split("/")
        ax.set_title(f"{parts[3]}\n{parts[4]}/{parts[5]}", fontsize=7)
      else:
        ax.set_frame_on(False)
      if col == 0:
        ax.set_ylabel(label, fontsize=12, color=_COLORS[label])
  fig.suptitle(f"{study_type.capitalize()}: normal (top) and abnormal (bottom) studies, {split} split")
  fig.savefig(path, dpi=110)


def explore(dataset: str, out_dir: str, data_dir: str | None = None, mura_dir: str | None = None,
            scale: float | None = None) -> dict[str, str]:
  """Prepares `dataset` (at `scale`, for mura_synthetic) if needed and writes its exploration tables and figures into
  `out_dir`.

  Returns:
    name -> path: `counts_csv`, `counts_md`, `label_distribution`, and `samples_<study_type>` per type of the config.
  """
  builder = prepare_lib.prepare(dataset, data_dir=data_dir, mura_dir=mura_dir, scale=scale)
  os.makedirs(out_dir, exist_ok=True)
  paths = {"counts_csv": os.path.join(out_dir, "counts.csv"), "counts_md": os.path.join(out_dir, "counts.md"),
           "label_distribution": os.path.join(out_dir, "label_distribution.png")}
  study_types = builder.builder_config.study_types
  counts = count_table(image_table(builder), study_types)
  counts.to_csv(paths["counts_csv"], index=False)
  with open(paths["counts_md"], "w", encoding="utf-8") as f:
    f.write(counts_markdown(counts, dataset))
  plot_label_distribution(counts, paths["label_distribution"], dataset)
  samples = collect_samples(builder, "train", study_types)
  for study_type in study_types:
    paths[f"samples_{study_type}"] = os.path.join(out_dir, f"samples_{study_type}.png")
    plot_samples(samples, study_type, paths[f"samples_{study_type}"], "train")
  return paths
