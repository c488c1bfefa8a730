"""The whole study in one command (`./run.sh`, `python -m simclr_mura.study`, console script `simclr-mura-study`).

    ./run.sh [--mura_dir=DIR] [--parts=elbow,hand,shoulder] [--preset=quick|paper] [--out=runs/NAME]

Each arm is one trainer run, configured exactly as `python run.py <its flags>` (printed before it starts) and run in
this process to save TensorFlow's start-up per arm. Arms that finished are skipped on a rerun with the same --out; an
interrupted arm resumes from its latest checkpoint. One TensorBoard log root: `tensorboard --logdir <out>`.
"""
from __future__ import annotations

import argparse
import os
import sys

from simclr_mura.layout import STUDY_TYPES
from simclr_mura.study import runner
from simclr_mura.study.arms import PRESETS


def parse_args(argv: list[str]) -> argparse.Namespace:
  """The study's command line; a bad argument is a usage error (exit status 2)."""
  parser = argparse.ArgumentParser(prog="./run.sh", description="Runs the whole MURA SimCLR study and its report.")
  parser.add_argument("--mura_dir", help="folder holding MURA-v1.1/ (real data); default: the synthetic twin")
  parser.add_argument("--parts", default="elbow,hand,shoulder", help="comma-separated body parts")
  parser.add_argument("--preset", choices=PRESETS, help="quick (CPU-sized, default on synthetic "
                      "data), paper (the real study on one GPU, default with --mura_dir) or tiny (seconds per arm, "
                      "for tests)")
  parser.add_argument("--out", help="study folder (default runs/<dataset>_<preset> in the current folder)")
  parser.add_argument("--data_dir", default=os.path.abspath(os.path.join("data", "tfds")),
                      help="prepared TFDS datasets (default data/tfds in the current folder)")
  args = parser.parse_args(argv)
  args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
  bad = [p for p in args.parts if p not in STUDY_TYPES]
  if bad or not args.parts:
    parser.error(f"--parts: unknown body part(s) {', '.join(bad) or '(none given)'}; "
                 f"accepted: {', '.join(STUDY_TYPES)}")
  if args.mura_dir and not os.path.isdir(args.mura_dir):
    parser.error(f"--mura_dir={args.mura_dir} is not a folder (it should hold MURA-v1.1/)")
  args.preset = args.preset or ("paper" if args.mura_dir else "quick")
  builder = "mura" if args.mura_dir else "mura_synthetic"
  args.out = args.out or os.path.abspath(os.path.join("runs", f"{builder}_{args.preset}"))
  args.builder = builder
  return args


def run(argv: list[str] | None = None) -> int:
  """Console entry point (`simclr-mura-study`)."""
  args = parse_args(sys.argv[1:] if argv is None else argv)
  return runner.run_study(args)

