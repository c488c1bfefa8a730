"""SimCLR ResNet v1 family: shapes, parameter counts, BN settings, init, padding, freezing, checkpointing."""
import numpy as np
import pytest
import tensorflow as tf
import keras

from conftest import two_cpu_strategy
from simclr_mura.models import resnet as resnet_lib


def _count(variables):
  return sum(int(np.prod(v.shape)) for v in variables)


def _built(depth, width, size=32, cifar_stem=False, **kwargs):
  encoder = resnet_lib.resnet(depth, width, cifar_stem=cifar_stem, **kwargs)
  resnet_lib.build_resnet(encoder, size)
  return encoder


def _sublayers(layer, cls):
  return [l for l in layer._flatten_layers(include_self=False) if isinstance(l, cls)]


@pytest.mark.parametrize("depth,width,expected_dim", [(18, 0.25, 128), (34, 0.125, 64)])
def test_basic_block_output_shapes(depth, width, expected_dim):
  encoder = resnet_lib.resnet(depth, width, cifar_stem=True)
  out = encoder(tf.random.uniform([2, 32, 32, 1]), training=True)
  assert out.shape == (2, expected_dim) and encoder.output_dim == expected_dim
  assert [len(g.blocks) for g in encoder.block_groups] == list(resnet_lib.BLOCK_SPECS[depth][1])


@pytest.mark.parametrize("depth,run", [(50, True), (101, True), (152, False), (200, False)])
def test_bottleneck_output_shapes_and_block_counts(depth, run):
  encoder = resnet_lib.resnet(depth, 1 / 16)  # 4 base filters -> 2048 / 16 = 128 outputs
  assert encoder.output_dim == 128 == resnet_lib.resnet_output_dim(depth, 1 / 16)
  assert tuple(len(g.blocks) for g in encoder.block_groups) == resnet_lib.BLOCK_SPECS[depth][1]
  assert all(isinstance(b, resnet_lib.BottleneckBlock) for g in encoder.block_groups for b in g.blocks)
  assert encoder.block_group4.block_1.conv2d_3.filters == 4 * encoder.block_group4.block_1.conv2d_2.filters
  if run:  # the deepest two only get constructed, to keep the suite fast
    assert encoder(tf.random.uniform([2, 32, 32, 1]), training=False).shape == (2, 128)


def test_resnet50_width1_parameter_count_matches_the_standard_resnet50():
  # torchvision/Keras ResNet-50 without the classifier: 23,508,032 trainable weights (conv without bias + BN
  # gamma/beta) for 3 input channels and 53,120 BN moving statistics. A 1-channel stem has 7*7*2*64 fewer weights.
  rgb = _built(50, 1.0, input_channels=3)
  assert _count(rgb.trainable_variables) == 23_508_032
  assert _count(rgb.non_trainable_variables) == 53_120
  gray = resnet_lib.resnet(50, 1.0)  # default: one input channel
  gray.stem(tf.zeros([1, 32, 32, 1]))
  assert gray.stem.conv2d.kernel.shape == (7, 7, 1, 64) and gray.output_dim == 2048


def test_resnet18_parameter_count_has_simclr_group1_projection():
  # torchvision ResNet-18 without fc: 11,176,512; SimCLR adds a 1x1 projection shortcut (+BN) to group 1.
  encoder = _built(18, 1.0, input_channels=3)
  assert _count(encoder.trainable_variables) == 11_176_512 + 64 * 64 + 2 * 64
  assert encoder.block_group1.block_1.shortcut_conv2d is not None
  assert encoder.block_group1.block_2.shortcut_conv2d is None


@pytest.mark.parametrize("width,stem_filters", [(0.25, 16), (0.1, 6), (1.5, 96), (0.001, 1)])
def test_fractional_widths_round_filters(width, stem_filters):
  encoder = resnet_lib.resnet(18, width, cifar_stem=True)
  assert encoder.stem.conv2d.filters == stem_filters
  assert encoder.block_group4.block_1.conv2d_1.filters == max(1, round(512 * width))
  assert encoder.output_dim == max(1, round(512 * width))


