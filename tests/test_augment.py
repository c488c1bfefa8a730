"""SimCLR augmentations for grayscale radiographs: shapes, ranges, crop/flip/jitter/blur statistics, eval crop."""
import math

import numpy as np
import pytest
import tensorflow as tf

from simclr_mura.data import augment

N_DRAWS = 400


@pytest.fixture(autouse=True)
def _seeded():
  """Statistical tests draw from a fixed global seed, so their tolerance bands (about 4 sigma) cannot flake."""
  tf.random.set_seed(1234)
  yield
  tf.random.set_seed(None)


def _ramp(h, w):
  return tf.reshape(tf.range(h * w, dtype=tf.float32) / float(h * w), [h, w, 1])


def _draws(fn, image, n=N_DRAWS):
  """fn applied independently n times (one traced graph, fresh random draws per element)."""
  batch = tf.repeat(image[tf.newaxis], n, axis=0)
  mapped = tf.function(lambda b: tf.map_fn(fn, b, fn_output_signature=tf.TensorSpec(None, tf.float32)))
  return mapped(batch).numpy()


def test_to_float():
  x = augment.to_float(tf.constant([[[0], [128], [255]]], tf.uint8))
  assert x.dtype == tf.float32
  np.testing.assert_allclose(x.numpy().ravel(), [0.0, 128 / 255, 1.0], atol=1e-7)
  assert augment.to_float(tf.constant([[[0.5]]])).numpy().item() == 0.5


@pytest.mark.parametrize("kwargs", [{}, dict(color_distort=False), dict(rotation_degrees=30.0, translate_fraction=0.1),
                                    dict(crop=False, flip=False)])
def test_preprocess_for_train_shape_dtype_range_in_tf_data(kwargs):
  image = tf.cast(tf.random.stateless_uniform([70, 50, 1], [1, 2], maxval=256, dtype=tf.int32), tf.uint8)
  ds = tf.data.Dataset.from_tensors(tf.io.encode_png(image)).repeat(6).map(
      lambda b: augment.preprocess_for_train(tf.io.decode_png(b, channels=1), 40, 32, **kwargs))
  for view in ds:
    assert view.shape == (40, 32, 1) and view.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(view)) and float(tf.reduce_max(view)) <= 1.0


def test_random_crop_area_and_aspect_statistics():
  size = tf.constant([200, 300, 1])

  @tf.function
  def sample(_):
    begin, crop_size, _ = tf.image.sample_distorted_bounding_box(
        size, tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), min_object_covered=0.1, aspect_ratio_range=(0.75, 4 / 3),
        area_range=(0.08, 1.0), max_attempts=100, use_image_if_no_bounding_boxes=True)
    return tf.cast(crop_size[:2], tf.float32)

  # The crop itself: distorted_bounding_box_crop returns exactly such a box.
  image = tf.zeros([200, 300, 1])
  shapes = np.array([augment.distorted_bounding_box_crop(image).shape[:2] for _ in range(100)], np.float32)
  drawn = tf.function(lambda r: tf.map_fn(sample, r, fn_output_signature=tf.float32))(tf.range(N_DRAWS))
  shapes = np.concatenate([shapes, drawn.numpy()])
  area = shapes[:, 0] * shapes[:, 1] / (200 * 300)
  aspect = shapes[:, 1] / shapes[:, 0]
  assert area.min() >= 0.08 - 0.01 and area.max() <= 1.0
  assert 0.3 < area.mean() < 0.7 and area.std() > 0.15  # varies over SimCLR's whole range
  full = area > 0.999
  assert np.all((aspect[~full] > 0.75 - 0.03) & (aspect[~full] < 4 / 3 + 0.03))


def test_random_crop_with_resize_output_and_content():
  image = _ramp(90, 60)
  crops = _draws(lambda x: augment.random_crop_with_resize(x, 24, 24), image, n=50)
  assert crops.shape == (50, 24, 24, 1)
  assert np.unique(crops.mean(axis=(1, 2, 3)).round(4)).size > 40  # different crops
  resized = augment.random_crop_with_resize(image, 24, 24, p=0.0)
  np.testing.assert_allclose(resized.numpy(), tf.image.resize(image, [24, 24], "bicubic").numpy(), atol=1e-6)


def test_flip_happens_about_half_the_time():
  image = tf.concat([tf.zeros([16, 8, 1]), tf.ones([16, 8, 1])], axis=1)
  views = _draws(lambda x: augment.preprocess_for_train(x, 16, 16, crop=False, color_distort=False), image)
  flipped = views[:, :, 0, 0].mean(axis=1) > 0.5
  assert np.all(np.isin(views.round(5), [0.0, 1.0]))
  assert 0.4 < flipped.mean() < 0.6


