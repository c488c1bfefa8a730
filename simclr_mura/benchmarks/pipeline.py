"""Input pipeline benchmarks: decode-only rate, the trainer's pretraining pipeline (SimCLR's pairs and MICLe's) and a
plain one, per CPU core.

Per-core method: every pipeline measured here runs on a tf.data private thread pool of `cores` threads
(`tf.data.Options().threading.private_threadpool_size`, set on the final dataset so it covers every stage, TFDS's
file reading and decoding included); the rate is divided by `cores`. The consumer (the Python loop calling `next`)
does no work beyond fetching the batch. Each timed run uses a fresh iterator, so no other pipeline works in the
background, and records the CPU seconds the process used besides the wall time.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

import tensorflow as tf
import tensorflow_datasets as tfds

from simclr_mura.data import augment, input_pipeline
from simclr_mura.benchmarks import common
from simclr_mura.config import Config


@dataclasses.dataclass(frozen=True)
class PipelineSettings:
  split: str = "train"
  image_size: int = 224
  batch_size: int = 64
  batches: int = 30  # timed per repeat
  warmup_batches: int = 5
  repeats: int = 3
  cores: int | None = 2  # None: TensorFlow's default pool (all cores)
  stages: bool = True  # also time each stage once (read, decode, resize, one view)
  profile: bool = True  # trace the pretraining pipeline and summarise kernel time by op
  profile_dir: str | None = None  # keep the trace here (else a temporary folder)
  profile_batches: int = 10


def _read_config() -> tfds.ReadConfig:
  """Reads in stored order (`shuffle_files=False` beside it): the builders write with TFDS's disable_shuffling, which
  refuses shuffled files; the pipelines' shuffle buffers do the shuffling, as the trainer's does."""
  return tfds.ReadConfig(try_autocache=False)


def _finish(ds: tf.data.Dataset, batch: int, cores: int | None) -> tf.data.Dataset:
  ds = ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return ds.with_options(common.threading_options(cores))


def decode_dataset(builder: tfds.core.DatasetBuilder, s: PipelineSettings) -> tf.data.Dataset:
  """PNG read + decode (TFDS, as the trainer reads it) + resize of the whole image to size x size: nothing else."""
  ds = builder.as_dataset(split=s.split, shuffle_files=False, read_config=_read_config()).repeat()
  size = s.image_size
  ds = ds.map(lambda e: tf.image.resize(augment.to_float(e["image"]), [size, size]),
              num_parallel_calls=tf.data.AUTOTUNE)
  return _finish(ds, s.batch_size, s.cores)


def plain_dataset(builder: tfds.core.DatasetBuilder, s: PipelineSettings) -> tf.data.Dataset:
  """The simplest correct two-view pipeline, written with `tf.image` alone: the yardstick for the project's own.

  Per image: PNG decode (TFDS), a shuffle buffer as large as the trainer's (a training pipeline reshuffles its
  examples every epoch, as SimCLR's data.py does; reading alone repeats one order), then twice: random resized crop
  (SimCLR's area 0.08-1 and aspect 3/4-4/3) with a bicubic resize to size x size, random left-right flip, random
  brightness and contrast, clip to [0, 1]; the two views stacked, [B, 2, size, size, 1] batches.
  """
  size = s.image_size
  whole = tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4])

  def view(image):
    begin, crop_size, _ = tf.image.sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=whole, min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0), max_attempts=100, use_image_if_no_bounding_boxes=True)
    x = tf.image.resize(tf.slice(image, begin, crop_size), [size, size], method="bicubic")
    x = tf.image.random_flip_left_right(x)
    x = tf.image.random_brightness(x, 0.8)
    x = tf.image.random_contrast(x, 0.2, 1.8)
    return tf.clip_by_value(x, 0.0, 1.0)

  def two_views(e):
    image = tf.image.convert_image_dtype(e["image"], tf.float32)
    return tf.stack([view(image), view(image)])

  ds = builder.as_dataset(split=s.split, shuffle_files=False, read_config=_read_config())
  ds = ds.shuffle(input_pipeline.shuffle_buffer_size(s.batch_size), reshuffle_each_iteration=True).repeat()
  return _finish(ds.map(two_views, num_parallel_calls=tf.data.AUTOTUNE), s.batch_size, s.cores)


def plain_iterator(builder: tfds.core.DatasetBuilder, s: PipelineSettings,
                   strategy: tf.distribute.Strategy) -> Iterator:
  """`plain_dataset` fed as the trainer feeds its own pipeline (`distribute_datasets_from_function` of the same
  strategy), so that `input_over_plain` compares the two pipelines and not the ways they are read."""
  return iter(strategy.distribute_datasets_from_function(lambda input_context=None: plain_dataset(builder, s)))


def stage_datasets(builder: tfds.core.DatasetBuilder, config: Config,
                   s: PipelineSettings) -> dict[str, tf.data.Dataset]:
  """Cumulative pipelines, each one stage longer: their rates attribute the cost per image to each stage."""
  raw = builder.as_dataset(split=s.split, shuffle_files=False, read_config=_read_config(),
                           decoders={"image": tfds.decode.SkipDecoding()}).repeat()
  decoded = builder.as_dataset(split=s.split, shuffle_files=False, read_config=_read_config()).repeat()

  view = input_pipeline.train_view(config, pretrain=True)  # `config` carries the measured image size

  def one_view(e):
    return view(e["image"])

  auto = tf.data.AUTOTUNE
  return {
      "read (encoded PNG records)": _finish(raw.map(lambda e: tf.strings.length(e["image"])), s.batch_size, s.cores),
      "+ PNG decode": _finish(decoded.map(lambda e: tf.shape(e["image"])), s.batch_size, s.cores),
      "+ resize to size (decode-only figure)": decode_dataset(builder, s),
      "+ one augmented view instead": _finish(decoded.map(one_view, num_parallel_calls=auto), s.batch_size, s.cores),
  }


def pretrain_iterator(builder: tfds.core.DatasetBuilder, config: Config, s: PipelineSettings,
                      strategy: tf.distribute.Strategy, first_batch_only: bool = False) -> Iterator:
  """The trainer's pretraining input: `train_input_fn(pretrain=True)` through `distribute_datasets_from_function`.

  first_batch_only: repeat the pipeline's first batch forever (the same element spec, so a train loop traced on the
  real pipeline is reused, but no input work per step: the step's own cost).
  """
  input_fn = input_pipeline.train_input_fn(builder, config, s.split, True, s.batch_size, seed=config.seed)

  def limited(input_context=None):
    ds = input_fn(input_context)
    if first_batch_only:
      ds = ds.take(1).cache().repeat()
    return ds.with_options(common.threading_options(s.cores))

  return iter(strategy.distribute_datasets_from_function(limited))


def _consume(iterator: Iterator, n: int) -> None:
  for _ in range(n):
    next(iterator)  # host iterators return computed tensors: nothing left to wait for


def timed_rate(iterator: Iterator, batches: int, units_per_batch: int) -> dict[str, float]:
  """Units per wall second and per CPU second (this process, all threads) over `batches` batches."""
  with common.Timed() as t:
    _consume(iterator, batches)
  units = batches * units_per_batch
  return {"per_sec": units / t.wall, "per_cpu_second": units / t.cpu if t.cpu > 0 else None,
          "utilization": t.utilization}


def _median_of(runs: list[dict[str, float]], key: str) -> float | None:
  values = [r[key] for r in runs if r[key] is not None]
  return common.median(values) if values else None


def measure(builder: tfds.core.DatasetBuilder, config: Config, s: PipelineSettings,
            strategy: tf.distribute.Strategy, log: Callable[[str], None] = print) -> dict[str, Any]:
  """Decode-only, pretraining-pipeline (SimCLR's pairs of one image's views, MICLe's pairs of a study's images) and
plain-pipeline rates, alternating repeat by repeat so that all see the same load.

  Besides the per-core rates (wall-clock rate / cores), each run records its rate per CPU second actually
  used and its utilization (CPU seconds / wall seconds, at most `cores`): on a machine shared with other jobs the
  wall-clock rate falls with the share of the cores the pipeline gets, the rate per CPU second much less.
  """
  config = config.replace(image_size=s.image_size)
  make = {"decode": lambda: iter(decode_dataset(builder, s)),
          "views": lambda: pretrain_iterator(builder, config, s, strategy),
          "study": lambda: pretrain_iterator(builder, config.replace(positive_pairs="study"), s, strategy),
          "plain": lambda: plain_iterator(builder, s, strategy)}
  views_per_image = {"decode": 1, "views": 2, "study": 2, "plain": 2}
  runs: dict[str, list[dict[str, float]]] = {name: [] for name in make}
  for r in range(s.repeats):
    order = list(make) if r % 2 == 0 else list(reversed(make))
    for name in order:
      # A fresh iterator each time: a live one left behind would go on filling its buffers while the other is
      # timed, taking cores and CPU time from it.
      it = make[name]()
      _consume(it, s.warmup_batches)  # fills the shuffle buffer, lets AUTOTUNE settle
      runs[name].append(timed_rate(it, s.batches, s.batch_size * views_per_image[name]))
      del it
    decode, views, plain = runs["decode"][-1], runs["views"][-1], runs["plain"][-1]
    log(f"  pipeline repeat {r + 1}/{s.repeats}: decode {decode['per_sec']:.0f} images/s "
        f"(using {decode['utilization']:.2f} cores), pretraining pipeline {views['per_sec']:.0f} views/s "
        f"(using {views['utilization']:.2f} cores; MICLe pairs {runs['study'][-1]['per_sec']:.0f}), plain pipeline "
        f"{plain['per_sec']:.0f} views/s; {s.cores} threads")
  decode, views, plain, study = runs["decode"], runs["views"], runs["plain"], runs["study"]
  decode_rate, views_rate = _median_of(decode, "per_sec"), _median_of(views, "per_sec")
  plain_rate, study_rate = _median_of(plain, "per_sec"), _median_of(study, "per_sec")
  decode_cpu, views_cpu = _median_of(decode, "per_cpu_second"), _median_of(views, "per_cpu_second")
  result: dict[str, Any] = {
      "cores": s.cores,
      "split": s.split, "image_size": s.image_size, "batch_size": s.batch_size, "batches": s.batches,
      "decode_images_per_sec": common.spread([r["per_sec"] for r in decode]),
      "input_views_per_sec": common.spread([r["per_sec"] for r in views]),
      "decode_images_per_sec_per_core": decode_rate / s.cores,
      "input_views_per_sec_per_core": views_rate / s.cores,
      "views_over_decode": views_rate / decode_rate,
      "plain_views_per_sec": common.spread([r["per_sec"] for r in plain]),
      "plain_views_per_sec_per_core": plain_rate / s.cores,
      "input_over_plain": views_rate / plain_rate,
      "study_pairs_views_per_sec": common.spread([r["per_sec"] for r in study]),
      "study_pairs_over_image": study_rate / views_rate,
      "decode_images_per_cpu_second": decode_cpu,
      "input_views_per_cpu_second": views_cpu,
      "views_over_decode_per_cpu_second": views_cpu / decode_cpu if decode_cpu and views_cpu else None,
      "utilization": {"decode": _median_of(decode, "utilization"), "views": _median_of(views, "utilization")},
  }
  if s.stages:
    result["stages"] = _stages(builder, config, s, log)
  if s.profile:
    result["profile"] = _profile(builder, config, s)
  return result


def _stages(builder: tfds.core.DatasetBuilder, config: Config, s: PipelineSettings,
            log: Callable[[str], None]) -> dict[str, dict[str, float]]:
  out = {}
  for name, ds in stage_datasets(builder, config, s).items():
    it = iter(ds)
    _consume(it, s.warmup_batches)
    r = timed_rate(it, s.batches, s.batch_size)
    out[name] = {"images_per_sec": r["per_sec"], "utilization": r["utilization"],
                 "cpu_ms_per_image": 1000.0 / r["per_cpu_second"] if r["per_cpu_second"] else None}
    log(f"  stage {name}: {r['per_sec']:.0f} images/s, {out[name]['cpu_ms_per_image'] or 0:.2f} CPU ms/image")
  return out


def _profile(builder: tfds.core.DatasetBuilder, config: Config, s: PipelineSettings) -> dict[str, Any]:
  """Kernel time by op type while the pretraining pipeline produces `profile_batches` batches, per image.

  Traced on `input_fn(None)` itself (the same host work): behind `distribute_datasets_from_function` the pipeline's
  kernels run in a multi-device iterator whose threads the trace does not show.
  """
  it = _warm_host_iterator(builder, config, s, seed=config.seed + 1)
  with common.trace_dir(s.profile_dir, "input_pipeline") as logdir:
    with common.trace(logdir):
      with common.Timed() as t:
        _consume(it, s.profile_batches)
    times = common.op_times(logdir)
  images = s.profile_batches * s.batch_size
  return {"logdir": logdir if s.profile_dir else None, "images": images,
          "cpu_ms_per_image": round(1000.0 * t.cpu / images, 3),
          "kernel_ms_per_image": round(times["total_ms"] / images, 3),
          "onednn_kernel_ms_per_image": round(times["onednn_ms"] / images, 3),
          "kernel_ms_per_image_by_op": {k: round(v["ms"] / images, 4)
                                        for k, v in list(times["by_type"].items())[:12]}}


def host_rate(builder: tfds.core.DatasetBuilder, config: Config, s: PipelineSettings) -> float:
  """Views per second of the pretraining pipeline alone on the host (no device), e.g. on a GPU machine."""
  it = _warm_host_iterator(builder, config.replace(image_size=s.image_size), s, seed=config.seed)
  return timed_rate(it, s.batches, 2 * s.batch_size)["per_sec"]


def _warm_host_iterator(builder: tfds.core.DatasetBuilder, config: Config, s: PipelineSettings, seed: int) -> Iterator:
  """The trainer's pretraining `input_fn(None)` on `s.cores` threads, past its warm-up batches."""
  input_fn = input_pipeline.train_input_fn(builder, config, s.split, True, s.batch_size, seed=seed)
  it = iter(input_fn(None).with_options(common.threading_options(s.cores)))
  _consume(it, s.warmup_batches)
  return it