def test_stems_and_feature_map_sizes():
  cifar = _built(18, 0.25, size=32, cifar_stem=True)
  assert cifar.stem.max_pool is None
  assert cifar.stem.conv2d.kernel_size == (3, 3) and cifar.stem.conv2d.strides == (1, 1)
  assert cifar.forward_features(tf.zeros([1, 32, 32, 1])).shape == (1, 4, 4, 128)  # 32 -> 16 -> 8 -> 4
  imagenet = _built(18, 0.25, size=64)
  assert imagenet.stem.max_pool is not None
  assert imagenet.stem.conv2d.kernel_size == (7, 7) and imagenet.stem.conv2d.strides == (2, 2)
  assert imagenet.forward_features(tf.zeros([1, 64, 64, 1])).shape == (1, 2, 2, 128)  # /2 /2 then /8


def test_fixed_padding_matches_explicit_pad_then_valid():
  conv = resnet_lib.Conv2DFixedPadding(4, 7, 2, name="conv2d")
  x = tf.random.uniform([2, 33, 33, 1])
  y = conv(x)
  assert conv.padding == "valid" and not conv.use_bias
  expected = tf.nn.conv2d(tf.pad(x, [[0, 0], [3, 3], [3, 3], [0, 0]]), conv.kernel, 2, "VALID")
  np.testing.assert_allclose(y.numpy(), expected.numpy(), atol=1e-6)
  assert y.shape == (2, 17, 17, 4)
  assert resnet_lib.Conv2DFixedPadding(4, 3, 1).padding == "same"
  init = conv.kernel_initializer
  assert isinstance(init, keras.initializers.VarianceScaling)
  assert (init.scale, init.mode, init.distribution) == (1.0, "fan_in", "truncated_normal")


@pytest.mark.parametrize("decay,global_bn,replicas", [(0.9, True, 2), (0.97, False, 2), (0.9, True, 1)])
def test_batch_norm_settings_and_names(decay, global_bn, replicas):
  strategy = two_cpu_strategy() if replicas == 2 else tf.distribute.OneDeviceStrategy("/cpu:0")
  with strategy.scope():
    encoder = _built(18, 0.25, batch_norm_decay=decay, global_bn=global_bn)
  bns = _sublayers(encoder, keras.layers.BatchNormalization)
  assert len(bns) == 1 + 2 * 8 + 4  # stem, two per block, a projection shortcut per group
  for bn in bns:
    # Synchronized across replicas when there are several; one replica's statistics are its own batch's anyway.
    assert bn.momentum == decay and bn.epsilon == 1e-5 and bn.synchronized == (global_bn and replicas > 1)
    assert "batch_norm" in bn.name
  convs = _sublayers(encoder, keras.layers.Conv2D)
  assert all("conv2d" in c.name and not c.use_bias for c in convs)
  others = [l for l in encoder._flatten_layers(include_self=False)
            if not isinstance(l, (keras.layers.BatchNormalization, keras.layers.Conv2D))]
  assert not any("batch_norm" in l.name or "conv2d" in l.name for l in others)
  for v in encoder.variables:
    is_bn = any(v is w for bn in bns for w in bn.variables)
    assert ("batch_norm" in v.path) == is_bn, v.path
  assert len({v.path for v in encoder.variables}) == len(encoder.variables)


@pytest.mark.parametrize("depth", [18, 50])
def test_last_bn_of_each_block_starts_with_zero_gamma(depth):
  encoder = _built(depth, 1 / 16)
  last_name = "batch_norm_2" if depth == 18 else "batch_norm_3"
  for group in encoder.block_groups:
    for block in group.blocks:
      for bn in _sublayers(block, keras.layers.BatchNormalization):
        expected = 0.0 if bn.name == last_name else 1.0
        np.testing.assert_array_equal(bn.gamma.numpy(), expected)
  # With zero gammas every residual branch is silent at init: a block returns relu(shortcut).
  block = encoder.block_group2.block_2
  x = tf.random.normal([2, 4, 4, block.conv2d_1.filters if depth == 18 else 4 * block.conv2d_1.filters])
  np.testing.assert_allclose(block(x, training=False).numpy(), tf.nn.relu(x).numpy(), atol=1e-6)


def test_freeze_up_to_follows_fine_tune_after_block():
  encoder = _built(18, 0.25)
  parts = resnet_lib.stem_and_groups(encoder)
  for block in (-1, 0, 1, 2, 3, 4):
    encoder.freeze_up_to(block)
    assert [p.trainable for p in parts] == [block < 0] + [block < i for i in range(1, 5)]
    frozen_vars = {id(v) for p in parts if not p.trainable for v in p.variables}
    assert not any(id(v) in frozen_vars for v in encoder.trainable_variables)
  encoder.freeze_up_to(-1)
  assert len(encoder.trainable_variables) == len([v for v in encoder.variables if "moving" not in v.path])
  with pytest.raises(ValueError, match="accepted"):
    encoder.freeze_up_to(5)


