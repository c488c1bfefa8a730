"""Runs the study: every arm for every body part, in this process, then the report.

Each arm is configured exactly as `python run.py <its flags>` (printed before it starts) and run in-process to save
TensorFlow's start-up per arm. An arm whose folder holds `RunDir.DONE` is skipped; an interrupted one resumes from its
latest checkpoint.
"""
from __future__ import annotations

import argparse
import json
import os
import time

from simclr_mura.layout import PRETRAIN_ARM, RunDir
from simclr_mura.study.arms import Arm, arms


def arm_argv(arm: Arm, part: str, args: argparse.Namespace) -> list[str]:
  """The trainer command line of one arm on one body part (as `python run.py` takes it)."""
  part_dir = os.path.join(args.out, part)
  argv = [a.format(pretrain=os.path.join(part_dir, PRETRAIN_ARM)) for a in arm.argv]
  argv += [f"--dataset={args.builder}/{part}", f"--data_dir={args.data_dir}",
           f"--model_dir={os.path.join(part_dir, arm.name)}"]
  if args.mura_dir:
    argv.append(f"--mura_dir={args.mura_dir}")
  return argv


def _fmt(seconds: float) -> str:
  return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def run_study(args: argparse.Namespace) -> int:
  """Runs every arm of the plan that has not finished yet, then writes the report; returns the exit status."""
  import keras

  from absl import logging

  from simclr_mura import flags as trainer_flags
  from simclr_mura import report as report_cli
  from simclr_mura.training import trainer

  logging.set_verbosity(logging.WARNING)

  plan = [(part, arm) for part in args.parts for arm in arms(args.preset)]
  os.makedirs(args.out, exist_ok=True)
  print(f"Study: {args.builder} {','.join(args.parts)}, preset {args.preset}, {len(plan)} runs -> {args.out}")
  print(f"TensorBoard: tensorboard --logdir {args.out}")
  start, durations = time.time(), []
  for i, (part, arm) in enumerate(plan, 1):
    run_dir = RunDir(os.path.join(args.out, part, arm.name))
    if os.path.exists(run_dir.done_json):
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
    with open(run_dir.done_json, "w") as f:
      json.dump({"seconds": durations[-1], "argv": argv}, f, indent=2)
  print(f"\nAll runs finished in {_fmt(time.time() - start)}; writing the report.")
  return report_cli.run([f"--study={args.out}"])
