"""Data exploration (console script `simclr-mura-explore`): counts per split x study type x label, a label bar chart,
sample grids.

  python -m simclr_mura.explore --dataset=mura_synthetic/elbow_hand_shoulder --out=runs/explore --data_dir=data/tfds
"""
from __future__ import annotations

import argparse
from typing import Sequence

from simclr_mura.data.explore import explore
from simclr_mura.errors import ArgumentParser, UserError, exit_with
from simclr_mura.prepare import check_data_args


def run(argv: Sequence[str] | None = None) -> None:
  """Console entry point (`simclr-mura-explore`)."""
  p = ArgumentParser(prog="python -m simclr_mura.explore", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--dataset", required=True, help="mura/<config> or mura_synthetic/<config>")
  p.add_argument("--out", required=True, help="output folder for tables and figures")
  p.add_argument("--data_dir", default=None, help="prepared datasets folder (default: TFDS's)")
  p.add_argument("--mura_dir", default=None, help="MURA-v1.1/ or the folder containing it (mura only)")
  p.add_argument("--scale", type=float, default=None, help="mura_synthetic only: its size (as simclr-mura-prepare)")
  args = p.parse_args(argv)
  try:
    check_data_args(args.dataset, args.mura_dir)
    paths = explore(args.dataset, args.out, data_dir=args.data_dir, mura_dir=args.mura_dir, scale=args.scale)
  except (ValueError, FileNotFoundError) as e:
    exit_with(p.prog, UserError(str(e)))
  for name, path in paths.items():
    print(f"{name}: {path}")


if __name__ == "__main__":
  run()
