"""SimCLR's model (google-research/simclr `tf2/model.py`): encoder, projection head, supervised head.

`build_model(cfg)` returns a `SimCLRModel` whose variables already exist, built the same way in both train modes, so a
`tf.train.Checkpoint(model=...)` written while pretraining restores (with `expect_partial()`) into a fine-tuning model
of the same architecture.

Note for anyone adding layers: tf.train.Checkpoint does not follow Keras 3 layers held in Python lists, so every
sub-layer here is a named attribute (lists are exposed as read-only properties).
"""
from __future__ import annotations

import os
import re
from typing import List, Optional, Tuple

import keras
import tensorflow as tf

from simclr_mura.models import resnet as resnet_lib
from simclr_mura import config as config_lib
from simclr_mura.config import CHOICES, DENSENET_FINE_TUNE_AFTER_BLOCK_VALUES, Config

PROJ_HEAD_MODES = CHOICES["proj_head_mode"]
BACKBONES = CHOICES["backbone"]
TRAIN_MODES = CHOICES["train_mode"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # keras.applications.densenet preprocess_input ("torch" mode)
IMAGENET_STD = (0.229, 0.224, 0.225)
_BUILD_SIZE_RESNET = 32  # ResNet variables do not depend on the image size, so build with a tiny dummy batch.


class DenseNetEncoder(keras.layers.Layer):
  """`keras.applications.DenseNet169` (no top) as an encoder of [N, s, s, 1] images in [0, 1] -> [N, 1664].

  The grayscale channel is repeated to 3; with pretrained weights the input is normalised with ImageNet's mean/std
  (the "torch" preprocessing the Keras DenseNet weights expect). The DenseNet's layers are renamed so that BN layers
  contain `batch_norm` and convs `conv2d` (Keras names them `*_bn` / `*_conv`), as the weight-decay rules expect.
  """

  def __init__(self, image_size: int, weights: Optional[str] = None, **kwargs):
    super().__init__(**kwargs)
    self.image_size = image_size
    self.weights_source = weights
    self.normalize = weights is not None
    self.input_channels = 1
    self.fine_tune_after_block = -1
    self.densenet = _renamed_densenet169(image_size, weights)
    self.output_dim = int(self.densenet.output.shape[-1])

  def build(self, input_shape):
    # Sub-layers build on their first call; overriding build() spares Keras 3 a symbolic trial run of call().
    self.built = True

  def freeze_up_to(self, fine_tune_after_block: int) -> None:
    """-1 trains everything; 4 freezes the whole DenseNet (linear evaluation, BN in inference mode)."""
    if fine_tune_after_block not in DENSENET_FINE_TUNE_AFTER_BLOCK_VALUES:
      raise ValueError(f"fine_tune_after_block={fine_tune_after_block} is not supported with backbone=densenet169; "
                       f"accepted: {list(DENSENET_FINE_TUNE_AFTER_BLOCK_VALUES)}")
    self.fine_tune_after_block = fine_tune_after_block
    self.densenet.trainable = fine_tune_after_block < 0

  def forward_features(self, inputs, training=None):
    """The last feature map [N, h, w, 1664] (after DenseNet's final BN-ReLU), e.g. for Grad-CAM."""
    x = tf.concat([inputs] * 3, axis=-1)  # grayscale -> RGB
    if self.normalize:
      mean = tf.constant(IMAGENET_MEAN, dtype=x.dtype)
      std = tf.constant(IMAGENET_STD, dtype=x.dtype)
      x = (x - mean) / std
    x = self.densenet(x, training=training)
    if self.fine_tune_after_block == 4:
      x = tf.stop_gradient(x)
    return x

  def call(self, inputs, training=None):
    return tf.reduce_mean(self.forward_features(inputs, training=training), axis=[1, 2])  # pooling="avg"

  def compute_output_shape(self, input_shape):
    return (input_shape[0], self.output_dim)


def _rename_for_regexes(name: str, layer: keras.layers.Layer) -> str:
  if isinstance(layer, keras.layers.BatchNormalization):
    return re.sub(r"bn$", "batch_norm", name) if "batch_norm" not in name else name
  if isinstance(layer, keras.layers.Conv2D):
    return re.sub(r"conv$", "conv2d", name) if "conv2d" not in name else name
  return name.replace("batch_norm", "bnorm").replace("conv2d", "conv_2d")


def _renamed_densenet169(image_size: int, weights: Optional[str]) -> keras.Model:
  """DenseNet-169 (include_top=False, no pooling) with BN/conv layers renamed; weights as loaded by Keras."""
  if weights not in (None, "imagenet") and not os.path.exists(weights):
    raise ValueError(f"backbone_weights={weights!r}: no such file; accepted: none, imagenet, or a path to a "
                     "Keras DenseNet-169 (no top) weights file")
  try:
    original = keras.applications.DenseNet169(
        include_top=False, weights=weights, input_shape=(image_size, image_size, 3), pooling=None)
  except Exception as e:  # pylint: disable=broad-except
    if weights == "imagenet":
      raise RuntimeError("backbone_weights=imagenet: downloading the Keras DenseNet-169 ImageNet weights failed "
                         f"({type(e).__name__}: {e}); they need internet access, or pass a local weights file path "
                         "as --backbone_weights") from e
    raise

  def clone(layer):
    config = layer.get_config()
    config["name"] = _rename_for_regexes(layer.name, layer)
    return layer.__class__.from_config(config)

  renamed = keras.models.clone_model(original, clone_function=clone)
  if weights is not None:
    renamed.set_weights(original.get_weights())
  return renamed


class _DenseBN(keras.layers.Layer):
  """SimCLR LinearLayer with use_bn=True: Dense (N(0, 0.01) init, no bias) then BN (centred when use_bias)."""

  def __init__(self, units: int, center: bool, batch_norm_decay: float, global_bn: bool, **kwargs):
    super().__init__(**kwargs)
    self.dense = keras.layers.Dense(
        units, use_bias=False, kernel_initializer=keras.initializers.RandomNormal(stddev=0.01), name="dense")
    self.batch_norm = resnet_lib.batch_norm(
        "batch_norm", batch_norm_decay=batch_norm_decay, global_bn=global_bn, center=center)

  def build(self, input_shape):
    # Sub-layers build on their first call; overriding build() spares Keras 3 a symbolic trial run of call().
    self.built = True

  def call(self, inputs, training=None):
    return self.batch_norm(self.dense(inputs), training=training)


class ProjectionHead(keras.layers.Layer):
  """SimCLR ProjectionHead; `call` returns [input, output of layer 1, ..., output of the last built layer].

  nonlinear: num_layers Dense+BN layers; middle ones keep the input width, centred BN and ReLU; the last has out_dim
  units, BN without centring and no ReLU. linear: one Dense(out_dim)+BN(center=False). none: identity (list of one).
  `num_built` < the mode's layer count builds only the first layers (fine-tuning keeps the first ft_proj_selector).
  """

  def __init__(self, mode: str, in_dim: int, out_dim: int = 128, num_layers: int = 3,
               num_built: Optional[int] = None, batch_norm_decay: float = 0.9, global_bn: bool = True,
               name: str = "head_contrastive", **kwargs):
    super().__init__(name=name, **kwargs)
    if mode not in PROJ_HEAD_MODES:
      raise ValueError(f"proj_head_mode={mode!r} is not valid; accepted: {list(PROJ_HEAD_MODES)}")
    if mode == "nonlinear" and num_layers < 1:
      raise ValueError(f"num_proj_layers must be >= 1 with proj_head_mode=nonlinear, got {num_layers}")
    self.mode = mode
    self.total_layers = {"none": 0, "linear": 1, "nonlinear": num_layers}[mode]
    self.num_built = self.total_layers if num_built is None else num_built
    if not 0 <= self.num_built <= self.total_layers:
      raise ValueError(f"cannot build {self.num_built} of the {self.total_layers} layers of a {mode} head")
    prefix = "l" if mode == "linear" else "nl"  # SimCLR's layer names l_0 / nl_j
    self._layer_names = []
    for j in range(self.num_built):
      last = j == self.total_layers - 1
      layer_name = f"{prefix}_{j}"
      # Attributes, not a list: tf.train.Checkpoint does not follow Keras 3 layers held in lists.
      setattr(self, layer_name, _DenseBN(out_dim if last else in_dim, center=not last,
                                         batch_norm_decay=batch_norm_decay, global_bn=global_bn, name=layer_name))
      self._layer_names.append(layer_name)

  def build(self, input_shape):
    # Sub-layers build on their first call; overriding build() spares Keras 3 a symbolic trial run of call().
    self.built = True

  @property
  def linear_layers(self) -> List[keras.layers.Layer]:
    return [getattr(self, n) for n in self._layer_names]

  def call(self, inputs, training=None):
    hiddens = [inputs]
    for j, layer in enumerate(self.linear_layers):
      h = layer(hiddens[-1], training=training)
      if j != self.total_layers - 1:
        h = tf.nn.relu(h)  # middle layers only
      hiddens.append(h)
    return hiddens


def build_encoder(cfg: Config) -> keras.layers.Layer:
  """The backbone named by cfg.backbone (variables not yet created for the ResNet)."""
  if cfg.backbone == "resnet":
    return resnet_lib.resnet(cfg.resnet_depth, cfg.width_multiplier, batch_norm_decay=cfg.batch_norm_decay,
                             global_bn=cfg.global_bn, cifar_stem=cfg.image_size <= 32, sk_ratio=cfg.sk_ratio,
                             se_ratio=cfg.se_ratio, name="resnet")
  weights = {"none": None, "imagenet": "imagenet"}.get(cfg.backbone_weights, cfg.backbone_weights)
  return DenseNetEncoder(cfg.image_size, weights=weights, name="densenet169")


class SimCLRModel(keras.Model):
  """SimCLR tf2/model.py Model: `call(images, training) -> (projection output | None, logits | None)`.

  images: float [N, H, W, 1] in [0, 1] (while pretraining, both views concatenated along the batch axis; the train
  step applies `input_pipeline.device_augment`, flip, colour jitter and blur, before calling the model).
  - pretrain: (projection-head output, float32 [N, proj_dim]; logits of the supervised head on the stop-gradient of
    the ft_proj_selector-th head input if lineareval_while_pretraining, else None);
  - finetune, distill: (None, logits) from the ft_proj_selector-th layer (only those projection layers are built).
  Logits are float32 under any mixed-precision policy.
  """

  def __init__(self, cfg: Config, **kwargs):
    kwargs.setdefault("name", "simclr_model")
    super().__init__(**kwargs)
    config_lib.validate_model(cfg)
    self.cfg = cfg
    self.train_mode = cfg.train_mode
    self.ft_proj_selector = cfg.ft_proj_selector
    self.encoder = build_encoder(cfg)
    self.projection_head = ProjectionHead(
        cfg.proj_head_mode, self.encoder.output_dim, cfg.proj_out_dim, cfg.num_proj_layers,
        num_built=cfg.ft_proj_selector if cfg.classifies else None,
        batch_norm_decay=cfg.batch_norm_decay, global_bn=cfg.global_bn, name="head_contrastive")
    if cfg.classifies or cfg.lineareval_while_pretraining:
      init = "zeros" if cfg.zero_init_logits_layer else keras.initializers.RandomNormal(stddev=0.01)
      self.supervised_head = keras.layers.Dense(
          cfg.num_classes, use_bias=True, kernel_initializer=init, bias_initializer="zeros", dtype="float32",
          name="head_supervised")
    else:
      self.supervised_head = None

  def build(self, input_shape):
    # Sub-layers build on their first call; overriding build() spares Keras 3 a symbolic trial run of call().
    self.built = True

  def call(self, images, training=None):
    features = self.encoder(images, training=training)
    hiddens = self.projection_head(features, training=training)
    if self.cfg.classifies:
      return None, self.supervised_head(hiddens[self.ft_proj_selector], training=training)
    projection = tf.cast(hiddens[-1], tf.float32)  # the contrastive loss needs float32 (its -1e9 mask)
    logits = None
    if self.supervised_head is not None:
      # SimCLR: no information from linear evaluation flows back into the pretraining network.
      logits = self.supervised_head(tf.stop_gradient(hiddens[self.ft_proj_selector]), training=training)
    return projection, logits

  def feature_map_and_logits(self, images, training=False) -> Tuple[tf.Tensor, tf.Tensor]:
    """(encoder's last feature map, supervised logits) in one pass, logits differentiable w.r.t. the map (Grad-CAM)."""
    if self.supervised_head is None:
      raise ValueError("this model has no supervised head (pretrain with lineareval_while_pretraining=False)")
    fmap = self.encoder.forward_features(images, training=training)
    features = tf.reduce_mean(fmap, axis=[1, 2])
    hiddens = self.projection_head(features, training=training)
    return fmap, self.supervised_head(hiddens[self.ft_proj_selector], training=training)

  def build_variables(self) -> None:
    """Creates every variable with one dummy inference pass (BN statistics untouched)."""
    size = self.cfg.image_size if self.cfg.backbone == "densenet169" else min(self.cfg.image_size, _BUILD_SIZE_RESNET)
    self(tf.zeros([1, size, size, 1]), training=False)

  def get_config(self):
    return {"cfg": self.cfg.to_dict(), "name": self.name}

  @classmethod
  def from_config(cls, config):
    return cls(Config(**config["cfg"]), name=config.get("name", "simclr_model"))


def build_model(cfg: Config) -> SimCLRModel:
  """The SimCLR model for cfg, variables created; in finetune mode, fine_tune_after_block applied.

  Call it inside the distribution strategy's scope and after setting the mixed-precision policy.
  """
  model = SimCLRModel(cfg)
  model.build_variables()
  if cfg.classifies:
    model.encoder.freeze_up_to(cfg.fine_tune_after_block)
  return model


def freeze_batch_norm(model: keras.Model) -> int:
  """Puts every batch-norm layer in inference mode for training (Keras runs a BatchNormalization layer that is not
  trainable with its moving statistics, and leaves its scale and offset as they are); returns how many. Keras's
  transfer-learning guide does this when fine-tuning a pretrained model on little data, so that a few images do not
  overwrite statistics learnt on many. Call before the optimizer is built (its variables are the trainable ones)."""
  layers = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
  for layer in layers:
    layer.trainable = False
  return len(layers)


def encoder_output_dim(model: SimCLRModel) -> int:
  """Width of the encoder's pooled features (512w / 2048w for ResNets, 1664 for DenseNet-169)."""
  return int(model.encoder.output_dim)


def zero_supervised_head(model: SimCLRModel) -> None:
  """SimCLR zero_init_logits_layer after restoring a checkpoint: zero the supervised head's kernel and bias."""
  if model.supervised_head is None:
    return
  for v in model.supervised_head.weights:
    v.assign(tf.zeros(v.shape, v.dtype))
