"""SimCLR's augmentations (google-research/simclr `tf2/data_util.py`) for grayscale radiographs.

Single-image functions take [H, W, 1] images (float32 in [0, 1]; the pipelines' entry points also take the decoded
integers, cropped before they are cast) and work inside `tf.data` map functions; the batched
Gaussian blur (`batch_random_blur`) runs on the accelerator inside the train step, as SimCLR does.

Pretraining view (SimCLR): random resized crop -> left-right flip -> colour jitter (p 0.8) -> [grayscale (p 0.2)]
-> clip; then, on the device, Gaussian blur (p 0.5). Fine-tuning: crop and flip only. The trainer's input pipelines
make the crop (and optional rotation/shift) on the host and leave flip, colour jitter and blur to the device
(`device_augment`). Evaluation: centre crop of
0.875 (aspect preserving) and bicubic resize. No mean/std normalisation: inputs stay in [0, 1] (SimCLR).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Union

import tensorflow as tf

from simclr_mura.config import CHOICES

CROP_PROPORTION = 0.875  # SimCLR data_util.CROP_PROPORTION (standard for ImageNet)


def eval_crops(image_size: int, eval_crop: str = "center") -> bool:
  """Whether evaluation centre-crops: with --eval_crop=center, as SimCLR's run.py, crop = image_size > 32 (CIFAR images
  are not cropped); with --eval_crop=none never (the whole image is resized)."""
  if eval_crop not in CHOICES["eval_crop"]:
    raise ValueError(f"eval_crop must be one of {', '.join(CHOICES['eval_crop'])}, got {eval_crop!r}")
  return eval_crop == "center" and image_size > 32


def to_float(image: tf.Tensor) -> tf.Tensor:
  """uint8 (or any integer) image -> float32 in [0, 1]; float images are returned as float32 unchanged."""
  if image.dtype.is_floating:
    return tf.cast(image, tf.float32)
  return tf.image.convert_image_dtype(image, tf.float32)


def _unit_scale(image: tf.Tensor) -> float:
  """The factor `to_float` applies: 1 / the dtype's maximum for integer images, 1 for float images."""
  return 1.0 if image.dtype.is_floating else 1.0 / image.dtype.max


def _crop_then_scale(image: tf.Tensor, crop_and_resize) -> tf.Tensor:
  """`crop_and_resize(to_float(image))`, computed as `crop_and_resize(image) * scale`.

  The crop slices the decoded integer image (a quarter of the bytes of a float copy) and only the crop is cast
  (`_resize_bicubic` casts its input: the bicubic kernel is slower on integers than on floats), so the full-size
  image never is; scaling after the resize equals scaling before, since resizing is linear in the pixel values.
  """
  scale = _unit_scale(image)
  out = crop_and_resize(image)
  return out * scale if scale != 1.0 else out


def random_apply(func, p: float, x: tf.Tensor) -> tf.Tensor:
  """SimCLR random_apply: func(x) with probability p, else x."""
  return tf.cond(tf.random.uniform([]) < tf.cast(p, tf.float32), lambda: func(x), lambda: x)


# ---------------------------------------------------------------------------------------------------------------
# Crops.

def _resize_bicubic(image: tf.Tensor, height: int, width: int) -> tf.Tensor:
  """Bicubic resize to float32 (an integer image is cast first: the kernel is faster on floats)."""
  return tf.image.resize(tf.cast(image, tf.float32), [height, width], method=tf.image.ResizeMethod.BICUBIC)


