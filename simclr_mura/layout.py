"""The names every part of the package shares: MURA's study types, labels and splits, the study's arms, and the files
of a run folder (`RunDir`).

Study types and labels are MURA v1.1's (Rajpurkar et al. 2017, arXiv:1712.06957); the splits are this package's TFDS
splits; a run folder is laid out as Google SimCLR's tf2/run.py lays out its `model_dir` (checkpoints, `train/` and
`eval/` summaries), plus the evaluation files.
"""
from __future__ import annotations

import os
from typing import Union

# The seven MURA study types, in the order of the `study_type` ClassLabel.
STUDY_TYPES: tuple[str, ...] = ("elbow", "finger", "forearm", "hand", "humerus", "shoulder", "wrist")
LABELS: tuple[str, ...] = ("normal", "abnormal")  # positive folder = abnormal = 1
# The named TFDS splits (any TFDS split expression over them is accepted too).
SPLITS: tuple[str, ...] = ("train", "validation", "test", "train_10pct", "train_1pct")

# The study's label fractions: arm-name suffix -> the fraction of `train`'s labels its supervised arms train on
# (--label_fraction). Below 100% an arm runs several paired label draws (--label_draw), each in its own folder.
LABEL_FRACTIONS: dict[str, float] = {"1pct": 0.01, "10pct": 0.10, "100pct": 1.0}
DRAWN_FRACTIONS: tuple[str, ...] = ("1pct", "10pct")
REPORT_DIR = "report"  # the study's report folder, <out>/report
POOLED = "pooled"  # the report's body part that scores all parts' test studies together
PRETRAIN_POOLS: tuple[str, ...] = ("union", "per_part", "all")  # the images SimCLR pretrains on (./run.sh)
PRETRAIN_ARM = "simclr_pretrain"
BASELINE_ARM = "baseline"
SCRATCH = "scratch"  # arm families: <family>_<fraction>
LINEAR = "simclr_linear"
FINETUNE = "simclr_finetune"
FAMILIES: tuple[str, ...] = (SCRATCH, LINEAR, FINETUNE)
# MICLe (`./run.sh --positive_pairs=both`): the SimCLR arms again, from a pretraining on pairs of a study's images.
POSITIVE_PAIRS: tuple[str, ...] = ("image", "study", "both")  # the study's --positive_pairs
MICLE_PRETRAIN_ARM = "micle_pretrain"
MICLE_LINEAR = "micle_linear"
MICLE_FINETUNE = "micle_finetune"
PRETRAIN_ARMS: tuple[str, ...] = (PRETRAIN_ARM, MICLE_PRETRAIN_ARM)
# SimCLRv2's third stage: a student distilled from the fine-tuned SimCLR arm of the same label draw (1% and 10% only:
# with all labels there is no unlabelled image left to distil on)
DISTILL = "simclr_distill"


def arm_name(family: str, fraction: str) -> str:
  """`simclr_finetune_1pct` for (FINETUNE, "1pct")."""
  return f"{family}_{fraction}"


def draw_folder(draw: int) -> str:
  """The sub-folder of a drawn arm (1% and 10%) holding one label draw's run: `draw<k>`."""
  return f"draw{int(draw)}"


def folder_draw(name: str) -> int | None:
  """k of a `draw<k>` folder name (`draw_folder`'s inverse); None for any other name."""
  digits = name[len("draw"):]
  return int(digits) if name.startswith("draw") and digits.isdigit() and name == draw_folder(int(digits)) else None


# The study's arms, in the order the report lists them; then the distillation arms (the cpu and paper presets run them)
# and MICLe's (with --positive_pairs=both).
ARMS: tuple[str, ...] = (BASELINE_ARM, *(arm_name(SCRATCH, f) for f in LABEL_FRACTIONS), PRETRAIN_ARM,
                         *(arm_name(LINEAR, f) for f in LABEL_FRACTIONS),
                         *(arm_name(FINETUNE, f) for f in LABEL_FRACTIONS))
DISTILL_ARMS: tuple[str, ...] = tuple(arm_name(DISTILL, f) for f in DRAWN_FRACTIONS)
MICLE_ARMS: tuple[str, ...] = (MICLE_PRETRAIN_ARM, *(arm_name(MICLE_LINEAR, f) for f in LABEL_FRACTIONS),
                               *(arm_name(MICLE_FINETUNE, f) for f in LABEL_FRACTIONS))
UNEVALUATED_ARMS: tuple[str, ...] = PRETRAIN_ARMS  # pretraining has no labels to score; it leaves training curves