def test_color_jitter_brightness_range_and_probability():
  gray = tf.fill([8, 8, 1], 0.5)  # contrast is an identity on a constant image: only brightness shows
  views = _draws(lambda x: augment.random_color_jitter(x, strength=1.0), gray)
  values = views[:, 0, 0, 0]
  assert np.allclose(views, values[:, None, None, None])
  unchanged = np.isclose(values, 0.5, atol=1e-6)
  assert 0.12 < unchanged.mean() < 0.28  # jitter applied with probability 0.8
  assert values.min() >= 0.5 * 0.2 - 1e-6 and values.max() <= 0.5 * 1.8 + 1e-6  # factor in [1 - 0.8, 1 + 0.8]
  assert values.min() < 0.2 and values.max() > 0.8
  half = _draws(lambda x: augment.color_jitter(x, strength=0.5), gray, n=100)[:, 0, 0, 0]
  assert half.min() >= 0.5 * 0.6 - 1e-6 and half.max() <= 0.5 * 1.4 + 1e-6
  assert np.all(augment.color_jitter(gray, strength=0.0).numpy() == 0.5)


def test_contrast_scales_deviation_from_mean_and_clips():
  image = tf.reshape(tf.constant([0.25, 0.75] * 8), [4, 4, 1])  # mean 0.5
  views = _draws(lambda x: tf.clip_by_value(augment.random_contrast(x, 0.2, 1.8), 0., 1.), image)
  dev = np.abs(views - 0.5).max(axis=(1, 2, 3)) / 0.25
  assert dev.min() >= 0.2 - 1e-5 and dev.max() <= 1.8 + 1e-5 and dev.std() > 0.2
  np.testing.assert_allclose(views.mean(axis=(1, 2, 3)), 0.5, atol=1e-5)
  jittered = _draws(lambda x: augment.color_jitter(x, strength=1.0), tf.random.uniform([8, 8, 1]), n=50)
  assert jittered.min() >= 0.0 and jittered.max() <= 1.0


