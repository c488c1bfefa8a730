"""The five TFDS splits: a patient-level train/validation cut of official train, and nested label-fraction subsets.

Contract section 2: `train` / `validation` hold about 80% / 20% of official-train patients, decided per patient and the
same in every config; `test` is official `valid`; `train_10pct` ⊃ `train_1pct` are whole train patients, about 10% / 1%
of `train`'s images, label-stratified, deterministic.
"""
from __future__ import annotations

import collections
import math
from typing import Sequence

from simclr_mura.datasets import layout

VALIDATION_FRACTION = 0.2
SUBSET_FRACTIONS = {"train_10pct": 0.10, "train_1pct": 0.01}
SUBSET_SEED = "simclr_mura/label-subsets/v1"


def _unit_hash(text: str) -> float:
  """A stable value in [0, 1) (SHA-256, unlike Python's salted `hash`)."""
  return layout.stable_hash64(text) / 2.0**64


def is_validation_patient(patient_id: str) -> bool:
  """Whether an official-train patient goes to `validation`: a function of the id alone, so config-independent."""
  return _unit_hash("simclr_mura/patient-split/v1/" + patient_id) < VALIDATION_FRACTION


Cell = tuple[str, int]  # (study type, label)


def _quotas(totals: collections.Counter, target: int) -> dict[Cell, int]:
  """Split `target` over the (study type, label) cells in proportion to `totals` (largest remainder)."""
  n = sum(totals.values())
  exact = {cell: target * count / n for cell, count in totals.items()}
  quota = {cell: math.floor(x) for cell, x in exact.items()}
  for cell in sorted(exact, key=lambda c: (quota[c] - exact[c], c))[:target - sum(quota.values())]:
    quota[cell] += 1
  return quota


def _pick_patients(order: Sequence[str], counts: dict[str, collections.Counter], quota: dict[Cell, int]) -> list[str]:
  """Greedy walk over `order`, taking a patient when all its images fit the per-cell quotas."""
  taken, used = [], collections.Counter()
  room = sum(quota.values())
  for patient in order:
    c = counts[patient]
    if all(used[cell] + k <= quota[cell] for cell, k in c.items()):
      taken.append(patient)
      used.update(c)
      if sum(used.values()) == room:
        break
  if not taken and order:  # target smaller than every patient (tiny trees): take the smallest one
    taken = [order[min(range(len(order)), key=lambda i: (sum(counts[order[i]].values()), i))]]
  return taken


def label_subsets(train: Sequence[layout.ImageRecord]) -> dict[str, set[str]]:
  """Patient ids of `train_10pct` and `train_1pct` (nested), drawn from `train`'s patients.

  Patients are visited in a fixed pseudo-random order (hash of a seed and the id); a patient is taken when its images
  fit the subset's quotas per (study type, label) cell, proportional to `train`'s. So a subset never exceeds
  floor(fraction * N) images (unless even the smallest patient is larger: then it holds that one patient), and keeps
  `train`'s abnormal share and study-type mix.
  """
  counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  totals: collections.Counter = collections.Counter()
  for r in train:
    counts[r.patient_id][(r.study_type, r.label)] += 1
    totals[(r.study_type, r.label)] += 1
  pool = sorted(counts, key=lambda p: (_unit_hash(SUBSET_SEED + p), p))
  subsets = {}
  for name, fraction in sorted(SUBSET_FRACTIONS.items(), key=lambda kv: -kv[1]):  # largest first, then nest
    quota = _quotas(totals, int(fraction * len(train))) if train else {}
    subsets[name] = set(_pick_patients(pool, counts, quota))
    pool = [p for p in pool if p in subsets[name]]
  return subsets


def assign_splits(records: Sequence[layout.ImageRecord]) -> dict[str, list[layout.ImageRecord]]:
  """All five splits (records may appear in several: the subsets share `train`'s examples)."""
  out: dict[str, list[layout.ImageRecord]] = {name: [] for name in layout.SPLITS}
  for r in records:
    if r.official_split == "valid":
      out["test"].append(r)
    elif is_validation_patient(r.patient_id):
      out["validation"].append(r)
    else:
      out["train"].append(r)
  for name, patients in label_subsets(out["train"]).items():
    out[name] = [r for r in out["train"] if r.patient_id in patients]
  return out
