"""SimCLR model: heads, train modes, ft_proj_selector, checkpoint round-trip, freezing, DenseNet, mixed precision."""
import numpy as np
import pytest
import tensorflow as tf
import keras

from simclr_mura.models import model as model_lib
from simclr_mura.config import Config

# ResNet-18 at width 0.25 (128-d features) on 32-px images (cifar stem): tiny and fast.
TINY = Config(resnet_depth=18, width_multiplier=0.25, image_size=32, proj_out_dim=16, num_proj_layers=3,
              train_batch_size=4)
ENC_DIM = 128


def _images(n=4, seed=0):
  return tf.random.stateless_uniform([n, 32, 32, 1], seed=[seed, 1])


def _snapshot(variables):
  return {v.path: v.numpy().copy() for v in variables}


def _sgd_step(model, images, labels, lr=0.5):
  """One SGD step on the supervised loss (+ a stand-in contrastive loss on the projection while pretraining)."""
  optimizer = keras.optimizers.SGD(lr)
  with tf.GradientTape() as tape:
    projection, logits = model(images, training=True)
    loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
    if projection is not None:
      loss += tf.reduce_mean(tf.square(projection))
  grads = tape.gradient(loss, model.trainable_variables)
  assert all(g is not None for g in grads)
  optimizer.apply_gradients(zip(grads, model.trainable_variables))


def test_nonlinear_head_layers_and_outputs():
  head = model_lib.ProjectionHead("nonlinear", in_dim=64, out_dim=8, num_layers=3, name="head_contrastive")
  x = tf.random.normal([5, 64])
  hiddens = head(x, training=True)
  assert [h.shape[-1] for h in hiddens] == [64, 64, 64, 8]
  np.testing.assert_array_equal(hiddens[0].numpy(), x.numpy())
  assert all(float(tf.reduce_min(h)) >= 0.0 for h in hiddens[1:3])  # ReLU on middle layers
  assert float(tf.reduce_min(hiddens[3])) < 0.0  # no ReLU on the last
  layers = head.linear_layers
  assert [l.name for l in layers] == ["nl_0", "nl_1", "nl_2"]
  assert [l.batch_norm.center for l in layers] == [True, True, False]
  for l in layers:
    assert not l.dense.use_bias
    assert isinstance(l.dense.kernel_initializer, keras.initializers.RandomNormal)
    assert l.dense.kernel_initializer.stddev == 0.01
    assert l.batch_norm.momentum == 0.9 and l.batch_norm.epsilon == 1e-5
  assert abs(float(tf.math.reduce_std(layers[0].dense.kernel)) - 0.01) < 0.001
  assert all("head_contrastive" in v.path for v in head.variables)
  assert not any("bias" in v.path or v.path.endswith("/beta") and "nl_2" in v.path for v in head.variables)


def test_linear_and_none_heads():
  linear = model_lib.ProjectionHead("linear", in_dim=32, out_dim=8)
  hiddens = linear(tf.random.normal([3, 32]), training=False)
  assert len(hiddens) == 2 and hiddens[1].shape == (3, 8)
  assert [l.name for l in linear.linear_layers] == ["l_0"] and not linear.linear_layers[0].batch_norm.center
  none = model_lib.ProjectionHead("none", in_dim=32, out_dim=8)
  x = tf.random.normal([3, 32])
  hiddens = none(x)
  assert len(hiddens) == 1 and hiddens[0] is x and not none.variables
  with pytest.raises(ValueError, match="accepted"):
    model_lib.ProjectionHead("mlp", in_dim=32)


@pytest.mark.parametrize("mode,proj_dim", [("nonlinear", 16), ("linear", 16), ("none", ENC_DIM)])
def test_pretrain_outputs_for_every_head_mode(mode, proj_dim):
  model = model_lib.build_model(TINY.replace(proj_head_mode=mode))
  projection, logits = model(_images(), training=True)
  assert projection.shape == (4, proj_dim) and projection.dtype == tf.float32
  assert logits.shape == (4, 2) and logits.dtype == tf.float32
  # The supervised head sees stop_gradient features: nothing flows back into the encoder or projection head.
  with tf.GradientTape() as tape:
    _, logits = model(_images(), training=True)
    total = tf.reduce_sum(logits)
  grads = tape.gradient(total, model.encoder.trainable_variables +
                        model.projection_head.trainable_variables + model.supervised_head.trainable_variables)
  n_enc = len(model.encoder.trainable_variables) + len(model.projection_head.trainable_variables)
  assert all(g is None for g in grads[:n_enc]) and all(g is not None for g in grads[n_enc:])


