"""Train-step benchmarks: the SimCLR step against `keras.applications.ResNet50`, on CPU and on a GPU.

Both steps run the way the trainer runs its step (`trainer.train`): a `tf.function` loop calling
`strategy.run(step, args=next(iterator))` over a `distribute_datasets_from_function` iterator. The SimCLR step is the
trainer's own (`steps.make_train_step`: on-device blur, ResNet, projection and supervised heads, NT-Xent, weight decay,
LARS); the supervised step is `keras.applications.ResNet50` (3-channel input, 2 classes, softmax, cross-entropy, SGD
with momentum 0.9) with the same structure (gradients under XLA when `jit_compile`, applied outside, as in `steps`).
"""
from __future__ import annotations

import dataclasses
import gc
import time
from typing import Any, Callable, Iterator

import keras
import tensorflow as tf
import tensorflow_datasets as tfds

from simclr_mura.training import distribute, steps
from simclr_mura.models import optim
from simclr_mura.benchmarks import common
from simclr_mura.benchmarks import pipeline
from simclr_mura.config import Config
from simclr_mura.models.model import build_model

SUPERVISED_CLASSES = 2
GPU_SETTINGS = ("float32", "float32+xla", "mixed_bfloat16", "mixed_bfloat16+xla", "mixed_float16",
                "mixed_float16+xla")
# Config changes whose step is timed next to the real one by --ablations (where the overhead ratio comes from).
ABLATIONS: dict[str, dict[str, Any]] = {
    "global_bn=False": {"global_bn": False},
    "use_blur=False": {"use_blur": False},
    "lineareval_while_pretraining=False": {"lineareval_while_pretraining": False},
    "optimizer=momentum": {"optimizer": "momentum"},
}


def parse_setting(setting: str) -> tuple[str, bool]:
  """`mixed_bfloat16+xla` -> ("mixed_bfloat16", True); `float32` -> ("none", False)."""
  precision, _, xla = setting.partition("+")
  if precision not in ("float32", "mixed_bfloat16", "mixed_float16") or xla not in ("", "xla"):
    raise ValueError(f"unknown setting {setting!r}; accepted: {', '.join(GPU_SETTINGS)}")
  return ("none" if precision == "float32" else precision), xla == "xla"


# --- the two steps --------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Trainable:
  """A model and the trainer's loop over it, `loop(iterator, num_steps) -> {metric: mean}` (no global step)."""
  model: keras.Model
  loop: Callable


def simclr(config: Config, strategy: tf.distribute.Strategy, num_examples: int = 100_000) -> Trainable:
  """The trainer's SimCLR pretraining step (model, LARS with its warm-up + cosine schedule, `make_train_step`)."""
  with strategy.scope():
    model = build_model(config)
    lr = optim.learning_rate(config, num_examples, total_steps=10_000)
    optimizer = optim.build_optimizer(config, lr)
    optimizer.build(model.trainable_variables)
  step_fn = steps.make_train_step(model, optimizer, config, strategy)
  names = steps.metric_names(config)
  return Trainable(model, steps.make_train_loop(strategy, step_fn, names))


def supervised(config: Config, strategy: tf.distribute.Strategy) -> Trainable:
  """`keras.applications.ResNet50` supervised training (SGD, momentum 0.9) with the trainer's step structure."""
  size = config.image_size
  with strategy.scope():
    model = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3), classes=SUPERVISED_CLASSES)
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    if config.mixed_precision == "mixed_float16":
      optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
  loss_fn = keras.losses.SparseCategoricalCrossentropy()
  replicas = strategy.num_replicas_in_sync

  def grads_and_loss(images, labels):
    with tf.GradientTape() as tape:
      loss = loss_fn(labels, tf.cast(model(images, training=True), tf.float32))
      scaled = optimizer.scale_loss(loss / replicas)
    return tape.gradient(scaled, model.trainable_variables), loss

  if config.jit_compile:
    grads_and_loss = tf.function(grads_and_loss, jit_compile=True)

  def step_fn(images, labels):
    grads, loss = grads_and_loss(images, labels)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return {"total_loss": loss}

  return Trainable(model, steps.make_train_loop(strategy, step_fn, ("total_loss",)))