def test_frozen_encoder_runs_bn_in_inference_mode():
  encoder = _built(18, 0.25)
  encoder.freeze_up_to(4)
  x = tf.random.uniform([4, 32, 32, 1])
  before = [v.numpy() for v in encoder.variables]
  np.testing.assert_allclose(encoder(x, training=True).numpy(), encoder(x, training=False).numpy(), atol=1e-6)
  for b, v in zip(before, encoder.variables):
    np.testing.assert_array_equal(b, v.numpy())


def test_checkpoint_holds_every_variable(tmp_path):
  encoder = _built(18, 0.25)
  path = tf.train.Checkpoint(encoder=encoder).save(str(tmp_path / "ckpt"))
  saved = [n for n, _ in tf.train.list_variables(path) if n.startswith("encoder/")]
  assert len(saved) == len(encoder.variables)


def test_invalid_depth_raises():
  with pytest.raises(ValueError, match="accepted"):
    resnet_lib.resnet(42, 1.0)


# SimCLRv2's published checkpoints (google-research/simclr README, Table 1 of arXiv:2006.10029), "Param (M)" of the
# encoder: ResNet-50 1x 24, 1x+SK 35, 2x 94, 2x+SK 140 (SK: --sk_ratio=0.0625, SimCLR's recommendation).
@pytest.mark.parametrize("width, sk_ratio, millions", [(1.0, 0.0625, 35), (2.0, 0.0, 94), (2.0, 0.0625, 140)])
def test_sk_resnet50_parameter_counts_match_simclrv2(width, sk_ratio, millions):
  encoder = _built(50, width, input_channels=3, sk_ratio=sk_ratio)
  assert round(_count(encoder.trainable_variables) / 1e6) == millions


def test_sk_replaces_the_3x3_conv_and_uses_resnet_d_stem_and_shortcuts():
  encoder = _built(50, 0.25, size=64, sk_ratio=0.0625)
  block = encoder.block_group2.block_1
  assert isinstance(block.sk_conv2d, resnet_lib.SelectiveKernelConv2D) and not hasattr(block, "conv2d_2")
  assert block.sk_conv2d.conv2d.kernel.shape == (3, 3, 32, 64)  # two 3x3 streams of 32 filters in one conv
  assert block.sk_conv2d.mix_conv2d_1.kernel.shape == (1, 1, 32, 32)  # max(32 * 0.0625, 32) = 32
  assert block.shortcut_pool is not None and block.shortcut_conv2d.strides == (1, 1)  # ResNet-D: pool, then 1x1/1
  assert encoder.stem.deep and encoder.stem.deep_conv2d_1.kernel.shape == (3, 3, 1, 8)
  assert encoder.stem.conv2d.kernel.shape == (3, 3, 8, 16)
  images = tf.random.normal([2, 64, 64, 1])
  assert encoder(images, training=True).shape == (2, encoder.output_dim)
  plain = _built(50, 0.25, size=64)
  assert encoder(images).shape == plain(images).shape


@pytest.mark.parametrize("depth", [18, 50])
def test_se_adds_a_squeeze_excitation_per_block(depth):
  plain, se = _built(depth, 0.25), _built(depth, 0.25, se_ratio=0.25)
  blocks = sum(len(g.blocks) for g in se.block_groups)
  # Each block gains a reduce and an expand 1x1 conv, each with a bias: 4 variables.
  assert len(se.trainable_variables) == len(plain.trainable_variables) + 4 * blocks
  block = se.block_group1.block_1
  filters = resnet_lib.scaled_filters(64, 0.25)
  out = filters * (4 if depth == 50 else 1)
  assert block.se.reduce_conv2d.kernel.shape == (1, 1, out, max(1, int(filters * 0.25)))
  assert block.se.expand_conv2d.kernel.shape == (1, 1, max(1, int(filters * 0.25)), out)
  assert se(tf.zeros([2, 32, 32, 1])).shape == plain(tf.zeros([2, 32, 32, 1])).shape
