"""SimCLR's ResNet v1 family (google-research/simclr `tf2/resnet.py`) as Keras 3 layers.

Post-activation ResNet v1 as SimCLR builds it (no SK, no SE, no DropBlock):
- conv kernels: `VarianceScaling()` (scale 1, fan_in, truncated normal), no bias; strided convs pad explicitly
  (`FixedPadding`: total k-1, begin (k-1)//2) and then run 'valid', stride-1 convs run 'same';
- BN: momentum = batch_norm_decay (SimCLR 0.9), epsilon 1e-5 (`BATCH_NORM_EPSILON`), cross-replica when global_bn
  (SimCLR `SyncBatchNormalization`); the last BN of every residual block starts with gamma = 0 (`init_zero=True`);
- every block group's first block has a projection shortcut (1x1 conv + BN), also in group 1 of ResNet-18/34 where
  shapes would already match (SimCLR `use_projection=True`), so ResNet-18 has 4,224 more weights than torchvision's;
- stem: 7x7/2 conv, BN-ReLU, 3x3/2 max-pool ('same'); with `cifar_stem` a 3x3/1 conv, BN-ReLU and no max-pool;
- the output is the global average pool of block group 4: [N, 512*w] (basic blocks) or [N, 2048*w] (bottleneck).

Naming (weight-decay and LARS exclusion rules match `variable.path` with regexes): every BN layer's name contains
`batch_norm`, every conv layer's name contains `conv2d`, and no other layer uses either word.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import keras
import tensorflow as tf

BATCH_NORM_EPSILON = 1e-5  # SimCLR resnet.BATCH_NORM_EPSILON

# SimCLR resnet.resnet(): block type and number of blocks per group.
BLOCK_SPECS: Dict[int, Tuple[str, Tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}
BOTTLENECK_EXPANSION = 4
FINE_TUNE_AFTER_BLOCK_VALUES = (-1, 0, 1, 2, 3, 4)


def scaled_filters(base: int, width_multiplier: float) -> int:
  """Filters of a layer with `base` filters at width 1 (rounded, at least 1)."""
  return max(1, int(round(base * width_multiplier)))


def resnet_output_dim(depth: int, width_multiplier: float) -> int:
  """Width of the pooled features of `resnet(depth, width_multiplier)`."""
  if depth not in BLOCK_SPECS:
    raise ValueError(f"resnet_depth={depth} is not supported; accepted: {sorted(BLOCK_SPECS)}")
  block, _ = BLOCK_SPECS[depth]
  filters = scaled_filters(512, width_multiplier)
  return filters * BOTTLENECK_EXPANSION if block == "bottleneck" else filters


def batch_norm(name: str,
               batch_norm_decay: float = 0.9,
               global_bn: bool = True,
               init_zero: bool = False,
               center: bool = True,
               scale: bool = True) -> keras.layers.BatchNormalization:
  """SimCLR's BatchNormRelu minus the ReLU: momentum = decay, epsilon 1e-5, optional zero gamma, synchronized BN.

  Synchronized only when the strategy in scope has several replicas: with one, the statistics are the local batch's
  anyway, and the synchronized path (sums of x and x², an all-reduce) adds passes over every activation.
  """
  global_bn = global_bn and tf.distribute.get_strategy().num_replicas_in_sync > 1
  return keras.layers.BatchNormalization(
      axis=-1,
      momentum=batch_norm_decay,
      epsilon=BATCH_NORM_EPSILON,
      center=center,
      scale=scale,
      gamma_initializer="zeros" if init_zero else "ones",
      synchronized=global_bn,
      name=name)


class Conv2DFixedPadding(keras.layers.Conv2D):
  """SimCLR Conv2dFixedPadding: explicit input-size-independent padding for strided convs, then 'valid'."""

  def __init__(self, filters: int, kernel_size: int, strides: int, name: Optional[str] = None, **kwargs):
    kwargs.pop("padding", None)
    kwargs.pop("use_bias", None)
    kwargs.pop("kernel_initializer", None)
    super().__init__(
        filters=filters,
        kernel_size=kernel_size,
        strides=strides,
        padding="same" if strides == 1 else "valid",
        use_bias=False,
        kernel_initializer=keras.initializers.VarianceScaling(),  # SimCLR: tf.keras VarianceScaling() defaults
        name=name,
        **kwargs)
    pad_total = kernel_size - 1
    self._pad = (pad_total // 2, pad_total - pad_total // 2) if strides > 1 else None

  def _padded_shape(self, input_shape):
    if self._pad is None:
      return input_shape
    grow = sum(self._pad)
    return (input_shape[0], *[None if d is None else d + grow for d in input_shape[1:3]], input_shape[3])

  def call(self, inputs):
    if self._pad is not None:
      beg, end = self._pad
      inputs = tf.pad(inputs, [[0, 0], [beg, end], [beg, end], [0, 0]])
    return super().call(inputs)

  def compute_output_shape(self, input_shape):
    return super().compute_output_shape(self._padded_shape(input_shape))

  def get_config(self):
    config = super().get_config()
    for key in ("padding", "use_bias", "kernel_initializer"):
      config.pop(key, None)
    config["kernel_size"] = self.kernel_size[0]
    config["strides"] = self.strides[0]
    return config


class SelectiveKernelConv2D(keras.layers.Layer):
  """SimCLRv2's SK_Conv2D (selective kernels, Li et al. 2019, arXiv:1903.06586), replacing a bottleneck's 3x3 conv
  and its BN-ReLU when --sk_ratio > 0: two 3x3 streams (one conv of 2·filters, BN-ReLU, split), mixed per channel by
  a softmax over the streams of weights computed from their pooled sum (1x1 conv to max(filters·sk_ratio, 32), BN-ReLU,
  1x1 conv to 2·filters)."""

  def __init__(self, filters: int, strides: int, sk_ratio: float, bn: dict, min_dim: int = 32, **kwargs):
    super().__init__(**kwargs)
    self.conv2d = Conv2DFixedPadding(2 * filters, 3, strides, name="conv2d")
    self.batch_norm = batch_norm("batch_norm", **bn)
    self.mix_conv2d_1 = keras.layers.Conv2D(max(int(filters * sk_ratio), min_dim), 1, use_bias=False,
                                            kernel_initializer=keras.initializers.VarianceScaling(),
                                            name="mix_conv2d_1")
    self.mix_batch_norm = batch_norm("mix_batch_norm", **bn)
    self.mix_conv2d_2 = keras.layers.Conv2D(2 * filters, 1, use_bias=False,
                                            kernel_initializer=keras.initializers.VarianceScaling(),
                                            name="mix_conv2d_2")

  def build(self, input_shape):
    self.built = True

  def call(self, inputs, training=None):
    streams = tf.stack(tf.split(tf.nn.relu(self.batch_norm(self.conv2d(inputs), training=training)), 2, axis=-1))
    pooled = tf.reduce_mean(tf.reduce_sum(streams, axis=0), axis=[1, 2], keepdims=True)
    mix = self.mix_conv2d_2(tf.nn.relu(self.mix_batch_norm(self.mix_conv2d_1(pooled), training=training)))
    weights = tf.nn.softmax(tf.stack(tf.split(mix, 2, axis=-1)), axis=0)
    return tf.reduce_sum(streams * weights, axis=0)


class SqueezeExcitation(keras.layers.Layer):
  """SimCLRv2's SE_Layer (Hu et al. 2018, arXiv:1709.01507) at the end of a block's residual branch when --se_ratio >
  0: channel weights sigmoid(expand(relu(reduce(mean over space)))), reduce to max(1, filters·se_ratio) channels with
  `filters` the block's base width, expand back to the branch's channels; both 1x1 convs with biases."""

  def __init__(self, filters: int, se_ratio: float, **kwargs):
    super().__init__(**kwargs)
    self.reduced = max(1, int(filters * se_ratio))
    self.reduce_conv2d = keras.layers.Conv2D(self.reduced, 1, padding="same", use_bias=True,
                                             kernel_initializer=keras.initializers.VarianceScaling(),
                                             name="reduce_conv2d")
    self.expand_conv2d = None

  def build(self, input_shape):
    self.expand_conv2d = keras.layers.Conv2D(int(input_shape[-1]), 1, padding="same", use_bias=True,
                                             kernel_initializer=keras.initializers.VarianceScaling(),
                                             name="expand_conv2d")
    self.built = True

  def call(self, inputs):
    squeezed = tf.reduce_mean(inputs, axis=[1, 2], keepdims=True)
    return tf.sigmoid(self.expand_conv2d(tf.nn.relu(self.reduce_conv2d(squeezed)))) * inputs


class _Block(keras.layers.Layer):
  """What both SimCLR block types share: the projection shortcut of a group's first block (1x1 conv + BN; with
  --sk_ratio > 0 SimCLRv2's ResNet-D shortcut, arXiv:1812.01187: 2x2 average pooling with the stride, then the 1x1
  conv at stride 1) and the optional squeeze-excitation."""

  def __init__(self, shortcut_filters: int, strides: int, use_projection: bool, bn: dict, sk_ratio: float = 0.0,
               **kwargs):
    super().__init__(**kwargs)
    resnet_d = use_projection and sk_ratio > 0
    self.shortcut_pool = keras.layers.AveragePooling2D(
        pool_size=2, strides=strides, padding="same" if strides == 1 else "valid",
        name="shortcut_avg_pool") if resnet_d else None
    self.shortcut_pad = resnet_d and strides > 1  # SimCLR FixedPadding(2): one row and column after
    self.shortcut_conv2d = (Conv2DFixedPadding(shortcut_filters, 1, 1 if resnet_d else strides,
                                               name="shortcut_conv2d") if use_projection else None)
    self.shortcut_batch_norm = batch_norm("shortcut_batch_norm", **bn) if use_projection else None

  def build(self, input_shape):
    # Sub-layers build on their first call; overriding build() spares Keras 3 a symbolic trial run of call().
    self.built = True

  def shortcut(self, inputs, training=None):
    if self.shortcut_conv2d is None:
      return inputs
    if self.shortcut_pool is not None:
      if self.shortcut_pad:
        inputs = tf.pad(inputs, [[0, 0], [0, 1], [0, 1], [0, 0]])
      inputs = self.shortcut_pool(inputs)
    return self.shortcut_batch_norm(self.shortcut_conv2d(inputs), training=training)


class ResidualBlock(_Block):
  """SimCLR ResidualBlock (ResNet-18/34): two 3x3 convs; last BN gamma starts at zero."""

  def __init__(self, filters: int, strides: int, use_projection: bool, batch_norm_decay: float = 0.9,
               global_bn: bool = True, sk_ratio: float = 0.0, se_ratio: float = 0.0, **kwargs):
    bn = dict(batch_norm_decay=batch_norm_decay, global_bn=global_bn)
    super().__init__(filters, strides, use_projection, bn, sk_ratio=sk_ratio, **kwargs)
    self.conv2d_1 = Conv2DFixedPadding(filters, 3, strides, name="conv2d_1")
    self.batch_norm_1 = batch_norm("batch_norm_1", **bn)
    self.conv2d_2 = Conv2DFixedPadding(filters, 3, 1, name="conv2d_2")
    self.batch_norm_2 = batch_norm("batch_norm_2", init_zero=True, **bn)
    self.se = SqueezeExcitation(filters, se_ratio, name="se") if se_ratio > 0 else None

  def call(self, inputs, training=None):
    shortcut = self.shortcut(inputs, training=training)  # first, as SimCLR (and the variables' creation order)
    x = tf.nn.relu(self.batch_norm_1(self.conv2d_1(inputs), training=training))
    x = self.batch_norm_2(self.conv2d_2(x), training=training)
    if self.se is not None:
      x = self.se(x)
    return tf.nn.relu(x + shortcut)


class BottleneckBlock(_Block):
  """SimCLR BottleneckBlock (ResNet-50+): 1x1, 3x3 (strided), 1x1 x4; last BN gamma starts at zero."""

  def __init__(self, filters: int, strides: int, use_projection: bool, batch_norm_decay: float = 0.9,
               global_bn: bool = True, sk_ratio: float = 0.0, se_ratio: float = 0.0, **kwargs):
    bn = dict(batch_norm_decay=batch_norm_decay, global_bn=global_bn)
    out = BOTTLENECK_EXPANSION * filters
    super().__init__(out, strides, use_projection, bn, sk_ratio=sk_ratio, **kwargs)
    self.conv2d_1 = Conv2DFixedPadding(filters, 1, 1, name="conv2d_1")
    self.batch_norm_1 = batch_norm("batch_norm_1", **bn)
    if sk_ratio > 0:  # SimCLRv2: the 3x3 conv and its BN-ReLU become a selective-kernel conv
      self.sk_conv2d = SelectiveKernelConv2D(filters, strides, sk_ratio, bn, name="sk_conv2d")
    else:
      self.sk_conv2d = None
      self.conv2d_2 = Conv2DFixedPadding(filters, 3, strides, name="conv2d_2")
      self.batch_norm_2 = batch_norm("batch_norm_2", **bn)
    self.conv2d_3 = Conv2DFixedPadding(out, 1, 1, name="conv2d_3")
    self.batch_norm_3 = batch_norm("batch_norm_3", init_zero=True, **bn)
    self.se = SqueezeExcitation(filters, se_ratio, name="se") if se_ratio > 0 else None

  def call(self, inputs, training=None):
    shortcut = self.shortcut(inputs, training=training)  # first, as SimCLR (and the variables' creation order)
    x = tf.nn.relu(self.batch_norm_1(self.conv2d_1(inputs), training=training))
    if self.sk_conv2d is not None:
      x = self.sk_conv2d(x, training=training)
    else:
      x = tf.nn.relu(self.batch_norm_2(self.conv2d_2(x), training=training))
    x = self.batch_norm_3(self.conv2d_3(x), training=training)
    if self.se is not None:
      x = self.se(x)
    return tf.nn.relu(x + shortcut)


class BlockGroup(keras.layers.Layer):
  """SimCLR BlockGroup: `num_blocks` blocks, the first strided and with a projection shortcut."""

  def __init__(self, block_type: str, filters: int, num_blocks: int, strides: int, batch_norm_decay: float = 0.9,
               global_bn: bool = True, sk_ratio: float = 0.0, se_ratio: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    block_cls = BottleneckBlock if block_type == "bottleneck" else ResidualBlock
    self.num_blocks = num_blocks
    # One attribute per block: tf.train.Checkpoint does not follow Keras 3 layers held in Python lists.
    for i in range(num_blocks):
      setattr(self, f"block_{i + 1}", block_cls(
          filters, strides if i == 0 else 1, use_projection=(i == 0), batch_norm_decay=batch_norm_decay,
          global_bn=global_bn, sk_ratio=sk_ratio, se_ratio=se_ratio, name=f"block_{i + 1}"))

  @property
  def blocks(self) -> List[keras.layers.Layer]:
    return [getattr(self, f"block_{i + 1}") for i in range(self.num_blocks)]

  def build(self, input_shape):
    # Sub-layers build on their first call; overriding build() spares Keras 3 a symbolic trial run of call().
    self.built = True

  def call(self, inputs, training=None):
    x = inputs
    for block in self.blocks:
      x = block(x, training=training)
    return x


class Stem(keras.layers.Layer):
  """SimCLR initial_conv_relu_max_pool: 7x7/2 conv, BN-ReLU, 3x3/2 max-pool; cifar stem: 3x3/1 conv, BN-ReLU.
  With --sk_ratio > 0 (SimCLRv2's ResNet-D deep stem) the 7x7/2 conv becomes three 3x3 convs (/2 with filters/2,
  BN-ReLU, /1 with filters/2, BN-ReLU, /1 with filters)."""

  def __init__(self, filters: int, cifar_stem: bool = False, batch_norm_decay: float = 0.9, global_bn: bool = True,
               deep: bool = False, half_filters: int | None = None, **kwargs):
    super().__init__(**kwargs)
    self.cifar_stem = cifar_stem
    bn = dict(batch_norm_decay=batch_norm_decay, global_bn=global_bn)
    self.deep = deep and not cifar_stem
    if self.deep:
      self.deep_conv2d_1 = Conv2DFixedPadding(half_filters, 3, 2, name="deep_conv2d_1")
      self.deep_batch_norm_1 = batch_norm("deep_batch_norm_1", **bn)
      self.deep_conv2d_2 = Conv2DFixedPadding(half_filters, 3, 1, name="deep_conv2d_2")
      self.deep_batch_norm_2 = batch_norm("deep_batch_norm_2", **bn)
    self.conv2d = Conv2DFixedPadding(filters, 3 if cifar_stem or self.deep else 7,
                                     1 if cifar_stem or self.deep else 2, name="conv2d")
    self.batch_norm = batch_norm("batch_norm", batch_norm_decay=batch_norm_decay, global_bn=global_bn)
    self.max_pool = None if cifar_stem else keras.layers.MaxPooling2D(
        pool_size=3, strides=2, padding="same", name="max_pool")

  def build(self, input_shape):
    # Sub-layers build on their first call; overriding build() spares Keras 3 a symbolic trial run of call().
    self.built = True

  def call(self, inputs, training=None):
    if self.deep:
      inputs = tf.nn.relu(self.deep_batch_norm_1(self.deep_conv2d_1(inputs), training=training))
      inputs = tf.nn.relu(self.deep_batch_norm_2(self.deep_conv2d_2(inputs), training=training))
    x = tf.nn.relu(self.batch_norm(self.conv2d(inputs), training=training))
    if self.max_pool is not None:
      x = self.max_pool(x)
    return x


class ResNet(keras.layers.Layer):
  """SimCLR Resnet: images [N, H, W, C] -> pooled features [N, output_dim].

  Parts for fine-tuning: `stem` and `block_groups` (4 groups). `freeze_up_to(b)` applies SimCLR's
  fine_tune_after_block semantics.
  """

  def __init__(self,
               depth: int = 50,
               width_multiplier: float = 1.0,
               batch_norm_decay: float = 0.9,
               global_bn: bool = True,
               cifar_stem: bool = False,
               input_channels: int = 1,
               sk_ratio: float = 0.0,
               se_ratio: float = 0.0,
               **kwargs):
    super().__init__(**kwargs)
    if depth not in BLOCK_SPECS:
      raise ValueError(f"resnet_depth={depth} is not supported; accepted: {sorted(BLOCK_SPECS)}")
    if not width_multiplier > 0:
      raise ValueError(f"width_multiplier must be > 0, got {width_multiplier}")
    self.depth = depth
    self.width_multiplier = width_multiplier
    self.batch_norm_decay = batch_norm_decay
    self.global_bn = global_bn
    self.cifar_stem = cifar_stem
    self.input_channels = input_channels
    self.sk_ratio = sk_ratio
    self.se_ratio = se_ratio
    self.block_type, blocks = BLOCK_SPECS[depth]
    bn = dict(batch_norm_decay=batch_norm_decay, global_bn=global_bn)
    self.stem = Stem(scaled_filters(64, width_multiplier), cifar_stem=cifar_stem, name="stem", deep=sk_ratio > 0,
                     half_filters=max(1, int(64 * width_multiplier) // 2), **bn)
    # One attribute per group (block_group1..4, SimCLR's names): tf.train.Checkpoint does not follow Keras 3 layers
    # held in Python lists.
    for i, (base, n, strides) in enumerate(zip((64, 128, 256, 512), blocks, (1, 2, 2, 2))):
      setattr(self, f"block_group{i + 1}", BlockGroup(
          self.block_type, scaled_filters(base, width_multiplier), n, strides, name=f"block_group{i + 1}",
          sk_ratio=sk_ratio, se_ratio=se_ratio, **bn))
    self.output_dim = resnet_output_dim(depth, width_multiplier)
    self.fine_tune_after_block = -1

  def build(self, input_shape):
    # Sub-layers build on their first call; overriding build() spares Keras 3 a symbolic trial run of call().
    self.built = True

  @property
  def block_groups(self) -> List[BlockGroup]:
    """[block_group1, ..., block_group4]."""
    return [self.block_group1, self.block_group2, self.block_group3, self.block_group4]

  def freeze_up_to(self, fine_tune_after_block: int) -> None:
    """SimCLR fine_tune_after_block: -1 trains all; 0 freezes the stem; i in 1..3 also groups 1..i; 4 all.

    Frozen parts get `trainable = False`: their variables leave `trainable_variables`, and their BN layers run in
    inference mode (moving statistics, no updates) even when called with training=True. A stop_gradient after the
    last frozen part spares the backward pass through it (SimCLR does the same).
    """
    if fine_tune_after_block not in FINE_TUNE_AFTER_BLOCK_VALUES:
      raise ValueError(f"fine_tune_after_block={fine_tune_after_block} is not valid for a ResNet; accepted: "
                       f"{list(FINE_TUNE_AFTER_BLOCK_VALUES)}")
    self.fine_tune_after_block = fine_tune_after_block
    self.stem.trainable = fine_tune_after_block < 0
    for i, group in enumerate(self.block_groups, start=1):
      group.trainable = fine_tune_after_block < i

  def forward_features(self, inputs, training=None):
    """The last feature map (block group 4 output) [N, h, w, output_dim], e.g. for Grad-CAM."""
    x = self.stem(inputs, training=training)
    if self.fine_tune_after_block == 0:
      x = tf.stop_gradient(x)
    for i, group in enumerate(self.block_groups, start=1):
      x = group(x, training=training)
      if self.fine_tune_after_block == i:
        x = tf.stop_gradient(x)
    return x

  def call(self, inputs, training=None):
    return tf.reduce_mean(self.forward_features(inputs, training=training), axis=[1, 2])  # SimCLR final_avg_pool

  def compute_output_shape(self, input_shape):
    return (input_shape[0], self.output_dim)

  def get_config(self):
    config = super().get_config()
    config.update(depth=self.depth, width_multiplier=self.width_multiplier, batch_norm_decay=self.batch_norm_decay,
                  global_bn=self.global_bn, cifar_stem=self.cifar_stem, input_channels=self.input_channels,
                  sk_ratio=self.sk_ratio, se_ratio=self.se_ratio)
    return config


def resnet(depth: int,
           width_multiplier: float = 1.0,
           batch_norm_decay: float = 0.9,
           global_bn: bool = True,
           cifar_stem: bool = False,
           input_channels: int = 1,
           sk_ratio: float = 0.0,
           se_ratio: float = 0.0,
           name: str = "resnet") -> ResNet:
  """SimCLR resnet.resnet(): a ResNet-`depth` encoder (depths 18, 34, 50, 101, 152, 200).

  The layer's variables are created on its first call (any spatial size works, e.g. a [1, 32, 32, C] dummy).
  """
  return ResNet(depth=depth, width_multiplier=width_multiplier, batch_norm_decay=batch_norm_decay,
                global_bn=global_bn, cifar_stem=cifar_stem, input_channels=input_channels, sk_ratio=sk_ratio,
                se_ratio=se_ratio, name=name)


def build_resnet(encoder: ResNet, size: int = 32) -> None:
  """Creates the encoder's variables with a tiny dummy forward pass (variables do not depend on the image size)."""
  encoder(tf.zeros([1, size, size, encoder.input_channels]), training=False)


def stem_and_groups(encoder: ResNet) -> List[keras.layers.Layer]:
  """[stem, block_group1, ..., block_group4]."""
  return [encoder.stem, *encoder.block_groups]
