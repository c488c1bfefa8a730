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

# The study's label fractions: arm-name suffix -> the split its supervised arms train on.
LABEL_FRACTIONS: dict[str, str] = {"1pct": "train_1pct", "10pct": "train_10pct", "100pct": "train"}
REPORT_DIR = "report"  # the study's report folder, <out>/report
PRETRAIN_ARM = "simclr_pretrain"
LINEAR_ARM = "simclr_linear"
BASELINE_ARM = "baseline"
# Every arm, in the order the report lists them.
ARMS: tuple[str, ...] = (BASELINE_ARM, *(f"scratch_{f}" for f in LABEL_FRACTIONS), PRETRAIN_ARM, LINEAR_ARM,
                         *(f"simclr_finetune_{f}" for f in LABEL_FRACTIONS))
UNEVALUATED_ARMS: tuple[str, ...] = (PRETRAIN_ARM,)  # pretraining has no labels to score; it leaves training curves
ARM_DESCRIPTIONS: dict[str, str] = {
    BASELINE_ARM: "DenseNet-169 trained supervised on 100% of the labels: the MURA paper's architecture, as a "
                  "reference",
    **{f"scratch_{f}": f"ResNet trained supervised from random initialisation on `{split}`"
       + (" (the like-for-like control)" if f == "1pct" else "") for f, split in LABEL_FRACTIONS.items()},
    PRETRAIN_ARM: "SimCLR contrastive pretraining of the same ResNet on `train` images, labels unused (not "
                  "evaluated; training curves only)",
    LINEAR_ARM: "linear evaluation: a logistic layer on the frozen SimCLR encoder (`fine_tune_after_block=4`), "
                "trained on `train`",
    **{f"simclr_finetune_{f}": f"the SimCLR encoder fine-tuned end to end on `{split}`"
       for f, split in LABEL_FRACTIONS.items()},
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
