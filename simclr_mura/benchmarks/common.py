"""Shared helpers of the benchmark suites: machine description, timing statistics, tf.data threading, profiles."""
from __future__ import annotations

import collections
import contextlib
import glob
import os
import platform
import socket
import statistics
import tempfile
import time
from typing import Any, Iterator, Sequence

import tensorflow as tf

from simclr_mura import cpu_defaults


# --- machine --------------------------------------------------------------------------------------------------------

def cores_available() -> int:
  """CPU cores this process may run on (its affinity mask; `os.cpu_count()` where there is none)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return os.cpu_count() or 1


def cpu_model() -> str:
  return _cpuinfo_field("model name") or platform.processor() or platform.machine()


# x86 ISA extensions that decide TensorFlow's CPU kernels (oneDNN's default and code paths), as /proc/cpuinfo names them.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


def _cpuinfo_field(name: str) -> str | None:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.split(":", 1)[0].strip() == name:
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return None


def cpu_vendor() -> str:
  """`GenuineIntel`, `AuthenticAMD`, ... (the platform's processor name where /proc/cpuinfo has none)."""
  return _cpuinfo_field("vendor_id") or platform.processor() or platform.machine()


def isa_flags() -> dict[str, bool]:
  """Which of `ISA_FLAGS` the CPU has (all False where /proc/cpuinfo is missing)."""
  flags = set((_cpuinfo_field("flags") or "").split())
  return {name: name in flags for name in ISA_FLAGS}


def memory_gib() -> float | None:
  try:
    import psutil  # pylint: disable=g-import-not-at-top
    return round(psutil.virtual_memory().total / 2**30, 1)
  except ImportError:
    return None


def gpu_names() -> list[str]:
  """Names of the visible GPUs (e.g. `NVIDIA H100 80GB HBM3`), empty without one."""
  names = []
  for device in tf.config.list_physical_devices("GPU"):
    try:
      details = tf.config.experimental.get_device_details(device)
    except (ValueError, RuntimeError):
      details = {}
    names.append(str(details.get("device_name", device.name)))
  return names


def load_average() -> list[float] | None:
  try:
    return [round(x, 2) for x in os.getloadavg()]
  except OSError:
    return None


def machine_info() -> dict[str, Any]:
  """The result's `machine`: CPU model and count, GPU name, TensorFlow/Keras versions (and a few more facts)."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  gpus = gpu_names()
  return {
      "cpu_model": cpu_model(),
      "cpu_vendor": cpu_vendor(),
      "isa_flags": isa_flags(),
      "onednn": {"env": os.environ.get(cpu_defaults.ONEDNN_ENV), "enabled": cpu_defaults.onednn_enabled()},
      "cpu_count": os.cpu_count(),
      "cores_available": cores_available(),
      "memory_gib": memory_gib(),
      "gpu": gpus[0] if gpus else None,
      "gpu_count": len(gpus),
      "tensorflow": tf.__version__,
      "keras": keras.__version__,
      "tensorflow_datasets": tfds.__version__,
      "python": platform.python_version(),
      "platform": platform.platform(),
      "hostname": socket.gethostname(),
  }


# --- timing ---------------------------------------------------------------------------------------------------------

def median(values: Sequence[float]) -> float:
  return float(statistics.median(values))


def spread(values: Sequence[float]) -> dict[str, Any]:
  """Median, min, max and all the repeats of a measurement."""
  return {"median": median(values), "min": float(min(values)), "max": float(max(values)),
          "repeats": [float(v) for v in values]}


def cpu_seconds() -> float:
  """CPU time (user + system) this process has used so far, all threads (not its child processes)."""
  return time.process_time()


class Timed:
  """Wall and process CPU seconds of a block: `with Timed() as t: ...; t.wall, t.cpu, t.utilization`."""

  def __enter__(self) -> "Timed":
    self._wall, self._cpu = time.perf_counter(), cpu_seconds()
    return self

  def __exit__(self, *exc) -> None:
    self.wall = time.perf_counter() - self._wall
    self.cpu = cpu_seconds() - self._cpu

  @property
  def utilization(self) -> float:
    """Cores kept busy on average (CPU seconds / wall seconds): below the threads allowed when others compete."""
    return self.cpu / self.wall if self.wall else 0.0


def threading_options(cores: int | None) -> tf.data.Options:
  """tf.data options limiting a whole input pipeline to `cores` threads (None: TensorFlow's default pool)."""
  options = tf.data.Options()
  if cores:
    options.threading.private_threadpool_size = int(cores)
  return options


# --- profiles -------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def trace_dir(keep_in: str | None, name: str) -> Iterator[str]:
  """`keep_in/name` (kept), or a temporary folder removed on exit when `keep_in` is None."""
  if keep_in:
    yield os.path.join(keep_in, name)
    return
  with tempfile.TemporaryDirectory(prefix="simclr_mura_profile_") as tmp:
    yield os.path.join(tmp, name)


@contextlib.contextmanager
def trace(logdir: str) -> Iterator[None]:
  """Records a TensorFlow profiler trace into `logdir` (TensorBoard's Profile tab reads it)."""
  os.makedirs(logdir, exist_ok=True)
  tf.profiler.experimental.start(logdir)
  try:
    yield
  finally:
    tf.profiler.experimental.stop()


def _op_events(logdir: str) -> Iterator[tuple[str, str, float]]:
  """(node name, op type, ms) of every TensorFlow op kernel in the newest trace under `logdir`, host (CPU) planes.

  Op events are named `node_name:OpType` (`OpType` may be a oneDNN variant such as `_MklNativeConv2D`); framework
  events (`ExecutorState::Process`, `Iterator::...`, `EagerLocalExecute: ...`) are left out, so the times add up the
  kernels' own wall time across all threads.
  """
  try:
    from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  except ImportError:
    return
  files = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True), key=os.path.getmtime)
  if not files:
    return
  space = xplane_pb2.XSpace()
  with open(files[-1], "rb") as f:
    space.ParseFromString(f.read())
  for plane in space.planes:
    if not plane.name.startswith("/host:CPU"):
      continue
    names = {k: v.name for k, v in plane.event_metadata.items()}
    for line in plane.lines:
      for event in line.events:
        name = names.get(event.metadata_id, "")
        if "::" in name or ":" not in name:
          continue
        node, op_type = name.rsplit(":", 1)
        if not node or not op_type or " " in op_type or " " in node:
          continue
        yield node, op_type, event.duration_ps / 1e9


