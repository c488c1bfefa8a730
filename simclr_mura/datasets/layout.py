"""Fixed names of the MURA v1.1 release and of this package's TFDS configs.

The on-disk layout and CSV names are the MURA v1.1 release's (https://stanfordmlgroup.github.io/competitions/mura/;
Rajpurkar et al. 2017, arXiv:1712.06957); study types, labels and split names come from `simclr_mura.layout`.
"""
from __future__ import annotations

import dataclasses
import hashlib

from simclr_mura.layout import LABELS, SPLITS, STUDY_TYPES  # noqa: F401  (re-exported: the builders' names)

# Config name -> the study types it holds.
CONFIGS: dict[str, tuple[str, ...]] = {
    **{t: (t,) for t in STUDY_TYPES},
    "elbow_hand_shoulder": ("elbow", "hand", "shoulder"),
    "all": STUDY_TYPES,
}

# On-disk layout: MURA-v1.1/{train,valid}/XR_<TYPE>/patientNNNNN/studyK_{positive,negative}/imageM.png
ROOT_NAME = "MURA-v1.1"
OFFICIAL_SPLITS: tuple[str, ...] = ("train", "valid")
MAX_IMAGE_SIDE = 4096  # MURA images are at most 512 px a side; anything far larger is rejected as absurd.


def image_paths_csv(official_split: str) -> str:
  """`train_image_paths.csv` / `valid_image_paths.csv`: one `MURA-v1.1/...png` path per line, no header."""
  return f"{official_split}_image_paths.csv"


def labeled_studies_csv(official_split: str) -> str:
  """`train_labeled_studies.csv` / `valid_labeled_studies.csv`: `MURA-v1.1/.../studyK_x/,label`, no header."""
  return f"{official_split}_labeled_studies.csv"


def type_folder(study_type: str) -> str:
  """`elbow` -> `XR_ELBOW`."""
  return "XR_" + study_type.upper()


@dataclasses.dataclass(frozen=True)
class ImageRecord:
  """One listed image, parsed and validated; `path` is absolute, the ids are exactly as in the CSVs."""
  image_id: str  # e.g. MURA-v1.1/train/XR_ELBOW/patient00011/study1_negative/image1.png
  study_id: str  # e.g. MURA-v1.1/train/XR_ELBOW/patient00011/study1_negative
  patient_id: str  # e.g. patient00011
  study_type: str  # e.g. elbow
  label: int  # 0 normal, 1 abnormal
  official_split: str  # train | valid
  path: str
  passthrough: bool = True  # already an 8-bit grayscale PNG: its bytes are stored unchanged


def stable_hash64(text: str) -> int:
  """A stable 64-bit value of a string (first 8 bytes of its SHA-256; unlike Python's salted `hash`)."""
  return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
