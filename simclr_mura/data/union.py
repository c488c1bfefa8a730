"""Several prepared configs of one TFDS builder read as one dataset (`--dataset=mura_synthetic/elbow+hand+shoulder`):
how the study pretrains SimCLR once on the `train` images of all its body parts without building a combined dataset
(each part's dataset is prepared once and shared with the part's supervised arms)."""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import tensorflow as tf
import tensorflow_datasets as tfds


@dataclasses.dataclass(frozen=True)
class _SplitInfo:
  num_examples: int


class _Splits:
  """`info.splits[expression]` of a union: the sum of the parts' sizes (a slice such as `train[:10%]` slices each)."""

  def __init__(self, builders: Sequence[tfds.core.DatasetBuilder]):
    self._builders = builders

  def __getitem__(self, split: str) -> _SplitInfo:
    return _SplitInfo(sum(b.info.splits[split].num_examples for b in self._builders))


class _Info:
  """The part of `DatasetInfo` the trainer reads: features (the same in every config), splits and a name."""

  def __init__(self, name: str, builders: Sequence[tfds.core.DatasetBuilder]):
    self.full_name = name
    self.features = builders[0].info.features
    self.splits = _Splits(builders)


class DatasetUnion:
  """Duck-types the `DatasetBuilder` calls of the input pipeline (`info`, `as_dataset`) over several builders: a
  split is the parts' splits concatenated in order (the training pipeline mixes them; evaluation reads in order)."""

  def __init__(self, name: str, builders: Sequence[tfds.core.DatasetBuilder]):
    if not builders:
      raise ValueError("a dataset union needs at least one dataset")
    self.builders = tuple(builders)
    self.info = _Info(name, self.builders)

  def as_dataset(self, split: str, **kwargs: Any) -> tf.data.Dataset:
    return functools.reduce(lambda a, b: a.concatenate(b), (b.as_dataset(split=split, **kwargs) for b in self.builders))
