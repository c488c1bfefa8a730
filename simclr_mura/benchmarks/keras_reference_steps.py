"""Training-step throughput of the study's reference Keras models, on whatever Keras 3 backend is installed.

For GPU machines where this project's TensorFlow cannot be installed (e.g. ones that hold JAX but no TensorFlow 2.21
with its CUDA 12 libraries): Keras 3 runs the same `keras.applications` models on JAX, so this module gives the card's
rate for the models the paper preset trains, as a reference for planning; it is NOT a measurement of this project's
TensorFlow trainer (`python -m simclr_mura.benchmark --suite=gpu` is). Each setting: build the model,
compile (the first steps, timed apart), then time `--steps` training steps on random device-resident data (never
zeros) and report the median step. Prints a table and writes one JSON object.

  KERAS_BACKEND=jax python -m simclr_mura.benchmarks.keras_reference_steps --out=gpu_reference.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np

import keras

# (name, keras.applications constructor, image side, batch): what the paper preset trains (flags/*.cfg). ResNet50
# on 512 images is the supervised reference of SimCLR pretraining at batch 256 (2 x 256 views per step, 224 px,
# flags/pretrain.cfg; docs/benchmarks.md compares the two steps on a CPU); batch 64 is fine-tuning's
# (flags/finetune.cfg); DenseNet-169 at 320 px, batch 8, is the MURA paper's baseline (flags/baseline.cfg).
SETTINGS = (("resnet50_b512_224", "ResNet50", 224, 512),
            ("resnet50_b256_224", "ResNet50", 224, 256),
            ("resnet50_b64_224", "ResNet50", 224, 64),
            ("densenet169_b8_320", "DenseNet169", 320, 8))


def time_setting(model_name: str, size: int, batch: int, precision: str, steps: int, warmup: int,
                 seed: int) -> dict[str, Any]:
  """Compiles one model and times its training steps; returns the figures of one setting."""
  keras.mixed_precision.set_global_policy(precision)
  keras.utils.set_random_seed(seed)
  model = getattr(keras.applications, model_name)(weights=None, input_shape=(size, size, 1), classes=2)
  model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                loss=keras.losses.SparseCategoricalCrossentropy())
  rng = np.random.default_rng(seed)
  images = keras.ops.convert_to_tensor(rng.uniform(0, 1, (batch, size, size, 1)).astype("float32"))
  labels = keras.ops.convert_to_tensor(rng.integers(0, 2, (batch,)).astype("int32"))
  start = time.perf_counter()
  for _ in range(warmup):  # returns host numbers: each call waits for its step
    loss = model.train_on_batch(images, labels)
  compile_s = time.perf_counter() - start
  if not np.isfinite(loss):
    raise FloatingPointError(f"{model_name}: non-finite loss {loss} under {precision}")
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    model.train_on_batch(images, labels)
    times.append(time.perf_counter() - start)
  median = statistics.median(times)
  keras.backend.clear_session()
  return {"model": model_name, "image_size": size, "batch": batch, "precision": precision,
          "warmup_s": round(compile_s, 2), "median_step_s": median, "images_per_sec": batch / median,
          "spread_images_per_sec": [batch / max(times), batch / min(times)], "steps": steps}


def machine() -> dict[str, Any]:
  info = {"python": platform.python_version(), "keras": keras.__version__, "backend": keras.backend.backend(),
          "cpu_count": os.cpu_count()}
  if keras.backend.backend() == "jax":
    import jax  # pylint: disable=import-outside-toplevel
    info.update(jax=jax.__version__, devices=[d.device_kind for d in jax.devices()])
  elif keras.backend.backend() == "tensorflow":
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    info.update(tensorflow=tf.__version__,
                devices=[d.name for d in tf.config.list_physical_devices()])
  return info


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", required=True, help="JSON file to write")
  parser.add_argument("--precisions", default="mixed_bfloat16,float32",
                      help="comma-separated Keras dtype policies")
  parser.add_argument("--settings", default=",".join(s[0] for s in SETTINGS),
                      help="comma-separated names of: " + ", ".join(s[0] for s in SETTINGS))
  parser.add_argument("--steps", type=int, default=20, help="timed steps per setting")
  parser.add_argument("--warmup", type=int, default=3, help="untimed first steps (compilation) per setting")
  parser.add_argument("--scale", type=float, default=1.0,
                      help="multiply image sides and batches by this (a quick check on a CPU, e.g. 0.15)")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  known = {s[0]: s for s in SETTINGS}
  chosen = [s for s in args.settings.split(",") if s]
  unknown = [s for s in chosen if s not in known]
  if unknown:
    parser.error(f"unknown --settings {unknown}; choose from {sorted(known)}")
  if args.steps < 1 or args.warmup < 1 or args.scale <= 0:
    parser.error("--steps and --warmup must be >= 1 and --scale > 0")
  results = {"machine": machine(), "runs": []}
  print(f"machine: {results['machine']}", flush=True)
  print(f"{'setting':22} {'precision':15} {'warmup s':>9} {'step ms':>9} {'images/s':>10}", flush=True)
  for name in chosen:
    _, model_name, size, batch = known[name]
    size, batch = max(32, int(size * args.scale)), max(1, int(batch * args.scale))
    for precision in [p for p in args.precisions.split(",") if p]:
      try:
        run = dict(time_setting(model_name, size, batch, precision, args.steps, args.warmup, args.seed), setting=name)
        line = f"{run['warmup_s']:9.1f} {1000 * run['median_step_s']:9.1f} {run['images_per_sec']:10.1f}"
      except Exception as e:  # pylint: disable=broad-except
        if "RESOURCE_EXHAUSTED" not in str(e) and "out of memory" not in str(e).lower():
          raise
        keras.backend.clear_session()
        run = {"setting": name, "precision": precision, "error": "out of memory: " + str(e)[:300]}
        line = "out of device memory"
      results["runs"].append(run)
      print(f"{name:22} {precision:15} {line}", flush=True)
      with open(args.out, "w") as f:  # after every setting: a run cut short keeps what it measured
        json.dump(results, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
