"""The whole study in one command (`./run.sh`, `python -m simclr_mura.study`, console script `simclr-mura-study`).

    ./run.sh [--mura_dir=DIR] [--parts=elbow,hand,shoulder] [--preset=quick|cpu|paper]
             [--pretrain_pool=union|per_part|all] [--positive_pairs=image|study|both] [--draws=R] [--arms=A,B]
             [--out=runs/NAME] [--jobs=N]

Each run (an arm on a body part and, for 1% and 10% of the labels, a label draw) is one trainer run, configured
exactly as `python run.py <its flags>` (printed before it starts), run in this process (--jobs=1) or up to N side by
side in worker processes (--jobs=N). Runs that finished are skipped on a rerun with the same --out; an interrupted
one resumes from its latest checkpoint. One TensorBoard log root: `tensorboard --logdir <out>`.
"""
from __future__ import annotations

import argparse
import os
import sys

from simclr_mura.errors import ArgumentParser, UserError, exit_with
from simclr_mura.layout import ARMS, DISTILL_ARMS, MICLE_ARMS, POSITIVE_PAIRS, PRETRAIN_ARMS, PRETRAIN_POOLS, STUDY_TYPES
from simclr_mura.study import runner
from simclr_mura.study.arms import POOLS_DOC, PRESETS


def parse_args(argv: list[str]) -> argparse.Namespace:
  """The study's command line; a bad argument is a usage error (exit status 2)."""
  parser = ArgumentParser(prog="./run.sh", description="Runs the whole MURA SimCLR study and its report.")
  parser.add_argument("--mura_dir", help="folder holding MURA-v1.1/ (real data); default: the synthetic twin")
  parser.add_argument("--parts", default="elbow,hand,shoulder", help="comma-separated body parts")
  parser.add_argument("--preset", choices=list(PRESETS), help="quick (minutes on a laptop CPU, default on synthetic "
                      "data), cpu (mura_synthetic at MURA's size, about 2 hours on 2 cores with its distillation arms: "
                      "the label-efficiency result), paper (real MURA on a GPU, default with --mura_dir) or tiny "
                      "(seconds per run, for tests)")
  parser.add_argument("--pretrain_pool", choices=PRETRAIN_POOLS, default="union",
                      help="SimCLR pretrains " + "; ".join(f"{k}: {v}" for k, v in POOLS_DOC.items())
                      + " (default union)")
  parser.add_argument("--positive_pairs", choices=POSITIVE_PAIRS, default="image",
                      help="pretraining's positive pairs: image (SimCLR: two views of one image), study (MICLe: two "
                      "images of one study, in place of SimCLR's), or both (both pretrainings, with MICLe's arms "
                      "micle_* beside SimCLR's on the same label draws; default image)")
  parser.add_argument("--arms", help="comma-separated arms to run (default: all of the preset's; the SimCLR and MICLe "
                      "arms bring their pretraining, the distillation arms their teacher): "
                      f"{', '.join(a for a in ARMS + DISTILL_ARMS + MICLE_ARMS if a not in PRETRAIN_ARMS)}")
  parser.add_argument("--draws", type=int, help="paired label draws of every 1%% and 10%% arm (default: the preset's)")
  parser.add_argument("--out", help="study folder (default runs/<dataset>_<preset> in the current folder)")
  parser.add_argument("--data_dir", default=os.path.abspath(os.path.join("data", "tfds")),
                      help="prepared TFDS datasets (default data/tfds in the current folder)")
  parser.add_argument("--jobs", type=int, help="runs side by side (default: 2 on a CPU with two or more cores, "
                      "where one run keeps about one core busy; 1 with the paper preset, whose runs share one GPU)")
  args = parser.parse_args(argv)
  for name in ("jobs", "draws"):
    if getattr(args, name) is not None and getattr(args, name) < 1:
      parser.error(f"--{name}={getattr(args, name)}: accepted: a whole number of at least 1")
  args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
  bad = [p for p in args.parts if p not in STUDY_TYPES]
  if bad or not args.parts:
    parser.error(f"--parts: unknown body part(s) {', '.join(bad) or '(none given)'}; "
                 f"accepted: {', '.join(STUDY_TYPES)}")
  args.arms = [a.strip() for a in (args.arms or "").split(",") if a.strip()] or None
  known = ARMS + DISTILL_ARMS + (MICLE_ARMS if args.positive_pairs == "both" else ())
  bad = [a for a in args.arms or [] if a not in known]
  if bad:
    parser.error(f"--arms: unknown arm(s) {', '.join(bad)}; accepted: {', '.join(known)}"
                 + ("" if args.positive_pairs == "both" else " (MICLe's micle_* with --positive_pairs=both)"))
  if args.mura_dir and not os.path.isdir(args.mura_dir):
    parser.error(f"--mura_dir={args.mura_dir} is not a folder (it should hold MURA-v1.1/)")
  args.preset = args.preset or ("paper" if args.mura_dir else "quick")
  args.draws = args.draws or PRESETS[args.preset].draws
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

