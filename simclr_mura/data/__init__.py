"""Data: preparing the TFDS datasets, the input pipeline (SimCLR's augmentations) and data exploration.

The TFDS builders themselves live in `simclr_mura.datasets` (`import simclr_mura.datasets` registers them).
"""
