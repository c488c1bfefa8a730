"""The run configuration: one frozen object built by the CLI layer and passed explicitly, its enum choices, and the
one validation pass (`validate`) every run goes through before any data is prepared.

Field names and defaults follow Google SimCLR's `tf2/run.py` flags (google-research/simclr) wherever SimCLR has the
flag. Library modules never read absl flags: they take a `Config` (or plain arguments) and nothing else.
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Optional

from simclr_mura.errors import UserError
from simclr_mura.layout import SPLITS

# The accepted values of every enum field (the trainer's flags, the model and the pipeline read them from here).
CHOICES: dict[str, tuple[str, ...]] = {
    "mode": ("train", "eval", "train_then_eval"),
    "train_mode": ("pretrain", "finetune", "distill"),
    "model_selection": ("best", "last"),
    "train_crop": ("random", "none"),
    "eval_crop": ("center", "none"),
    "backbone": ("resnet", "densenet169"),
    "proj_head_mode": ("nonlinear", "linear", "none"),
    "class_weight": ("none", "balanced"),
    "optimizer": ("lars", "momentum", "adam"),
    "learning_rate_scaling": ("linear", "sqrt"),
    "lr_schedule": ("cosine", "plateau"),
    "strategy": ("auto", "one_device", "mirrored", "multi_worker", "tpu"),
    "mixed_precision": ("none", "mixed_float16", "mixed_bfloat16"),
    "positive_pairs": ("image", "study"),
}
# --fine_tune_after_block with --backbone=densenet169: everything trainable, or only the head (Keras's DenseNet has no
# SimCLR block numbering to freeze by).
DENSENET_FINE_TUNE_AFTER_BLOCK_VALUES = (-1, 4)


@dataclasses.dataclass(frozen=True)
class Config:
  # --- what to run -----------------------------------------------------------------------------------------------
  mode: str = "train"  # train | eval | train_then_eval
  train_mode: str = "pretrain"  # pretrain | finetune | distill
  model_dir: str = ""
  checkpoint: Optional[str] = None
  # distill: the fine-tuned run (its model_dir) whose selected checkpoint teaches the student (SimCLRv2's third stage)
  teacher: Optional[str] = None
  model_selection: str = "best"  # best | last (train_then_eval picks the checkpoint by validation study AUROC)

  # --- data --------------------------------------------------------------------------------------------------------
  dataset: str = "mura/elbow"
  train_split: str = "train"
  eval_split: str = "validation"
  validation_split: str = "validation"  # evaluated every epoch while fine-tuning; never the test split
  data_dir: Optional[str] = None
  mura_dir: Optional[str] = None
  synthetic_scale: Optional[float] = None  # mura_synthetic only: fraction of MURA's counts (None: the builder's 0.1)
  cache_dataset: bool = False
  image_size: int = 224
  # a label draw: train on whole patients of train_split, stratified by study type x label with a floor of one normal
  # and one abnormal study per type (datasets/splits.py); draw k is the same patients everywhere. None: all of it.
  label_fraction: Optional[float] = None
  label_draw: int = 0

  # --- augmentation (SimCLR data_util.py) ----------------------------------------------------------------------------
  color_jitter_strength: float = 1.0
  use_blur: bool = True
  # training views: SimCLR's random resized crop (area 0.08-1), or `none` (the whole image resized, as the MURA paper's
  # baseline: a crop can cut a small finding out of an abnormal image and leave its label wrong)
  train_crop: str = "random"
  crop_min_area: float = 0.08  # smallest crop area of `random`, as a fraction of the image (SimCLR: 0.08, fixed)
  # evaluation views: SimCLR's aspect-preserving centre crop of 0.875 (skipped at <= 32 px), or `none` (the whole image
  # resized: the same geometry as training with train_crop=none, as the MURA paper evaluates)
  eval_crop: str = "center"
  rotation_degrees: float = 0.0  # optional extra: random rotation in [-d, d] (the study and the MURA paper used 30)
  translate_fraction: float = 0.0  # optional extra: random translation up to this fraction of the side
  # pretraining's positive pairs: two views of one image (SimCLR), or of two images of one study (MICLe, Azizi et al.
  # 2021; a one-image study pairs two views of its image)
  positive_pairs: str = "image"  # image | study

  # --- model ---------------------------------------------------------------------------------------------------------
  backbone: str = "resnet"  # resnet | densenet169
  backbone_weights: str = "none"  # none | imagenet | path to a weights file
  resnet_depth: int = 50
  width_multiplier: float = 1.0
  sk_ratio: float = 0.0  # SimCLRv2 selective kernels when > 0 (its recommendation: 0.0625)
  se_ratio: float = 0.0  # SimCLRv2 squeeze-excitation when > 0
  batch_norm_decay: float = 0.9
  global_bn: bool = True
  # fine-tuning on fewer training images than this keeps batch norm in inference mode (freeze_batch_norm); 0: never
  freeze_bn_below: int = 0
  proj_head_mode: str = "nonlinear"  # nonlinear | linear | none
  proj_out_dim: int = 128
  num_proj_layers: int = 3
  ft_proj_selector: int = 0
  fine_tune_after_block: int = -1
  zero_init_logits_layer: bool = False
  lineareval_while_pretraining: bool = True
  num_classes: int = 2  # normal, abnormal

  # --- objective -----------------------------------------------------------------------------------------------------
  temperature: float = 0.1
  hidden_norm: bool = True
  class_weight: str = "none"  # none | balanced (MURA paper: w_abnormal = N/(A+N), w_normal = A/(A+N))
  # distill: the temperature τ softening the teacher's and the student's predictions (SimCLRv2 eq. 2; 0.1 for
  # self-distillation, a student of the teacher's architecture, 1.0 from a bigger teacher, the effect of τ between them
  # being small), and the weight of the labelled loss on the label draw's images (SimCLRv2 eq. 3: 1 − α; 0 =
  # distillation alone, as in most of its experiments)
  distill_temperature: float = 0.1
  distill_labeled_weight: float = 0.0

  # --- optimisation --------------------------------------------------------------------------------------------------
  optimizer: str = "lars"  # lars | momentum | adam
  learning_rate: float = 0.3
  learning_rate_scaling: str = "linear"  # linear | sqrt
  lr_schedule: str = "cosine"  # cosine (SimCLR warm-up + cosine) | plateau (MURA paper: /10 on a validation plateau)
  plateau_patience: int = 1
  warmup_epochs: float = 10
  weight_decay: float = 1e-6
  momentum: float = 0.9
  train_batch_size: int = 256
  eval_batch_size: int = 256
  train_epochs: int = 100
  train_steps: int = 0
  eval_steps: int = 0
  checkpoint_epochs: int = 1
  checkpoint_steps: int = 0
  keep_checkpoint_max: int = 5
  threshold: float = 0.5
  export: bool = True  # write the SavedModel for inference (export/) when training ends

  # --- hardware ------------------------------------------------------------------------------------------------------
  strategy: str = "auto"  # auto | one_device | mirrored | multi_worker | tpu
  cpu_replicas: int = 0
  use_tpu: bool = False
  tpu_name: Optional[str] = None
  tpu_zone: Optional[str] = None
  gcp_project: Optional[str] = None
  master: Optional[str] = None
  mixed_precision: str = "none"  # none | mixed_float16 | mixed_bfloat16
  jit_compile: bool = False
  # TensorFlow's graph optimizations (Grappler) of every traced function; off: the graphs run as traced
  graph_optimization: bool = True
  seed: int = 0
  deterministic: bool = False

  @property
  def classifies(self) -> bool:
    """Whether the run trains a classifier end to end (fine-tuning, distillation), as opposed to pretraining."""
    return self.train_mode != "pretrain"

  def replace(self, **changes: Any) -> "Config":
    """A copy with some fields changed."""
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _fail(message: str) -> None:
  raise UserError(message)


def _check_range(config: Config, name: str, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False) -> None:
  """--name lies in [low, high] (open ends where asked), or a one-line `UserError` saying what is accepted."""
  value = getattr(config, name)
  too_low = low is not None and (value <= low if low_open else value < low)
  too_high = high is not None and (value >= high if high_open else value > high)
  if too_low or too_high:
    lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
    hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
    _fail(f"--{name}={value:g} is out of range; accepted: {' and '.join(x for x in (lo, hi) if x)}")


# TFDS split expressions: split names joined by `+`, each with an optional slice (`train[:10%]`, `train[10:20]`) and
# rounding (`(pct1_dropremainder)`), as tfds.core.ReadInstruction parses them.
_SPLIT_TERM = re.compile(r"^(?P<name>\w+)(\[(?P<slice>[^\]]*)\])?(\((?P<rounding>\w+)\))?$")
_SLICE_BOUND = re.compile(r"^(?P<number>-?\d+(\.\d+)?)(?P<unit>%|shard)?$")


def check_split(flag: str, expression: str) -> None:
  """A TFDS split expression over this package's splits (`layout.SPLITS`), checked without reading any data."""
  accepted = f"{', '.join(SPLITS)} or a TFDS slice such as train[:10%] or train[:50%]+validation"
  for term in expression.replace(" ", "").split("+"):
    match = _SPLIT_TERM.match(term)
    if not match or match["name"] not in SPLITS:
      _fail(f"--{flag}={expression}: bad split {term!r}; accepted: {accepted}")
    for bound in (match["slice"].split(":") if match["slice"] is not None else []):
      bound_match = _SLICE_BOUND.match(bound)
      if bound and not bound_match:
        _fail(f"--{flag}={expression}: bad slice bound {bound!r}; accepted: {accepted}")
      if bound and bound_match["unit"] == "%" and not -100 <= float(bound_match["number"]) <= 100:
        _fail(f"--{flag}={expression}: percentage {bound} is out of range; accepted: -100% to 100%")


