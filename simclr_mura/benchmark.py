"""Benchmarks of the real code paths: input pipeline, train step, dataset build, GPU throughput.

  python -m simclr_mura.benchmark --suite=cpu --out=bench_cpu.json
  python -m simclr_mura.benchmark --suite=gpu --out=bench_gpu.json
  python -m simclr_mura.benchmark --suite=cpu --quick --out=/tmp/b.json    (a tiny configuration, for tests)

The cpu suite prepares `mura_synthetic/all` at `--build_scale` (default 1.0, about 40,000 images: it takes tens of
minutes on a 2-core machine) in a subprocess, then measures on that dataset the decode-only rate and the pretraining
input pipeline (both limited to `--cores` threads and divided by them), then one SimCLR pretraining step against one
`keras.applications.ResNet50` step. The gpu suite measures SimCLR pretraining fed by the real pipeline and ResNet50
supervised training for each precision/XLA setting. Each prints a table and writes one JSON object; see docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Sequence

from simclr_mura.errors import ArgumentParser

GOALS = {
    "input_views_per_sec_per_core": (">=", 400.0),
    "views_over_decode": (">=", 1.0),
    "input_over_plain": (">=", 1.0),
    "study_pairs_over_image": (">=", 0.8),  # MICLe's pairs (--positive_pairs=study) against SimCLR's, views/s
    "step_overhead_ratio": ("<=", 1.10),
    "build_peak_memory_mib": ("<=", 2048.0),
    "pretrain_views_per_sec": (">=", 4000.0),
}
CPU_KEYS = ("decode_images_per_sec_per_core", "input_views_per_sec_per_core", "step_overhead_ratio",
            "build_images_per_sec", "build_peak_rss_mib")
GPU_KEYS = ("pretrain_views_per_sec", "supervised_images_per_sec")

# Defaults per suite, and the tiny configuration of --quick (for tests: seconds, not meaningful figures).
DEFAULTS: dict[str, Any] = dict(
    image_size=224, batch_size=None, pipeline_batch_size=64, pipeline_batches=30, pipeline_repeats=5,
    pipeline_warmup=5, repeats=None, warmup=None, build_scale=1.0, data_scale=0.25, resnet_depth=50,
    steps_per_loop=10, gpu_settings=None, synthetic_config="all")
# --quick builds one body part: `test` keeps MURA's size at every scale (3,197 images of all seven parts, 465 of the
# elbow's), and rendering it would be most of a quick run.
QUICK: dict[str, Any] = dict(
    image_size=32, batch_size=2, pipeline_batch_size=4, pipeline_batches=2, pipeline_repeats=1, pipeline_warmup=1,
    repeats=1, warmup=1, build_scale=0.01, data_scale=0.01, resnet_depth=18, steps_per_loop=2,
    gpu_settings="float32", synthetic_config="elbow")


def _parser() -> argparse.ArgumentParser:
  p = ArgumentParser(prog="python -m simclr_mura.benchmark", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--suite", required=True, choices=("cpu", "gpu"))
  p.add_argument("--out", default=None, help="write the JSON object here")
  p.add_argument("--quick", action="store_true",
                 help="tiny configuration (32-px images, ResNet-18, mura_synthetic/elbow with a few dozen training "
                      "images, no pipeline stage breakdown; for tests): the code paths run, the figures mean nothing. "
                      "Explicit size options override it")
  g = p.add_argument_group("sizes")
  g.add_argument("--image_size", type=int, help="view size in pixels (default 224)")
  g.add_argument("--batch_size", type=int,
                 help="B of the step benchmarks: SimCLR on 2B views, ResNet50 on 2B images (cpu 4, gpu 256)")
  g.add_argument("--repeats", type=int, help="timed repeats of each step measurement (cpu 5, gpu 3); medians")
  g.add_argument("--warmup", type=int, help="untimed steps (cpu) or loops (gpu) first (default 2 / 1)")
  g.add_argument("--resnet_depth", type=int, help="SimCLR ResNet depth (default 50; ResNet50 stays the reference)")
  g.add_argument("--pipeline_batch_size", type=int, help="images per pipeline batch (default 64)")
  g.add_argument("--pipeline_batches", type=int, help="batches timed per pipeline repeat (default 30)")
  g.add_argument("--pipeline_repeats", type=int, help="pipeline repeats, the three pipelines interleaved (default 5)")
  g.add_argument("--pipeline_warmup", type=int, help="untimed batches first (default 5)")
  g.add_argument("--cores", type=int, help="cpu: threads of the measured pipelines, the per-core divisor "
                 "(default: the CPUs this process may use)")
  d = p.add_argument_group("data")
  d.add_argument("--synthetic_config",
                 help="the mura_synthetic config built (cpu) and read (gpu, cpu with --no_build) (default all; "
                      "--quick: elbow)")
  d.add_argument("--build_scale", type=float,
                 help="cpu: mura_synthetic scale of the build benchmark (default 1.0 = about 40,000 images)")
  d.add_argument("--no_build", action="store_true",
                 help="cpu: skip the build benchmark; the pipeline reads --dataset (default mura_synthetic at "
                      "--synthetic_config and --data_scale, prepared in --data_dir or a temporary folder): to compare "
                      "pipeline and step only")
  d.add_argument("--data_scale", type=float,
                 help="gpu, and cpu with --no_build: mura_synthetic scale of the dataset read (default 0.25, about "
                      "10,000 images: a train split larger than the shuffle buffer, as in a real run)")
  d.add_argument("--dataset", default=None,
                 help="measure the pipeline (cpu) / feed the GPU (gpu) from this prepared dataset, e.g. mura/all, "
                      "instead of the freshly built mura_synthetic config (the build is still measured)")
  d.add_argument("--data_dir", default=None, help="where --dataset is prepared")
  d.add_argument("--mura_dir", default=None, help="MURA-v1.1 folder, if --dataset=mura/... is not prepared yet")
  d.add_argument("--work_dir", default=None, help="scratch folder for the builds (default: a temporary folder)")
  d.add_argument("--keep", action="store_true", help="keep the datasets built in --work_dir (only what this run "
                 "created there is ever removed)")
  x = p.add_argument_group("gpu")
  x.add_argument("--gpu_settings", default=None,
                 help="comma-separated precision[+xla] settings (default: float32, float32+xla, mixed_bfloat16, "
                      "mixed_bfloat16+xla, mixed_float16, mixed_float16+xla)")
  x.add_argument("--steps_per_loop", type=int, help="steps per timed tf.function loop (default 10)")
  x.add_argument("--supervised_all", action="store_true",
                 help="time ResNet50 under every setting, not only under the fastest pretraining one")
  x.add_argument("--allow_cpu", action="store_true",
                 help="run the gpu suite without a GPU (to test its code path; its figures are not GPU figures)")
  m = p.add_argument_group("analysis")
  m.add_argument("--ablations", action="store_true",
                 help="cpu: also time the SimCLR step with global_bn, blur, linear head and LARS switched off in turn")
  m.add_argument("--no_stages", action="store_true", help="cpu: skip the per-stage pipeline breakdown")
  m.add_argument("--no_profile", action="store_true", help="skip the profiler traces and their op summaries")
  m.add_argument("--profile_dir", default=None, help="keep the profiler traces here (TensorBoard's Profile tab); "
                 "gpu: one pipeline-fed loop per setting is traced only when this is given")
  return p


def _resolve(args: argparse.Namespace) -> argparse.Namespace:
  """Fills unset sizes from --quick or the suite defaults."""
  base = QUICK if args.quick else DEFAULTS
  for key, default in DEFAULTS.items():
    if getattr(args, key) is None:
      setattr(args, key, base.get(key, default))
  if args.batch_size is None:
    args.batch_size = 4 if args.suite == "cpu" else 256
  if args.repeats is None:
    args.repeats = 5 if args.suite == "cpu" else 3
  if args.warmup is None:
    args.warmup = 2 if args.suite == "cpu" else 1
  if args.quick:
    args.no_stages = True
  if args.gpu_settings is None:
    from simclr_mura.benchmarks.train_step import GPU_SETTINGS  # pylint: disable=g-import-not-at-top
    args.gpu_settings = ",".join(GPU_SETTINGS)
  return args


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
  """Sizes, scales and the dataset checked before anything is built (one line each)."""
  for name in ("image_size", "batch_size", "repeats", "pipeline_batch_size", "pipeline_batches", "pipeline_repeats",
               "steps_per_loop", "cores"):
    value = getattr(args, name)
    if value is not None and value < 1:
      parser.error(f"--{name}={value} is out of range; accepted: a whole number >= 1")
  for name in ("warmup", "pipeline_warmup"):
    if getattr(args, name) < 0:
      parser.error(f"--{name}={getattr(args, name)} is out of range; accepted: a whole number >= 0")
  for name in ("build_scale", "data_scale"):
    if not getattr(args, name) > 0:
      parser.error(f"--{name}={getattr(args, name):g} is out of range; accepted: a positive number")
  from simclr_mura.datasets.layout import CONFIGS  # pylint: disable=g-import-not-at-top
  if args.synthetic_config not in CONFIGS:
    parser.error(f"--synthetic_config={args.synthetic_config} is not a mura_synthetic config; accepted: "
                 f"{', '.join(CONFIGS)}")
  from simclr_mura.models.resnet import BLOCK_SPECS  # pylint: disable=g-import-not-at-top
  if args.resnet_depth not in BLOCK_SPECS:
    parser.error(f"--resnet_depth={args.resnet_depth} is not valid; accepted: "
                 f"{', '.join(map(str, sorted(BLOCK_SPECS)))}")
  if args.dataset is not None:
    from simclr_mura.prepare import check_data_args  # pylint: disable=g-import-not-at-top
    try:
      check_data_args(args.dataset, args.mura_dir)
    except ValueError as e:
      parser.error(str(e))
  from simclr_mura.benchmarks.train_step import GPU_SETTINGS  # pylint: disable=g-import-not-at-top
  unknown = [s for s in args.gpu_settings.split(",") if s not in GPU_SETTINGS]
  if unknown:
    parser.error(f"--gpu_settings: unknown setting {unknown[0]!r}; accepted: {', '.join(GPU_SETTINGS)}")


def _log(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def _goal(name: str, value: float | None, **extra: Any) -> dict[str, Any]:
  op, target = GOALS[name]
  holds = None if value is None else (value >= target if op == ">=" else value <= target)
  return {"value": value, "target": f"{op} {target:g}", "holds": holds, **extra}


def _config():
  from simclr_mura.config import Config  # pylint: disable=g-import-not-at-top
  return Config(strategy="auto")


def _load_dataset(args: argparse.Namespace):
  from simclr_mura.data import prepare  # pylint: disable=g-import-not-at-top
  return prepare.prepare(args.dataset, data_dir=args.data_dir, mura_dir=args.mura_dir)


def _synthetic_dataset(args: argparse.Namespace, work_dir: str, created: list[str]):
  """mura_synthetic/<--synthetic_config> at --data_scale, prepared in --data_dir when given (kept), else in a scratch
  folder."""
  from simclr_mura.data import prepare  # pylint: disable=g-import-not-at-top
  from simclr_mura.benchmarks import build  # pylint: disable=g-import-not-at-top
  dataset = build.dataset_name(args.synthetic_config)
  _log(f"preparing {dataset} at scale {args.data_scale:g}")
  data_dir = args.data_dir
  if not data_dir:
    os.makedirs(work_dir, exist_ok=True)
    data_dir = tempfile.mkdtemp(prefix="tfds_", dir=work_dir)
    created.append(data_dir)
  return prepare.prepare(dataset, data_dir=data_dir, scale=args.data_scale)


# --- suites ---------------------------------------------------------------------------------------------------------

def cpu_suite(args: argparse.Namespace, work_dir: str, created: list[str]) -> dict[str, Any]:
  """Build (subprocess), then pipeline and step measurements on the built dataset."""
  from simclr_mura.training import distribute  # pylint: disable=g-import-not-at-top
  from simclr_mura.data import prepare  # pylint: disable=g-import-not-at-top
  from simclr_mura.benchmarks import build, common, pipeline, train_step  # pylint: disable=g-import-not-at-top
  cores = args.cores or common.cores_available()
  elapsed: dict[str, float] = {}
  config = _config()

  built = None
  if args.no_build:
    _log("[1/3] build benchmark skipped (--no_build)")
    builder = _load_dataset(args) if args.dataset else _synthetic_dataset(args, work_dir, created)
  else:
    _log(f"[1/3] preparing {build.dataset_name(args.synthetic_config)} at scale {args.build_scale:g} in a subprocess "
         "(rendering + TFDS build)")
    t = time.perf_counter()
    built = build.measure_build(args.build_scale, work_dir, log=_log, config=args.synthetic_config)
    created.append(built["data_dir"])
    elapsed["build"] = time.perf_counter() - t
    if args.dataset:
      builder = _load_dataset(args)
    else:
      builder = prepare.prepare(built["dataset"], data_dir=built["data_dir"], scale=args.build_scale)
  _log(f"[2/3] input pipeline on {builder.info.full_name}, {cores} cores")
  t = time.perf_counter()
  strategy = distribute.make_strategy(config)
  pipe = pipeline.measure(builder, config, pipeline.PipelineSettings(
      image_size=args.image_size, batch_size=args.pipeline_batch_size, batches=args.pipeline_batches,
      warmup_batches=args.pipeline_warmup, repeats=args.pipeline_repeats, cores=cores, stages=not args.no_stages,
      profile=not args.no_profile, profile_dir=args.profile_dir), strategy, log=_log)
  elapsed["pipeline"] = time.perf_counter() - t

  _log(f"[3/3] train step: SimCLR ResNet-{args.resnet_depth} on 2x{args.batch_size} views vs Keras ResNet50 on "
       f"{2 * args.batch_size} images, {args.image_size} px")
  t = time.perf_counter()
  step = train_step.measure_overhead(config, train_step.StepSettings(
      batch_size=args.batch_size, image_size=args.image_size, resnet_depth=args.resnet_depth, warmup=args.warmup,
      repeats=args.repeats, profile=not args.no_profile, profile_dir=args.profile_dir,
      ablations=args.ablations), strategy, log=_log)
  elapsed["step"] = time.perf_counter() - t

  goals = {
      "input_views_per_sec_per_core": _goal("input_views_per_sec_per_core", pipe["input_views_per_sec_per_core"]),
      "views_over_decode": _goal("views_over_decode", pipe["views_over_decode"]),
      "input_over_plain": _goal("input_over_plain", pipe["input_over_plain"]),
      "study_pairs_over_image": _goal("study_pairs_over_image", pipe["study_pairs_over_image"]),
      "step_overhead_ratio": _goal("step_overhead_ratio", step["step_overhead_ratio"]),
  }
  if built:
    goals["build_peak_memory_mib"] = _goal("build_peak_memory_mib",
                                           max(built["build_peak_rss_mib"], built["tree_peak_pss_mib"]),
                                           at_full_scale=args.build_scale >= 1.0)
  return {
      "decode_images_per_sec_per_core": pipe["decode_images_per_sec_per_core"],
      "input_views_per_sec_per_core": pipe["input_views_per_sec_per_core"],
      "input_over_plain": pipe["input_over_plain"],
      "study_pairs_over_image": pipe["study_pairs_over_image"],
      "step_overhead_ratio": step["step_overhead_ratio"],
      "build_images_per_sec": built["build_images_per_sec"] if built else None,
      "build_peak_rss_mib": built["build_peak_rss_mib"] if built else None,
      "onednn_kernels_ran": _onednn_ran(pipe, step),
      "goals": goals,
      "details": {"build": built, "pipeline": pipe, "step": step},
      "elapsed_seconds": elapsed,
  }


def _onednn_ran(pipe: dict[str, Any], step: dict[str, Any]) -> bool | None:
  """Whether oneDNN kernels (`_Mkl...` op types) ran in the profiled pipeline or steps; None without profiles."""
  if "profile" not in pipe and "profile" not in step:
    return None
  pipe_ms = pipe.get("profile", {}).get("onednn_kernel_ms_per_image", 0.0)
  step_ms = sum(step.get("profile", {}).get("onednn_kernel_ms", {}).values())
  return pipe_ms + step_ms > 0


def gpu_suite(args: argparse.Namespace, work_dir: str, created: list[str]) -> dict[str, Any]:
  """SimCLR pretraining fed by the real pipeline and ResNet50 supervised, per precision/XLA setting."""
  from simclr_mura.training import distribute  # pylint: disable=g-import-not-at-top
  from simclr_mura.benchmarks import common, train_step  # pylint: disable=g-import-not-at-top
  if not common.gpu_names() and not args.allow_cpu:
    raise SystemExit("error: --suite=gpu found no GPU (pass --allow_cpu to test its code path on the CPU)")
  settings = tuple(s.strip() for s in args.gpu_settings.split(",") if s.strip())
  for s in settings:
    train_step.parse_setting(s)
  builder = _load_dataset(args) if args.dataset else _synthetic_dataset(args, work_dir, created)
  config = _config()
  strategy = distribute.make_strategy(config)
  _log(f"GPU throughput on {common.gpu_names() or ['CPU (--allow_cpu)']}: ResNet-{args.resnet_depth}, "
       f"B={args.batch_size}, {args.image_size} px, settings {', '.join(settings)}")
  t = time.perf_counter()

  def progress(results: dict[str, Any]) -> None:  # a run cut short (device time limit) keeps what it measured
    if args.out:
      _write(args.out, {"suite": "gpu", "complete": False, "command": _command(args.argv),
                        "machine": common.machine_info(), "details": {"gpu_settings_so_far": results}})

  gpu = train_step.measure_gpu(builder, config, train_step.GpuSettings(
      batch_size=args.batch_size, image_size=args.image_size, resnet_depth=args.resnet_depth, settings=settings,
      steps_per_loop=args.steps_per_loop, warmup_loops=args.warmup, repeats=args.repeats,
      supervised_all=args.supervised_all, profile_dir=None if args.no_profile else args.profile_dir), strategy,
      log=_log, progress=progress)
  return {
      "pretrain_views_per_sec": gpu["pretrain_views_per_sec"],
      "pretrain_setting": gpu["setting"],
      "supervised_images_per_sec": gpu["supervised_images_per_sec"],
      "device": common.gpu_names()[0] if common.gpu_names() else "CPU (--allow_cpu: not a GPU figure)",
      "goals": {"pretrain_views_per_sec": _goal("pretrain_views_per_sec", gpu["pretrain_views_per_sec"])},
      "details": {"gpu": gpu, "dataset": builder.info.full_name},
      "elapsed_seconds": {"gpu": time.perf_counter() - t},
  }


# --- the table ------------------------------------------------------------------------------------------------------

def table(result: dict[str, Any]) -> str:
  """The readable summary printed at the end."""
  from simclr_mura.benchmarks.common import format_table  # pylint: disable=g-import-not-at-top
  m = result["machine"]
  head = [f"simclr_mura benchmark, suite {result['suite']}, {result['date']}"
          + (" (--quick: tiny configuration, figures not meaningful)" if result["settings"]["quick"] else ""),
          f"machine: {m['cpu_model']} x{m['cpu_count']} ({m['cores_available']} usable), GPU {m['gpu'] or 'none'}, "
          f"TF {m['tensorflow']}, Keras {m['keras']}; load average {result['load_average']['start']} at start, "
          f"{result['load_average']['end']} at end",
          f"CPU: {m['cpu_vendor']}, ISA {' '.join(k for k, v in m['isa_flags'].items() if v) or 'unknown'}; "
          f"oneDNN {'on' if m['onednn']['enabled'] else 'off'} (TF_ENABLE_ONEDNN_OPTS={m['onednn']['env']}), "
          f"oneDNN kernels seen in the profiles: {_yes_no(result.get('onednn_kernels_ran'))}"]
  goals = result["goals"]

  def goal(name):
    g = goals.get(name)
    return (g["target"], g["holds"]) if g else ("", None)

  rows = []
  if result["suite"] == "cpu":
    d = result["details"]
    p, s, b = d["pipeline"], d["step"], d["build"] or {}
    cores = p["cores"]
    util = p["utilization"]
    rows += [
        ("decode_images_per_sec_per_core", result["decode_images_per_sec_per_core"], "images/s/core",
         f"PNG read+decode+resize, {cores} threads ({util['decode']:.2f} cores busy)", "", None),
        ("  per CPU second used", p["decode_images_per_cpu_second"], "images/CPU-s", "same runs", "", None),
        ("input_views_per_sec_per_core", result["input_views_per_sec_per_core"], "views/s/core",
         f"pretraining pipeline, {cores} threads ({util['views']:.2f} cores busy)",
         *goal("input_views_per_sec_per_core")),
        ("  per CPU second used", p["input_views_per_cpu_second"], "views/CPU-s", "same runs", "", None),
        ("  views/s over decode images/s", p["views_over_decode"], "ratio", "same run, interleaved",
         *goal("views_over_decode")),
        ("  plain two-view pipeline", p["plain_views_per_sec_per_core"], "views/s/core",
         "tf.image crop, flip, brightness, contrast; same run", "", None),
        ("input_over_plain", p["input_over_plain"], "ratio", "pretraining pipeline / plain pipeline, views/s",
         *goal("input_over_plain")),
        ("study_pairs_over_image", p["study_pairs_over_image"], "ratio",
         "pretraining pipeline with MICLe's pairs (--positive_pairs=study) / SimCLR's, views/s; same run",
         *goal("study_pairs_over_image")),
        ("step_overhead_ratio", result["step_overhead_ratio"], "ratio",
         f"SimCLR {s['simclr_step_seconds']['median']:.3f} s / ResNet50 {s['supervised_step_seconds']['median']:.3f} s"
         f" (2x{s['batch_size']}, {s['image_size']} px)", *goal("step_overhead_ratio")),
        ("  CPU seconds ratio", s["cpu_seconds_ratio"], "ratio", "same steps, CPU time instead of wall time",
         "", None),
    ]
    if b:
      rows += [
        ("build_images_per_sec", result["build_images_per_sec"], "images/s",
         f"TFDS build from the tree ({b['images']} images, {b['tfds_build_seconds']:.0f} s)", "", None),
        ("  rendering the synthetic tree", b["generate_images_per_sec"], "images/s",
         f"{b['generate_seconds']:.0f} s (not in build_images_per_sec)", "", None),
        ("build_peak_rss_mib", result["build_peak_rss_mib"], "MiB", "the build process (ru_maxrss)",
         *goal("build_peak_memory_mib")),
        ("  process tree peak PSS", b["tree_peak_pss_mib"], "MiB",
         f"with render workers, sampled; rendering {b['tree_peak_pss_mib_by_phase']['rendering'] or 0:.0f}, "
         f"TFDS build {b['tree_peak_pss_mib_by_phase']['tfds_build'] or 0:.0f}", "", None),
      ]
    else:
      rows.append(("build benchmark", None, "", "skipped (--no_build)", "", None))
  else:
    d = result["details"]["gpu"]
    setting = result["pretrain_setting"]["name"]
    rows += [
        ("pretrain_views_per_sec", result["pretrain_views_per_sec"], "views/s",
         f"{setting}, fed by the pipeline, B={d['batch_size']}", *goal("pretrain_views_per_sec")),
        ("supervised_images_per_sec", result["supervised_images_per_sec"], "images/s",
         f"Keras ResNet50, {setting}, {d['views_per_step']} images/step", "", None),
    ]
    for name, r in d["settings"].items():
      if "error" in r:
        rows.append((f"  {name}", None, "", r["error"][:60], "", None))
      else:
        rows.append((f"  {name}", r["pretrain_views_per_sec"], "views/s",
                     f"one batch repeated: {r['pretrain_compute_only_views_per_sec']:.0f} views/s"
                     + (f"; ResNet50 {r['supervised_images_per_sec']:.0f} images/s"
                        if "supervised_images_per_sec" in r else ""), "", None))
    rows.append(("  pipeline alone (host)", d["pipeline_alone_views_per_sec"], "views/s", "all cores", "", None))
  body = format_table(rows, ("figure", "value", "unit", "what", "goal", "holds"))
  return "\n".join(head + ["", body])


def _yes_no(value: bool | None) -> str:
  return "not profiled" if value is None else ("yes" if value else "no")


def _command(argv: Sequence[str] | None) -> str:
  return " ".join([os.path.basename(sys.executable), "-m", "simclr_mura.benchmark",
                   *(sys.argv[1:] if argv is None else argv)])


def _write(path: str, result: dict[str, Any]) -> None:
  from simclr_mura.training import results  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  results.atomic_write_text(path, json.dumps(result, indent=2, default=str) + "\n")


# --- entry point ----------------------------------------------------------------------------------------------------

def run(argv: Sequence[str] | None = None) -> int:
  """Console entry point (`simclr-mura-benchmark`); returns the exit status."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads
  parser = _parser()
  args = _resolve(parser.parse_args(argv))
  _check(parser, args)
  args.argv = None if argv is None else list(argv)
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from simclr_mura.benchmarks import common  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()

  started = datetime.datetime.now(datetime.timezone.utc)
  load_start = common.load_average()
  own_work_dir = args.work_dir is None
  work_dir = tempfile.mkdtemp(prefix="simclr_mura_bench_") if own_work_dir else args.work_dir
  created: list[str] = []  # only what this run made is ever removed
  try:
    suite = (cpu_suite if args.suite == "cpu" else gpu_suite)(args, work_dir, created)
  finally:
    if own_work_dir:
      shutil.rmtree(work_dir, ignore_errors=True)
    elif not args.keep:
      for path in created:
        shutil.rmtree(path, ignore_errors=True)
  result: dict[str, Any] = {
      "suite": args.suite,
      "date": started.isoformat(timespec="seconds"),
      "command": _command(argv),
      "complete": True,
      "machine": common.machine_info(),
      "load_average": {"start": load_start, "end": common.load_average()},
      "settings": {k: v for k, v in vars(args).items() if k not in ("out", "argv")},
      **suite,
  }
  if args.suite == "cpu" and result["details"]["build"] and (own_work_dir or not args.keep):
    result["details"]["build"]["data_dir"] = None  # removed
  text = table(result)
  print(text, flush=True)
  if args.out:
    _write(args.out, result)
    _log(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(run())
