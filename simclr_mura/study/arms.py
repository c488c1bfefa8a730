"""The study's plan: its presets, and every run (arm x body part x label draw) with the trainer flags it runs with.

The flags come from the preset flagfiles shipped in the package (`simclr_mura/presets/*.cfg`, found through
importlib.resources, so an installed package finds them too), then the run's own: dataset, split, label draw and
model_dir.
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import os
from typing import Optional, Sequence

from simclr_mura.layout import (BASELINE_ARM, DISTILL, DRAWN_FRACTIONS, FINETUNE, LABEL_FRACTIONS, LINEAR, MICLE_FINETUNE,
                                MICLE_LINEAR, MICLE_PRETRAIN_ARM, PRETRAIN_ARM, SCRATCH, STUDY_TYPES, arm_name,
                                draw_folder)


@dataclasses.dataclass(frozen=True)
class Preset:
  """A preset: its flagfiles (`chain`: the names of presets/<name>.cfg in order, `{arm}` standing for the arm's recipe
  file; missing files are skipped; `pretrain_chain` for the pretraining), its default number of label draws and the
  size of `mura_synthetic` it trains on (None: the builder's default)."""
  name: str
  chain: tuple[str, ...]
  pretrain_chain: tuple[str, ...]
  draws: int
  synthetic_scale: Optional[float] = None
  # Training length of the supervised ResNet arms per label fraction: {fraction: flags}, the same for every arm of a
  # fraction (the SimCLR and scratch arms differ only in their initial weights).
  lengths: tuple[tuple[str, tuple[str, ...]], ...] = ()
  # Whether the runs write their SavedModel (export/): the CPU presets' dozens of small models are studied, not
  # deployed, and exporting one costs about as much as its training (seconds; half a minute for DenseNet-169).
  export: bool = False
  # Whether the supervised runs let TensorFlow optimize their traced graphs (--graph_optimization; pretraining
  # always does): runs of a few dozen steps spend more on Grappler's pass over the graph than it saves them.
  graph_optimization: bool = True
  # Whether the study runs SimCLRv2's distillation arms (simclr_distill_*) unless --arms names them.
  distill: bool = False

  def length(self, fraction: str) -> tuple[str, ...]:
    return dict(self.lengths).get(fraction, ())


# SimCLRv2 fine-tunes 60 epochs on 1% and 30 on 10% of ImageNet (arXiv 2006.10029): fewer labels, more epochs.
_PAPER_LENGTH = (("1pct", ("--train_epochs=60",)), ("10pct", ("--train_epochs=30",)),
                 ("100pct", ("--train_epochs=30",)))
# A 1% draw of a CPU-sized dataset holds a handful to a few dozen images, about one batch: by epochs it would get a
# few steps, so the CPU presets give the drawn arms a fixed number of steps (validated every 10).
_QUICK_LENGTH = (("1pct", ("--train_steps=20", "--checkpoint_steps=10")),
                 ("10pct", ("--train_steps=30", "--checkpoint_steps=10")), ("100pct", ("--train_epochs=6",)))
_CPU_LENGTH = (("1pct", ("--train_steps=40", "--checkpoint_steps=10")),
               ("10pct", ("--train_steps=80", "--checkpoint_steps=20")), ("100pct", ("--train_epochs=4",)))
PRESETS: dict[str, Preset] = {p.name: p for p in (
    # quick.cfg is the CPU-sized pretraining recipe; the other arms put their recipe and its quick variant after it.
    # Its data: mura_synthetic at half the default size (minutes per run on a laptop; test keeps MURA's size).
    Preset("quick", ("quick", "{arm}", "quick_{arm}"), ("quick", "quick_pretrain"), draws=2, synthetic_scale=0.05,
           lengths=_QUICK_LENGTH, graph_optimization=False),
    Preset("cpu", ("quick", "{arm}", "quick_{arm}", "cpu", "cpu_{arm}"), ("quick", "cpu", "cpu_pretrain"), draws=5,
           synthetic_scale=1.0, lengths=_CPU_LENGTH, distill=True),
    Preset("paper", ("{arm}",), ("pretrain",), draws=5, lengths=_PAPER_LENGTH, export=True, distill=True),
    # for tests: seconds per run; its numbers mean nothing
    Preset("tiny", ("quick", "{arm}", "quick_{arm}", "tiny"), ("quick", "tiny"), draws=2,
           lengths=(("1pct", ("--train_steps=3",)), ("10pct", ("--train_steps=3",)), ("100pct", ("--train_steps=3",))),
           graph_optimization=False, distill=True),
)}
POOLS_DOC = {"union": "once on the `train` images of all the study's body parts together",
             "per_part": "once per body part on its own `train` images (the seed study's protocol)",
             "all": "once on the `train` images of every MURA study type"}
# The arm families' recipe files (presets/<recipe>.cfg): scratch and SimCLR fine-tuning share one recipe.
RECIPES = {PRETRAIN_ARM: "pretrain", BASELINE_ARM: "baseline", SCRATCH: "finetune", FINETUNE: "finetune",
           LINEAR: "linear_eval", MICLE_PRETRAIN_ARM: "pretrain", MICLE_FINETUNE: "finetune", MICLE_LINEAR: "linear_eval",
           DISTILL: "finetune"}  # a distillation trains like the fine-tuning arms, on the teacher's predictions
# --positive_pairs of the study: the pretrainings it runs, (arm, the trainer's --positive_pairs, the arm families that
# restore it). `study` runs MICLe in place of SimCLR under SimCLR's arm names; `both` adds MICLe's arms.
_SIMCLR = (PRETRAIN_ARM, "image", (LINEAR, FINETUNE))
_MICLE = (MICLE_PRETRAIN_ARM, "study", (MICLE_LINEAR, MICLE_FINETUNE))
PRETRAININGS = {"image": (_SIMCLR,), "study": ((PRETRAIN_ARM, "study", (LINEAR, FINETUNE)),), "both": (_SIMCLR, _MICLE)}


def presets_dir() -> str:
  """The folder holding the preset flagfiles (absl's --flagfile needs a path on disk)."""
  return str(importlib.resources.files("simclr_mura") / "presets")


def flagfiles(preset: Preset, recipe: str) -> tuple[str, ...]:
  """`--flagfile=` arguments of one recipe under a preset, in order (later files override earlier ones)."""
  folder = presets_dir()
  names = [n.format(arm=recipe) for n in (preset.pretrain_chain if recipe == RECIPES[PRETRAIN_ARM] else preset.chain)]
  return tuple(f"--flagfile={folder}/{n}.cfg" for n in names if os.path.isfile(os.path.join(folder, f"{n}.cfg")))


@dataclasses.dataclass(frozen=True)
class Run:
  """One trainer run of the study."""
  arm: str
  part: Optional[str]  # None: a pretraining over several body parts
  draw: Optional[int]  # the label draw of a 1% / 10% arm
  model_dir: str
  argv: tuple[str, ...]
  # model_dir of the run this one restores and waits for: its pretraining, or a distillation's teacher
  waits_for: Optional[str] = None

  @property
  def title(self) -> str:
    where = self.part or "pool"
    return f"{where} {self.arm}" + (f" draw {self.draw}" if self.draw is not None else "")


def pretraining_dir(out: str, pool: str, part: str, arm: str = PRETRAIN_ARM) -> str:
  """Where the pretraining (`arm`: SimCLR's or MICLe's) a body part's arms restore lives: one per study, or one per
  part."""
  return os.path.join(out, part, arm) if pool == "per_part" else os.path.join(out, arm)


def pool_types(pool: str, parts: Sequence[str]) -> list[str]:
  """The study types whose `train` images a pretraining on `pool` reads (per_part: the one part, given alone)."""
  return list(STUDY_TYPES) if pool == "all" else list(parts)


def plan(*, preset: Preset, builder: str, parts: Sequence[str], pool: str, draws: int, out: str,
         data_dir: str, mura_dir: Optional[str] = None, positive_pairs: str = "image",
         distill: Optional[bool] = None) -> list[Run]:
  """Every run of the study, pretraining first (the SimCLR arms restore it; with `positive_pairs="both"` MICLe's
  too), then per part: the DenseNet-169 baseline, the 100% arms, then the 1% and 10% arms for draws 0..draws-1
  (draw k: the same patients in every arm), and with `distill` (default: the preset's) the distillation of each 1% and
  10% SimCLR fine-tuning run."""
  common = [f"--data_dir={data_dir}", *([] if preset.export else ["--export=false"])]
  if mura_dir:
    common.append(f"--mura_dir={mura_dir}")
  elif preset.synthetic_scale is not None:
    common.append(f"--synthetic_scale={preset.synthetic_scale:g}")

  def run(arm: str, recipe: str, part: Optional[str], dataset_types: Sequence[str], model_dir: str,
          extra: Sequence[str] = (), draw: Optional[int] = None, waits_for: Optional[str] = None) -> Run:
    unoptimized = not preset.graph_optimization and recipe != RECIPES[PRETRAIN_ARM]
    argv = (*flagfiles(preset, recipe), *extra, *(["--graph_optimization=false"] if unoptimized else []),
            f"--dataset={builder}/{'+'.join(dataset_types)}", *common, f"--model_dir={model_dir}")
    return Run(arm, part, draw, model_dir, argv, waits_for)

  # Pretraining uses no labels: no linear probe on the side (its head would carry train's labels into the
  # low-label arms that restore it); validation and test images never enter it (--train_split=train).
  pretrain_flags = ("--mode=train", "--train_split=train", "--lineareval_while_pretraining=false")
  pretrainings = PRETRAININGS[positive_pairs]
  # the arm families and the pretraining each restores (scratch: none)
  families = [(SCRATCH, None)] + [(family, arm) for arm, _, restoring in pretrainings for family in restoring]
  runs = []
  for arm, pairs, _ in pretrainings:
    flags = (*pretrain_flags, *([f"--positive_pairs={pairs}"] if pairs != "image" else []))
    if pool == "per_part":
      runs += [run(arm, RECIPES[arm], p, [p], pretraining_dir(out, pool, p, arm), flags) for p in parts]
    else:
      runs.append(run(arm, RECIPES[arm], None, pool_types(pool, parts), pretraining_dir(out, pool, parts[0], arm),
                      flags))
  for part in parts:
    part_dir = os.path.join(out, part)
    runs.append(run(BASELINE_ARM, "baseline", part, [part], os.path.join(part_dir, BASELINE_ARM),
                    ["--train_split=train"]))
    for fraction in LABEL_FRACTIONS:
      draws_of = range(draws) if fraction in DRAWN_FRACTIONS else [None]
      for draw in draws_of:
        for family, restores in families:
          name = arm_name(family, fraction)
          model_dir = _arm_dir(part_dir, name, draw)
          extra = ["--train_split=train", *_label_draw(fraction, draw)]
          if RECIPES[family] != RECIPES[LINEAR]:  # linear evaluation keeps its recipe's length (converges fast)
            extra += preset.length(fraction)
          source = None
          if restores is not None:  # scratch, the like-for-like control, starts from random weights
            source = pretraining_dir(out, pool, part, restores)
            extra.append(f"--checkpoint={source}")
          runs.append(run(name, RECIPES[family], part, [part], model_dir, extra, draw, source))
    if preset.distill if distill is None else distill:
      runs += _distillations(run, preset, part, part_dir, draws)
  return runs


def _arm_dir(part_dir: str, arm: str, draw: Optional[int]) -> str:
  """An arm's run folder: `<part>/<arm>/draw<k>` for a label draw, `<part>/<arm>` for a single-run arm."""
  return os.path.join(part_dir, arm, *([draw_folder(draw)] if draw is not None else []))


def _label_draw(fraction: str, draw: Optional[int]) -> list[str]:
  """The trainer flags of draw `draw` of a label fraction (none for the single-run arms)."""
  return [] if draw is None else [f"--label_fraction={LABEL_FRACTIONS[fraction]:g}", f"--label_draw={draw}"]


def _distillations(run, preset: Preset, part: str, part_dir: str, draws: int) -> list[Run]:
  """A part's distillation arms: for each 1% / 10% draw, a student learns from that draw's SimCLR fine-tuning run on
  all of the part's `train` images (labels unused; the draw is recorded). It trains as long as the arms on all labels:
  like them it starts from random weights and sees every `train` image."""
  runs = []
  for fraction in DRAWN_FRACTIONS:
    for draw in range(draws):
      teacher = _arm_dir(part_dir, arm_name(FINETUNE, fraction), draw)
      name = arm_name(DISTILL, fraction)
      extra = ["--train_mode=distill", "--train_split=train", *_label_draw(fraction, draw), *preset.length("100pct"),
               f"--teacher={teacher}"]
      runs.append(run(name, RECIPES[DISTILL], part, [part], _arm_dir(part_dir, name, draw), extra, draw, teacher))
  return runs
