"""The five TFDS splits (a patient-level train/validation cut of official train, nested label subsets) and label draws.

`train` / `validation` hold about 80% / 20% of official-train patients, decided per patient and the
same in every config; `test` is official `valid`; `train_10pct` ⊃ `train_1pct` are whole train patients, about 10% / 1%
of `train`'s images, stratified by study type x label, with at least one normal and one abnormal study of every study
type `train` has, deterministic.

One implementation draws every label subset: `draw_patients(images, fraction, draw)`. Draw 0 of 0.1 / 0.01 of `train`
is `train_10pct` / `train_1pct`; draws 1, 2, ... are further subsets of the same kind (repeated label draws, as
semi-supervised benchmarks report a mean over several labelled subsets: FixMatch, Sohn et al. 2020, arXiv:2001.07685,
over 5 folds). `train` is stored in an order whose prefixes are the subsets (`ordered_train`), so that `train[:1%]`
and `train[:10%]` mean what a user expects.
"""
from __future__ import annotations

import collections
import math
import numbers
from typing import Iterable, Sequence

from simclr_mura.datasets import layout

VALIDATION_FRACTION = 0.2
SUBSET_FRACTIONS = {"train_10pct": 0.10, "train_1pct": 0.01}
SUBSET_SEED = "simclr_mura/label-subsets/v2"  # v1 (dataset 1.0.0): one walk order, no draws, no floor

Cell = tuple[str, int]  # (study type, label)
ImageRow = tuple[str, str, str, int]  # (patient_id, study_id, study_type, label): one image


def _unit_hash(text: str) -> float:
  """A stable value in [0, 1) (SHA-256, unlike Python's salted `hash`)."""
  return layout.stable_hash64(text) / 2.0**64


def is_validation_patient(patient_id: str) -> bool:
  """Whether an official-train patient goes to `validation`: a function of the id alone, so config-independent."""
  return _unit_hash("simclr_mura/patient-split/v1/" + patient_id) < VALIDATION_FRACTION


def walk_key(patient_id: str, draw: int) -> int:
  """Where a patient comes in draw `draw`'s walk order: SHA-256 of `<SUBSET_SEED>/draw<k>/<patient_id>`, so the same on
  every machine and in every process, and independent across draws."""
  return layout.stable_hash64(f"{SUBSET_SEED}/draw{int(draw)}/{patient_id}")


def _walk_order(patients: Iterable[str], draw: int) -> list[str]:
  return sorted(patients, key=lambda p: (walk_key(p, draw), p))


def _quotas(totals: collections.Counter, target: int) -> dict[Cell, int]:
  """Split `target` over the (study type, label) cells in proportion to `totals` (largest remainder)."""
  n = sum(totals.values())
  exact = {cell: target * count / n for cell, count in totals.items()}
  quota = {cell: math.floor(x) for cell, x in exact.items()}
  for cell in sorted(exact, key=lambda c: (quota[c] - exact[c], c))[:target - sum(quota.values())]:
    quota[cell] += 1
  return quota


def _pick_patients(pool: Sequence[str], counts: dict[str, collections.Counter], quota: dict[Cell, int]) -> list[str]:
  """The floor, then a greedy walk over `pool` taking a patient when all its images fit the per-cell quotas.

  Floor: for each (study type, label) cell (in sorted order) that no patient taken so far has a study in, the first
  patient of `pool` that has one. Then the quota walk, counting the floor's images as used: a patient is taken when its
  images fit every cell's quota. Returns the taken patients in `pool`'s order.
  """
  taken: set[str] = set()
  used: collections.Counter = collections.Counter()
  for cell in sorted(quota):
    if used[cell] == 0:
      first = next((p for p in pool if cell in counts[p]), None)
      if first is not None:
        taken.add(first)
        used.update(counts[first])
  for patient in pool:
    if all(used[cell] >= q for cell, q in quota.items()):
      break
    if patient not in taken and all(used[cell] + k <= quota[cell] for cell, k in counts[patient].items()):
      taken.add(patient)
      used.update(counts[patient])
  return [p for p in pool if p in taken]


def _check_draw_args(fraction: float, draw: int) -> None:
  if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 < fraction <= 1:
    raise ValueError(f"fraction must be a number with 0 < fraction <= 1 (e.g. 0.01, 0.1; 1 = every patient), got "
                     f"{fraction!r}")
  if isinstance(draw, bool) or not isinstance(draw, numbers.Integral) or draw < 0:
    raise ValueError(f"draw must be an integer >= 0 (draw 0 of 0.1 / 0.01 of train is train_10pct / train_1pct), got "
                     f"{draw!r}")


