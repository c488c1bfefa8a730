"""Label subsets and label draws (`splits.draw_patients`, `splits.label_subsets`, `splits.ordered_train`) on generated
MURA-like image lists: floor, nesting, quotas, stratification, stability and the order of `train`. No TFDS build."""
import collections
import json
import math
import os
import random
import subprocess
import sys

import pytest

from simclr_mura.datasets import layout, splits

TYPES = ("elbow", "hand", "shoulder")
FRACTIONS = (0.1, 0.01)


def mura_like(n_patients: int = 600, seed: int = 0, abnormal: float = 0.4,
              rare: tuple[str, int, int] | None = None) -> list[tuple[str, str, str, int]]:
  """One `(patient_id, study_id, study_type, label)` per image: 1-3 studies a patient, 1-5 images a study.

  `rare=(type, label, k)`: only k studies of that (type, label) cell (the others of that type get the other label).
  """
  rng = random.Random(seed)
  rows, rare_left = [], rare[2] if rare else 0
  for p in range(n_patients):
    patient = f"patient{p + 1:05d}"
    for s in range(rng.choice((1, 1, 1, 2, 2, 3))):
      study_type, label = rng.choice(TYPES), int(rng.random() < abnormal)
      if rare and study_type == rare[0] and label == rare[1]:
        if rare_left:
          rare_left -= 1
        else:
          label = 1 - label
      study_id = f"MURA-v1.1/train/XR_{study_type.upper()}/{patient}/study{s + 1}_{'positive' if label else 'negative'}"
      rows += [(patient, study_id, study_type, label)] * rng.randint(1, 5)
  return rows


def image_cells(rows, patients) -> collections.Counter:
  """Images per (study type, label) among `patients`."""
  return collections.Counter((t, l) for p, _, t, l in rows if p in patients)


def study_cells(rows, patients) -> set:
  """The (study type, label) cells `patients` have a study in."""
  return {(t, l) for p, _, t, l in rows if p in patients}


@pytest.fixture(scope="module")
def rows():
  return mura_like()


@pytest.fixture(scope="module")
def draws(rows):
  return {(f, k): splits.draw_patients(rows, f, k) for f in FRACTIONS for k in range(5)}


def test_generated_list_is_mura_like(rows):
  patients = {r[0] for r in rows}
  assert len(patients) == 600 and {r[2] for r in rows} == set(TYPES)
  assert 0.35 < sum(r[3] for r in rows) / len(rows) < 0.45
  studies = collections.Counter(r[1] for r in rows)
  assert set(studies.values()) == {1, 2, 3, 4, 5}


def test_floor_normal_and_abnormal_study_of_every_type(rows, draws):
  present = study_cells(rows, {r[0] for r in rows})
  assert len(present) == 6
  for (f, k), patients in draws.items():
    assert study_cells(rows, patients) == present, (f, k)


def test_floor_holds_where_quotas_alone_miss_a_cell():
  rows = mura_like(400, seed=1, rare=("shoulder", 1, 2))  # two abnormal shoulder studies in the whole split
  totals = image_cells(rows, {r[0] for r in rows})
  rare_images = totals[("shoulder", 1)]
  assert 0 < rare_images <= 10
  # a proportional 1% subset would hold 0.01 * rare_images < 0.1 of them: its quota is 0
  assert splits._quotas(totals, int(0.01 * len(rows)))[("shoulder", 1)] == 0  # pylint: disable=protected-access
  for k in range(5):
    for f in FRACTIONS:
      got = study_cells(rows, splits.draw_patients(rows, f, k))
      assert ("shoulder", 1) in got and len(got) == 6, (f, k)


def test_nested_within_each_draw(rows, draws):
  patients = {r[0] for r in rows}
  for k in range(5):
    assert draws[(0.01, k)] < draws[(0.1, k)] < patients
    assert splits.draw_patients(rows, 0.05, k) < draws[(0.1, k)]  # any fraction below 10%: inside the draw's 10%


def test_sizes_within_quota_plus_floor_and_stratified(rows, draws):
  n = len(rows)
  cells = study_cells(rows, {r[0] for r in rows})
  per_patient = collections.Counter(r[0] for r in rows)
  biggest = max(per_patient.values())
  abnormal = sum(r[3] for r in rows) / n
  type_share = {t: sum(r[2] == t for r in rows) / n for t in TYPES}
  for (f, k), patients in draws.items():
    size = sum(per_patient[p] for p in patients)
    target = math.floor(f * n)
    assert 0.9 * target <= size <= target + len(cells) * biggest, (f, k, size, target)  # floor: one patient a cell
    if f == 0.1:
      sub = [r for r in rows if r[0] in patients]
      assert abs(sum(r[3] for r in sub) / size - abnormal) < 0.05
      for t in TYPES:
        assert abs(sum(r[2] == t for r in sub) / size - type_share[t]) < 0.05


def test_whole_fraction_and_middle_fractions(rows):
  patients = {r[0] for r in rows}
  assert splits.draw_patients(rows, 1.0, 3) == patients
  assert splits.draw_patients(rows, 1, 0) == patients
  half = splits.draw_patients(rows, 0.5, 2)
  size = sum(1 for r in rows if r[0] in half)
  assert 0.45 * len(rows) <= size <= 0.5 * len(rows) + 6 * 15
  assert splits.draw_patients([], 0.1, 0) == frozenset()


