"""Dataset build benchmark: preparing `mura_synthetic` in a subprocess, timed by phase, with its peak memory.

`mura_synthetic`'s `download_and_prepare` has two phases: rendering the synthetic MURA-v1.1 tree (PNG files, in
worker processes) and the TFDS build that reads the tree through `mura`'s own parsing code (validation, splits,
encoding, shuffling, writing); then it deletes the tree. The subprocess times each (it wraps
`synthetic.write_mura_tree` and `shutil.rmtree`); `build_images_per_sec` is the TFDS build's rate: source images
(train + validation + test; the subsets repeat train images) over the TFDS build's seconds.

Memory: `build_peak_rss_mib` is the peak resident set of the build process (its `ru_maxrss`); the render workers and
any helper the build forks are covered by the peak of the whole process tree's proportional set size (PSS: a page
shared by n processes counts 1/n in each), sampled every `SAMPLE_SECONDS` by the parent, overall and per phase.
(`ru_maxrss` of the children is reported too but overstates: a child forked from a large process counts the pages it
shares with it.)

  python -m simclr_mura.benchmarks.build --data_dir=D --scale=1.0 --result=build.json   (the subprocess itself)
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Sequence

SAMPLE_SECONDS = 0.5
CONFIG = "all"  # the mura_synthetic config built by default: every study type, as a real pretraining pool


def _maxrss_mib(who: int) -> float:
  return resource.getrusage(who).ru_maxrss / 1024.0  # Linux reports KiB


class TreeMemorySampler(threading.Thread):
  """Samples the summed RSS and PSS of a process and all its descendants until stopped; keeps the peaks."""

  def __init__(self, pid: int, interval: float = SAMPLE_SECONDS):
    super().__init__(daemon=True)
    self.pid, self.interval = pid, interval
    self.peak_rss_sum_mib = 0.0
    self.peak_pss_mib = 0.0
    self.samples = 0
    self.timeline: list[tuple[float, float, float, int]] = []  # (unix time, PSS MiB, RSS sum MiB, processes)
    self._stop_event = threading.Event()

  def run(self) -> None:
    import psutil  # pylint: disable=g-import-not-at-top
    try:
      root = psutil.Process(self.pid)
    except psutil.NoSuchProcess:
      return
    while not self._stop_event.is_set():
      rss = pss = 0
      try:
        procs = [root] + root.children(recursive=True)
      except psutil.NoSuchProcess:
        break
      for p in procs:
        try:
          info = p.memory_full_info()
          rss += info.rss
          pss += getattr(info, "pss", info.rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
          pass
      self.peak_rss_sum_mib = max(self.peak_rss_sum_mib, rss / 2**20)
      self.peak_pss_mib = max(self.peak_pss_mib, pss / 2**20)
      self.timeline.append((time.time(), pss / 2**20, rss / 2**20, len(procs)))
      self.samples += 1
      self._stop_event.wait(self.interval)

  def stop(self) -> None:
    self._stop_event.set()
    self.join(timeout=5)

  def peak_between(self, start: float, end: float) -> float | None:
    """Peak PSS (MiB) of the samples taken between two unix times."""
    values = [pss for t, pss, _, _ in self.timeline if start <= t <= end]
    return max(values) if values else None

  def summary(self, points: int = 60) -> list[list[float]]:
    """The timeline downsampled to about `points` rows of [seconds from start, PSS MiB, RSS sum MiB, processes]."""
    if not self.timeline:
      return []
    t0, step = self.timeline[0][0], max(1, len(self.timeline) // points)
    rows = []
    for i in range(0, len(self.timeline), step):
      chunk = self.timeline[i:i + step]
      top = max(chunk, key=lambda row: row[1])  # keep each window's peak
      rows.append([round(top[0] - t0, 1), round(top[1]), round(top[2]), top[3]])
    return rows


def _folder_mib(path: str) -> float:
  total = 0
  for folder, _, files in os.walk(path):
    for name in files:
      try:
        total += os.path.getsize(os.path.join(folder, name))
      except OSError:
        pass
  return total / 2**20


def dataset_name(config: str = CONFIG) -> str:
  """The TFDS name of the mura_synthetic `config` the build benchmark prepares."""
  return f"mura_synthetic/{config}"


def measure_build(scale: float, work_dir: str, log: Callable[[str], None] = print, config: str = CONFIG
                  ) -> dict[str, Any]:
  """Prepares `mura_synthetic/<config>` at `scale` from scratch in a subprocess under `work_dir`; returns its timings
  and memory.

  The prepared dataset stays in `result["data_dir"]` (the caller decides when to remove it).
  """
  os.makedirs(work_dir, exist_ok=True)
  data_dir = tempfile.mkdtemp(prefix="tfds_", dir=work_dir)
  result_file = os.path.join(work_dir, f"build_result_{os.path.basename(data_dir)}.json")
  log_file = os.path.join(work_dir, f"build_log_{os.path.basename(data_dir)}.txt")
  cmd = [sys.executable, "-m", "simclr_mura.benchmarks.build", f"--data_dir={data_dir}", f"--scale={scale:g}",
         f"--config={config}", f"--result={result_file}"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
  start = time.perf_counter()
  with open(log_file, "w", encoding="utf-8") as out:
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    sampler = TreeMemorySampler(proc.pid)
    sampler.start()
    try:
      rc = proc.wait()
    finally:
      sampler.stop()
  wall = time.perf_counter() - start
  if rc != 0 or not os.path.exists(result_file):
    with open(log_file, encoding="utf-8", errors="replace") as f:
      tail = f.read()[-3000:]
    shutil.rmtree(data_dir, ignore_errors=True)
    raise RuntimeError(f"the build subprocess failed (exit {rc}); its log is {log_file}; last output:\n{tail}")
  with open(result_file, encoding="utf-8") as f:
    child = json.load(f)
  os.remove(result_file)
  os.remove(log_file)
  images = child["images"]
  result = {
      "dataset": dataset_name(config), "scale": scale, "images": images,
      "examples_written": child["examples_written"], "splits": child["splits"],
      "generate_seconds": child["generate_seconds"],
      "generate_images_per_sec": images / child["generate_seconds"] if child["generate_seconds"] else None,
      "tfds_build_seconds": child["tfds_build_seconds"],
      "build_images_per_sec": images / child["tfds_build_seconds"],
      "tree_removal_seconds": child["cleanup_seconds"],
      "prepare_seconds": child["prepare_seconds"],
      "end_to_end_images_per_sec": images / child["prepare_seconds"],
      "subprocess_wall_seconds": wall,
      "build_peak_rss_mib": child["build_process_maxrss_mib"],
      "build_process_maxrss_after_generation_mib": child["build_process_maxrss_after_generation_mib"],
      "child_processes_maxrss_mib": child["child_processes_maxrss_mib"],
      "tree_peak_pss_mib": sampler.peak_pss_mib,
      "tree_peak_pss_mib_by_phase": {
          "rendering": sampler.peak_between(child["generate_start_unix"], child["generate_end_unix"]),
          "tfds_build": sampler.peak_between(child["generate_end_unix"], float("inf")),
      },
      "tree_peak_rss_sum_mib": sampler.peak_rss_sum_mib,
      "memory_samples": sampler.samples,
      "memory_timeline": {"columns": ["seconds", "pss_mib", "rss_sum_mib", "processes"],
                          "rows": sampler.summary()},
      "prepared_mib": _folder_mib(data_dir),
      "data_dir": data_dir,
  }
  log(f"  build: {images} images; rendering the tree {child['generate_seconds']:.1f} s, TFDS build "
      f"{child['tfds_build_seconds']:.1f} s ({result['build_images_per_sec']:.1f} images/s); peak RSS "
      f"{result['build_peak_rss_mib']:.0f} MiB, process tree peak PSS {sampler.peak_pss_mib:.0f} MiB")
  return result


# --- the subprocess -------------------------------------------------------------------------------------------------

def _child(argv: Sequence[str]) -> int:
  p = argparse.ArgumentParser(prog="python -m simclr_mura.benchmarks.build")
  p.add_argument("--data_dir", required=True)
  p.add_argument("--scale", type=float, required=True)
  p.add_argument("--config", default=CONFIG, help="the mura_synthetic config to build (default all)")
  p.add_argument("--result", required=True)
  args = p.parse_args(argv)

  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from simclr_mura.data import prepare  # pylint: disable=g-import-not-at-top
  from simclr_mura.datasets import synthetic  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()

  phase: dict[str, float] = {}
  write_mura_tree = synthetic.write_mura_tree

  def timed_write_mura_tree(*a, **kw):
    start = time.perf_counter()
    phase["generate_start_unix"] = time.time()
    try:
      return write_mura_tree(*a, **kw)
    finally:
      phase["generate_seconds"] = time.perf_counter() - start
      phase["generate_end_unix"] = time.time()
      phase["build_process_maxrss_after_generation_mib"] = _maxrss_mib(resource.RUSAGE_SELF)
      print(f"rendered the tree in {phase['generate_seconds']:.1f} s", flush=True)

  synthetic.write_mura_tree = timed_write_mura_tree  # mura_synthetic calls it through the module

  rmtree = shutil.rmtree
  phase["cleanup_seconds"] = 0.0

  def timed_rmtree(*a, **kw):  # mura_synthetic removes the rendered tree after the build: not TFDS build time
    start = time.perf_counter()
    try:
      return rmtree(*a, **kw)
    finally:
      phase["cleanup_seconds"] += time.perf_counter() - start

  shutil.rmtree = timed_rmtree
  start = time.perf_counter()
  builder = prepare.prepare(dataset_name(args.config), data_dir=args.data_dir, scale=args.scale)
  prepare_seconds = time.perf_counter() - start
  splits = {k: int(v.num_examples) for k, v in builder.info.splits.items()}
  generate = phase.get("generate_seconds", 0.0)
  result = {
      "prepare_seconds": prepare_seconds,
      "generate_seconds": generate,
      "generate_start_unix": phase.get("generate_start_unix", 0.0),
      "generate_end_unix": phase.get("generate_end_unix", 0.0),
      "cleanup_seconds": phase["cleanup_seconds"],
      "tfds_build_seconds": prepare_seconds - generate - phase["cleanup_seconds"],
      "splits": splits,
      "images": sum(splits.get(k, 0) for k in ("train", "validation", "test")),  # the subsets repeat train images
      "examples_written": sum(splits.values()),
      "build_process_maxrss_mib": _maxrss_mib(resource.RUSAGE_SELF),
      "build_process_maxrss_after_generation_mib": phase.get("build_process_maxrss_after_generation_mib", 0.0),
      "child_processes_maxrss_mib": _maxrss_mib(resource.RUSAGE_CHILDREN),
  }
  with open(args.result, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=2)
  print(json.dumps(result), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(_child(sys.argv[1:]))