def validate_model(config: Config) -> None:
  """The architecture settings (SimCLR's model flags): one-line `UserError`s naming what is accepted. The model checks
  them before it builds; `validate` checks them with the rest."""
  from simclr_mura.models.resnet import BLOCK_SPECS, FINE_TUNE_AFTER_BLOCK_VALUES  # lazy: imports Keras
  for name in ("train_mode", "backbone", "proj_head_mode"):
    if getattr(config, name) not in CHOICES[name]:
      _fail(f"unknown --{name}={getattr(config, name)}; accepted: {', '.join(CHOICES[name])}")
  total = {"none": 0, "linear": 1, "nonlinear": config.num_proj_layers}[config.proj_head_mode]
  if config.proj_head_mode == "nonlinear" and config.num_proj_layers < 1:
    _fail(f"--num_proj_layers={config.num_proj_layers} is out of range with --proj_head_mode=nonlinear; accepted: >= 1")
  if not 0 <= config.ft_proj_selector <= total:
    _fail(f"--ft_proj_selector={config.ft_proj_selector} is not valid with --proj_head_mode={config.proj_head_mode} "
          f"and --num_proj_layers={config.num_proj_layers}; accepted: 0..{total}")
  _check_range(config, "proj_out_dim", 1)
  _check_range(config, "width_multiplier", 0, low_open=True)
  _check_range(config, "sk_ratio", 0)
  _check_range(config, "se_ratio", 0)
  if config.backbone != "resnet" and (config.sk_ratio or config.se_ratio):
    _fail(f"--sk_ratio and --se_ratio apply to --backbone=resnet only; accepted with --backbone={config.backbone}: 0")
  _check_range(config, "batch_norm_decay", 0, 1, high_open=True)
  _check_range(config, "num_classes", 2)
  if config.backbone == "resnet":
    if config.resnet_depth not in BLOCK_SPECS:
      _fail(f"--resnet_depth={config.resnet_depth} is not valid; accepted: {', '.join(map(str, sorted(BLOCK_SPECS)))}")
    if config.backbone_weights != "none":
      _fail(f"--backbone_weights={config.backbone_weights} needs --backbone=densenet169; accepted with a ResNet: none "
            "(it starts from scratch or from a SimCLR checkpoint, --checkpoint)")
    accepted = FINE_TUNE_AFTER_BLOCK_VALUES
  else:
    accepted = DENSENET_FINE_TUNE_AFTER_BLOCK_VALUES
  if config.fine_tune_after_block not in accepted:
    _fail(f"--fine_tune_after_block={config.fine_tune_after_block} is not valid with --backbone={config.backbone}; "
          f"accepted: [{', '.join(map(str, accepted))}]")
  if config.train_mode == "pretrain" and config.fine_tune_after_block > -1:
    # SimCLR Model.__call__: "Does not support layer freezing during pretraining".
    _fail(f"--fine_tune_after_block={config.fine_tune_after_block} freezes layers, which pretraining does not "
          "support; accepted with --train_mode=pretrain: -1")
  if config.backbone_weights not in ("none", "imagenet") and not config.backbone_weights.endswith(".h5"):
    _fail(f"--backbone_weights={config.backbone_weights}: accepted: none, imagenet, or a Keras weights file (.h5)")


