"""The study's arms and presets: the trainer flags each arm runs with, from the preset flagfiles shipped in the
package (`simclr_mura/presets/*.cfg`, found through importlib.resources, so an installed package finds them too)."""
from __future__ import annotations

import dataclasses
import importlib.resources

from simclr_mura.layout import BASELINE_ARM, LABEL_FRACTIONS, LINEAR_ARM, PRETRAIN_ARM

PRESETS = ("quick", "paper", "tiny")


def presets_dir() -> str:
  """The folder holding the preset flagfiles (absl's --flagfile needs a path on disk)."""
  return str(importlib.resources.files("simclr_mura") / "presets")


@dataclasses.dataclass(frozen=True)
class Arm:
  name: str
  argv: tuple[str, ...]  # trainer flags, {pretrain} stands for the body part's pretraining model_dir
  evaluated: bool = True


def arms(preset: str) -> list[Arm]:
  """The study's arms (names from `layout.ARMS`), in the order they run (pretraining first: the SimCLR arms need it).

  `paper`: the arm's flagfile (presets/<arm>.cfg). `quick`: presets/quick.cfg, then the arm's flagfile, then its quick
  variant (presets/quick_<arm>.cfg), so the quick run keeps the arm's recipe but CPU-sized.
  """
  flags_dir = presets_dir()
  def flagfiles(name: str) -> tuple[str, ...]:
    if preset == "paper":
      return (f"--flagfile={flags_dir}/{name}.cfg",)
    files = [f"{flags_dir}/quick.cfg"]
    if name != "pretrain":
      files += [f"{flags_dir}/{name}.cfg", f"{flags_dir}/quick_{name}.cfg"]
    if preset == "tiny":  # for tests: a few steps per arm
      files.append(f"{flags_dir}/tiny.cfg")
    return tuple(f"--flagfile={f}" for f in files)

  # Pretraining uses no labels: no linear probe on the side (its head would carry all of train's labels into the
  # 1% and 10% fine-tuning arms that restore it).
  out = [Arm(PRETRAIN_ARM, (*flagfiles("pretrain"), "--mode=train", "--train_split=train",
                                 "--lineareval_while_pretraining=false"), evaluated=False),
         Arm(LINEAR_ARM, (*flagfiles("linear_eval"), "--checkpoint={pretrain}", "--train_split=train"))]
  for fraction, split in LABEL_FRACTIONS.items():
    out.append(Arm(f"simclr_finetune_{fraction}", (*flagfiles("finetune"), "--checkpoint={pretrain}",
                                                   f"--train_split={split}", *_epochs(fraction, preset))))
  for fraction, split in LABEL_FRACTIONS.items():
    # The like-for-like control: the same ResNet and recipe as fine-tuning, from random initialisation.
    out.append(Arm(f"scratch_{fraction}", (*flagfiles("finetune"), f"--train_split={split}",
                                           *_epochs(fraction, preset))))
  out.append(Arm(BASELINE_ARM, (*flagfiles("baseline"), "--train_split=train")))
  return out


def _epochs(fraction: str, preset: str) -> list[str]:
  """Fewer labels, more epochs (SimCLRv2 fine-tunes 60 epochs on 1% and 30 on 10% of ImageNet, arXiv 2006.10029).

  The quick preset's 1% and 10% subsets hold a handful to a few dozen images, about one batch: by epochs they would
  get a few steps, so they get a fixed number of steps instead (the same for the SimCLR and scratch arms).
  """
  if preset == "quick" and fraction != "100pct":
    return [f"--train_steps={ {'1pct': 20, '10pct': 30}[fraction] }", "--checkpoint_steps=10"]
  epochs = {"quick": {"100pct": 10}, "tiny": {"1pct": 1, "10pct": 1, "100pct": 1},
            "paper": {"1pct": 60, "10pct": 30, "100pct": 30}}[preset][fraction]
  return [f"--train_epochs={epochs}"]
