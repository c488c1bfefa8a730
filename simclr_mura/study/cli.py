"""The whole study in one command (`./run.sh`, `python -m simclr_mura.study`, console script `simclr-mura-study`).

    ./run.sh [--mura_dir=DIR] [--parts=elbow,hand,shoulder] [--preset=quick|paper] [--out=runs/NAME] [--jobs=N]

Each arm is one trainer run, configured exactly as `python run.py <its flags>` (printed before it starts), run in
this process (--jobs=1) or up to N arms side by side in worker processes (--jobs=N). Arms that finished are skipped on
a rerun with the same --out; an interrupted arm resumes from its latest checkpoint. One TensorBoard log root:
`tensorboard --logdir <out>`.
"""
from __future__ import annotations

import argparse
import os
import sys

from simclr_mura.errors import ArgumentParser, UserError, exit_with
from simclr_mura.layout import STUDY_TYPES
from simclr_mura.study import runner
from simclr_mura.study.arms import PRESETS


def parse_args(argv: list[str]) -> argparse.Namespace:
  """The study's command line; a bad argument is a usage error (exit status 2)."""
  parser = ArgumentParser(prog="./run.sh", description="Runs the whole MURA SimCLR study and its report.")
  parser.add_argument("--mura_dir", help="folder holding MURA-v1.1/ (real data); default: the synthetic twin")
  parser.add_argument("--parts", default="elbow,hand,shoulder", help="comma-separated body parts")
  parser.add_argument("--preset", choices=PRESETS, help="quick (CPU-sized, default on synthetic "
                      "data), paper (the real study on one GPU, default with --mura_dir) or tiny (seconds per arm, "
                      "for tests)")
  parser.add_argument("--out", help="study folder (default runs/<dataset>_<preset> in the current folder)")
  parser.add_argument("--data_dir", default=os.path.abspath(os.path.join("data", "tfds")),
                      help="prepared TFDS datasets (default data/tfds in the current folder)")
  parser.add_argument("--jobs", type=int, help="arms run side by side (default: 2 on a CPU with two or more cores, "
                      "where one arm keeps about one core busy; 1 with the paper preset, whose arms share one GPU)")
  args = parser.parse_args(argv)
  if args.jobs is not None and args.jobs < 1:
    parser.error(f"--jobs={args.jobs}: accepted: a whole number of at least 1")
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
  if args.jobs is None:
    args.jobs = 1 if args.preset == "paper" else min(2, os.cpu_count() or 1)
  return args


def run(argv: list[str] | None = None) -> int:
  """Console entry point (`simclr-mura-study`)."""
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    return runner.run_study(args)
  except UserError as e:
    exit_with("./run.sh", e)