def distorted_bounding_box_crop(image: tf.Tensor,
                                min_object_covered: float = 0.1,
                                aspect_ratio_range: Sequence[float] = (3. / 4., 4. / 3.),
                                area_range: Sequence[float] = (0.08, 1.0),
                                max_attempts: int = 100) -> tf.Tensor:
  """SimCLR distorted_bounding_box_crop with the whole image as the object box.

  After max_attempts failures `tf.image.sample_distorted_bounding_box` falls back to the whole image.
  """
  bbox = tf.constant([0.0, 0.0, 1.0, 1.0], dtype=tf.float32, shape=[1, 1, 4])
  begin, size, _ = tf.image.sample_distorted_bounding_box(
      tf.shape(image), bounding_boxes=bbox, min_object_covered=min_object_covered,
      aspect_ratio_range=aspect_ratio_range, area_range=area_range, max_attempts=max_attempts,
      use_image_if_no_bounding_boxes=True)
  return tf.slice(image, begin, size)  # a view: only the crop is resized afterwards


def random_crop_with_resize(image: tf.Tensor, height: int, width: int, p: float = 1.0,
                            min_area: float = 0.08) -> tf.Tensor:
  """SimCLR crop_and_resize: random crop (area min_area-1, SimCLR's 0.08; aspect 3/4-4/3 of width/height, object
  covered >= 0.1, 100 attempts) then bicubic resize of the crop only to [height, width]. With probability 1 - p,
  resize only."""
  aspect_ratio = width / height

  def crop(x):
    x = distorted_bounding_box_crop(x, min_object_covered=0.1,
                                    aspect_ratio_range=(3. / 4. * aspect_ratio, 4. / 3. * aspect_ratio),
                                    area_range=(min_area, 1.0), max_attempts=100)
    return _resize_bicubic(x, height, width)

  if p >= 1.0:
    return crop(image)
  return tf.cond(tf.random.uniform([]) < p, lambda: crop(image), lambda: _resize_bicubic(image, height, width))


def _compute_crop_shape(image_height, image_width, aspect_ratio: float, crop_proportion: float):
  """SimCLR _compute_crop_shape: crop_proportion along the less-cropped side, aspect ratio preserved."""
  image_width_float = tf.cast(image_width, tf.float32)
  image_height_float = tf.cast(image_height, tf.float32)

  def requested_aspect_ratio_wider_than_image():
    crop_height = tf.cast(tf.math.rint(crop_proportion / aspect_ratio * image_width_float), tf.int32)
    crop_width = tf.cast(tf.math.rint(crop_proportion * image_width_float), tf.int32)
    return crop_height, crop_width

  def image_wider_than_requested_aspect_ratio():
    crop_height = tf.cast(tf.math.rint(crop_proportion * image_height_float), tf.int32)
    crop_width = tf.cast(tf.math.rint(crop_proportion * aspect_ratio * image_height_float), tf.int32)
    return crop_height, crop_width

  return tf.cond(aspect_ratio > image_width_float / image_height_float, requested_aspect_ratio_wider_than_image,
                 image_wider_than_requested_aspect_ratio)


def center_crop(image: tf.Tensor, height: int, width: int, crop_proportion: float = CROP_PROPORTION) -> tf.Tensor:
  """SimCLR center_crop: aspect-preserving central crop, then bicubic resize to [height, width]."""
  shape = tf.shape(image)
  image_height, image_width = shape[0], shape[1]
  crop_height, crop_width = _compute_crop_shape(image_height, image_width, width / height, crop_proportion)
  offset_height = ((image_height - crop_height) + 1) // 2
  offset_width = ((image_width - crop_width) + 1) // 2
  image = tf.image.crop_to_bounding_box(image, offset_height, offset_width, crop_height, crop_width)
  return _resize_bicubic(image, height, width)


# ---------------------------------------------------------------------------------------------------------------
# Colour.

def random_brightness(image: tf.Tensor, max_delta: float) -> tf.Tensor:
  """SimCLR v2 random_brightness: multiply by a factor in [max(0, 1 - max_delta), 1 + max_delta]."""
  factor = tf.random.uniform([], max(1.0 - max_delta, 0.0), 1.0 + max_delta)
  return image * factor


def random_contrast(image: tf.Tensor, lower: float, upper: float) -> tf.Tensor:
  """tf.image.random_contrast: (x - mean) * factor + mean, factor in [lower, upper]."""
  factor = tf.random.uniform([], lower, upper)
  mean = tf.reduce_mean(image, axis=[-3, -2], keepdims=True)
  return (image - mean) * factor + mean


