"""Writes a synthetic MURA-v1.1 tree (CSVs and radiograph-like PNGs) in the official on-disk format.

`write_mura_tree(root, seed, scale, study_types)` is deterministic in (seed, scale): the roster of patients, studies and
labels is always drawn for all seven study types (so patient ids, and hence the patient-level splits, are the same
whatever types are written); every image is rendered from its own generator seeded by its path, so an image is identical
whichever subset of types is written. `scale=1.0` reproduces MURA v1.1's per-type study and image counts (about 40,000
images); the default 0.1 writes about a tenth. `test_scale` sizes the official `valid` split on its own (default:
`scale`); the `mura_synthetic` builder keeps it at MURA's real size (see `mura_synthetic.TEST_SCALE`).
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import math
import multiprocessing
import os
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from simclr_mura.datasets import anatomy
from simclr_mura.datasets import layout
from simclr_mura.datasets import visit as visit_lib
from simclr_mura.datasets import xray

# MURA v1.1 per study type and official split: (normal studies, abnormal studies, normal images, abnormal images).
# Elbow, hand and shoulder: MURA v1.1's CSVs (https://stanfordmlgroup.github.io/competitions/mura/). Finger, forearm,
# humerus, wrist: MURA v1.1's published per-type counts as tabulated from its CSVs by public notebooks (recalled; the
# seven types sum exactly to the release totals: train 13,457 studies / 36,808 images, valid 1,199 studies / 3,197
# images).
MURA_V11_COUNTS: dict[str, dict[str, tuple[int, int, int, int]]] = {
    "elbow": {"train": (1094, 660, 2925, 2006), "valid": (92, 66, 235, 230)},
    "finger": {"train": (1280, 655, 3138, 1968), "valid": (92, 83, 214, 247)},
    "forearm": {"train": (590, 287, 1164, 661), "valid": (69, 64, 150, 151)},
    "hand": {"train": (1497, 521, 4059, 1484), "valid": (101, 66, 271, 189)},
    "humerus": {"train": (321, 271, 673, 599), "valid": (68, 67, 148, 140)},
    "shoulder": {"train": (1364, 1457, 4211, 4168), "valid": (99, 95, 285, 278)},
    "wrist": {"train": (2134, 1326, 5765, 3987), "valid": (140, 97, 364, 295)},
}
# Patients per study: MURA v1.1 has about 11,184 train and 783 valid patients (release notes; approximate), i.e.
# several studies for some patients, of one or several body parts.
PATIENTS_PER_STUDY = {"train": 11184 / 13457, "valid": 783 / 1199}
SAME_PART_FOLLOW_UP = 0.6  # a patient's extra study is of a part they already have (else any part)
RGB_FRACTION = 0.08  # share of files stored as RGB (MURA has some; the builder converts them)
FINDING_VISIBLE = 0.95  # an abnormal study's finding shows on each of its views with this probability

# Abnormal findings per type: (fracture, hardware, lesion, dislocation) weights.
FINDINGS = ("fracture", "hardware", "lesion", "dislocation")
FINDING_WEIGHTS: dict[str, tuple[float, ...]] = {
    "elbow": (0.55, 0.25, 0.2, 0.0), "finger": (0.55, 0.2, 0.25, 0.0), "forearm": (0.5, 0.35, 0.15, 0.0),
    "hand": (0.5, 0.25, 0.25, 0.0), "humerus": (0.45, 0.3, 0.25, 0.0), "shoulder": (0.35, 0.25, 0.15, 0.25),
    "wrist": (0.55, 0.3, 0.15, 0.0),
}


@dataclasses.dataclass(frozen=True)
class Study:
  split: str  # train | valid
  study_type: str
  patient: str
  number: int
  label: int
  num_images: int

  @property
  def study_id(self) -> str:
    kind = "positive" if self.label else "negative"
    return (f"{layout.ROOT_NAME}/{self.split}/{layout.type_folder(self.study_type)}/{self.patient}/"
            f"study{self.number}_{kind}")

  def image_ids(self) -> list[str]:
    return [f"{self.study_id}/image{i}.png" for i in range(1, self.num_images + 1)]


def _seed(*parts) -> int:
  """A stable 64-bit seed from strings/ints (SHA-256)."""
  return layout.stable_hash64("/".join(map(str, parts)))


def _views_per_study(num_images: int, num_studies: int, rng: np.random.Generator) -> np.ndarray:
  """1-5 images per study (1 + binomial, spread like MURA's) summing exactly to num_images (clipped to 1-5 each)."""
  num_images = min(max(num_images, num_studies), 5 * num_studies)
  p = (num_images / num_studies - 1) / 4
  counts = 1 + rng.binomial(4, p, size=num_studies)
  while (diff := num_images - int(counts.sum())) != 0:  # nudge random studies until the total is exact
    open_ = np.flatnonzero(counts < 5) if diff > 0 else np.flatnonzero(counts > 1)
    picks = rng.choice(open_, size=min(abs(diff), len(open_)), replace=False)
    counts[picks] += 1 if diff > 0 else -1
  return counts


def roster(seed: int = 0, scale: float = 0.1, test_scale: float | None = None) -> list[Study]:
  """Every study of the synthetic release (all seven types), in MURA's CSV order.

  `scale` sizes the official `train` split, `test_scale` (default `scale`) the official `valid` split. `train` is drawn
  first, so its studies, patients and images do not depend on `test_scale`.
  """
  rng = np.random.default_rng(_seed("roster", seed, scale))
  studies: list[Study] = []
  next_patient = 1
  for split in layout.OFFICIAL_SPLITS:
    size = test_scale if split == "valid" and test_scale is not None else scale
    drafts = []  # (type, label, num_images)
    for study_type in layout.STUDY_TYPES:
      sn, sa, im_n, im_a = MURA_V11_COUNTS[study_type][split]
      for label, ns, ni in ((0, sn, im_n), (1, sa, im_a)):
        ns = max(1, round(size * ns))
        drafts += [(study_type, label, int(n)) for n in _views_per_study(round(size * ni), ns, rng)]
    order = rng.permutation(len(drafts))
    num_patients = max(1, round(len(drafts) * PATIENTS_PER_STUDY[split]))
    parts_of: list[collections.Counter] = [collections.Counter() for _ in range(num_patients)]
    by_part: dict[str, list[int]] = collections.defaultdict(list)
    assigned = []
    for rank, i in enumerate(order):
      study_type, label, n = drafts[i]
      if rank < num_patients:
        p = rank
      elif by_part[study_type] and rng.random() < SAME_PART_FOLLOW_UP:
        p = by_part[study_type][rng.integers(len(by_part[study_type]))]
      else:
        p = int(rng.integers(num_patients))
      if not parts_of[p][study_type]:
        by_part[study_type].append(p)
      parts_of[p][study_type] += 1
      assigned.append(Study(split, study_type, f"patient{next_patient + p:05d}", parts_of[p][study_type], label, n))
    studies += sorted(assigned, key=lambda s: (layout.STUDY_TYPES.index(s.study_type), s.patient, s.number))
    next_patient += num_patients
  return studies


# --- rendering ---------------------------------------------------------------------------------------------------------

def _finding_params(study_type: str, rng: np.random.Generator) -> dict:
  kind = FINDINGS[rng.choice(len(FINDINGS), p=np.array(FINDING_WEIGHTS[study_type]) / sum(FINDING_WEIGHTS[study_type]))]
  return {
      # where: which target bone (fraction of the list) and where along it (fraction of the stretch near mid-film)
      "kind": kind, "target": rng.random(), "t": rng.random(),
      # fracture: obliquity, gap, sideways shift (in bone radii), angulation, shortening (in bone radii), swelling,
      # and for a healing fracture (about half) a bright callus cloud around the break
      "obl": rng.uniform(-0.9, 0.9), "gap": rng.uniform(0.03, 0.07), "shift": rng.uniform(1.5, 3.0) * rng.choice([-1, 1]),
      "angle": rng.uniform(0.2, 0.5) * rng.choice([-1, 1]), "shortening": rng.uniform(-0.3, 1.5),
      "swelling": rng.uniform(0.6, 1.2), "callus": rng.choice([0.0, rng.uniform(0.35, 0.8)]),
      "callus_len": rng.uniform(2.5, 4.0),
      # hardware: plate + screws, crossed wires or lone screws
      "hardware": rng.choice(["plate", "plate", "wires", "screws"]), "plate_len": rng.uniform(0.35, 0.7),
      "screws": int(rng.integers(3, 7)), "side": rng.choice([-1, 1]), "plate_w": rng.uniform(0.5, 0.8),
      "wire_angle": rng.uniform(0.3, 0.7), "wire_w": rng.uniform(0.014, 0.022),
      # lytic lesion: size (in bone radii), elongation, depth, sclerotic rim, soft-tissue mass, and for about half an
      # expansile lesion (the cortex bulges into a thin bright shell around the lucency)
      "size": rng.uniform(2.2, 3.4), "elong": rng.uniform(1.0, 1.8), "depth": rng.uniform(0.85, 1.0),
      "rim": rng.choice([0.0, rng.uniform(0.3, 0.6)]), "mass": rng.uniform(0.0, 0.7),
      "expand": rng.choice([0.0, rng.uniform(1.5, 2.2)]),
      # shoulder dislocation: the humeral head leaves the glenoid (anterior-inferior)
      "dislocate": (rng.uniform(0.2, 0.45), rng.uniform(0.3, 0.55)),
  }


def finding_of(study_id: str, study_type: str, seed: int = 0) -> str:
  """The finding kind an abnormal synthetic study was drawn with (the same draw `render_image` makes).

  `fracture`, `lesion`, `dislocation` or `hardware/<plate|wires|screws>`. Each view shows it with probability
  FINDING_VISIBLE. `study_id` as in the CSVs (and the TFDS `study_id` feature), without the trailing `/`.
  """
  f = _finding_params(study_type, np.random.default_rng(_seed("study", seed, study_id)))
  return f"hardware/{f['hardware']}" if f["kind"] == "hardware" else str(f["kind"])


def _point_on(bone: xray.Bone, t: float) -> tuple[float, float]:
  return bone.p0[0] + (bone.p1[0] - bone.p0[0]) * t, bone.p0[1] + (bone.p1[1] - bone.p0[1]) * t


# Half-width and half-height, in anatomy units, of the part of the anatomy a film centred on it shows: `render_image`
# fills the film's long side with 2.1-2.8 units, so half of it is 1.05-1.4 units and the short side 0.62-1.0 of that.
FIELD = (0.85, 1.2)


def in_field(p: tuple[float, float], margin: float) -> bool:
  """Whether an anatomy-frame point lies on a film centred on the part, `margin` (a fraction of each side) inside."""
  return abs(p[0]) < FIELD[0] * (1 - 2 * margin) and abs(p[1]) < FIELD[1] * (1 - 2 * margin)


def _site(shapes: list, targets: list[int], f: dict, inside: Callable[..., bool] = lambda p, margin: True
          ) -> tuple[int, float]:
  """Where the finding is: a target bone and a position t along it, preferring sites near the middle of the film.

  Sites in the central part of the film (where the radiographer centres the injury, and where the crops of training
  and evaluation keep it) come first; failing those, any site on the film; failing that, anywhere on a target bone.
  """
  grid = np.linspace(0.12, 0.88, 39)
  for margin in (0.2, 0.08, None):
    sites = {i: [t for t in grid if margin is None or inside(_point_on(shapes[i], t), margin)] for i in targets}
    ok = [i for i in targets if sites[i]]
    if ok:
      i = ok[min(int(f["target"] * len(ok)), len(ok) - 1)]
      ts = sites[i]
      return i, float(ts[min(int(f["t"] * len(ts)), len(ts) - 1)])
  raise ValueError("no target bones")


def _apply_finding(shapes: list, site: tuple[int, float], f: dict) -> None:
  """Puts the finding at `site` (bone index, position along it): the same place on the bone in every view."""
  i, t = site
  bone = shapes[i]
  ax, ay, length = xray.axis(bone)
  nx, ny = -ay, ax
  px, py = bone.p0[0] + ax * t * length, bone.p0[1] + ay * t * length
  r = bone.r
  axis_angle = math.atan2(ay, ax)
  if f["kind"] == "fracture":
    bone.fracture = (t, f["obl"], f["gap"], f["shift"] * r, f["angle"], f["shortening"] * r)
    swell = max(4.5 * r, 0.22)  # soft-tissue swelling around the break
    shapes.insert(0, xray.Soft((px - ax * swell, py - ay * swell), (px + ax * swell, py + ay * swell), swell,
                               f["swelling"], additive=True))
    if f["callus"] > 0:  # healing: a fusiform cloud of new bone bridging the break
      shapes.append(xray.Blob((px, py), max(f["callus_len"] * r, 0.1), max(2.2 * r, 0.06), axis_angle, cortex=1.0,
                              density=f["callus"]))
  elif f["kind"] == "lesion":
    size = max(f["size"] * r, 0.12)
    rx, ry = size * f["elong"], size * 0.8
    if f["expand"] > 0:  # expansile: a thin bony shell bulging past the cortex (the lesion hollows its inside)
      shapes.append(xray.Blob((px, py), rx * 1.12, max(ry * 1.12, f["expand"] * r), axis_angle, cortex=0.14,
                              density=0.9))
    shapes.append(xray.Lesion((px, py), rx, ry, axis_angle, f["depth"], f["rim"]))
    if f["mass"] > 0.25:  # an aggressive lesion with a soft-tissue mass
      shapes.insert(0, xray.Soft((px, py), (px, py), size * 1.8, f["mass"], additive=True))
  elif f["kind"] == "hardware":
    kind = f["hardware"]
    if kind == "plate":
      hw = max(f["plate_w"] * r, 0.02)
      half = f["plate_len"] * length / 2
      off = f["side"] * (r + hw * 0.6)
      shapes.append(xray.Metal((px + nx * off, py + ny * off), axis_angle, half, hw, 0.8))
      for s in np.linspace(-half * 0.85, half * 0.85, f["screws"]):
        shapes.append(xray.Metal((px + ax * s, py + ay * s), axis_angle + math.pi / 2, r * 1.5, 0.018 + 0.15 * r, 0.9))
    elif kind == "wires":
      for sign in (-1, 1):
        a = axis_angle + sign * f["wire_angle"]
        shapes.append(xray.Metal((px, py), a, max(6 * r, 0.3), f["wire_w"], 1.0))
    else:
      for s in (-1.5 * r, 1.5 * r):
        shapes.append(xray.Metal((px + ax * s, py + ay * s), axis_angle + math.pi / 2 + 0.2, r * 1.3, 0.018, 1.0))
        shapes.append(xray.Metal((px + ax * s + nx * r * 1.3, py + ay * s + ny * r * 1.3), axis_angle, 0.03, 0.03, 1.0))


def _distractors(shapes: list, visit: visit_lib.Visit, rng: np.random.Generator) -> None:
  """Harmless bright things normal and abnormal studies share, worn through the whole visit: a cast, a ring, a snap
  button on clothing (which moves with the garment from view to view)."""
  soft = [s for s in shapes if isinstance(s, xray.Soft)]
  if visit.cast and soft:
    s = soft[0]
    shapes.insert(0, xray.Soft(s.p0, s.p1, s.r * 1.45, 0.5, additive=True))  # plaster cast
  if visit.ring is not None:
    bones = [s for s in shapes if isinstance(s, xray.Bone) and s.r < 0.06]
    if bones:
      b = bones[min(int(visit.ring * len(bones)), len(bones) - 1)]
      ax, ay, _ = xray.axis(b)
      mid = ((b.p0[0] + b.p1[0]) / 2, (b.p0[1] + b.p1[1]) / 2)
      shapes.append(xray.Metal(mid, math.atan2(ay, ax) + math.pi / 2, b.r * 2.4, 0.014, 0.9))  # a ring
  if visit.snap:
    shapes.append(xray.Metal((rng.uniform(-0.8, 0.8), rng.uniform(-1, 1)), 0.0, 0.03, 0.03, 0.7))  # snap button


def render_image(study: Study, index: int, seed: int = 0) -> tuple[np.ndarray, bool]:
  """The `index`-th (1-based) view of a study: (uint8 H x W array, store-as-RGB flag).

  Drawn per patient: bone size, age (open growth plates), side; per patient and body part: the anatomy's own
  proportions; per study: the finding and its site on the bone, and the visit's traits (`visit.draw_visit`); per image:
  the projection, centring, rotation, collimation, noise and whether the finding shows on this view.
  """
  prng = np.random.default_rng(_seed("patient", seed, study.patient))
  srng = np.random.default_rng(_seed("study", seed, study.study_id))
  irng = np.random.default_rng(_seed("image", seed, study.study_id, index))
  anatomy_seed = _seed("anatomy", seed, study.patient, study.study_type)
  size, young, side = prng.uniform(0.88, 1.12), prng.random() < 0.18, prng.choice(["L", "R"])
  finding = _finding_params(study.study_type, srng) if study.label else None
  visit = visit_lib.draw_visit(study.study_type, np.random.default_rng(_seed("visit", seed, study.study_id)))
  # view: 1 = AP/PA, 2 = lateral, 3+ = obliques
  if index == 1:
    squeeze, flex = irng.uniform(0.85, 1.0), irng.uniform(-0.15, 0.15)
  elif index == 2:
    squeeze, flex = irng.uniform(0.3, 0.5), irng.uniform(0.6, 1.5)
  else:
    squeeze, flex = irng.uniform(0.45, 0.85), irng.uniform(0.0, 0.8)
  view = anatomy.View(squeeze=squeeze, flex=flex if study.study_type == "elbow" else flex * 0.3, young=young,
                      size=size)
  build = anatomy.ANATOMY[study.study_type]
  visible = finding is not None and irng.random() < FINDING_VISIBLE
  if visible and finding["kind"] == "dislocation":
    shapes, targets = anatomy.shoulder(view, np.random.default_rng(anatomy_seed), dislocate=finding["dislocate"])
  else:
    shapes, targets = build(view, np.random.default_rng(anatomy_seed))
  if visible and finding["kind"] != "dislocation":
    # the site is chosen once per study, on the part as an AP view of it sees it, and then seen from each view's angle
    upright = anatomy.View(squeeze=1.0, flex=0.0, young=young, size=size)
    _apply_finding(shapes, _site(*build(upright, np.random.default_rng(anatomy_seed)), finding, in_field), finding)

  long_side = visit.long_side
  short_side = int(long_side * min(1.0, visit.aspect + irng.uniform(-0.03, 0.03)))
  landscape = irng.random() < (0.5 if study.study_type == "shoulder" else 0.15)
  h, w = (short_side, long_side) if landscape else (long_side, short_side)
  theta = irng.normal(0, 0.22) + (irng.choice([-1, 1]) * math.pi / 2 if landscape and study.study_type != "shoulder"
                                  else 0.0)
  f = min(1.0, 256 / long_side)  # render the geometry at <= 256 px, then upsample (radiographs are smooth)
  rh, rw = max(8, round(h * f)), max(8, round(w * f))
  fill = min(h, w) / irng.uniform(1.8, 2.6) if landscape and study.study_type == "shoulder" else \
      long_side / irng.uniform(2.1, 2.8)
  affine = xray.Affine(scale=fill * rh / h, theta=theta, flip=1.0 if side == "R" else -1.0,
                       cx=rw * irng.uniform(0.4, 0.6), cy=rh * irng.uniform(0.4, 0.6))
  _distractors(shapes, visit, irng)
  film = xray.Film(rh, rw, affine)
  for shape in shapes:
    film.add(shape)
  film.bone *= xray.texture(rh, rw, irng, cells=max(4, rw // 6), amount=0.12)  # trabecular texture
  img = xray.develop(film.attenuation(), irng, visit.technique.varied(irng))
  img *= xray.texture(rh, rw, irng, cells=10, amount=irng.uniform(0.0, 0.06))  # film mottle
  img = xray.collimate(img, irng)
  big = np.asarray(Image.fromarray(img * 255, mode="F").resize((w, h), Image.BILINEAR))
  noisy = big + xray.noise(h, w, irng) * (255 * irng.uniform(0.004, 0.018)) + 0.5
  out = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), mode="L")
  xray.markers(out, irng, side, visit.markers, visit_lib.view_tag(study.study_type, index, irng))
  return np.asarray(out), bool(irng.random() < RGB_FRACTION)


def _write_study(args) -> int:
  study, seed, mura_dir = args
  folder = os.path.join(mura_dir, study.study_id[len(layout.ROOT_NAME) + 1:])
  os.makedirs(folder, exist_ok=True)
  for i in range(1, study.num_images + 1):
    pixels, rgb = render_image(study, i, seed)
    image = Image.fromarray(pixels, mode="L")
    (image.convert("RGB") if rgb else image).save(os.path.join(folder, f"image{i}.png"), compress_level=1)  # fast; noise barely compresses anyway
  return study.num_images


def _write_csvs(mura_dir: str, studies: Sequence[Study]) -> None:
  for split in layout.OFFICIAL_SPLITS:
    mine = [s for s in studies if s.split == split]
    with open(os.path.join(mura_dir, layout.image_paths_csv(split)), "w", encoding="utf-8") as f:
      f.writelines(f"{image_id}\n" for s in mine for image_id in s.image_ids())
    with open(os.path.join(mura_dir, layout.labeled_studies_csv(split)), "w", encoding="utf-8") as f:
      f.writelines(f"{s.study_id}/,{s.label}\n" for s in mine)


def _map(jobs: list, workers: int) -> Iterator[int]:
  if workers <= 1 or len(jobs) < 8:
    yield from map(_write_study, jobs)
    return
  # fork: the workers only run numpy/PIL code (no TF), and start instantly without re-importing the package
  ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
  with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
    yield from pool.map(_write_study, jobs, chunksize=8)


def write_mura_tree(root: str, seed: int = 0, scale: float = 0.1, study_types: Sequence[str] = layout.STUDY_TYPES,
                    workers: int | None = None, progress: bool = False, test_scale: float | None = None) -> str:
  """Writes `root/MURA-v1.1/` (CSVs and PNGs) for the given study types and returns its path.

  Args:
    root: folder to write into (created if needed).
    seed: generation seed; the same (seed, scale, test_scale) always gives the same tree.
    scale: fraction of MURA v1.1's per-type counts (1.0 = the real release's about 40,000 images).
    study_types: types to write; ids and labels of the others are still drawn, so trees of different type subsets agree.
    workers: processes for rendering (default: all CPUs).
    progress: show a progress bar.
    test_scale: fraction of MURA's counts for the official `valid` split (default: `scale`); `train` is the same
      whatever it is.
  """
  unknown = set(study_types) - set(layout.STUDY_TYPES)
  if unknown:
    raise ValueError(f"unknown study types {sorted(unknown)}; accepted: {', '.join(layout.STUDY_TYPES)}")
  for name, value in (("scale", scale), ("test_scale", scale if test_scale is None else test_scale)):
    if not value > 0:
      raise ValueError(f"{name} must be positive, got {value}")
  mura_dir = os.path.join(root, layout.ROOT_NAME)
  os.makedirs(mura_dir, exist_ok=True)
  studies = [s for s in roster(seed, scale, test_scale) if s.study_type in study_types]
  _write_csvs(mura_dir, studies)
  jobs = [(s, seed, mura_dir) for s in studies]
  total = sum(s.num_images for s in studies)
  from tensorflow_datasets.core.utils import tqdm_utils  # pylint: disable=g-import-not-at-top
  bar = tqdm_utils.tqdm(total=total, desc="Rendering synthetic MURA", unit=" images", leave=False,
                        disable=not progress)
  with bar:
    for n in _map(jobs, workers or os.cpu_count() or 1):
      bar.update(n)
  return mura_dir