def test_batch_random_blur_probability_and_mass():
  n, h = N_DRAWS, 64  # kernel_size 64 // 10 = 6 -> radius 3, 7 taps (SimCLR)
  impulse = tf.scatter_nd([[h // 2, h // 2, 0]], [1.0], [h, h, 1])
  batch = tf.repeat(impulse[tf.newaxis], n, axis=0)
  out = augment.batch_random_blur(batch, h, h).numpy()
  assert out.shape == (n, h, h, 1) and out.dtype == np.float32
  blurred = ~np.all(out == batch.numpy(), axis=(1, 2, 3))
  assert 0.4 < blurred.mean() < 0.6
  np.testing.assert_allclose(out.sum(axis=(1, 2, 3)), 1.0, atol=1e-4)  # normalised kernel: mean preserved
  support = (out[blurred, :, :, 0] > 0).any(axis=0)
  rows, cols = np.nonzero(support)
  assert rows.max() - rows.min() + 1 == 7 and cols.max() - cols.min() + 1 == 7
  assert np.unique(out[blurred, h // 2, h // 2, 0].round(6)).size > 0.8 * blurred.sum()  # a sigma per image


def test_batch_gaussian_blur_matches_per_image_blur_and_keeps_constant_interior():
  images = tf.random.stateless_uniform([3, 32, 32, 1], [3, 4])
  sigma = tf.constant([0.1, 1.0, 2.0])
  batched = augment.batch_gaussian_blur(images, 6, sigma)
  for i in range(3):
    np.testing.assert_allclose(batched[i].numpy(), augment.gaussian_blur(images[i], 6, sigma[i]).numpy(), atol=1e-6)
  flat = augment.batch_gaussian_blur(tf.fill([2, 32, 32, 1], 0.7), 6, tf.constant([0.5, 2.0]))
  np.testing.assert_allclose(flat[:, 3:-3, 3:-3].numpy(), 0.7, atol=1e-6)


def test_batch_random_blur_under_xla_and_seeded():
  images = tf.random.stateless_uniform([6, 32, 32, 1], [5, 6])
  out = tf.function(lambda x: augment.batch_random_blur(x, 32, 32), jit_compile=True)(images)
  assert out.shape == images.shape and out.dtype == tf.float32
  a = augment.batch_random_blur([images, images], 32, 32, seed=tf.constant([1, 2]))
  b = augment.batch_random_blur([images, images], 32, 32, seed=tf.constant([1, 2]))
  np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
  np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
  assert not np.array_equal(a[0].numpy(), a[1].numpy())  # the two views get independent draws
  assert augment.batch_random_blur(tf.cast(images, tf.bfloat16), 32, 32).dtype == tf.float32


def test_random_blur_single_image():
  image = tf.random.stateless_uniform([32, 32, 1], [7, 8])
  np.testing.assert_array_equal(augment.random_blur(image, 32, p=0.0).numpy(), image.numpy())
  blurred = augment.random_blur(image, 32, p=1.0).numpy()
  assert not np.array_equal(blurred, image.numpy()) and blurred.std() < image.numpy().std()


def test_eval_center_crop_exact_values():
  square = _ramp(16, 16)  # crop 0.875 -> 14 x 14 at offset 1; a same-size bicubic resize is exact
  np.testing.assert_allclose(augment.preprocess_for_eval(square, 14, 14).numpy(), square[1:15, 1:15].numpy(),
                             atol=1e-6)
  wide = _ramp(16, 32)  # crop 14 x 14 at offsets ((16-14+1)//2, (32-14+1)//2) = (1, 9)
  np.testing.assert_allclose(augment.preprocess_for_eval(wide, 14, 14).numpy(), wide[1:15, 9:23].numpy(), atol=1e-6)
  tall = _ramp(40, 16)  # target 28 x 14 (aspect 0.5): crop 28 x 14 at offsets ((40-28+1)//2, (16-14+1)//2) = (6, 1)
  np.testing.assert_allclose(augment.preprocess_for_eval(tall, 28, 14).numpy(), tall[6:34, 1:15].numpy(), atol=1e-6)
  resized = augment.preprocess_for_eval(tf.cast(wide * 255, tf.uint8), 8, 8, crop=False)
  assert resized.shape == (8, 8, 1) and resized.dtype == tf.float32


def test_geometry_zero_is_identity_and_transforms_are_exact():
  image = _ramp(24, 24)
  assert augment.random_rotate(image, 0.0) is image
  assert augment.random_translate(image, 0.0) is image
  plain = augment.preprocess_for_train(image, 24, 24, crop=False, flip=False, color_distort=False)
  np.testing.assert_allclose(plain.numpy(), image.numpy(), atol=1e-6)
  # +90 degrees turns the image clockwise on screen (rot90 with k=3); integer shifts move content exactly.
  np.testing.assert_allclose(augment.affine_transform(image, math.pi / 2, 0, 0).numpy(),
                             tf.image.rot90(image, 3).numpy(), atol=1e-5)
  shifted = augment.affine_transform(image, 0.0, 3, -2).numpy()
  np.testing.assert_allclose(shifted[:-2, 3:], image[2:, :-3].numpy(), atol=1e-6)
  assert np.all(shifted[:, :3] == 0) and np.all(shifted[-2:] == 0)
  rotated = _draws(lambda x: augment.random_rotate(x, 30.0), image, n=20)
  assert all(not np.allclose(r, image.numpy()) for r in rotated)
  center = _draws(lambda x: augment.random_rotate(x, 30.0), tf.pad(tf.ones([8, 8, 1]), [[8, 8], [8, 8], [0, 0]]),
                  n=20)
  np.testing.assert_allclose(center[:, 10:14, 10:14], 1.0, atol=1e-5)  # rotation about the centre


def test_batch_flip_flips_about_half_the_images_exactly():
  ramp = tf.tile(tf.reshape(tf.linspace(0.0, 1.0, 8), [1, 1, 8, 1]), [400, 4, 1, 1])
  out = augment.batch_random_flip_left_right(ramp).numpy()
  flipped = out[:, 0, 0, 0] > 0.5
  np.testing.assert_array_equal(out[flipped], ramp.numpy()[flipped][:, :, ::-1])  # mirrored, nothing else
  np.testing.assert_array_equal(out[~flipped], ramp.numpy()[~flipped])
  assert 0.4 < flipped.mean() < 0.6


def test_batch_color_jitter_is_per_image_and_applied_with_probability_p():
  two_level = np.where(np.arange(16) < 8, 0.25, 0.75).astype(np.float32)
  images = tf.constant(np.tile(two_level.reshape(1, 1, 16, 1), [2000, 4, 1, 1]))
  out = augment.batch_random_color_jitter(images, strength=0.5, p=0.8).numpy()
  assert out.shape == images.shape and out.min() >= 0.0 and out.max() <= 1.0
  unchanged = np.all(out == images.numpy(), axis=(1, 2, 3))
  assert 0.16 < unchanged.mean() < 0.24  # jitter with probability 0.8
  lo, hi = out[:, 0, 0, 0], out[:, 0, -1, 0]
  # Brightness and contrast act on each image as one increasing map: the two levels stay two, in order ...
  assert np.all(np.isclose(out[:, :, :8], lo[:, None, None, None])) and np.all(hi >= lo)
  spread = (hi - lo)[~unchanged]
  # ... with factors of its own: contrast 0.6-1.4 and brightness 0.6-1.4 widen or narrow the gap image by image.
  assert spread.min() < 0.35 and spread.max() > 0.65 and np.unique(np.round(spread, 4)).size > 1000


def test_device_augment_flips_and_clips_fine_tuning_views_only():
  ramp = tf.tile(tf.reshape(tf.linspace(-0.1, 1.1, 8), [1, 1, 8, 1]), [50, 4, 1, 1])  # bicubic overshoot
  out = augment.device_augment(ramp, 8, color_distort=False).numpy()
  clipped = np.clip(ramp.numpy(), 0.0, 1.0)
  for image, source in zip(out, clipped):
    assert np.array_equal(image, source) or np.array_equal(image, source[:, ::-1])


def test_device_augment_pretraining_views_stay_in_range():
  images = tf.random.stateless_uniform([16, 32, 32, 1], seed=[1, 2], minval=-0.05, maxval=1.05)
  out = augment.device_augment(images, 32, color_distort=True, blur=True).numpy()
  assert out.shape == (16, 32, 32, 1) and out.min() >= 0.0 and out.max() <= 1.0
  assert not np.allclose(out, np.clip(images.numpy(), 0, 1))  # jittered and blurred