def constant_iterator(strategy: tf.distribute.Strategy, global_batch: int, size: int, channels: int,
                      view_pair: bool = False) -> Iterator:
  """A distributed iterator repeating one random batch: the step's cost without any input pipeline work.

  view_pair: images as the pretraining pipeline delivers them, a pair of [B, size, size, channels] view batches.
  """

  def input_fn(input_context=None):
    batch = input_context.get_per_replica_batch_size(global_batch) if input_context else global_batch
    images = tf.random.stateless_uniform([batch, size, size, channels], seed=[1, 2])
    if view_pair:
      images = (images, tf.random.stateless_uniform([batch, size, size, channels], seed=[5, 6]))
    labels = tf.random.stateless_uniform([batch], seed=[3, 4], maxval=SUPERVISED_CLASSES, dtype=tf.int64)
    return tf.data.Dataset.from_tensors((images, labels)).repeat()

  return iter(strategy.distribute_datasets_from_function(input_fn))


def run_steps_timed(trainable: Trainable, iterator: Iterator, num_steps: int) -> common.Timed:
  """Wall and CPU time of `num_steps` steps, waiting for the results."""
  n = tf.constant(num_steps)
  with common.Timed() as t:
    {k: float(v) for k, v in trainable.loop(iterator, n).items()}  # pylint: disable=expression-not-assigned
  return t


def run_steps(trainable: Trainable, iterator: Iterator, num_steps: int) -> float:
  """Seconds for `num_steps` steps, waiting for the results."""
  return run_steps_timed(trainable, iterator, num_steps).wall


def _release() -> None:
  keras.backend.clear_session()
  gc.collect()


# --- CPU: overhead ratio --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class StepSettings:
  batch_size: int = 4  # B: one SimCLR step on 2B views against one supervised step on 2B images
  image_size: int = 224
  resnet_depth: int = 50
  warmup: int = 2
  repeats: int = 5
  profile: bool = True
  profile_dir: str | None = None
  ablations: bool = False


def _pretrain_config(config: Config, s: StepSettings, **changes: Any) -> Config:
  return config.replace(train_mode="pretrain", image_size=s.image_size, resnet_depth=s.resnet_depth,
                        train_batch_size=s.batch_size, **changes)


def measure_overhead(config: Config, s: StepSettings, strategy: tf.distribute.Strategy,
                     log: Callable[[str], None] = print) -> dict[str, Any]:
  """Step time of SimCLR (2B views) and of Keras ResNet50 (2B images), interleaved repeat by repeat; their ratio."""
  cfg = _pretrain_config(config, s)
  distribute.set_up_runtime(cfg)
  b = s.batch_size
  contenders = {
      "simclr": (simclr(cfg, strategy), constant_iterator(strategy, b, s.image_size, 1, view_pair=True)),
      "supervised": (supervised(cfg, strategy), constant_iterator(strategy, 2 * b, s.image_size, 3)),
  }
  first = {}
  for name, (trainable, it) in contenders.items():
    first[name] = run_steps(trainable, it, 1)  # tracing + first step
    for _ in range(max(0, s.warmup - 1)):
      run_steps(trainable, it, 1)
  times: dict[str, list[float]] = {name: [] for name in contenders}
  cpu: dict[str, list[float]] = {name: [] for name in contenders}
  for r in range(s.repeats):
    order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
    for name in order:
      trainable, it = contenders[name]
      t = run_steps_timed(trainable, it, 1)
      times[name].append(t.wall)
      cpu[name].append(t.cpu)
    log(f"  step repeat {r + 1}/{s.repeats}: SimCLR {times['simclr'][-1]:.3f} s "
        f"({cpu['simclr'][-1] / times['simclr'][-1]:.2f} cores), ResNet50 {times['supervised'][-1]:.3f} s "
        f"({cpu['supervised'][-1] / times['supervised'][-1]:.2f} cores)")
  ratio = common.median(times["simclr"]) / common.median(times["supervised"])
  result: dict[str, Any] = {
      "batch_size": b, "views_per_step": 2 * b, "image_size": s.image_size, "resnet_depth": s.resnet_depth,
      "simclr_step_seconds": common.spread(times["simclr"]),
      "supervised_step_seconds": common.spread(times["supervised"]),
      "simclr_step_cpu_seconds": common.spread(cpu["simclr"]),
      "supervised_step_cpu_seconds": common.spread(cpu["supervised"]),
      "first_call_seconds": first,
      "step_overhead_ratio": ratio,
      "cpu_seconds_ratio": common.median(cpu["simclr"]) / common.median(cpu["supervised"]),
      "parameters": {name: int(sum(v.numpy().size for v in t.model.trainable_variables))
                     for name, (t, _) in contenders.items()},
  }
  if s.profile:
    result["profile"] = _profile_steps(contenders, s)
  if s.ablations:
    result["ablations"] = _ablations(contenders, config, s, strategy, log)
  del contenders
  _release()
  return result