def draw_patients(images: Iterable[tuple[str, str, str, int]], fraction: float, draw: int) -> frozenset[str]:
  """The patient ids of draw `draw` of `fraction` of a split's images, drawn by whole patients.

  `images`: one `(patient_id, study_id, study_type, label)` per image of the split (any order; the result depends on
  the set of images only). The subset is stratified by (study type, label) cell: each cell has an image quota
  proportional to the split's, `floor(fraction * images)` in all (largest remainder). First the floor: a normal and an
  abnormal study of every study type, where the split has one (for each cell lacking a study, the first patient in the
  walk order with a study in it). Then patients are taken in the walk order when their images fit the quotas. The walk
  order is `walk_key(patient, draw)`: fixed by `draw` alone, different for different draws. Below a standard fraction
  (`SUBSET_FRACTIONS`), the subset is drawn from inside the draw's larger standard subsets, so draw k's 1% ⊂ draw k's
  10%. So a subset holds at most `floor(fraction * images)` images plus what the floor's patients add beyond their
  cells' quotas, keeps the split's abnormal share and study-type mix, and fraction 1 is every patient.
  """
  _check_draw_args(fraction, draw)
  counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  totals: collections.Counter = collections.Counter()
  studies: dict[str, tuple[str, Cell]] = {}
  for patient_id, study_id, study_type, label in images:
    patient, cell = str(patient_id), (str(study_type), int(label))
    if studies.setdefault(str(study_id), (patient, cell)) != (patient, cell):
      raise ValueError(f"the images of study {study_id} disagree on patient, study type or label: "
                       f"{studies[str(study_id)]} and {(patient, cell)}")
    counts[patient][cell] += 1
    totals[cell] += 1
  if fraction == 1:
    return frozenset(counts)
  n = sum(totals.values())
  pool = _walk_order(counts, draw)
  for f in sorted({f for f in SUBSET_FRACTIONS.values() if f > fraction} | {fraction}, reverse=True):
    pool = _pick_patients(pool, counts, _quotas(totals, int(f * n + 1e-9)))  # 1e-9: 0.29 * 100 is 28.999...
  return frozenset(pool)


def _rows(records: Iterable[layout.ImageRecord]) -> list[ImageRow]:
  return [(r.patient_id, r.study_id, r.study_type, r.label) for r in records]


def label_subsets(train: Sequence[layout.ImageRecord]) -> dict[str, frozenset[str]]:
  """Patient ids of `train_10pct` and `train_1pct` (nested): draw 0 of `draw_patients` at their fractions."""
  rows = _rows(train)
  return {name: draw_patients(rows, fraction, draw=0) for name, fraction in SUBSET_FRACTIONS.items()}


def ordered_train(train: Sequence[layout.ImageRecord],
                  subsets: dict[str, frozenset[str]] | None = None) -> list[layout.ImageRecord]:
  """`train` in its stored order: `train_1pct`'s patients, then `train_10pct`'s other patients, then the rest.

  Each group is in draw 0's walk order (`walk_key(patient, 0)`), a patient's images together, ordered by image_id. So
  every prefix of `train` holding k% of its images is the k% subset (k = 1, 10) up to the patient cut at the slice
  boundary, where the subset's size is close to k% of the images (the floor can make a small subset larger: then
  `train[:k%]` is a prefix of the subset).
  """
  subsets = label_subsets(train) if subsets is None else subsets
  nested = [subsets[name] for name, _ in sorted(SUBSET_FRACTIONS.items(), key=lambda kv: kv[1])]  # smallest first
  rank = {p: i for i, p in enumerate(_walk_order({r.patient_id for r in train}, 0))}

  def key(r: layout.ImageRecord) -> tuple[int, int, str]:
    group = next((i for i, patients in enumerate(nested) if r.patient_id in patients), len(nested))
    return group, rank[r.patient_id], r.image_id

  return sorted(train, key=key)


def assign_splits(records: Sequence[layout.ImageRecord]) -> dict[str, list[layout.ImageRecord]]:
  """All five splits, each in its stored order (records may appear in several: the subsets share `train`'s examples).

  `train` as `ordered_train`, the subsets in `train`'s order (so `train_10pct` starts with `train_1pct`),
  `validation` and `test` by image_id. The result depends on the set of records only, not on their order.
  """
  out: dict[str, list[layout.ImageRecord]] = {name: [] for name in layout.SPLITS}
  for r in sorted(records, key=lambda r: r.image_id):
    if r.official_split == "valid":
      out["test"].append(r)
    elif is_validation_patient(r.patient_id):
      out["validation"].append(r)
    else:
      out["train"].append(r)
  subsets = label_subsets(out["train"])
  out["train"] = ordered_train(out["train"], subsets)
  for name, patients in subsets.items():
    out[name] = [r for r in out["train"] if r.patient_id in patients]
  return out
