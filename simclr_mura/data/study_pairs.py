"""MICLe's positive pairs (`--positive_pairs=study`): two different images of one study, each with its own view.

Azizi et al. (ICCV 2021, "Big Self-Supervised Models Advance Medical Image Classification", arXiv 2101.05224) pair
two images of the same case instead of two augmentations of one image (Multi-Instance Contrastive Learning), and fall
back to SimCLR's pair when a case has one image. The builders store `train` in patient order, so a study's images are
consecutive records: `group_studies` turns a stream of examples into a stream of studies without a table or a second
read, and `pair_views` decodes each image once and makes two views of it, as SimCLR's pipeline does per image, so a
pair costs what SimCLR's does.
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf

# Images kept of one study (MURA v1.1's studies hold 1-11); a longer run of one study's records is cut into groups of
# this size, each still pairing images of that study.
MAX_STUDY_IMAGES = 16


def group_studies(examples: tf.data.Dataset, max_images: int = MAX_STUDY_IMAGES) -> tf.data.Dataset:
  """Consecutive examples of one study -> one element {"images": [max_images] encoded, "image_ids", "count",
  "study_id", "label"}.

  A group ends where the study changes, where it is full, or where its first image comes again (a repeated stream
  that holds one study); `examples` should repeat (a stream's last study is emitted when the next one starts).
  """
  empty = tf.fill([max_images], "")

  def step(state, example):
    study, images, ids, count, label = state
    new_study = tf.logical_or(tf.not_equal(example["study_id"], study), tf.equal(count, max_images))
    ends = tf.logical_and(count > 0, tf.logical_or(new_study, tf.equal(example["image_id"], ids[0])))
    out = {"ends": ends, "images": images, "image_ids": ids, "count": count, "study_id": study, "label": label}
    at = tf.where(ends, 0, count)
    images = tf.tensor_scatter_nd_update(tf.where(ends, empty, images), [[at]], [example["image"]])
    ids = tf.tensor_scatter_nd_update(tf.where(ends, empty, ids), [[at]], [example["image_id"]])
    return (example["study_id"], images, ids, at + 1, example["label"]), out

  initial = (tf.constant(""), empty, empty, tf.constant(0), tf.constant(0, tf.int64))
  groups = examples.scan(initial, step).filter(lambda g: g["ends"])
  return groups.map(lambda g: {k: v for k, v in g.items() if k != "ends"})


def partners(count: tf.Tensor) -> tf.Tensor:
  """For each of a study's `count` images, the index of another of its images, at random (one cycle through a random
  order: every image is someone's partner once, none its own unless the study has one image)."""
  order = tf.random.shuffle(tf.range(count))
  return tf.scatter_nd(order[:, None], tf.roll(order, -1, axis=0), [count])


def pair_views(group: dict, load: Callable[[tf.Tensor], tf.Tensor], view: Callable[[tf.Tensor], tf.Tensor],
               view_shape: tuple[int, ...]) -> dict:
  """A group's positive pairs: per image, its own view and a view of its partner ([count, *view_shape] each), with
  their image ids and the label. `load` turns a stored image into an [H, W, 1] image; `view` makes one view."""
  count = group["count"]

  def two_views(i: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    image = load(group["images"][i])
    return view(image), view(image)

  # two separate [count, H, W, 1] stacks: no host-side stacking and slicing of the views (costly without oneDNN)
  spec = tf.TensorSpec(view_shape, tf.float32)
  own, second = tf.map_fn(two_views, tf.range(count), fn_output_signature=(spec, spec))
  other = partners(count)
  ids = group["image_ids"][:count]
  return {"views": (own, tf.gather(second, other)), "image_ids": (ids, tf.gather(ids, other)),
          "study_id": tf.fill([count], group["study_id"]), "label": tf.fill([count], group["label"])}