# Where a step's kernel time goes (node-name substrings; first match wins; backward ops are reported apart).
STEP_COMPONENTS = (
    ("optimizer", ("/LARS/", "/lars/", "/sgd/", "/SGD/", "/momentum/", "/loss_scale")),
    ("heads", ("head_contrastive", "head_supervised", "/predictions")),
    ("encoder", ("resnet",)),
    ("blur", ("depthwise", "Depthwise")),
)


def _profile_steps(contenders: dict, s: StepSettings) -> dict[str, Any]:
  """Kernel time by component and by op type in one traced step of each; where SimCLR spends its extra time."""
  times = {}
  for name, (trainable, it) in contenders.items():
    with common.trace_dir(s.profile_dir, f"step_{name}") as logdir:
      with common.trace(logdir):
        run_steps(trainable, it, 1)
      times[name] = common.op_times(logdir, STEP_COMPONENTS)
  a, b = times["simclr"]["by_type"], times["supervised"]["by_type"]
  diff = {k: round(a.get(k, {}).get("ms", 0.0) - b.get(k, {}).get("ms", 0.0), 2) for k in set(a) | set(b)}
  return {
      "logdir": s.profile_dir,
      "total_kernel_ms": {name: t["total_ms"] for name, t in times.items()},
      "onednn_kernel_ms": {name: t["onednn_ms"] for name, t in times.items()},
      "by_component_ms": {name: t["by_component"] for name, t in times.items()},
      "top_op_types_ms": {name: {k: v["ms"] for k, v in list(t["by_type"].items())[:10]} for name, t in times.items()},
      "simclr_minus_supervised_by_type_ms": dict(sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:12]),
  }


def _ablations(contenders: dict, config: Config, s: StepSettings, strategy: tf.distribute.Strategy,
               log: Callable[[str], None]) -> dict[str, Any]:
  """The SimCLR step with one setting changed at a time, timed interleaved with the real step and ResNet50."""
  out = {}
  for name, changes in ABLATIONS.items():
    cfg = _pretrain_config(config, s, **changes)  # no set_up_runtime: reseeding would retrace the other loops
    runs = {"variant": (simclr(cfg, strategy), constant_iterator(strategy, s.batch_size, s.image_size, 1, view_pair=True)),
            **contenders}
    for _ in range(max(1, s.warmup)):
      for key in runs:
        run_steps(*runs[key], 1)
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(s.repeats):
      order = list(runs)[r % 3:] + list(runs)[:r % 3]
      for key in order:
        t = run_steps_timed(*runs[key], 1)
        wall[key].append(t.wall)
        cpu[key].append(t.cpu)
    med = {k: common.median(v) for k, v in wall.items()}
    med_cpu = {k: common.median(v) for k, v in cpu.items()}
    out[name] = {
        "step_seconds": med,
        "step_cpu_seconds": med_cpu,
        "variant_over_simclr": med["variant"] / med["simclr"],
        "variant_over_simclr_cpu_seconds": med_cpu["variant"] / med_cpu["simclr"],
        "variant_over_supervised": med["variant"] / med["supervised"],
    }
    log(f"  ablation {name}: {med['variant']:.3f} s against SimCLR {med['simclr']:.3f} s "
        f"({out[name]['variant_over_simclr']:.3f}; CPU seconds {out[name]['variant_over_simclr_cpu_seconds']:.3f}) "
        f"and ResNet50 {med['supervised']:.3f} s")
    del runs
    gc.collect()
  return out


# --- GPU: throughput ------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class GpuSettings:
  batch_size: int = 256  # B per step: 2B views (SimCLR) and 2B images (supervised)
  image_size: int = 224
  resnet_depth: int = 50
  settings: tuple[str, ...] = GPU_SETTINGS
  steps_per_loop: int = 10
  warmup_loops: int = 1
  repeats: int = 3
  supervised_all: bool = False  # supervised under every setting, not only under the fastest pretraining one
  profile_dir: str | None = None  # trace one pipeline-fed loop per setting here (TensorBoard's Profile tab)