def test_draw_zero_is_the_label_subsets(rows):
  records = [layout.ImageRecord(f"{study}/image{i}.png", study, p, t, l, "train", "")
             for i, (p, study, t, l) in enumerate(rows)]
  assert splits.label_subsets(records) == {"train_10pct": splits.draw_patients(rows, 0.1, 0),
                                           "train_1pct": splits.draw_patients(rows, 0.01, 0)}
  out = splits.assign_splits(records)  # the builders' splits: train is these patients less validation's
  train_rows = [(r.patient_id, r.study_id, r.study_type, r.label) for r in out["train"]]
  assert len(train_rows) < len(rows)
  for name, f in splits.SUBSET_FRACTIONS.items():
    assert {r.patient_id for r in out[name]} == splits.draw_patients(train_rows, f, 0)


def test_draws_stable_order_independent_and_distinct(rows, draws):
  shuffled = list(rows)
  random.Random(5).shuffle(shuffled)
  for (f, k), patients in draws.items():
    assert splits.draw_patients(rows, f, k) == patients
    assert splits.draw_patients(iter(shuffled), f, k) == patients  # any iterable, any order
  for f in FRACTIONS:
    assert len({draws[(f, k)] for k in range(5)}) == 5
  # draws differ in their members, not just marginally: the 10% draws share much less than all their patients
  assert len(draws[(0.1, 0)] & draws[(0.1, 1)]) < 0.5 * len(draws[(0.1, 0)])


def test_draws_the_same_in_a_fresh_process(rows, draws):
  code = ("import json, sys\nfrom simclr_mura.datasets import splits\nrows = [tuple(r) for r in json.load(sys.stdin)]\n"
          "print(json.dumps({f'{f}/{k}': sorted(splits.draw_patients(rows, f, k)) for f in (0.1, 0.01) "
          "for k in range(5)}))")
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  for hash_seed in ("1", "4242"):  # Python's salted str hash differs; SHA-256 does not
    env = dict(os.environ, PYTHONHASHSEED=hash_seed, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(rows), capture_output=True, text=True,
                          cwd=repo, env=env, timeout=120, check=True)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {f"{f}/{k}": sorted(p) for (f, k), p in draws.items()}


def test_walk_order_is_the_documented_hash(rows, draws):
  """Draw k's floor starts with the first patient (SHA-256 of `<SUBSET_SEED>/draw<k>/<id>`) with a study in a cell."""
  for k in range(5):
    walk = sorted({r[0] for r in rows}, key=lambda p: layout.stable_hash64(f"{splits.SUBSET_SEED}/draw{k}/{p}"))
    first_cell = min(study_cells(rows, {r[0] for r in rows}))  # ("elbow", 0): the floor's first cell
    first_in_cell = next(p for p in walk if first_cell in study_cells(rows, {p}))
    assert first_in_cell in draws[(0.1, k)] and first_in_cell in draws[(0.01, k)]


@pytest.mark.parametrize("fraction", [0, 0.0, -0.1, 1.5, float("nan"), float("inf"), "0.1", None, True])
def test_bad_fraction_refused(rows, fraction):
  with pytest.raises(ValueError, match=r"fraction must be a number with 0 < fraction <= 1"):
    splits.draw_patients(rows, fraction, 0)


@pytest.mark.parametrize("draw", [-1, 1.5, 1.0, "1", None, True])
def test_bad_draw_refused(rows, draw):
  with pytest.raises(ValueError, match=r"draw must be an integer >= 0"):
    splits.draw_patients(rows, 0.1, draw)


def test_inconsistent_study_refused():
  rows = [("patient00001", "s1", "elbow", 0), ("patient00001", "s1", "elbow", 1)]
  with pytest.raises(ValueError, match="images of study s1 disagree"):
    splits.draw_patients(rows, 0.1, 0)


def test_train_order_prefixes_are_the_subsets(rows):
  records = [layout.ImageRecord(f"{study}/image{i}.png", study, p, t, l, "train", "")
             for i, (p, study, t, l) in enumerate(rows)]
  random.Random(2).shuffle(records)
  subsets = splits.label_subsets(records)
  ordered = splits.ordered_train(records)
  assert sorted(ordered, key=lambda r: r.image_id) == sorted(records, key=lambda r: r.image_id)
  patients = [r.patient_id for r in ordered]
  runs = [p for i, p in enumerate(patients) if i == 0 or p != patients[i - 1]]
  assert len(runs) == len(set(runs))  # a patient's images together
  for p in set(runs):
    ids = [r.image_id for r in ordered if r.patient_id == p]
    assert ids == sorted(ids)
  one, ten = subsets["train_1pct"], subsets["train_10pct"]
  groups = [0 if p in one else 1 if p in ten else 2 for p in runs]
  assert groups == sorted(groups)
  for g in range(3):
    walk = [p for p, grp in zip(runs, groups) if grp == g]
    assert walk == sorted(walk, key=lambda p: layout.stable_hash64(f"{splits.SUBSET_SEED}/draw0/{p}"))
  # train[:10%] (TFDS: the first round(10 * n / 100) examples) is train_10pct up to the boundary patient
  head = {r.patient_id for r in ordered[:round(10 * len(ordered) / 100)]}
  assert len(head ^ ten) <= 1