def op_times(logdir: str, components: Sequence[tuple[str, Sequence[str]]] = ()) -> dict[str, Any]:
  """Kernel time in a trace by op type and, optionally, by component.

  components: (name, substrings) pairs; an op belongs to the first component one of whose substrings occurs in its
  node name (ops under `gradient_tape/` get ` (backward)` appended), else to `other`.
  Returns {"total_ms", "by_type": {type: {"ms", "count"}}, "by_component": {name: ms}}, largest first.
  """
  by_type: dict[str, float] = collections.Counter()
  counts: dict[str, int] = collections.Counter()
  by_component: dict[str, float] = collections.Counter()
  for node, op_type, ms in _op_events(logdir):
    by_type[op_type] += ms
    counts[op_type] += 1
    if components:
      part = next((name for name, keys in components if any(k in node for k in keys)), "other")
      by_component[part + (" (backward)" if "gradient_tape/" in node else "")] += ms
  return {
      "total_ms": round(sum(by_type.values()), 2),
      # oneDNN kernels register as `_Mkl...` op types: their time says whether oneDNN ran, and on what.
      "onednn_ms": round(sum(v for k, v in by_type.items() if k.startswith("_Mkl")), 2),
      "by_type": {k: {"ms": round(v, 3), "count": counts[k]}
                  for k, v in sorted(by_type.items(), key=lambda kv: -kv[1])},
      "by_component": {k: round(v, 2) for k, v in sorted(by_component.items(), key=lambda kv: -kv[1])},
  }


# --- tables ---------------------------------------------------------------------------------------------------------

def format_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
  """A plain-text table; floats get 3 significant decimals' worth of precision."""
  def cell(x: Any) -> str:
    if x is None:
      return "-"
    if isinstance(x, bool):
      return "yes" if x else "NO"
    if isinstance(x, float):
      return f"{x:,.3f}" if abs(x) < 10 else f"{x:,.1f}"
    return str(x)

  cells = [[cell(x) for x in row] for row in rows]
  widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(header)]
  lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths)),
           "  ".join("-" * w for w in widths)]
  numeric = [[isinstance(x, (int, float)) and not isinstance(x, bool) for x in row] for row in rows]
  lines += ["  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, nums))
            for r, nums in zip(cells, numeric)]
  return "\n".join(line.rstrip() for line in lines)
