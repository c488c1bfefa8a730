"""The run configuration: one frozen object built by the CLI layer and passed explicitly, its enum choices, and the
one validation pass (`validate`) every run goes through before any data is prepared.

Field names and defaults follow Google SimCLR's `tf2/run.py` flags (google-research/simclr) wherever SimCLR has the
flag. Library modules never read absl flags: they take a `Config` (or plain arguments) and nothing else.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

from simclr_mura.errors import UserError

# The accepted values of every enum field (the trainer's flags, the model and the pipeline read them from here).
CHOICES: dict[str, tuple[str, ...]] = {
    "mode": ("train", "eval", "train_then_eval"),
    "train_mode": ("pretrain", "finetune"),
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
}


@dataclasses.dataclass(frozen=True)
class Config:
  # --- what to run -----------------------------------------------------------------------------------------------
  mode: str = "train"  # train | eval | train_then_eval
  train_mode: str = "pretrain"  # pretrain | finetune
  model_dir: str = ""
  checkpoint: Optional[str] = None
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

  # --- model ---------------------------------------------------------------------------------------------------------
  backbone: str = "resnet"  # resnet | densenet169
  backbone_weights: str = "none"  # none | imagenet | path to a weights file
  resnet_depth: int = 50
  width_multiplier: float = 1.0
  batch_norm_decay: float = 0.9
  global_bn: bool = True
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

  # --- hardware ------------------------------------------------------------------------------------------------------
  strategy: str = "auto"  # auto | one_device | mirrored | multi_worker | tpu
  cpu_replicas: int = 0
  use_tpu: bool = False
  tpu_name: Optional[str] = None
  mixed_precision: str = "none"  # none | mixed_float16 | mixed_bfloat16
  jit_compile: bool = False
  seed: int = 0
  deterministic: bool = False

  def replace(self, **changes: Any) -> "Config":
    """A copy with some fields changed."""
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def validate(config: Config) -> None:
  """Stops a run before any data is prepared or any training starts: one-line `UserError`s naming the bad value and
  what is accepted. The one home of whole-configuration checks (the model adds its architecture checks on build)."""
  for name, accepted in CHOICES.items():
    value = getattr(config, name)
    if value not in accepted:
      raise UserError(f"unknown --{name}={value}; accepted: {', '.join(accepted)}")
  if not config.model_dir:
    raise UserError("--model_dir is required")
  if config.train_mode == "pretrain" and config.backbone != "resnet":
    raise UserError(f"--backbone={config.backbone} is for supervised runs; pretraining uses --backbone=resnet")
  if config.train_batch_size < 1 or config.eval_batch_size < 1:
    raise UserError("--train_batch_size and --eval_batch_size must be positive")
  if not 0.0 <= config.threshold <= 1.0:
    raise UserError(f"--threshold={config.threshold} must lie in [0, 1]")
  if config.mode != "train" and config.train_mode == "pretrain" and not config.lineareval_while_pretraining:
    raise UserError("evaluating a pretraining run needs --lineareval_while_pretraining (its linear probe is what "
                    "gets evaluated); use --mode=train")