def test_pretrain_without_linear_eval_has_no_supervised_head():
  model = model_lib.build_model(TINY.replace(lineareval_while_pretraining=False))
  projection, logits = model(_images(), training=False)
  assert projection.shape == (4, 16) and logits is None and model.supervised_head is None
  assert not any("head_supervised" in v.path for v in model.variables)


@pytest.mark.parametrize("mode,selector,head_in", [("nonlinear", 0, ENC_DIM), ("nonlinear", 2, ENC_DIM),
                                                   ("nonlinear", 3, 16), ("linear", 1, 16), ("none", 0, ENC_DIM)])
def test_finetune_uses_the_selected_projection_layer(mode, selector, head_in):
  model = model_lib.build_model(TINY.replace(train_mode="finetune", proj_head_mode=mode, ft_proj_selector=selector))
  assert len(model.projection_head.linear_layers) == selector  # layers past the selector are never built
  projection, logits = model(_images(), training=True)
  assert projection is None and logits.shape == (4, 2) and logits.dtype == tf.float32
  assert model.supervised_head.kernel.shape == (head_in, 2)
  assert model.supervised_head.name == "head_supervised" and model.supervised_head.use_bias
  hiddens = model.projection_head(model.encoder(_images(), training=False), training=False)
  np.testing.assert_allclose(model(_images(), training=False)[1].numpy(),
                             model.supervised_head(hiddens[selector]).numpy(), atol=1e-5)
  fmap, logits2 = model.feature_map_and_logits(_images())
  assert fmap.shape == (4, 4, 4, ENC_DIM)
  np.testing.assert_allclose(logits2.numpy(), model(_images(), training=False)[1].numpy(), atol=1e-5)


@pytest.mark.parametrize("changes", [dict(ft_proj_selector=4), dict(proj_head_mode="linear", ft_proj_selector=2),
                                     dict(proj_head_mode="none", ft_proj_selector=1), dict(train_mode="linear"),
                                     dict(fine_tune_after_block=2), dict(backbone="vgg"), dict(resnet_depth=42),
                                     dict(backbone_weights="imagenet"),
                                     dict(train_mode="finetune", fine_tune_after_block=7)])
def test_invalid_settings_raise_before_building(changes):
  with pytest.raises(ValueError, match="accepted|needs"):
    model_lib.build_model(TINY.replace(**changes))


def test_zero_init_logits_layer():
  model = model_lib.build_model(TINY.replace(train_mode="finetune", zero_init_logits_layer=True))
  assert not np.any(model.supervised_head.kernel.numpy()) and not np.any(model.supervised_head.bias.numpy())
  np.testing.assert_array_equal(model(_images(), training=False)[1].numpy(), 0.0)
  other = model_lib.build_model(TINY.replace(train_mode="finetune"))
  assert np.any(other.supervised_head.kernel.numpy())
  model_lib.zero_supervised_head(other)
  assert not np.any(other.supervised_head.kernel.numpy())


