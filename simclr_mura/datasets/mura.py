"""`mura`: the real MURA v1.1 release (manual download)."""
from __future__ import annotations

import os

import tensorflow_datasets as tfds

from simclr_mura.datasets import builder
from simclr_mura.datasets import reader

DOWNLOAD_URL = "https://stanfordmlgroup.github.io/competitions/mura/"

INSTRUCTIONS = f"""\
MURA v1.1 must be downloaded by hand: register at {DOWNLOAD_URL} (Stanford ML Group, free for research use),
download MURA-v1.1.zip and unzip it. Then either put the MURA-v1.1/ folder at <data_dir>/downloads/manual/MURA-v1.1
(TFDS's default manual dir), or pass its location: --mura_dir=DIR (the trainer and `python -m simclr_mura.prepare`;
DIR is MURA-v1.1/ itself or the folder that contains it; the repository's default is data/MURA-v1.1), or
tfds.download.DownloadConfig(manual_dir=DIR) from Python.
No download? The `mura_synthetic` dataset (same configs, splits and features) is generated locally and needs none:
e.g. --dataset=mura_synthetic/elbow_hand_shoulder."""


class Mura(builder.MuraBuilderBase):
  """MURA v1.1 musculoskeletal radiographs (Rajpurkar et al. 2017), read from a manual download."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS
  DESCRIPTION = ("MURA v1.1 musculoskeletal radiographs (Stanford ML Group). train/validation: a patient-level "
                 "80/20 cut of the official train set; test: the official valid set.")

  def _mura_dir(self, dl_manager: tfds.download.DownloadManager) -> str:
    try:
      manual_dir = os.fspath(dl_manager.manual_dir)
    except AssertionError:  # TFDS: manual dir missing or empty
      where = getattr(dl_manager, "_manual_dir", None) or "(none given)"
      raise FileNotFoundError(
          f"MURA not found: the manual dir {where} does not exist or is empty.\n" + INSTRUCTIONS) from None
    mura_dir = reader.find_mura_dir(manual_dir)
    if mura_dir is None:
      raise FileNotFoundError(
          f"MURA not found: {manual_dir} holds neither MURA-v1.1/train_image_paths.csv nor train_image_paths.csv.\n"
          + INSTRUCTIONS)
    return mura_dir
