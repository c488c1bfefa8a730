"""The TFDS builder logic shared by `mura` and `mura_synthetic`: configs, features, splits and example generation.

Subclasses only say where their `MURA-v1.1/` folder is (`_mura_dir`); everything after that — parsing, validation,
splitting, encoding — is this module, so both builders read trees through exactly the same code.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from simclr_mura.datasets import layout
from simclr_mura.datasets import pngcheck
from simclr_mura.datasets import reader
from simclr_mura.datasets import splits

_CITATION = """\
@article{rajpurkar2017mura,
  title={MURA: Large Dataset for Abnormality Detection in Musculoskeletal Radiographs},
  author={Rajpurkar, Pranav and Irvin, Jeremy and Bagul, Aarti and Ding, Daisy and Duan, Tony and Mehta, Hershel
          and Yang, Brandon and Zhu, Kaylie and Laird, Dillon and Ball, Robyn L. and others},
  journal={arXiv preprint arXiv:1712.06957},
  year={2017}
}
"""


@dataclasses.dataclass
class MuraConfig(tfds.core.BuilderConfig):
  """A config holds the images of its study types only."""
  study_types: tuple[str, ...] = layout.STUDY_TYPES


def _configs() -> list[MuraConfig]:
  return [MuraConfig(name=name, study_types=types, description=f"MURA v1.1 study types: {', '.join(types)}.")
          for name, types in layout.CONFIGS.items()]


class MuraBuilderBase(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Builds the five splits (`layout.SPLITS`) from a validated MURA-v1.1 tree, each stored in a fixed order."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
      "1.0.0": "Initial release: patient-level 80/20 train/validation, test = official valid.",
      "1.1.0": "Label subsets with a floor: train_1pct / train_10pct hold at least one normal and one abnormal "
               "study of every study type of `train` (otherwise whole patients, stratified by study type x label, "
               "nested, deterministic as before; now draw 0 of `splits.draw_patients`, so their patients differ from "
               "1.0.0's). `train` is stored in patient order with the subsets as prefixes (train_1pct's patients, "
               "then train_10pct's others, then the rest), so train[:1%] / train[:10%] are the subsets up to the "
               "boundary patient; validation and test by image id; disable_shuffling. Images and the "
               "train/validation/test cut unchanged.",
  }
  BUILDER_CONFIGS = _configs()
  DESCRIPTION = "MURA v1.1 musculoskeletal radiographs."

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=self.DESCRIPTION,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 1), dtype=np.uint8, encoding_format="png"),
            "label": tfds.features.ClassLabel(names=list(layout.LABELS)),
            "image_id": tfds.features.Text(),
            "study_id": tfds.features.Text(),
            "patient_id": tfds.features.Text(),
            "study_type": tfds.features.ClassLabel(names=list(layout.STUDY_TYPES)),
        }),
        supervised_keys=("image", "label"),
        homepage="https://stanfordmlgroup.github.io/competitions/mura/",
        citation=_CITATION,
        metadata=tfds.core.MetadataDict(),
        # Examples are stored in the order `_generate_examples` gives them (`splits.assign_splits`): `train`'s prefixes
        # are its label subsets. TFDS then writes them sorted by their (int) key instead of by a hash of it
        # (tensorflow_datasets/core/shuffle.py, `Shuffler.add`) and reads files in order (core/reader.py).
        disable_shuffling=True,
    )

  def _mura_dir(self, dl_manager: tfds.download.DownloadManager) -> str:
    """The `MURA-v1.1/` folder to read (the one holding the CSVs)."""
    raise NotImplementedError

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    """Validates the whole tree first: any problem raises here, before TFDS writes a single example."""
    mura_dir = self._mura_dir(dl_manager)
    records = reader.read_mura_tree(mura_dir, self.builder_config.study_types)
    by_split = splits.assign_splits(records)
    empty = [name for name, recs in by_split.items() if not recs]
    if empty:  # TFDS cannot write an empty split; say why instead of failing half-way through the build
      raise reader.MuraFormatError(
          f"The MURA tree at {mura_dir} has no images for split(s) {', '.join(empty)} of config "
          f"{self.builder_config.name!r} (too few patients, or no official valid images of its study types); "
          "nothing was prepared.")
    self.info.metadata["image_counts"] = {  # per split: normal / abnormal images (e.g. for class weights)
        name: {layout.LABELS[k]: v for k, v in sorted(collections.Counter(r.label for r in recs).items())}
        for name, recs in by_split.items()}
    return {name: self._generate_examples(recs) for name, recs in by_split.items()}

  def _generate_examples(self, records: list[layout.ImageRecord]) -> Iterator[tuple[int, dict]]:
    """Keyed by position in the split's order (unique within the split): with `disable_shuffling` TFDS sorts examples
    by key, and keys must be ints once a split outgrows the Shuffler's 1 GB memory buffer (its disk buckets store
    128-bit int keys; tensorflow_datasets/core/shuffle.py)."""
    for position, r in enumerate(records):
      with open(r.path, "rb") as f:
        data = f.read()
      yield position, {
          "image": data if r.passthrough else pngcheck.to_gray_png(data),  # 8-bit gray PNG bytes are stored as is
          "label": r.label,
          "image_id": r.image_id,
          "study_id": r.study_id,
          "patient_id": r.patient_id,
          "study_type": r.study_type,
      }