def validate(config: Config, pending: Optional[str] = None) -> None:
  """The one validation pass of a run's configuration, before TensorFlow builds or prepares anything: every flag's
  range and choices, the cross-flag rules and the paths the run reads, each failure a one-line `UserError` naming the
  bad value and what is accepted. `pending`: a run folder another run is about to write (the study's pretraining or
  teacher), not checked yet."""
  for name, accepted in CHOICES.items():
    value = getattr(config, name)
    if value not in accepted:
      _fail(f"unknown --{name}={value}; accepted: {', '.join(accepted)}")
  if not config.model_dir:
    _fail("--model_dir is required")
  validate_model(config)
  from simclr_mura.data.prepare import parse_dataset  # lazy: imports TFDS
  try:
    parse_dataset(config.dataset)
  except ValueError as e:
    _fail(str(e))
  if config.synthetic_scale is not None:
    if not config.dataset.startswith("mura_synthetic/"):
      _fail(f"--synthetic_scale applies to mura_synthetic only, not to --dataset={config.dataset}: MURA has one size")
    _check_range(config, "synthetic_scale", 0, low_open=True)
  for flag in ("train_split", "eval_split", "validation_split"):
    check_split(flag, getattr(config, flag))
  if config.label_fraction is not None:
    _check_range(config, "label_fraction", 0, 1, low_open=True)
  _check_range(config, "label_draw", 0)
  _check_range(config, "freeze_bn_below", 0)
  if config.label_draw and config.label_fraction is None:
    _fail(f"--label_draw={config.label_draw} selects a draw of --label_fraction, which is unset; accepted: "
          "--label_fraction in (0, 1] with it, or --label_draw=0")
  if config.classifies and "test" in config.validation_split:
    _fail("--validation_split=test would choose the model on the test split; accepted: validation (or a split "
          "without test)")
  _check_distillation(config)
  if config.positive_pairs == "study" and config.train_mode != "pretrain":
    _fail(f"--positive_pairs=study pairs images for pretraining; accepted with --train_mode={config.train_mode}: image")
  if config.train_mode == "pretrain" and config.backbone != "resnet":
    _fail(f"--backbone={config.backbone} is for supervised runs; pretraining accepts --backbone=resnet")
  if config.mode != "train" and config.train_mode == "pretrain" and not config.lineareval_while_pretraining:
    _fail("evaluating a pretraining run needs --lineareval_while_pretraining (its linear probe is what gets "
          "evaluated); accepted: --mode=train")
  _check_range(config, "image_size", 32 if config.backbone == "densenet169" else 8, 4096)
  _check_range(config, "train_batch_size", 1)
  _check_range(config, "eval_batch_size", 1)
  _check_range(config, "learning_rate", 0, low_open=True)
  _check_range(config, "temperature", 0, low_open=True)
  _check_range(config, "weight_decay", 0)
  _check_range(config, "momentum", 0, 1, high_open=True)
  _check_range(config, "warmup_epochs", 0)
  _check_range(config, "train_steps", 0)
  if config.train_steps == 0:
    _check_range(config, "train_epochs", 1)
  _check_range(config, "eval_steps", 0)
  _check_range(config, "checkpoint_steps", 0)
  if config.checkpoint_steps == 0:
    _check_range(config, "checkpoint_epochs", 1)
  _check_range(config, "keep_checkpoint_max", 1)
  _check_range(config, "plateau_patience", 1)
  _check_range(config, "threshold", 0, 1)
  _check_range(config, "color_jitter_strength", 0)
  _check_range(config, "crop_min_area", 0, 1, low_open=True)
  _check_range(config, "rotation_degrees", 0, 180)
  _check_range(config, "translate_fraction", 0, 0.5)
  _check_range(config, "cpu_replicas", 0)
  _check_range(config, "seed", 0)
  _check_paths(config, pending)