def color_jitter(image: tf.Tensor, strength: float, random_order: bool = True) -> tf.Tensor:
  """SimCLR color_jitter on one channel: brightness (0.8 s) and contrast (0.8 s), clipped to [0, 1] after each.

  SimCLR also jitters saturation (0.8 s) and hue (0.2 s), in a random order of the four with a clip after each. On a
  gray image both are identities (zero saturation stays zero; hue is undefined), and so is the clip after them, so
  only the relative order of brightness and contrast matters: each order has probability 1/2, as in SimCLR's
  shuffle of the four.
  """
  brightness = 0.8 * strength
  contrast = 0.8 * strength

  def apply_brightness(x):
    return tf.clip_by_value(random_brightness(x, brightness), 0., 1.) if brightness else x

  def apply_contrast(x):
    return tf.clip_by_value(random_contrast(x, 1. - contrast, 1. + contrast), 0., 1.) if contrast else x

  if not random_order:
    return apply_contrast(apply_brightness(image))  # SimCLR color_jitter_nonrand order
  return tf.cond(tf.random.uniform([]) < 0.5, lambda: apply_contrast(apply_brightness(image)),
                 lambda: apply_brightness(apply_contrast(image)))


def random_color_jitter(image: tf.Tensor, strength: float = 1.0, p: float = 1.0) -> tf.Tensor:
  """SimCLR random_color_jitter: colour jitter with probability 0.8, then grayscale with probability 0.2.

  The grayscale conversion is an identity on a one-channel radiograph, so it is left out (its coin flip would not
  change the distribution of the output).
  """
  def transform(x):
    return random_apply(lambda y: color_jitter(y, strength), p=0.8, x=x)

  return transform(image) if p >= 1.0 else random_apply(transform, p=p, x=image)


# ---------------------------------------------------------------------------------------------------------------
# Blur.

def _gaussian_kernels(sigma: tf.Tensor, radius: int) -> tf.Tensor:
  """Normalised 1-D Gaussians [..., 2 * radius + 1] for sigmas of any shape."""
  x = tf.cast(tf.range(-radius, radius + 1), tf.float32)
  sigma = tf.cast(sigma, tf.float32)[..., tf.newaxis]
  kernel = tf.exp(-tf.square(x) / (2.0 * tf.square(sigma)))
  return kernel / tf.reduce_sum(kernel, axis=-1, keepdims=True)


def gaussian_blur(image: tf.Tensor, kernel_size: int, sigma, padding: str = "SAME") -> tf.Tensor:
  """SimCLR gaussian_blur: separable depthwise convolution, kernel 2 * (kernel_size // 2) + 1, zero 'SAME' padding.

  image: [H, W, C] or [N, H, W, C] float.
  """
  radius = int(kernel_size / 2)
  size = 2 * radius + 1
  kernel = _gaussian_kernels(tf.convert_to_tensor(sigma), radius)
  channels = image.shape[-1]
  blur_h = tf.tile(tf.reshape(kernel, [1, size, 1, 1]), [1, 1, channels, 1])
  blur_v = tf.tile(tf.reshape(kernel, [size, 1, 1, 1]), [1, 1, channels, 1])
  single = image.shape.rank == 3
  x = image[tf.newaxis] if single else image
  x = tf.nn.depthwise_conv2d(x, blur_h, strides=[1, 1, 1, 1], padding=padding)
  x = tf.nn.depthwise_conv2d(x, blur_v, strides=[1, 1, 1, 1], padding=padding)
  return x[0] if single else x


