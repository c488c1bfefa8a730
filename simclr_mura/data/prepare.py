"""Builds (prepares) a `mura/*` or `mura_synthetic/*` TFDS dataset: the library behind `python -m simclr_mura.prepare`
and the trainer's first use of a dataset."""
from __future__ import annotations

import contextlib
import fcntl
import os
from typing import Iterator

import tensorflow_datasets as tfds

from simclr_mura import datasets


def parse_dataset(dataset: str) -> tuple[str, str]:
  """`builder/config` -> (builder, config), or a one-line ValueError listing the accepted names. A union of configs
  (`builder/elbow+hand`, see `dataset_parts`) is accepted too; its config is returned as given."""
  builders = " or ".join(b + "/<config>" for b in datasets.BUILDERS)
  accepted = (f"{builders}, <config> one of {', '.join(datasets.CONFIGS)} or several joined by + (their union, "
              "e.g. mura_synthetic/elbow+hand)")
  name, _, config = dataset.partition(":")[0].partition("/")
  if name not in datasets.BUILDERS or not config or any(c not in datasets.CONFIGS for c in config.split("+")):
    raise ValueError(f"unknown dataset {dataset!r}; accepted: {accepted}")
  return name, config


def dataset_parts(dataset: str) -> list[str]:
  """The prepared datasets a dataset name reads: `mura_synthetic/elbow+hand` -> [mura_synthetic/elbow,
  mura_synthetic/hand] (a union: every split of it is the concatenation of theirs; the train/validation/test cut is
  per patient and the same in every config, so the union of configs' `train` splits is the `train` of their study types
  together); a single config -> itself."""
  name, config = parse_dataset(dataset)
  return [f"{name}/{c}" for c in dict.fromkeys(config.split("+"))]


def prepare(dataset: str, data_dir: str | None = None, mura_dir: str | None = None, *,
            scale: float | None = None) -> tfds.core.DatasetBuilder:
  """Builds `dataset` (e.g. `mura/elbow`) unless already prepared, and returns its builder.

  Args:
    dataset: `mura/<config>` or `mura_synthetic/<config>`.
    data_dir: where prepared datasets live (TFDS default, e.g. ~/tensorflow_datasets, when None).
    mura_dir: for `mura`: the `MURA-v1.1/` folder or the one containing it (TFDS's manual dir
      `<data_dir>/downloads/manual` when None). Ignored by `mura_synthetic`.
    scale: `mura_synthetic` only: fraction of MURA's training counts (default 0.1; 1.0 = full size, prepared in its
      own folder); `test` has MURA's size at every scale.

  Raises:
    ValueError: unknown dataset or config name, or a `scale` for `mura`.
    FileNotFoundError: `mura` without a MURA-v1.1 download (the message says where to get it).
    simclr_mura.datasets.MuraFormatError: the tree fails validation (the message names every bad file).
  """
  name, config_name = parse_dataset(dataset)
  if "+" in config_name:
    raise ValueError(f"{dataset!r} is a union of datasets: prepare each of {', '.join(dataset_parts(dataset))}")
  if scale is not None and name != "mura_synthetic":
    raise ValueError(f"a size (scale) applies to mura_synthetic only, not to {dataset!r}: MURA has one size")
  kwargs = {"scale": scale} if scale is not None else {}
  builder = tfds.builder(dataset, data_dir=data_dir, **kwargs)
  if builder.is_prepared():
    return builder
  with _exclusive(builder.data_dir):  # another process (an arm of the study beside this one) may be building it
    builder = tfds.builder(dataset, data_dir=data_dir, **kwargs)
    if not builder.is_prepared():
      config = None
      if mura_dir and name == "mura":
        config = tfds.download.DownloadConfig(manual_dir=os.path.abspath(os.path.expanduser(mura_dir)))
      builder.download_and_prepare(download_config=config)
  return builder


@contextlib.contextmanager
def _exclusive(dataset_dir: str) -> Iterator[None]:
  """Holds an exclusive lock on a local dataset folder's lock file while it is built, so processes that need the
  same dataset build it once and the others wait and read it. Object stores (gs://) have no file locks: there the
  callers must not build one dataset twice at once (prepare it first)."""
  if "://" in dataset_dir:
    yield
    return
  parent = os.path.dirname(os.path.normpath(dataset_dir))
  os.makedirs(parent, exist_ok=True)
  with open(os.path.join(parent, f".{os.path.basename(os.path.normpath(dataset_dir))}.lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)
