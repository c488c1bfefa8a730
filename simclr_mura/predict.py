"""Scores new radiographs with a finished run: `python -m simclr_mura.predict --model_dir=M PATH... [--out=FILE.csv]`.

Each PATH is a PNG image or a study folder of PNGs. Prints each image's and each study's probability of abnormal and
its label (a study is scored by the mean of its images' probabilities, as in the MURA paper). Bad paths and unreadable
images get one message each; the others are still scored.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pandas as pd

from simclr_mura.errors import ArgumentParser, UserError, exit_with

from simclr_mura.layout import RunDir


def _collect(paths: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
  """(image path, study name) pairs and one error message per bad path."""
  images, errors = [], []
  for path in paths:
    if os.path.isdir(path):
      pngs = sorted(f for f in os.listdir(path) if f.lower().endswith(".png") and not f.startswith("."))
      if not pngs:
        errors.append(f"{path}: folder holds no PNG images")
      images += [(os.path.join(path, f), os.path.normpath(path)) for f in pngs]
    elif os.path.isfile(path):
      images.append((path, os.path.normpath(os.path.dirname(path)) or "."))
    else:
      errors.append(f"{path}: no such file or folder")
  return images, errors


def predict_paths(model_dir: str, paths: list[str], threshold: float | None = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
  """Per-image and per-study predictions for `paths` with the SavedModel in `model_dir/export`, and the errors."""
  import tensorflow as tf

  from simclr_mura.data import augment
  from simclr_mura.training.export import PREPROCESSING_FILE

  export_dir = RunDir(model_dir).export_dir
  if not tf.io.gfile.exists(os.path.join(export_dir, "saved_model.pb")):
    raise FileNotFoundError(f"{export_dir} holds no exported model; train with --model_dir={model_dir} first")
  with tf.io.gfile.GFile(os.path.join(export_dir, PREPROCESSING_FILE)) as f:
    prep = json.load(f)
  size = int(prep["image_size"])
  # Exports made before `center_crop` was recorded applied the same rule (augment.eval_crops) when evaluated.
  crop = bool(prep.get("center_crop", augment.eval_crops(size)))
  threshold = prep["threshold"] if threshold is None else threshold
  model = tf.saved_model.load(export_dir)

  images, errors = _collect(paths)
  rows, batch = [], []
  for path, study in images:
    try:
      data = tf.io.read_file(path)
      image = tf.io.decode_png(data, channels=1)
      batch.append(augment.preprocess_for_eval(augment.to_float(image), size, size, crop=crop))
      rows.append({"image": path, "study": study})
    except (tf.errors.OpError, ValueError) as e:
      errors.append(f"{path}: not a readable PNG ({str(e).splitlines()[0][:120]})")
  per_image = pd.DataFrame(rows, columns=["image", "study"])
  if batch:
    probabilities = np.concatenate([model.serve(tf.stack(batch[i:i + 64])).numpy() for i in range(0, len(batch), 64)])
    per_image["probability"] = probabilities.astype(float)
  else:
    per_image["probability"] = pd.Series(dtype=float)
  per_image["prediction"] = np.where(per_image["probability"] > threshold, "abnormal", "normal")
  per_study = per_image.groupby("study", sort=False).agg(images=("image", "size"), probability=("probability", "mean"))
  per_study = per_study.reset_index()
  per_study["prediction"] = np.where(per_study["probability"] > threshold, "abnormal", "normal")
  return per_image, per_study, errors


def run(argv: list[str] | None = None) -> int:
  parser = ArgumentParser(prog="python -m simclr_mura.predict", description=__doc__.splitlines()[0])
  parser.add_argument("--model_dir", required=True, help="a finished run's model_dir (holding export/)")
  parser.add_argument("--out", help="also write the predictions to this CSV file")
  parser.add_argument("--threshold", type=float, help="decision threshold (default: the run's)")
  parser.add_argument("paths", nargs="+", metavar="PATH", help="PNG images or study folders")
  args = parser.parse_args(argv)
  if args.threshold is not None and not 0 <= args.threshold <= 1:
    parser.error(f"--threshold={args.threshold:g} is out of range; accepted: 0 to 1")
  import tensorflow as tf  # lazy: --help needs no TensorFlow

  if not tf.io.gfile.isdir(args.model_dir):
    parser.error(f"--model_dir={args.model_dir} is not a folder; accepted: a finished run's model_dir (holding "
                 "export/)")
  missing = [p for p in args.paths if not os.path.exists(p)]
  if missing:
    parser.error(f"no such file or folder: {missing[0]}; accepted: PNG images or study folders")
  try:
    per_image, per_study, errors = predict_paths(args.model_dir, args.paths, args.threshold)
  except FileNotFoundError as e:
    exit_with(parser.prog, UserError(str(e)))
  for message in errors:
    print(f"error: {message}", file=sys.stderr)
  if len(per_image):
    print(per_image.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print()
    print(per_study.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
  if args.out:
    table = pd.concat([per_image.assign(level="image"),
                       per_study.rename(columns={"study": "image"}).assign(level="study", study=per_study["study"])])
    table[["level", "study", "image", "probability", "prediction"]].to_csv(args.out, index=False)
    print(f"\nwrote {args.out}")
  return 1 if errors and not len(per_image) else 0


if __name__ == "__main__":
  sys.exit(run())