def test_pretrain_checkpoint_restores_into_finetune_model(tmp_path):
  pretrain = model_lib.build_model(TINY)
  _sgd_step(pretrain, _images(8), tf.zeros([8], tf.int32))  # moves weights and BN statistics from their init
  path = tf.train.Checkpoint(model=pretrain).save(str(tmp_path / "ckpt"))

  finetune = model_lib.build_model(TINY.replace(train_mode="finetune", ft_proj_selector=1,
                                                fine_tune_after_block=4))
  before = _snapshot(finetune.encoder.variables)
  status = tf.train.Checkpoint(model=finetune).restore(path).expect_partial()
  status.assert_existing_objects_matched()
  assert len(finetune.encoder.variables) == len(pretrain.encoder.variables) > 0
  for a, b in zip(pretrain.encoder.variables, finetune.encoder.variables):
    assert a.path == b.path
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert any(not np.array_equal(before[v.path], v.numpy()) for v in finetune.encoder.variables)
  for a, b in zip(pretrain.projection_head.nl_0.variables, finetune.projection_head.nl_0.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  np.testing.assert_allclose(pretrain.encoder(_images(), training=False).numpy(),
                             finetune.encoder(_images(), training=False).numpy(), atol=1e-6)


def test_linear_eval_trains_only_the_head():
  model = model_lib.build_model(TINY.replace(train_mode="finetune", fine_tune_after_block=4))
  assert all("head_supervised" in v.path for v in model.trainable_variables)
  encoder_before = _snapshot(model.encoder.variables)
  head_before = _snapshot(model.supervised_head.variables)
  _sgd_step(model, _images(8), tf.constant([0, 1] * 4))
  for v in model.encoder.variables:  # weights and BN moving statistics
    np.testing.assert_array_equal(encoder_before[v.path], v.numpy(), err_msg=v.path)
  assert all(not np.array_equal(head_before[v.path], v.numpy()) for v in model.supervised_head.variables)


def test_fine_tune_after_block_2_freezes_stem_and_groups_1_2():
  model = model_lib.build_model(TINY.replace(train_mode="finetune", fine_tune_after_block=2))
  frozen = ("/stem/", "/block_group1/", "/block_group2/")
  assert not any(f in v.path for v in model.trainable_variables for f in frozen)
  assert any("/block_group3/" in v.path for v in model.trainable_variables)
  assert any("/block_group4/" in v.path for v in model.trainable_variables)
  before = _snapshot(model.variables)
  _sgd_step(model, _images(8), tf.constant([0, 1] * 4))
  for v in model.variables:
    changed = not np.array_equal(before[v.path], v.numpy())
    if any(f in v.path for f in frozen):
      assert not changed, v.path
  moved = [v.path for v in model.variables if "moving_mean" in v.path and not np.array_equal(before[v.path], v.numpy())]
  assert any("/block_group3/" in p for p in moved) and not any(any(f in p for f in frozen) for p in moved)


def test_densenet169_backbone(tmp_path):
  cfg = TINY.replace(backbone="densenet169", train_mode="finetune", fine_tune_after_block=4)
  model = model_lib.build_model(cfg)
  assert model_lib.encoder_output_dim(model) == 1664
  assert not model.encoder.normalize  # no ImageNet statistics without ImageNet weights
  _, logits = model(_images(2), training=True)
  assert logits.shape == (2, 2) and logits.dtype == tf.float32
  assert all("head_supervised" in v.path for v in model.trainable_variables)
  bns = [l for l in model.encoder.densenet.layers if isinstance(l, keras.layers.BatchNormalization)]
  convs = [l for l in model.encoder.densenet.layers if isinstance(l, keras.layers.Conv2D)]
  assert bns and all("batch_norm" in l.name for l in bns) and all("conv2d" in l.name for l in convs)
  for v in model.encoder.variables:
    assert ("batch_norm" in v.path) == any(v is w for l in bns for w in l.weights), v.path
  path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
  saved = [n for n, _ in tf.train.list_variables(path) if n.startswith("model/")]
  assert len(saved) == len(model.variables)
  with pytest.raises(ValueError, match=r"accepted: \[-1, 4\]"):
    model_lib.build_model(cfg.replace(fine_tune_after_block=2))
  with pytest.raises(ValueError, match="no such file"):
    model_lib.build_model(cfg.replace(backbone_weights="/nonexistent/densenet.h5"))


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_keeps_outputs_float32(policy):
  keras.mixed_precision.set_global_policy(policy)
  try:
    model = model_lib.build_model(TINY.replace(mixed_precision=policy))
    projection, logits = model(_images(), training=True)
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert projection.dtype == tf.float32 and logits.dtype == tf.float32
  assert model.encoder.stem.conv2d.compute_dtype != "float32"
  assert np.all(np.isfinite(projection.numpy())) and np.all(np.isfinite(logits.numpy()))


def test_imagenet_download_failure_gives_a_clear_error(monkeypatch):
  def offline(**kwargs):
    assert kwargs["weights"] == "imagenet" and kwargs["input_shape"] == (32, 32, 3)
    raise OSError("URL fetch failure: no route to host")

  monkeypatch.setattr(keras.applications, "DenseNet169", offline)
  cfg = TINY.replace(backbone="densenet169", backbone_weights="imagenet", train_mode="finetune")
  with pytest.raises(RuntimeError, match="need internet access, or pass a local weights file path"):
    model_lib.build_model(cfg)