def random_blur(image: tf.Tensor, height: int, p: float = 0.5) -> tf.Tensor:
  """SimCLR random_blur of one image: with probability p, Gaussian blur with sigma ~ U(0.1, 2.0)."""
  def blur(x):
    sigma = tf.random.uniform([], 0.1, 2.0)
    return tf.clip_by_value(gaussian_blur(x, kernel_size=height // 10, sigma=sigma), 0., 1.)

  return random_apply(blur, p=p, x=image)


def batch_gaussian_blur(images: tf.Tensor, kernel_size: int, sigma: tf.Tensor) -> tf.Tensor:
  """`gaussian_blur` of each image of [N, H, W, C] with its own sigma [N] (zero 'SAME' padding), float32."""
  images = tf.cast(images, tf.float32)
  radius = int(kernel_size / 2)
  size = 2 * radius + 1
  shape = tf.shape(images)
  n, h, w = shape[0], shape[1], shape[2]
  c = images.shape[-1]
  kernels = _gaussian_kernels(sigma, radius)  # [N, size]
  kernels = tf.transpose(tf.repeat(kernels, c, axis=0))  # [size, N * C]: one kernel per (image, channel)
  # Fold the batch into the channels: one depthwise conv then applies a different kernel to every image.
  x = tf.reshape(tf.transpose(images, [1, 2, 0, 3]), [1, h, w, n * c])
  x = tf.nn.depthwise_conv2d(x, tf.reshape(kernels, [1, size, n * c, 1]), strides=[1, 1, 1, 1], padding="SAME")
  x = tf.nn.depthwise_conv2d(x, tf.reshape(kernels, [size, 1, n * c, 1]), strides=[1, 1, 1, 1], padding="SAME")
  return tf.transpose(tf.reshape(x, [h, w, n, c]), [2, 0, 1, 3])


def batch_random_blur(images: Union[tf.Tensor, List[tf.Tensor]], height: int, width: int,
                      blur_probability: float = 0.5,
                      seed: Optional[tf.Tensor] = None) -> Union[tf.Tensor, List[tf.Tensor]]:
  """SimCLR batch_random_blur for [N, H, W, C] images (or a list of such batches), on the device.

  Each image is blurred with probability blur_probability, with its own sigma ~ U(0.1, 2.0) (SimCLR draws one sigma
  per batch; per-image sigmas give each view an independent blur, as in the paper's per-image augmentation), kernel
  size from `height` as in SimCLR; then clipped to [0, 1]. Computed in float32 whatever the input dtype; static
  shapes, so it runs inside tf.function with jit_compile. `seed` (int32/int64 [2]) switches to stateless random ops,
  which stay reproducible under XLA (stateful tf.random ops ignore seeds there).
  """
  del width  # SimCLR sizes the kernel from the height only.
  if isinstance(images, (list, tuple)):
    seeds = [None] * len(images) if seed is None else tf.unstack(
        tf.random.experimental.stateless_split(seed, len(images)))
    return [batch_random_blur(x, height, 0, blur_probability, s) for x, s in zip(images, seeds)]
  images = tf.cast(images, tf.float32)
  n = tf.shape(images)[0]
  if seed is None:
    sigma = tf.random.uniform([n], 0.1, 2.0)  # SimCLR random_blur: sigma ~ U(0.1, 2.0)
    coin = tf.random.uniform([n, 1, 1, 1])
  else:
    seed_sigma, seed_coin = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    sigma = tf.random.stateless_uniform([n], seed_sigma, 0.1, 2.0)
    coin = tf.random.stateless_uniform([n, 1, 1, 1], seed_coin)
  blurred = batch_gaussian_blur(images, height // 10, sigma)  # SimCLR: kernel_size = height // 10
  selector = tf.cast(coin < blur_probability, tf.float32)
  out = blurred * selector + images * (1.0 - selector)
  return tf.clip_by_value(out, 0., 1.)


def batch_random_color_jitter(images: tf.Tensor, strength: float = 1.0, p: float = 0.8) -> tf.Tensor:
  """`random_color_jitter` for an [N, H, W, 1] batch, on the device: each image independently jittered with
  probability p, with its own brightness and contrast factors and its own order of the two (each clipped to [0, 1]).

  Both orders are computed and one is selected per image, so the batch needs no per-image control flow.
  """
  if not strength:
    return images
  n = tf.shape(images)[0]
  brightness, contrast = 0.8 * strength, 0.8 * strength
  b = tf.random.uniform([n, 1, 1, 1], max(1.0 - brightness, 0.0), 1.0 + brightness)
  c = tf.random.uniform([n, 1, 1, 1], 1.0 - contrast, 1.0 + contrast)

  def apply_brightness(x):
    return tf.clip_by_value(x * b, 0., 1.)

  def apply_contrast(x):
    mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    return tf.clip_by_value((x - mean) * c + mean, 0., 1.)

  brightness_first = tf.random.uniform([n, 1, 1, 1]) < 0.5
  jittered = tf.where(brightness_first, apply_contrast(apply_brightness(images)),
                      apply_brightness(apply_contrast(images)))
  return tf.where(tf.random.uniform([n, 1, 1, 1]) < p, jittered, images)


def batch_random_flip_left_right(images: tf.Tensor) -> tf.Tensor:
  """SimCLR's random left-right flip (probability 1/2 per image) for an [N, H, W, C] batch, on the device.

  A flip commutes with colour jitter (the same on every pixel; the contrast mean is flip-invariant) and with the
  Gaussian blur (a symmetric kernel), and it turns the optional rotation and shift into their mirror images, which
  are as likely: flipping after them gives the same distribution of views as flipping before.
  """
  flip = tf.random.uniform([tf.shape(images)[0], 1, 1, 1]) < 0.5
  return tf.where(flip, tf.reverse(images, axis=[2]), images)


def device_augment(images: tf.Tensor, size: int, color_distort: bool, color_jitter_strength: float = 1.0,
                   blur: bool = False) -> tf.Tensor:
  """The augmentations the trainer applies on the device to the host's training views ([N, H, W, 1]): the flip, and
  for pretraining colour jitter (p 0.8) and Gaussian blur (p 0.5), in SimCLR's order.

  On a CPU host these element-wise passes over every view cost as much as a crop; on an accelerator they are
  nearly free. They commute with what stays on the host (crop, resize and the optional rotation and shift, whose
  mirror images are as likely), so the views' distribution is SimCLR's.
  """
  images = batch_random_flip_left_right(images)
  if color_distort:
    images = batch_random_color_jitter(images, color_jitter_strength)
  images = tf.clip_by_value(images, 0., 1.)  # SimCLR clips at the end of preprocess_for_train, before the blur
  if blur:
    images = batch_random_blur(images, size, size)  # clips again
  return images


# ---------------------------------------------------------------------------------------------------------------
# Geometry (extras, not SimCLR: the MURA paper used rotations up to 30 degrees).

def affine_transform(image: tf.Tensor, angle, dx, dy) -> tf.Tensor:
  """Rotates [H, W, C] by `angle` radians about the centre, then shifts by (dx, dy) pixels; bilinear, zero fill.

  On screen (y down) a positive angle turns the image clockwise; dx > 0 moves content right, dy > 0 down.
  """
  shape = tf.shape(image)
  h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
  cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
  angle = tf.cast(angle, tf.float32)
  dx = tf.cast(dx, tf.float32)
  dy = tf.cast(dy, tf.float32)
  cos, sin = tf.cos(angle), tf.sin(angle)
  # Output pixel (x, y) samples input R(-angle) (x - c - d) + c.
  ox, oy = cx + dx, cy + dy
  transform = tf.stack([cos, sin, cx - cos * ox - sin * oy,
                        -sin, cos, cy + sin * ox - cos * oy,
                        0.0, 0.0])[tf.newaxis]
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=tf.cast(image, tf.float32)[tf.newaxis], transforms=transform, output_shape=shape[:2],
      fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")
  return out[0]


def _random_geometry(image: tf.Tensor, max_degrees: float, max_fraction: float) -> tf.Tensor:
  if not max_degrees and not max_fraction:
    return image
  angle = tf.random.uniform([], -1.0, 1.0) * (max_degrees * math.pi / 180.0)
  shape = tf.cast(tf.shape(image), tf.float32)
  dx = tf.random.uniform([], -1.0, 1.0) * max_fraction * shape[1]
  dy = tf.random.uniform([], -1.0, 1.0) * max_fraction * shape[0]
  return affine_transform(image, angle, dx, dy)


def random_rotate(image: tf.Tensor, max_degrees: float) -> tf.Tensor:
  """Rotation by an angle ~ U(-max_degrees, max_degrees) (zero fill); the image itself when max_degrees is 0."""
  return _random_geometry(image, max_degrees, 0.0)


def random_translate(image: tf.Tensor, max_fraction: float) -> tf.Tensor:
  """Shift by up to max_fraction of each side, uniformly per axis (zero fill); the image itself when 0."""
  return _random_geometry(image, 0.0, max_fraction)


def random_flip_left_right(image: tf.Tensor) -> tf.Tensor:
  """`tf.image.random_flip_left_right` (probability 1/2) for [H, W, C]; cheaper on one-channel images.

  TensorFlow's ReverseV2 over the width of an [H, W, 1] tensor moves one float per inner step; reversing the [H, W]
  matrix instead gives the same result for a fraction of the cost (docs/benchmarks.md, "What was tuned").
  """
  def flip(x):
    if x.shape.rank == 3 and x.shape[-1] == 1:
      return tf.reverse(x[..., 0], axis=[1])[..., tf.newaxis]
    return tf.reverse(x, axis=[1])

  return tf.cond(tf.random.uniform([]) < 0.5, lambda: flip(image), lambda: image)


# ---------------------------------------------------------------------------------------------------------------
# Pipelines.

def preprocess_for_train(image: tf.Tensor,
                         height: int,
                         width: int,
                         color_jitter_strength: float = 1.0,
                         crop: bool = True,
                         crop_min_area: float = 0.08,
                         flip: bool = True,
                         color_distort: bool = True,
                         rotation_degrees: float = 0.0,
                         translate_fraction: float = 0.0,
                         clip: bool = True) -> tf.Tensor:
  """SimCLR preprocess_for_train for one [H, W, 1] image (uint8 or float in [0, 1]) -> float32 [height, width, 1].

  Pretraining: all of it (Gaussian blur is applied later, on the device: `batch_random_blur`). Fine-tuning
  (SimCLR): color_distort=False, i.e. crop and flip only. Optional rotation/translation (not SimCLR) follow the flip.
  clip=False leaves the final clip to [0, 1] to whoever adds the remaining augmentations (`device_augment`), as
  SimCLR clips only after its colour jitter.
  """
  if crop:
    image = _crop_then_scale(image, lambda x: random_crop_with_resize(x, height, width, min_area=crop_min_area))
  else:
    image = _crop_then_scale(image, lambda x: _resize_bicubic(x, height, width))
  if flip:
    image = random_flip_left_right(image)
  image = _random_geometry(image, rotation_degrees, translate_fraction)
  if color_distort:
    image = random_color_jitter(image, strength=color_jitter_strength)
  image = tf.reshape(image, [height, width, 1])
  return tf.clip_by_value(image, 0., 1.) if clip else image


def preprocess_for_eval(image: tf.Tensor, height: int, width: int, crop: bool = True) -> tf.Tensor:
  """SimCLR preprocess_for_eval: centre crop of CROP_PROPORTION (aspect preserving) and bicubic resize.

  SimCLR passes crop = image_size > 32. With crop=False the whole image is resized (SimCLR's inputs already have the
  target size there; MURA's do not).
  """
  if crop:
    image = _crop_then_scale(image, lambda x: center_crop(x, height, width, crop_proportion=CROP_PROPORTION))
  else:
    image = _crop_then_scale(image, lambda x: _resize_bicubic(x, height, width))
  image = tf.reshape(image, [height, width, 1])
  return tf.clip_by_value(image, 0., 1.)

