"""Parses and validates a MURA-v1.1 tree through its official CSVs, trusting nothing on disk.

Format (the MURA v1.1 release, https://stanfordmlgroup.github.io/competitions/mura/):
`MURA-v1.1/{train,valid}_image_paths.csv` list one image path per line, `MURA-v1.1/{train,valid}_labeled_studies.csv`
list `study_dir/,label` (1 = positive = abnormal); no header row; every path starts with `MURA-v1.1/`. Files the CSVs do not list (`._image1.png`, `.DS_Store`) are ignored.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import csv
import os
import re
from typing import Iterable, Sequence

from tensorflow_datasets.core.utils import tqdm_utils

from simclr_mura.datasets import layout
from simclr_mura.datasets import pngcheck

MAX_LISTED_PROBLEMS = 20

_STUDY_RE = re.compile(
    r"^MURA-v1\.1/(?P<split>train|valid)/XR_(?P<type>[A-Z]+)/(?P<patient>patient\d+)/"
    r"(?P<study>study\d+_(?P<label>positive|negative))$")


class MuraFormatError(ValueError):
  """The tree does not follow the MURA v1.1 format; the message names every offending file."""


def find_mura_dir(path: str) -> str | None:
  """The folder holding the MURA CSVs: `path/MURA-v1.1` or `path` itself; None when neither has them."""
  for candidate in (os.path.join(path, layout.ROOT_NAME), path):
    if os.path.isfile(os.path.join(candidate, layout.image_paths_csv("train"))):
      return candidate
  return None


def _unsafe(rel_path: str) -> bool:
  """True when a CSV path could point outside the dataset folder."""
  if rel_path.startswith(("/", "\\")) or "\\" in rel_path or re.match(r"^[A-Za-z]:", rel_path):
    return True
  return any(part in ("..", "") for part in rel_path.rstrip("/").split("/"))


class _Problems:
  """Collects (file, reason) pairs and raises them as one error."""

  def __init__(self, mura_dir: str):
    self.mura_dir = mura_dir
    self.items: list[tuple[str, str]] = []

  def add(self, name: str, reason: str) -> None:
    self.items.append((name, reason))

  def raise_if_any(self) -> None:
    if not self.items:
      return
    n = len(self.items)
    lines = [f"  {name}: {reason}" for name, reason in self.items[:MAX_LISTED_PROBLEMS]]
    if n > MAX_LISTED_PROBLEMS:
      lines.append(f"  ... and {n - MAX_LISTED_PROBLEMS} more")
    raise MuraFormatError(
        f"The MURA tree at {self.mura_dir} failed validation with {n} problem{'s' * (n != 1)}; nothing was "
        "prepared:\n" + "\n".join(lines))


def _read_rows(path: str, name: str, problems: _Problems) -> list[tuple[int, list[str]]]:
  """Non-empty CSV rows with their 1-based line numbers; a missing or undecodable CSV is a problem."""
  if not os.path.isfile(path):
    problems.add(f"{layout.ROOT_NAME}/{name}", "missing CSV file")
    return []
  try:
    with open(path, newline="", encoding="utf-8") as f:
      return [(i, [c.strip() for c in row]) for i, row in enumerate(csv.reader(f), start=1)
              if any(c.strip() for c in row)]
  except (UnicodeDecodeError, csv.Error) as e:
    problems.add(f"{layout.ROOT_NAME}/{name}", f"unreadable CSV ({e})")
    return []


def _parse_studies(mura_dir: str, split: str, problems: _Problems) -> dict[str, int]:
  """`study_id` (no trailing slash) -> label from `<split>_labeled_studies.csv`."""
  name = layout.labeled_studies_csv(split)
  studies: dict[str, int] = {}
  for line, row in _read_rows(os.path.join(mura_dir, name), name, problems):
    where = f"{layout.ROOT_NAME}/{name} line {line}"
    if len(row) != 2 or row[1] not in ("0", "1"):
      problems.add(where, f"expected 'study_dir/,0|1', got {','.join(row)!r}")
      continue
    study_id, label = row[0].rstrip("/"), int(row[1])
    if _unsafe(row[0]):
      problems.add(row[0], f"path escapes the dataset folder ({where})")
      continue
    match = _STUDY_RE.match(study_id)
    if not match or match["split"] != split:
      problems.add(row[0], f"not a {split} study folder like MURA-v1.1/{split}/XR_ELBOW/patient00001/study1_negative/ "
                   f"({where})")
      continue
    if match["type"].lower() not in layout.STUDY_TYPES:
      problems.add(row[0], f"unknown study type XR_{match['type']} ({where})")
      continue
    if (match["label"] == "positive") != bool(label):
      problems.add(row[0], f"folder says {match['label']} but {name} says {label} ({where})")
      continue
    if studies.get(study_id, label) != label:
      problems.add(row[0], f"listed twice with different labels ({where})")
      continue
    studies[study_id] = label
  return studies


def _parse_images(mura_dir: str, split: str, studies: dict[str, int], study_types: Sequence[str],
                  problems: _Problems, seen: set[str]) -> list[layout.ImageRecord]:
  """Records (not yet file-checked) of `<split>_image_paths.csv` rows whose study type is wanted."""
  name = layout.image_paths_csv(split)
  records = []
  for line, row in _read_rows(os.path.join(mura_dir, name), name, problems):
    where = f"{layout.ROOT_NAME}/{name} line {line}"
    if len(row) != 1:
      problems.add(where, f"expected one image path, got {','.join(row)!r}")
      continue
    image_id = row[0]
    if _unsafe(image_id):
      problems.add(image_id, f"path escapes the dataset folder ({where})")
      continue
    study_id, _, filename = image_id.rpartition("/")
    match = _STUDY_RE.match(study_id)
    if not match or match["split"] != split or not filename:
      problems.add(image_id, f"not a {split} image path like MURA-v1.1/{split}/XR_ELBOW/patient00001/"
                   f"study1_negative/image1.png ({where})")
      continue
    study_type = match["type"].lower()
    if study_type not in layout.STUDY_TYPES:
      problems.add(image_id, f"unknown study type XR_{match['type']} ({where})")
      continue
    if study_id not in studies:
      problems.add(image_id, f"its study is not listed in {layout.labeled_studies_csv(split)} ({where})")
      continue
    if image_id in seen:
      problems.add(image_id, f"listed twice ({where})")
      continue
    seen.add(image_id)
    if study_type not in study_types:
      continue
    path = os.path.join(mura_dir, image_id[len(layout.ROOT_NAME) + 1:])
    records.append(layout.ImageRecord(
        image_id=image_id, study_id=study_id, patient_id=match["patient"], study_type=study_type,
        label=studies[study_id], official_split=split, path=path))
  return records


def _check_file(record: layout.ImageRecord, real_root: str) -> tuple[layout.ImageRecord, str | None]:
  """(record with `passthrough` set, None) or (record, reason the file is bad)."""
  real = os.path.realpath(record.path)
  if not real.startswith(real_root + os.sep):
    return record, "path escapes the dataset folder (through a link)"
  try:
    with open(record.path, "rb") as f:
      data = f.read()
  except FileNotFoundError:
    return record, "missing file"
  except OSError as e:
    return record, f"unreadable file ({e.strerror or e})"
  try:
    passthrough = pngcheck.check_png(data)
  except pngcheck.BadImage as e:
    return record, str(e)
  if passthrough != record.passthrough:
    record = dataclasses.replace(record, passthrough=passthrough)
  return record, None


def check_files(records: Sequence[layout.ImageRecord], mura_dir: str, problems: _Problems,
                num_threads: int | None = None) -> list[layout.ImageRecord]:
  """Opens and fully decodes every listed image (threads: PIL and zlib release the GIL while decoding)."""
  real_root = os.path.realpath(mura_dir)
  num_threads = num_threads or min(8, os.cpu_count() or 1)
  checked: list[layout.ImageRecord] = []
  with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
    results: Iterable = pool.map(lambda r: _check_file(r, real_root), records, chunksize=64)
    for record, reason in tqdm_utils.tqdm(results, total=len(records), desc="Validating MURA images",
                                          unit=" images", leave=False):
      if reason:
        problems.add(record.image_id, reason)
      checked.append(record)
  return checked


def read_mura_tree(mura_dir: str, study_types: Sequence[str] = layout.STUDY_TYPES) -> list[layout.ImageRecord]:
  """Parses both official splits' CSVs and validates every listed image of `study_types`.

  Args:
    mura_dir: the `MURA-v1.1/` folder (the one holding the CSVs); CSV paths `MURA-v1.1/x` resolve to `mura_dir/x`.
    study_types: keep (and file-check) only images of these types; CSV rows of all types are still parsed.

  Returns:
    One record per listed image of the wanted types, in CSV order (train first, then valid).

  Raises:
    MuraFormatError: listing every problem found (missing/truncated/non-PNG/oversized/escaping files, label
      disagreements, unparsable rows), up to `MAX_LISTED_PROBLEMS` of them, then a count.
  """
  problems = _Problems(mura_dir)
  records: list[layout.ImageRecord] = []
  seen: set[str] = set()
  for split in layout.OFFICIAL_SPLITS:
    studies = _parse_studies(mura_dir, split, problems)
    records += _parse_images(mura_dir, split, studies, study_types, problems, seen)
  records = check_files(records, mura_dir, problems)
  problems.raise_if_any()
  return records
