"""MURA as TensorFlow Datasets: importing this package registers the `mura` and `mura_synthetic` builders.

  import simclr_mura.datasets
  builder = tfds.builder("mura/elbow", data_dir=D)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=M))

`mura_synthetic` takes `scale` (default 0.1 of MURA v1.1's per-type counts; 1.0 = about 40,000 images) and `seed`:
`tfds.builder("mura_synthetic/all", data_dir=D, scale=1.0)`; non-default sizes are prepared in their own folder.
`simclr_mura.datasets.synthetic.write_mura_tree(root, seed, scale, study_types)` writes the same images as a
MURA-v1.1 tree that `mura` can read.
"""
from simclr_mura.datasets.builder import MuraConfig
from simclr_mura.datasets.layout import CONFIGS, LABELS, SPLITS, STUDY_TYPES
from simclr_mura.datasets.mura import Mura
from simclr_mura.datasets.mura_synthetic import MuraSynthetic
from simclr_mura.datasets.reader import MuraFormatError

BUILDERS = ("mura", "mura_synthetic")

__all__ = ["BUILDERS", "CONFIGS", "LABELS", "SPLITS", "STUDY_TYPES", "Mura", "MuraConfig", "MuraFormatError",
           "MuraSynthetic"]