def _check_distillation(config: Config) -> None:
  """--train_mode=distill's flags, and no distillation flag without it."""
  if config.train_mode != "distill":
    if config.teacher:
      _fail(f"--teacher={config.teacher} teaches a distillation; accepted with --train_mode={config.train_mode}: "
            "no --teacher")
    return
  if not config.teacher:
    _fail("--train_mode=distill needs --teacher: a fine-tuned run's model_dir")
  if config.checkpoint:
    _fail(f"--checkpoint={config.checkpoint} with --train_mode=distill: the student starts from random weights "
          "(SimCLRv2's distillation); accepted: no --checkpoint")
  if config.fine_tune_after_block > -1:
    _fail(f"--fine_tune_after_block={config.fine_tune_after_block} with --train_mode=distill would freeze a randomly "
          "initialised student; accepted: -1")
  if config.class_weight != "none":
    _fail(f"--class_weight={config.class_weight} with --train_mode=distill: the teacher's predictions carry no class "
          "weights; accepted: none")
  _check_range(config, "distill_temperature", 0, low_open=True)
  _check_range(config, "distill_labeled_weight", 0, 1)


def _check_paths(config: Config, pending: Optional[str] = None) -> None:
  """The inputs a run reads exist and are of the right kind (through tf.io.gfile, so gs:// paths are checked too);
  `pending` is skipped."""
  import tensorflow as tf

  if config.checkpoint and config.checkpoint != pending:
    from simclr_mura.training.checkpoints import resolve  # raises the one-line UserError
    resolve(config.checkpoint)
  if config.teacher and config.teacher != pending:
    from simclr_mura.training.teacher import teacher_config  # raises the one-line UserError
    teacher_config(config)
  weights = config.backbone_weights
  if weights not in ("none", "imagenet") and (not tf.io.gfile.exists(weights) or tf.io.gfile.isdir(weights)):
    _fail(f"--backbone_weights={config.backbone_weights}: no such file; accepted: none, imagenet, or a path to a "
          "Keras weights file")
  if config.mura_dir and not tf.io.gfile.isdir(config.mura_dir):
    _fail(f"--mura_dir={config.mura_dir} is not a folder; accepted: the folder holding MURA-v1.1/ (or MURA-v1.1/ "
          "itself)")
