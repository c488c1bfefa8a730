"""The whole study in one command (`./run.sh`): every arm for every body part, then the report.

    ./run.sh [--mura_dir=DIR] [--parts=elbow,hand,shoulder] [--preset=quick|paper] [--out=runs/NAME]

Each arm is one trainer run, configured exactly as `python run.py <its flags>` (printed before it starts) and run in
this process to save TensorFlow's start-up per arm. Arms that finished are skipped on a rerun with the same --out; an
interrupted arm resumes from its latest checkpoint. One TensorBoard log root: `tensorboard --logdir <out>`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS_DIR = os.path.join(REPO, "flags")
PARTS = ("elbow", "finger", "forearm", "hand", "humerus", "shoulder", "wrist")
FRACTIONS = {"1pct": "train_1pct", "10pct": "train_10pct", "100pct": "train"}
DONE_FILE = "arm_done.json"


@dataclasses.dataclass(frozen=True)
class Arm:
  name: str
  argv: tuple[str, ...]  # trainer flags, {pretrain} stands for the body part's pretraining model_dir
  evaluated: bool = True


def arms(preset: str) -> list[Arm]:
  """The contract's arms (section 6), in the order they run (pretraining first: the SimCLR arms need it).

  `paper`: the arm's flagfile (flags/<arm>.cfg). `quick`: flags/quick.cfg, then the arm's flagfile, then its quick
  variant (flags/quick_<arm>.cfg), so the quick run keeps the arm's recipe but CPU-sized.
  """
  def flagfiles(name: str) -> tuple[str, ...]:
    if preset == "paper":
      return (f"--flagfile={FLAGS_DIR}/{name}.cfg",)
    files = [f"{FLAGS_DIR}/quick.cfg"]
    if name != "pretrain":
      files += [f"{FLAGS_DIR}/{name}.cfg", f"{FLAGS_DIR}/quick_{name}.cfg"]
    if preset == "tiny":  # for tests: a few steps per arm
      files.append(f"{FLAGS_DIR}/tiny.cfg")
    return tuple(f"--flagfile={f}" for f in files)

  # Pretraining uses no labels: no linear probe on the side (its head would carry all of train's labels into the
  # 1% and 10% fine-tuning arms that restore it).
  out = [Arm("simclr_pretrain", (*flagfiles("pretrain"), "--mode=train", "--train_split=train",
                                 "--lineareval_while_pretraining=false"), evaluated=False),
         Arm("simclr_linear", (*flagfiles("linear_eval"), "--checkpoint={pretrain}", "--train_split=train"))]
  for fraction, split in FRACTIONS.items():
    out.append(Arm(f"simclr_finetune_{fraction}", (*flagfiles("finetune"), "--checkpoint={pretrain}",
                                                   f"--train_split={split}", *_epochs(fraction, preset))))
  for fraction, split in FRACTIONS.items():
    # The like-for-like control: the same ResNet and recipe as fine-tuning, from random initialisation.
    out.append(Arm(f"scratch_{fraction}", (*flagfiles("finetune"), f"--train_split={split}",
                                           *_epochs(fraction, preset))))
  out.append(Arm("baseline", (*flagfiles("baseline"), "--train_split=train")))
  return out


def _epochs(fraction: str, preset: str) -> list[str]:
  """Fewer labels, more epochs (SimCLRv2 fine-tunes 60 epochs on 1% and 30 on 10% of ImageNet, arXiv 2006.10029).

  The quick preset's 1% and 10% subsets hold a handful to a few dozen images, about one batch: by epochs they would
  get a few steps, so they get a fixed number of steps instead (the same for the SimCLR and scratch arms).
  """
  if preset == "quick" and fraction != "100pct":
    return [f"--train_steps={ {'1pct': 20, '10pct': 30}[fraction] }", "--checkpoint_steps=10"]
  epochs = {"quick": {"100pct": 10}, "tiny": {"1pct": 1, "10pct": 1, "100pct": 1},
            "paper": {"1pct": 60, "10pct": 30, "100pct": 30}}[preset][fraction]
  return [f"--train_epochs={epochs}"]


def _parse(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="./run.sh", description="Runs the whole MURA SimCLR study and its report.")
  parser.add_argument("--mura_dir", help="folder holding MURA-v1.1/ (real data); default: the synthetic twin")
  parser.add_argument("--parts", default="elbow,hand,shoulder", help="comma-separated body parts")
  parser.add_argument("--preset", choices=("quick", "paper", "tiny"), help="quick (CPU-sized, default on synthetic "
                      "data), paper (the real study on one GPU, default with --mura_dir) or tiny (seconds per arm, "
                      "for tests)")
  parser.add_argument("--out", help="study folder (default runs/<dataset>_<preset>)")
  parser.add_argument("--data_dir", default=os.path.join(REPO, "data", "tfds"), help="prepared TFDS datasets")
  args = parser.parse_args(argv)
  args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
  bad = [p for p in args.parts if p not in PARTS]
  if bad or not args.parts:
    parser.error(f"--parts: unknown body part(s) {', '.join(bad) or '(none given)'}; accepted: {', '.join(PARTS)}")
  if args.mura_dir and not os.path.isdir(args.mura_dir):
    parser.error(f"--mura_dir={args.mura_dir} is not a folder (it should hold MURA-v1.1/)")
  args.preset = args.preset or ("paper" if args.mura_dir else "quick")
  builder = "mura" if args.mura_dir else "mura_synthetic"
  args.out = args.out or os.path.join(REPO, "runs", f"{builder}_{args.preset}")
  args.builder = builder
  return args


def arm_argv(arm: Arm, part: str, args: argparse.Namespace) -> list[str]:
  part_dir = os.path.join(args.out, part)
  argv = [a.format(pretrain=os.path.join(part_dir, "simclr_pretrain")) for a in arm.argv]
  argv += [f"--dataset={args.builder}/{part}", f"--data_dir={args.data_dir}",
           f"--model_dir={os.path.join(part_dir, arm.name)}"]
  if args.mura_dir:
    argv.append(f"--mura_dir={args.mura_dir}")
  return argv


def _fmt(seconds: float) -> str:
  return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def run_study(args: argparse.Namespace) -> int:
  import keras

  from absl import logging

  from simclr_mura import flags as trainer_flags
  from simclr_mura import report, trainer

  logging.set_verbosity(logging.WARNING)

  plan = [(part, arm) for part in args.parts for arm in arms(args.preset)]
  os.makedirs(args.out, exist_ok=True)
  print(f"Study: {args.builder} {','.join(args.parts)}, preset {args.preset}, {len(plan)} runs -> {args.out}")
  print(f"TensorBoard: tensorboard --logdir {args.out}")
  start, durations = time.time(), []
  for i, (part, arm) in enumerate(plan, 1):
    model_dir = os.path.join(args.out, part, arm.name)
    if os.path.exists(os.path.join(model_dir, DONE_FILE)):
      print(f"[{i}/{len(plan)}] {part} {arm.name}: done earlier, skipped")
      continue
    argv = arm_argv(arm, part, args)
    left = (sum(durations) / len(durations)) * (len(plan) - i + 1) if durations else None
    print(f"\n[{i}/{len(plan)}] {part} {arm.name} (elapsed {_fmt(time.time() - start)}"
          f"{', about ' + _fmt(left) + ' left' if left else ''})\n  python run.py {' '.join(argv)}", flush=True)
    t0 = time.time()
    config = trainer_flags.config_from_argv(argv)
    keras.backend.clear_session()
    trainer.run(config)
    durations.append(time.time() - t0)
    with open(os.path.join(model_dir, DONE_FILE), "w") as f:
      json.dump({"seconds": durations[-1], "argv": argv}, f, indent=2)
  print(f"\nAll runs finished in {_fmt(time.time() - start)}; writing the report.")
  return report.run([f"--study={args.out}"])


def run(argv: list[str] | None = None) -> int:
  args = _parse(sys.argv[1:] if argv is None else argv)
  return run_study(args)


if __name__ == "__main__":
  sys.exit(run())