def _labels(fraction: str) -> str:
  return "all of `train`'s labels" if fraction == "100pct" else f"{fraction[:-3]}% of `train`'s labels (by patient)"


ARM_DESCRIPTIONS: dict[str, str] = {
    BASELINE_ARM: "DenseNet-169 trained supervised on 100% of the labels: the MURA paper's architecture, as a "
                  "reference",
    PRETRAIN_ARM: "SimCLR contrastive pretraining of the ResNet on the pool's `train` images, labels unused (not "
                  "evaluated; training curves only)",
    **{arm_name(SCRATCH, f): f"the ResNet trained from random initialisation on {_labels(f)}, with the fine-tuning "
                             "recipe (the like-for-like control)" for f in LABEL_FRACTIONS},
    **{arm_name(LINEAR, f): f"linear evaluation: a logistic layer on the frozen SimCLR encoder, trained on {_labels(f)}"
       for f in LABEL_FRACTIONS},
    **{arm_name(FINETUNE, f): f"the SimCLR encoder fine-tuned end to end on {_labels(f)}" for f in LABEL_FRACTIONS},
    **{arm_name(DISTILL, f): f"SimCLRv2 self-distillation: a fresh ResNet learns the predictions of "
                             f"{arm_name(FINETUNE, f)} (same draw) on all of the part's `train` images"
       for f in DRAWN_FRACTIONS},
    MICLE_PRETRAIN_ARM: "MICLe pretraining (Azizi et al. 2021): SimCLR's, with two images of one study as a positive "
                        "pair (not evaluated; training curves only)",
    **{arm_name(MICLE_LINEAR, f): f"linear evaluation of the frozen MICLe encoder on {_labels(f)}"
       for f in LABEL_FRACTIONS},
    **{arm_name(MICLE_FINETUNE, f): f"the MICLe encoder fine-tuned end to end on {_labels(f)}"
       for f in LABEL_FRACTIONS},
}

PathLike = Union[str, "os.PathLike[str]"]


class RunDir:
  """The files of one run's `model_dir`, named in one place: the trainer writes them, the report and predict read them.

  Paths are plain strings joined with `os.path.join`, so they work with `tf.io.gfile` (e.g. `gs://`) as well.
  """

  FLAGS = "flags.json"  # every flag's value
  RESULT = "result.json"  # the latest evaluation
  TRAIN = "train"  # TensorBoard: training scalars
  VALIDATION = "validation"  # TensorBoard: validation after every epoch while fine-tuning
  EVAL = "eval"  # TensorBoard: the evaluation of eval_split
  BEST = "best"  # the checkpoint with the best validation score (model selection)
  EXPORT = "export"  # the SavedModel for inference
  DONE = "arm_done.json"  # written by the study runner when an arm finished
  LOG = "log.txt"  # the arm's output when the study runs arms side by side (--jobs)
  CHECKPOINT_PREFIX = "ckpt"  # checkpoint file names: ckpt-<step>.index, ... (latest and best/)

  def __init__(self, path: PathLike):
    self.path = os.fspath(path)

  def __repr__(self) -> str:
    return f"RunDir({self.path!r})"

  def join(self, *names: str) -> str:
    return os.path.join(self.path, *names)

  @property
  def flags_json(self) -> str:
    return self.join(self.FLAGS)

  @property
  def result_json(self) -> str:
    return self.join(self.RESULT)

  def result_step_json(self, step: int) -> str:
    """`result_<step>.json`: the evaluation of one global step."""
    return self.join(f"result_{int(step)}.json")

  def predictions_csv(self, split: str) -> str:
    """`predictions_<split>.csv`, with the split expression made file-safe (`train[:10%]` -> `train_10`)."""
    safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in split).strip("_")
    return self.join(f"predictions_{safe}.csv")

  @property
  def best_dir(self) -> str:
    return self.join(self.BEST)

  @property
  def export_dir(self) -> str:
    return self.join(self.EXPORT)

  @property
  def done_json(self) -> str:
    return self.join(self.DONE)

  @property
  def log(self) -> str:
    return self.join(self.LOG)

  def is_run(self) -> bool:
    """Whether the folder holds a run (a result, its flags or its summaries), on any tf.io.gfile filesystem."""
    import tensorflow as tf  # lazy: the names above need no TensorFlow

    return tf.io.gfile.isdir(self.path) and any(
        tf.io.gfile.exists(self.join(name)) for name in (self.RESULT, self.FLAGS, self.TRAIN, self.EVAL))