def _rate_of(trainable: Trainable, it: Iterator, s: GpuSettings, per_step: int) -> dict[str, Any]:
  first = run_steps(trainable, it, s.steps_per_loop)
  for _ in range(max(0, s.warmup_loops - 1)):
    run_steps(trainable, it, s.steps_per_loop)
  loops = [run_steps(trainable, it, s.steps_per_loop) for _ in range(s.repeats)]
  rate = s.steps_per_loop * per_step / common.median(loops)
  return {"per_sec": rate, "loop_seconds": common.spread(loops), "first_loop_seconds": first}


def measure_gpu(builder: tfds.core.DatasetBuilder, config: Config, s: GpuSettings, strategy: tf.distribute.Strategy,
                log: Callable[[str], None] = print,
                progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
  """Views/s of SimCLR pretraining fed by the real pipeline under each setting; ResNet50 images/s under the best.

  progress: called with the results so far after each measurement (to save them if the run is cut short).
  """
  views = 2 * s.batch_size
  pipe = pipeline.PipelineSettings(image_size=s.image_size, batch_size=s.batch_size, cores=None)  # TF's default pool: all cores
  results: dict[str, Any] = {}
  for setting in s.settings:
    precision, xla = parse_setting(setting)
    cfg = config.replace(train_mode="pretrain", image_size=s.image_size, resnet_depth=s.resnet_depth,
                         train_batch_size=s.batch_size, mixed_precision=precision, jit_compile=xla)
    start = time.perf_counter()
    _release()
    distribute.set_up_runtime(cfg)
    try:
      trainable = simclr(cfg, strategy)
      fed_it = pipeline.pretrain_iterator(builder, cfg, pipe, strategy)
      fed = _rate_of(trainable, fed_it, s, views)
      if s.profile_dir:
        with common.trace(f"{s.profile_dir}/gpu_{setting.replace('+', '_')}"):
          run_steps(trainable, fed_it, s.steps_per_loop)
      del fed_it  # no pipeline left working in the background while the step alone is timed
      compute = _rate_of(trainable, pipeline.pretrain_iterator(builder, cfg, pipe, strategy, first_batch_only=True),
                         s, views)
      results[setting] = {"pretrain_views_per_sec": fed["per_sec"], "pretrain": fed,
                          "pretrain_compute_only_views_per_sec": compute["per_sec"]}
      del trainable
      log(f"  {setting}: pretraining {fed['per_sec']:.0f} views/s fed by the pipeline, "
          f"{compute['per_sec']:.0f} views/s repeating one batch ({time.perf_counter() - start:.0f} s)")
    except (tf.errors.ResourceExhaustedError, tf.errors.InternalError, tf.errors.UnimplementedError) as e:
      results[setting] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
      log(f"  {setting}: failed: {results[setting]['error']}")
    results[setting]["seconds"] = time.perf_counter() - start
    if progress:
      progress(results)
  measured = {k: v for k, v in results.items() if "error" not in v}
  if not measured:
    raise RuntimeError(f"no GPU setting could be measured: {results}")
  best = max(measured, key=lambda k: measured[k]["pretrain_views_per_sec"])
  for setting in (measured if s.supervised_all else [best]):
    precision, xla = parse_setting(setting)
    cfg = config.replace(image_size=s.image_size, mixed_precision=precision, jit_compile=xla)
    start = time.perf_counter()
    _release()
    distribute.set_up_runtime(cfg)
    trainable = supervised(cfg, strategy)
    sup = _rate_of(trainable, constant_iterator(strategy, views, s.image_size, 3), s, views)
    results[setting].update(supervised_images_per_sec=sup["per_sec"], supervised=sup,
                            supervised_seconds=time.perf_counter() - start)
    del trainable
    if progress:
      progress(results)
    log(f"  {setting}: ResNet50 supervised {sup['per_sec']:.0f} images/s "
        f"({time.perf_counter() - start:.0f} s)")
  _release()
  host = pipeline.host_rate(builder, config, pipe)
  log(f"  pretraining pipeline alone on the host: {host:.0f} views/s")
  precision, xla = parse_setting(best)
  return {
      "pretrain_views_per_sec": results[best]["pretrain_views_per_sec"],
      "supervised_images_per_sec": results[best]["supervised_images_per_sec"],
      "setting": {"name": best, "mixed_precision": precision, "jit_compile": xla},
      "batch_size": s.batch_size, "views_per_step": views, "image_size": s.image_size,
      "resnet_depth": s.resnet_depth, "steps_per_loop": s.steps_per_loop,
      "pipeline_alone_views_per_sec": host,
      "settings": results,
  }
