"""Builds (prepares) a `mura/*` or `mura_synthetic/*` TFDS dataset (console script `simclr-mura-prepare`).

  python -m simclr_mura.prepare --dataset=mura/elbow --mura_dir=data/MURA-v1.1 --data_dir=data/tfds
  python -m simclr_mura.prepare --dataset=mura_synthetic/elbow_hand_shoulder --data_dir=data/tfds
"""
from __future__ import annotations

import argparse
import os
from typing import Sequence

from simclr_mura import datasets
from simclr_mura.data.prepare import parse_dataset, prepare
from simclr_mura.errors import ArgumentParser, UserError, exit_with


def _parser() -> argparse.ArgumentParser:
  p = ArgumentParser(prog="python -m simclr_mura.prepare", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--dataset", required=True, help="mura/<config> or mura_synthetic/<config>; configs: "
                 + ", ".join(datasets.CONFIGS))
  p.add_argument("--data_dir", default=None, help="prepared datasets folder (default: TFDS's)")
  p.add_argument("--mura_dir", default=None, help="MURA-v1.1/ or the folder containing it (mura only)")
  p.add_argument("--scale", type=float, default=None,
                 help="mura_synthetic only: fraction of MURA's training counts (default 0.1; 1.0 = about 40,000 "
                      "images); test has MURA's size at every scale")
  return p


def check_data_args(dataset: str, mura_dir: str | None, scale: float | None = None) -> None:
  """The dataset arguments of `prepare` and `explore`, checked before anything is built (one-line `UserError`s)."""
  try:
    name, _ = parse_dataset(dataset)
  except ValueError as e:
    raise UserError(str(e)) from None
  if mura_dir is not None and not os.path.isdir(mura_dir):
    raise UserError(f"--mura_dir={mura_dir} is not a folder; accepted: the folder holding MURA-v1.1/ (or MURA-v1.1/ "
                    "itself)")
  if scale is not None and (name != "mura_synthetic" or not scale > 0):
    raise UserError(f"--scale={scale:g}: accepted: a positive number, with mura_synthetic only")


def run(argv: Sequence[str] | None = None) -> None:
  """Console entry point (`simclr-mura-prepare`)."""
  parser = _parser()
  args = parser.parse_args(argv)
  try:
    check_data_args(args.dataset, args.mura_dir, args.scale)
    builder = prepare(args.dataset, data_dir=args.data_dir, mura_dir=args.mura_dir, scale=args.scale)
  except (ValueError, FileNotFoundError) as e:
    exit_with(parser.prog, UserError(str(e)))
  splits = ", ".join(f"{k}={v.num_examples}" for k, v in builder.info.splits.items())
  print(f"{args.dataset} ready in {builder.data_dir}: {splits}")


if __name__ == "__main__":
  run()
