"""tf.data input pipelines on the MURA TFDS builders: pretraining views, supervised batches, evaluation batches.

The shape follows SimCLR's tf2/data.py `build_input_fn`: one `input_fn(input_context)` per strategy, used with
`strategy.distribute_datasets_from_function`, per-replica batches, shuffling, AUTOTUNE maps and `drop_remainder` for
training. Gaussian blur is not applied here but on the device inside the train step (SimCLR TF1's `batch_random_blur`).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Collection, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_datasets as tfds

from simclr_mura.data import augment, study_pairs, union
from simclr_mura.config import Config
from simclr_mura.errors import UserError
from simclr_mura.layout import SPLITS

SHUFFLE_BUFFER = 10_000
READ_CHUNKS = 8  # contiguous slices of a training split read side by side and sampled at random (train_input_fn)


def shuffle_buffer_size(batch: int) -> int:
  """Examples the training shuffle holds: ten batches (SimCLR tf2/data.py: `buffer_multiplier` 50 or 10 batches),
  at most SHUFFLE_BUFFER."""
  return min(SHUFFLE_BUFFER, max(batch * 10, 1))
METADATA_KEYS = ("image_id", "study_id", "patient_id", "study_type", "label")


def load_builder(config: Config) -> tfds.core.DatasetBuilder | union.DatasetUnion:
  """The prepared TFDS builder of `config.dataset` (built on first use: `mura_synthetic` needs no download, at the
  size `synthetic_scale` asks for); a union of configs (`builder/a+b`) prepares each and reads them as one. An unknown
  dataset, a size for `mura`, a missing MURA download or a tree that fails validation is a `UserError` with prepare's
  message."""
  import simclr_mura.datasets  # noqa: F401  (registers the builders)
  from simclr_mura.data.prepare import dataset_parts, prepare
  try:
    builders = [prepare(name, data_dir=config.data_dir, mura_dir=config.mura_dir, scale=config.synthetic_scale)
                for name in dataset_parts(config.dataset)]
  except (ValueError, FileNotFoundError) as e:
    raise UserError(str(e)) from e
  return builders[0] if len(builders) == 1 else union.DatasetUnion(config.dataset, builders)


def num_examples(builder: tfds.core.DatasetBuilder, split: str) -> int:
  """The number of examples of a split expression (a slice reports its own size), or a one-line `UserError`."""
  try:
    n = builder.info.splits[split].num_examples
  except (KeyError, ValueError, AssertionError, TypeError) as e:
    detail = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise UserError(f"bad split {split!r} for {builder.info.full_name}: {detail}. Accepted: "
                    f"{', '.join(SPLITS)} or a TFDS slice such as train[:10%] or train[:50%]+validation") from e
  if n == 0:
    raise UserError(f"split {split!r} of {builder.info.full_name} is empty")
  return int(n)


def validate_split(builder: tfds.core.DatasetBuilder, split: str) -> int:
  """Checks a split expression against the prepared dataset before any training and returns its size (its syntax
  and slice bounds were checked with the configuration, `config.check_split`)."""
  return num_examples(builder, split)


_METADATA: dict[tuple, pd.DataFrame] = {}


def _dataset_key(builder) -> tuple:
  """Where a prepared dataset (or each dataset of a union) lives: its folder names its config, size and version."""
  return tuple(str(b.data_dir) for b in getattr(builder, "builders", (builder,)))


def metadata(builder: tfds.core.DatasetBuilder, split: str) -> pd.DataFrame:
  """image_id, study_id, patient_id, study_type (name), label of a split, in the order `eval_input_fn` reads it.

  Kept per process (a prepared dataset does not change): a study's worker reads the same splits for run after run.
  """
  key = (_dataset_key(builder), str(split))
  if key not in _METADATA:
    _METADATA[key] = _read_metadata(builder, split)
  return _METADATA[key].copy()


def _read_metadata(builder: tfds.core.DatasetBuilder, split: str) -> pd.DataFrame:
  ds = builder.as_dataset(split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
  # In batches: one Python round trip per 4,096 rows instead of per row (every evaluation and the report read this).
  batches = list(ds.map(lambda e: {k: e[k] for k in METADATA_KEYS}).batch(4096).as_numpy_iterator())
  columns = {k: np.concatenate([b[k] for b in batches]) if batches else np.array([]) for k in METADATA_KEYS}
  study_types = np.asarray(builder.info.features["study_type"].names)
  return pd.DataFrame({
      "image_id": [x.decode() for x in columns["image_id"]],
      "study_id": [x.decode() for x in columns["study_id"]],
      "patient_id": [x.decode() for x in columns["patient_id"]],
      "study_type": study_types[columns["study_type"].astype(np.int64)] if batches else [],
      "label": columns["label"].astype(np.int64) if batches else [],
  })


def _maybe_shard(ds: tf.data.Dataset, input_context: tf.distribute.InputContext | None) -> tf.data.Dataset:
  # Example-level sharding: works whatever the number of TFDS files (a small dataset has one file, fewer than the
  # workers of a multi-worker run).
  if input_context is not None and input_context.num_input_pipelines > 1:
    ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
  return ds


def worker_split(split: str, input_context: tf.distribute.InputContext | None):
  """The share of `split` one input pipeline reads: with several (a multi-worker run), TFDS's `even_splits` cuts the
  split into disjoint, exact slices by example index, so over an epoch the workers together read every image once,
  whatever the number of files and whatever order the reads finish in (an example-level `shard` of a non-deterministic
  read can give two workers the same image and none another)."""
  if input_context is None or input_context.num_input_pipelines <= 1:
    return split
  return tfds.even_splits(split, input_context.num_input_pipelines)[input_context.input_pipeline_id]


def train_view(config: Config, pretrain: bool) -> Callable[[tf.Tensor], tf.Tensor]:
  """One training view of an [H, W, 1] image as the trainer makes it on the host: the crop (per --train_crop) and
  the optional rotation/shift; `device_augment` adds the rest in the train step."""
  size = config.image_size

  def view(image: tf.Tensor) -> tf.Tensor:
    return augment.preprocess_for_train(
        image, size, size, color_distort=False, flip=False, crop=config.train_crop == "random",
        crop_min_area=config.crop_min_area, rotation_degrees=config.rotation_degrees,
        translate_fraction=config.translate_fraction, clip=False)

  return view


def device_augment(images: tf.Tensor, config: Config, pretrain: bool) -> tf.Tensor:
  """The trainer's on-device augmentations of a batch of host views (`augment.device_augment` with the config's
  settings): flip; colour jitter and blur when pretraining."""
  return augment.device_augment(images, config.image_size, color_distort=pretrain,
                                color_jitter_strength=config.color_jitter_strength,
                                blur=pretrain and config.use_blur)


def train_preprocess(config: Config, pretrain: bool) -> Callable[[dict], tuple]:
  """Maps a TFDS example to (images, label) as the trainer makes it on the host (`device_augment` follows in the
  train step).

  Pretraining images are the pair of views `(view1, view2)`, each [H, W, 1]: batching keeps them apart, and the
  train step puts them on the batch axis on the device (SimCLR's layout), so the host neither stacks nor transposes.
  Views are made from the decoded integer image (see `augment.preprocess_for_train`).
  """
  view = train_view(config, pretrain)

  def preprocess(example: dict) -> tuple:
    image = example["image"]
    if pretrain:
      return (view(image), view(image)), example["label"]
    return view(image), example["label"]

  return preprocess


def sample_views(builder: tfds.core.DatasetBuilder, config: Config, split: str, pretrain: bool,
                 count: int = 8) -> np.ndarray:
  """A few training images as augmented for training (for TensorBoard), without touching the training pipeline:
  [count, H, W, 1], or [count, 2, H, W, 1] (the positive pairs: two views, of two images of one study with
  --positive_pairs=study) when pretraining."""
  if pretrain and config.positive_pairs == "study":
    pairs = study_pair_examples(builder, split, config.replace(cache_dataset=False), seed=config.seed, batch=count)
    images = next(iter(pairs.map(lambda p: p["views"]).batch(count)))
  else:
    ds = builder.as_dataset(split=split, shuffle_files=False).take(count)
    images, _ = next(iter(ds.map(train_preprocess(config, pretrain)).batch(count)))
  if pretrain:
    return np.stack([device_augment(v, config, True).numpy() for v in images], axis=1)
  return device_augment(images, config, False).numpy()


def _builders(builder) -> tuple:
  return getattr(builder, "builders", (builder,))


def train_input_fn(builder: tfds.core.DatasetBuilder, config: Config, split: str, pretrain: bool,
                   global_batch_size: int, seed: int | None = None, class_weights: np.ndarray | None = None,
                   patients: Collection[str] | None = None, labeled_patients: Collection[str] | None = None
                   ) -> Callable[[tf.distribute.InputContext | None], tf.data.Dataset]:
  """`input_fn(input_context)` yielding per-replica batches of `(images, labels)` forever, or of
  `(images, labels, weights)` with `class_weights` (a `class_weight_table`: each example's loss weight by its study
  type and label) or `labeled_patients` (a distillation's label draw: weight 1 for their images, 0 for the others).

  Pretraining images are a pair of batches of independently augmented views (`(view1, view2)`, each [B, H, W, 1]);
  supervised images are one view ([B, H, W, 1]) with the crop only (SimCLR fine-tunes on crop and flip; the train
  step flips).

  `patients` (a label draw, `--label_fraction`) keeps only their images: they are read once and kept in memory
  (compressed; decoded with --cache_dataset), and every epoch is a full shuffle of them. Otherwise the split is read as
  `READ_CHUNKS` contiguous slices sampled at random: the builders store `train` in patient order (its label subsets
  first), so a shuffle buffer of ten batches over one sequential read would give every epoch the same coarse order.
  """
  seed = config.seed if seed is None else seed
  preprocess = train_preprocess(config, pretrain)
  # Without a cache of decoded images, each image is decoded after the shuffle, in the map that makes its views: the
  # shuffle buffer holds compressed PNGs (a fraction of the memory), and the views are cut while the decoded pixels
  # are still in the CPU's caches. With --cache_dataset the cache keeps decoded images, as before.
  decode_late = not config.cache_dataset
  image_feature = builder.info.features["image"]
  patient_list = sorted(patients) if patients is not None else None
  if patient_list == []:
    raise UserError(f"the label draw of {split} holds no patient")

  def decode_then_preprocess(example: dict) -> tuple:
    return preprocess({"image": image_feature.decode_example(example["image"]), "label": example["label"]})

  if class_weights is not None and labeled_patients is not None:
    raise ValueError("class weights and a labelled subset are two uses of the loss weight; pass one")
  weight_table = None if class_weights is None else tf.constant(class_weights, tf.float32)
  labeled_table = None if labeled_patients is None else _patient_table(labeled_patients)

  def keep(example: dict) -> dict:
    out = {"image": example["image"], "label": example["label"]}
    if weight_table is not None:
      out["weight"] = weight_table[example["study_type"], example["label"]]
    if labeled_table is not None:
      out["weight"] = tf.cast(labeled_table.lookup(example["patient_id"]), tf.float32)
    return out

  def make_example(example: dict) -> tuple:
    made = (decode_then_preprocess if decode_late else preprocess)(example)
    return made if "weight" not in example else (*made, example["weight"])

  pairs_of_studies = pretrain and config.positive_pairs == "study"
  if pairs_of_studies and (patient_list is not None or class_weights is not None or labeled_patients is not None):
    raise ValueError("study pairs are for pretraining, which reads all of its split without loss weights")

  def input_fn(input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    batch = input_context.get_per_replica_batch_size(global_batch_size) if input_context else global_batch_size
    if pairs_of_studies:
      pairs = study_pair_examples(builder, worker_split(split, input_context), config, seed=seed, batch=batch)
      ds = pairs.map(lambda p: (p["views"], p["label"]))
      return ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    ds = training_examples(builder, worker_split(split, input_context), config, seed=seed, batch=batch,
                           patients=patient_list, decode=not decode_late)
    ds = ds.map(keep).map(make_example, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

  return input_fn


def _reader(builder, config: Config, seed: int, decode: bool, in_order: bool = False
            ) -> Callable[[str], tf.data.Dataset]:
  """`read(split)`: a split's TFDS examples in stored order (images still PNG bytes unless `decode`). `in_order`:
  exactly in stored order (deterministic tf.data: TFDS parses records with a parallel map that may otherwise
  reorder them); else as --deterministic says."""
  read_config = tfds.ReadConfig(shuffle_seed=seed, try_autocache=False)
  options = tf.data.Options()
  options.deterministic = in_order or config.deterministic

  def read(part: str) -> tf.data.Dataset:
    # In stored order (TFDS refuses to shuffle the files of a dataset written with disable_shuffling, as `train` is:
    # its label subsets are its prefixes); the READ_CHUNKS slices and the shuffle buffer mix it.
    ds = builder.as_dataset(split=part, shuffle_files=False, read_config=read_config,
                            decoders=None if decode else {"image": tfds.decode.SkipDecoding()})
    return ds.with_options(options)

  return read


def _chunks(parts: Sequence[str], config: Config, read: Callable[[str], tf.data.Dataset],
            prepare: Callable[[dict], dict] | None = None) -> list[tf.data.Dataset]:
  """Each split expression of `parts` read in stored order and endless (cached first with --cache_dataset);
  `prepare` maps every example before the cache, order kept."""
  chunks = []
  for part in parts:
    ds = read(part)
    if prepare is not None:
      ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    chunks.append((ds.cache() if config.cache_dataset else ds).repeat())
  return chunks


def _even_parts(builder, split: str) -> list[str]:
  """The split as up to READ_CHUNKS contiguous slices of equal size (TFDS `even_splits`)."""
  smallest = min(b.info.splits[split].num_examples for b in _builders(builder))
  return tfds.even_splits(split, min(READ_CHUNKS, smallest)) if smallest > 1 else [split]


def study_slices(builder: tfds.core.DatasetBuilder, split: str, chunks: int = READ_CHUNKS) -> list[str]:
  """A split of one builder as up to `chunks` contiguous slices of about equal size that cut only between studies
  (a study's images are consecutive records), e.g. `train[0:812]`; a split expression that is not a plain split
  name stays whole."""
  if split not in SPLITS:
    return [split]
  studies = metadata(builder, split)["study_id"].to_numpy()
  n = len(studies)
  starts = [i for i in range(1, n) if studies[i] != studies[i - 1]]  # where a study begins, after the first
  cuts = sorted({min((i for i in starts if i >= round(j * n / chunks)), default=n) for j in range(1, chunks)} - {n})
  bounds = [0, *cuts, n]
  return [f"{split}[{a}:{b}]" for a, b in zip(bounds, bounds[1:])]


def _mix(datasets: list[tf.data.Dataset], seed: int) -> tf.data.Dataset:
  return datasets[0] if len(datasets) == 1 else tf.data.Dataset.sample_from_datasets(datasets, seed=seed)


def _patient_table(patients: Collection[str]) -> tf.lookup.StaticHashTable:
  """patient id -> 1 for `patients`, 0 for any other."""
  return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
      tf.constant(sorted(patients), tf.string), tf.ones([len(patients)], tf.int32)), default_value=0)


def training_examples(builder, split, config: Config, *, seed: int, batch: int,
                      patients: Sequence[str] | None = None, decode: bool = False) -> tf.data.Dataset:
  """The endless shuffled stream of a split's TFDS examples (images still PNG bytes unless `decode`) that training
  maps to views; `patients`: only theirs (a label draw), read once and kept in memory. See `train_input_fn`."""
  read = _reader(builder, config, seed, decode)
  if patients is not None:
    table = _patient_table(patients)
    ds = read(split).filter(lambda e: table.lookup(e["patient_id"]) > 0).cache()
    # The buffer holds the whole draw (at most SHUFFLE_BUFFER images; a draw is a small share of the labels).
    return ds.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True).repeat()
  ds = _mix(_chunks(_even_parts(builder, split), config, read), seed)
  return ds.shuffle(shuffle_buffer_size(batch), seed=seed, reshuffle_each_iteration=True)


def study_pair_examples(builder, split: str, config: Config, *, seed: int, batch: int) -> tf.data.Dataset:
  """The endless shuffled stream of MICLe pairs of a split (`--positive_pairs=study`, `study_pairs`): dicts of
  "views" (two [H, W, 1] views of two images of one study, one image's two views if it is alone), "image_ids",
  "study_id" and "label".

  Each dataset of the split (each part of a union) is read as `study_slices`, each grouped into studies in stored
  order (grouping needs the records in order); studies are shuffled, then their pairs, which are made in parallel and
  kept in order only with --deterministic (as the image pipeline's views). Images are decoded once per epoch each,
  after the study shuffle; with --cache_dataset the cache keeps them decoded (serialized), as the image pipeline's
  does. (A multi-worker run reads a worker's share of the split,
  `worker_split`: a study cut by that boundary pairs within each piece.)
  """
  feature = builder.info.features["image"]
  view = train_view(config, pretrain=True)
  keys = ("image", "image_id", "study_id", "label")
  if config.cache_dataset:
    def prepare(example: dict) -> dict:
      return {**{k: example[k] for k in keys},
              "image": tf.io.serialize_tensor(feature.decode_example(example["image"]))}

    def load(stored: tf.Tensor) -> tf.Tensor:
      return tf.ensure_shape(tf.io.parse_tensor(stored, tf.uint8), [None, None, 1])
  else:
    def prepare(example: dict) -> dict:
      return {k: example[k] for k in keys}

    load = feature.decode_example
  chunks = [chunk for b in _builders(builder) for chunk in _chunks(
      study_slices(b, split), config, _reader(b, config, seed, decode=False, in_order=True), prepare)]
  studies = _mix([study_pairs.group_studies(c) for c in chunks], seed)
  studies = studies.shuffle(shuffle_buffer_size(batch), seed=seed, reshuffle_each_iteration=True)
  shape = (config.image_size, config.image_size, 1)
  # Grouping needs the records in order, the pairs do not: like the image pipeline's views, they come in the order
  # they are ready unless --deterministic (studies of 1 to 11 images take unequal times, and a strict order would
  # hold every ready study behind a slow one).
  pairs = studies.map(lambda g: study_pairs.pair_views(g, load, view, shape), num_parallel_calls=tf.data.AUTOTUNE,
                      deterministic=config.deterministic)
  return pairs.unbatch().shuffle(shuffle_buffer_size(batch), seed=seed, reshuffle_each_iteration=True)


@dataclasses.dataclass(frozen=True)
class EvalData:
  """An evaluation split: its metadata table, and an input_fn of padded batches of (images, index, valid)."""
  metadata: pd.DataFrame
  input_fn: Callable[[tf.distribute.InputContext | None], tf.data.Dataset]
  num_batches: int
  _distributed: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

  def distributed(self, strategy: tf.distribute.Strategy) -> tf.distribute.DistributedDataset:
    """The split as `strategy`'s distributed dataset, made once: validation after every epoch iterates the same
    dataset again, and with `cache_dataset` its decoded images come from memory after the first pass."""
    if strategy not in self._distributed:
      self._distributed[strategy] = strategy.distribute_datasets_from_function(self.input_fn)
    return self._distributed[strategy]


def eval_data(builder: tfds.core.DatasetBuilder, config: Config, split: str, global_batch_size: int) -> EvalData:
  """Evaluation batches in stored order, padded to whole global batches so that every replica gets equal shapes.

  Each element is `(images [B,H,W,1], index [B], valid [B])`; padding rows have `valid = 0` and are dropped after
  prediction, so every image of the split is scored exactly once on every strategy (TPU included).
  """
  meta = metadata(builder, split)
  n = len(meta)
  if config.eval_steps:
    n = min(n, config.eval_steps * global_batch_size)
    meta = meta.iloc[:n]
  num_batches = -(-n // global_batch_size)
  padding = num_batches * global_batch_size - n
  size = config.image_size
  crop = augment.eval_crops(size, config.eval_crop)

  def preprocess(index: tf.Tensor, example: dict, valid: tf.Tensor):
    image = augment.preprocess_for_eval(example["image"], size, size, crop=crop)
    return image, index, valid

  def input_fn(input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    batch = input_context.get_per_replica_batch_size(global_batch_size) if input_context else global_batch_size
    ds = builder.as_dataset(split=split, shuffle_files=False).take(n)
    ds = ds.enumerate().map(lambda i, e: (tf.cast(i, tf.int32), e, tf.constant(1.0)))
    pad = ds.repeat().take(padding).map(lambda i, e, v: (i, e, tf.constant(0.0)))
    ds = _maybe_shard(ds.concatenate(pad), input_context)
    ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    if config.cache_dataset:  # evaluation preprocessing is deterministic: cache the images, not the PNGs
      ds = ds.cache()
    return ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

  return EvalData(metadata=meta, input_fn=input_fn, num_batches=num_batches)
