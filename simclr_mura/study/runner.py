"""Runs the study: every run of its plan (`arms.plan`: the pretraining, then every arm, body part and label draw),
then the report.

Each run is configured exactly as `python run.py <its flags>` (printed before it starts). With `--jobs=1` the runs go
one after another in this process (TensorFlow starts once); with `--jobs=N` up to N run side by side, each in a worker
process that keeps TensorFlow loaded between runs and writes the run's output to its `RunDir.LOG`. A run that restores
another (a pretraining, a distillation's teacher) starts only after that run finished. A run whose folder holds `RunDir.DONE` is skipped; an
interrupted one resumes from its latest checkpoint.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import sys
import time

from simclr_mura.layout import BASELINE_ARM, DISTILL_ARMS, PRETRAIN_ARMS, RunDir
from simclr_mura.study import arms as arms_lib
from simclr_mura.study.arms import Run


def _fmt(seconds: float) -> str:
  return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


@dataclasses.dataclass(frozen=True)
class _Task:
  """One run of the plan, numbered."""
  number: int  # 1-based position in the plan
  run: Run

  @property
  def argv(self) -> tuple[str, ...]:
    return self.run.argv

  @property
  def run_dir(self) -> RunDir:
    return RunDir(self.run.model_dir)


def study_plan(args: argparse.Namespace) -> list[Run]:
  """The runs of the study the command line asks for (with --arms: those arms and the pretraining they restore)."""
  asked = getattr(args, "arms", None)
  runs = arms_lib.plan(preset=arms_lib.PRESETS[args.preset], builder=args.builder, parts=args.parts,
                       pool=args.pretrain_pool, draws=args.draws, out=args.out, data_dir=args.data_dir,
                       mura_dir=args.mura_dir, positive_pairs=args.positive_pairs,
                       distill=True if asked and set(asked) & set(DISTILL_ARMS) else None)
  if not asked:
    return runs
  chosen = {r.model_dir for r in runs if r.arm in asked}
  by_dir = {r.model_dir: r for r in runs}
  todo = list(chosen)
  while todo:  # and what they wait for: a distillation's teacher, and the teacher's pretraining
    source = by_dir[todo.pop()].waits_for
    if source and source not in chosen:
      chosen.add(source)
      todo.append(source)
  return [r for r in runs if r.model_dir in chosen]


def run_arm(argv: list[str] | tuple[str, ...], done_json: str) -> float:
  """Trains and evaluates one arm in this process (as `python run.py ARGV`), then writes `done_json`; returns its
  seconds."""
  import keras

  from simclr_mura import flags as trainer_flags
  from simclr_mura.training import trainer

  start = time.time()
  config = trainer_flags.config_from_argv(list(argv))
  keras.backend.clear_session()
  trainer.run(config)
  seconds = time.time() - start
  with open(done_json, "w") as f:
    json.dump({"seconds": seconds, "started": start, "finished": start + seconds, "argv": list(argv)}, f, indent=2)
  return seconds


def run_study(args: argparse.Namespace) -> int:
  """Runs every arm of the plan that has not finished yet, then writes the report; returns the exit status."""
  from absl import logging

  from simclr_mura import report as report_cli

  logging.set_verbosity(logging.WARNING)
  plan = study_plan(args)
  tasks = [_Task(i, run) for i, run in enumerate(plan, 1)]
  _validate(tasks)
  os.makedirs(args.out, exist_ok=True)
  pairs = {"image": "SimCLR", "study": "MICLe (positive pairs from a study's images)",
           "both": "SimCLR and MICLe"}[args.positive_pairs]
  print(f"Study: {args.builder} {','.join(args.parts)}, preset {args.preset}, {pairs} pretraining "
        f"{arms_lib.POOLS_DOC[args.pretrain_pool]} ({args.pretrain_pool}), {args.draws} label draws, {len(plan)} runs "
        f"-> {args.out}" + (f", {args.jobs} side by side" if args.jobs > 1 else ""))
  print(f"TensorBoard: tensorboard --logdir {args.out}")
  start = time.time()
  todo = []
  for task in tasks:
    if os.path.exists(task.run_dir.done_json):
      print(f"[{task.number}/{len(plan)}] {task.run.title}: done earlier, skipped")
    else:
      todo.append(task)
  if args.jobs > 1 and len(todo) > 1:
    status = _run_side_by_side(todo, args, len(plan), start)
    if status:
      return status
  else:
    _run_in_turn(todo, len(plan), start)
  print(f"\nAll runs finished in {_fmt(time.time() - start)}; writing the report.")
  return report_cli.run([f"--study={args.out}"])


def _validate(tasks: list[_Task]) -> None:
  """Every arm's configuration through the trainer's one validation pass before any arm starts (a `UserError` names
  the arm); the run an arm waits for (its --checkpoint, a distillation's --teacher) is checked once it exists."""
  from simclr_mura import config as config_lib
  from simclr_mura import flags as trainer_flags
  from simclr_mura.errors import UserError

  for task in tasks:
    try:
      config = trainer_flags.config_from_argv(list(task.argv))
      config_lib.validate(config, pending=task.run.waits_for)
    except UserError as e:
      raise UserError(f"{task.run.title}: {e}") from None


def _run_in_turn(todo: list[_Task], total: int, start: float) -> None:
  durations: list[float] = []
  for i, task in enumerate(todo):
    left = (sum(durations) / len(durations)) * (len(todo) - i) if durations else None
    print(f"\n[{task.number}/{total}] {task.run.title} (elapsed {_fmt(time.time() - start)}"
          f"{', about ' + _fmt(left) + ' left' if left else ''})\n  python run.py {' '.join(task.argv)}", flush=True)
    durations.append(run_arm(task.argv, task.run_dir.done_json))


def _priority(task: _Task) -> tuple[int, int]:
  """Longest first, so that no long run is left to run alone at the end: pretraining (the SimCLR arms also wait for
  it), DenseNet-169, the arms on all of `train` (and the distillations), then those on a label draw; in plan order
  within each."""
  if task.run.arm in (*PRETRAIN_ARMS, BASELINE_ARM):
    return (0 if task.run.arm in PRETRAIN_ARMS else 1, task.number)
  # a distillation trains on all of `train`, as long as the 100% arms (it still waits for its teacher)
  return (2 if task.run.draw is None or task.run.arm in DISTILL_ARMS else 3, task.number)


def _worker(task: _Task) -> tuple[int, float]:
  """In a worker process: runs one arm with its output in the arm's log file."""
  os.makedirs(task.run_dir.path, exist_ok=True)
  sys.stdout.flush()
  sys.stderr.flush()
  saved = os.dup(1), os.dup(2)
  with open(task.run_dir.log, "a") as log:
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    try:
      print(f"python run.py {' '.join(task.argv)}", flush=True)
      return task.number, run_arm(task.argv, task.run_dir.done_json)
    finally:
      sys.stdout.flush()
      sys.stderr.flush()
      os.dup2(saved[0], 1)
      os.dup2(saved[1], 2)


def _run_side_by_side(todo: list[_Task], args: argparse.Namespace, total: int, start: float) -> int:
  """Runs `todo` on `args.jobs` worker processes; returns 0, or 1 after the first arm that failed (its log shown).

  Each arm prepares its body part's dataset on first use, as a lone run would; two arms that need the same unprepared
  dataset build it once (`data.prepare` locks it), and the pretraining-first order spreads the parts' preparation
  over the workers while others train.
  """
  waiting = sorted(todo, key=_priority)
  awaited = {t.run.waits_for for t in todo}
  pending = {t.run.model_dir for t in todo if t.run.model_dir in awaited}  # runs others wait for, not finished yet
  running: dict[concurrent.futures.Future, _Task] = {}
  # Workers on one GPU: each TensorFlow would otherwise reserve nearly all its memory (spawned workers inherit this).
  os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
  # spawn: each worker starts its own TensorFlow (a forked TensorFlow runtime is not safe to use). The executor's
  # workers are not daemons, so an arm may start processes of its own (mura_synthetic renders with a process pool).
  pool = concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"))
  try:
    while waiting or running:
      ready = [t for t in waiting if t.run.waits_for not in pending]
      for task in ready[:args.jobs - len(running)]:
        waiting.remove(task)
        print(f"[{task.number}/{total}] {task.run.title} started (elapsed {_fmt(time.time() - start)}), "
              f"output in {task.run_dir.log}\n  python run.py {' '.join(task.argv)}", flush=True)
        running[pool.submit(_worker, task)] = task
      done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
      for future in done:
        task = running.pop(future)
        error = future.exception()
        if error is not None:
          if isinstance(error, concurrent.futures.process.BrokenProcessPool):
            names = ", ".join(t.run.title for t in [task, *running.values()])
            print(f"\nA worker process died (out of memory?) while running: {names}. Their logs: "
                  f"<arm>/{task.run_dir.LOG}", file=sys.stderr, flush=True)
            return 1
          tail = ""
          if os.path.exists(task.run_dir.log):
            with open(task.run_dir.log) as f:
              tail = f.read()[-3000:]
          print(f"\n[{task.number}/{total}] {task.run.title} failed: {error!r}\n--- end of "
                f"{task.run_dir.log} ---\n{tail}", file=sys.stderr, flush=True)
          if running:
            print("Waiting for the arms still running to finish (a rerun with the same --out skips them).",
                  file=sys.stderr, flush=True)
          pool.shutdown(wait=True, cancel_futures=True)
          return 1
        pending.discard(task.run.model_dir)
        _, seconds = future.result()
        print(f"[{task.number}/{total}] {task.run.title} finished in {_fmt(seconds)} "
              f"(elapsed {_fmt(time.time() - start)}, {len(waiting) + len(running)} to go)", flush=True)
  finally:
    # Without waiting: the workers exit (TensorFlow takes seconds to tear down) while the report is written.
    pool.shutdown(wait=False, cancel_futures=True)
  return 0
