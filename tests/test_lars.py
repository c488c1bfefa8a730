"""simclr_mura.models.lars.LARS against a NumPy implementation of SimCLR's classic-momentum LARS (tf2/lars_optimizer.py)."""
import math
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from simclr_mura.models.lars import LARS
from simclr_mura.models.schedule import WarmUpAndCosineDecay
from conftest import two_cpu_strategy

SIMCLR_EXCLUDE = ["batch_norm", "bias", "head_supervised"]


def _np_lars_step(w, g, v, lr, momentum, weight_decay, eeta, decay, adapt):
  """One SimCLR LARS step in float64; returns (new_w, new_v)."""
  w, g, v = (np.asarray(x, np.float64) for x in (w, g, v))
  if decay and weight_decay:
    g = g + weight_decay * w
  trust = 1.0
  if adapt:
    w_norm, g_norm = np.linalg.norm(w), np.linalg.norm(g)
    if w_norm > 0 and g_norm > 0:
      trust = eeta * w_norm / g_norm
  new_v = momentum * v + lr * trust * g
  return w - new_v, new_v


def _flags(path, exclude_wd, exclude_la, weight_decay):
  decay = bool(weight_decay) and not any(re.search(r, path) for r in exclude_wd)
  adapt = not any(re.search(r, path) for r in exclude_la)
  return decay, adapt


def _np_run(init, grads_per_step, lrs, paths, momentum, weight_decay, eeta, exclude_wd, exclude_la):
  ws = [np.asarray(w, np.float64) for w in init]
  vs = [np.zeros_like(w) for w in ws]
  for grads, lr in zip(grads_per_step, lrs):
    for i, (g, path) in enumerate(zip(grads, paths)):
      decay, adapt = _flags(path, exclude_wd, exclude_la, weight_decay)
      ws[i], vs[i] = _np_lars_step(ws[i], g, vs[i], lr, momentum, weight_decay, eeta, decay, adapt)
  return ws, vs


def _keras_variables(rng):
  """Variables whose paths play the roles of a kernel, a bias and a BN parameter."""
  with keras.name_scope("dense"):
    kernel = keras.Variable(rng.normal(size=(3, 2)).astype(np.float32), name="kernel")
    bias = keras.Variable(rng.normal(size=(2,)).astype(np.float32), name="bias")
  with keras.name_scope("encoder_batch_norm"):
    gamma = keras.Variable(rng.normal(size=(2,)).astype(np.float32), name="gamma")
  return [kernel, bias, gamma]


@pytest.mark.parametrize("use_tf_function", [False, True])
@pytest.mark.parametrize("exclude_wd,exclude_la", [
    (None, None),
    (["batch_norm", "bias"], None),  # layer adaptation falls back to the weight-decay list
    (["bias"], ["batch_norm"]),  # separate lists: bias adapts but is not decayed, gamma the reverse
    # Anchored patterns match `variable.path` ('dense/bias'), not the raw tf.Variable name ('dense/bias:0') that
    # update_step receives under the TF backend: the decisions must come from build().
    ([r"bias$", r"^encoder_batch_norm/gamma$"], None),
])
def test_steps_match_numpy(use_tf_function, exclude_wd, exclude_la):
  rng = np.random.default_rng(0)
  variables = _keras_variables(rng)
  paths = [v.path for v in variables]
  assert paths == ["dense/kernel", "dense/bias", "encoder_batch_norm/gamma"]
  init = [v.numpy() for v in variables]
  steps = [[rng.normal(size=v.shape).astype(np.float32) for v in variables] for _ in range(3)]
  momentum, wd, eeta, lr = 0.9, 0.05, 0.01, 0.5
  opt = LARS(lr, momentum=momentum, weight_decay=wd, eeta=eeta,
             exclude_from_weight_decay=exclude_wd, exclude_from_layer_adaptation=exclude_la)

  def apply(grads):
    opt.apply_gradients(zip(grads, variables))

  if use_tf_function:
    apply = tf.function(apply)
  for grads in steps:
    apply([tf.constant(g) for g in grads])

  np_la = exclude_la if exclude_la is not None else (exclude_wd or [])
  ws, vs = _np_run(init, steps, [lr] * 3, paths, momentum, wd, eeta, exclude_wd or [], np_la)
  for var, slot, w, v in zip(variables, opt.momentums, ws, vs):
    np.testing.assert_allclose(var.numpy(), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(slot.numpy(), v, rtol=1e-5, atol=1e-7)
  assert int(opt.iterations.numpy()) == 3


def test_exclusion_decisions_per_variable():
  rng = np.random.default_rng(1)
  variables = _keras_variables(rng)
  opt = LARS(0.1, weight_decay=1e-4, exclude_from_weight_decay=["batch_norm", "bias"])
  opt.build(variables)
  assert opt._decay_flags == (True, False, False)
  assert opt._adapt_flags == (True, False, False)
  # weight_decay 0: nothing is decayed, but layer adaptation still follows the list.
  opt0 = LARS(0.1, weight_decay=0.0, exclude_from_weight_decay=["bias"])
  opt0.build(variables)
  assert opt0._decay_flags == (False, False, False)
  assert opt0._adapt_flags == (True, False, True)


def test_zero_norms_give_trust_one():
  # A zero weight (‖w‖ = 0) and a zero gradient (‖g‖ = 0, no decay) both use trust 1 and stay finite.
  with keras.name_scope("zero"):
    w0 = keras.Variable(np.zeros((4,), np.float32), name="kernel")
    w1 = keras.Variable(np.array([1.0, -2.0, 3.0], np.float32), name="kernel2")
  opt = LARS(0.2, momentum=0.9, weight_decay=0.0, eeta=0.001)
  g0 = np.array([0.5, -1.0, 2.0, 0.0], np.float32)
  g1 = np.zeros(3, np.float32)
  for _ in range(2):
    opt.apply_gradients([(tf.constant(g0), w0), (tf.constant(g1), w1)])
  # Hand-computed. Step 1: ‖w0‖ = 0 → trust 1, v = 0.2·g0 = [0.1, -0.2, 0.4, 0], w0 = -v.
  # Step 2: trust = 0.001·√0.21/√5.25 = 0.0002, v = 0.9·v + 0.2·0.0002·g0 = [0.09002, -0.18004, 0.36008, 0].
  np.testing.assert_allclose(w0.numpy(), [-0.19002, 0.38004, -0.76008, 0.0], rtol=1e-5)
  np.testing.assert_allclose(opt.momentums[0].numpy(), [0.09002, -0.18004, 0.36008, 0.0], rtol=1e-5)
  ws, _ = _np_run([np.zeros(4), [1.0, -2.0, 3.0]], [[g0, g1]] * 2, [0.2] * 2,
                  ["zero/kernel", "zero/kernel2"], 0.9, 0.0, 0.001, [], [])
  np.testing.assert_allclose(w0.numpy(), ws[0], rtol=1e-5)
  np.testing.assert_allclose(w1.numpy(), [1.0, -2.0, 3.0])  # zero gradient: no movement
  assert np.all(np.isfinite(w0.numpy()))


def _model(dtype=None):
  inputs = keras.Input((3,))
  x = keras.layers.Dense(5, name="encoder_dense", dtype=dtype)(inputs)
  x = keras.layers.BatchNormalization(name="encoder_batch_norm", dtype=dtype)(x)
  x = keras.layers.Activation("relu", dtype=dtype)(x)
  out = keras.layers.Dense(2, name="head_supervised", dtype=dtype)(x)
  return keras.Model(inputs, out)


def _np_schedule(step):
  # WarmUpAndCosineDecay(0.4, num_examples=40, train_batch_size=8, 'linear', warmup_epochs=0.4, total_steps=6):
  # warmup = round(0.4·40 // 8) = 2, scaled = 0.4·8/256 = 0.0125, decay_steps = 4.
  scaled = 0.4 * 8 / 256
  if step < 2:
    return step / 2 * scaled
  return scaled * 0.5 * (1 + math.cos(math.pi * min(step - 2, 4) / 4))


def _schedule():
  return WarmUpAndCosineDecay(0.4, 40, 8, "linear", 0.4, 6)


def test_model_with_batch_norm_in_tf_function_with_schedule():
  keras.utils.set_random_seed(2)
  model = _model()
  variables = model.trainable_variables
  paths = [v.path for v in variables]
  assert any("batch_norm" in p for p in paths) and any("bias" in p for p in paths)
  opt = LARS(_schedule(), momentum=0.9, weight_decay=1e-2, exclude_from_weight_decay=SIMCLR_EXCLUDE)
  rng = np.random.default_rng(3)
  xs = [tf.constant(rng.normal(size=(8, 3)).astype(np.float32)) for _ in range(4)]

  @tf.function
  def train_step(x):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.square(model(x, training=True) - 1.0))
    grads = tape.gradient(loss, variables)
    opt.apply_gradients(zip(grads, variables))
    return grads

  ws = [v.numpy().astype(np.float64) for v in variables]
  vs = [np.zeros_like(w) for w in ws]
  for step, x in enumerate(xs):
    grads = [g.numpy() for g in train_step(x)]
    for i, path in enumerate(paths):
      decay, adapt = _flags(path, SIMCLR_EXCLUDE, SIMCLR_EXCLUDE, 1e-2)
      ws[i], vs[i] = _np_lars_step(ws[i], grads[i], vs[i], _np_schedule(step), 0.9, 1e-2, 0.001, decay, adapt)
    for var, w in zip(variables, ws):
      np.testing.assert_allclose(var.numpy(), w, rtol=1e-5, atol=1e-7)
  # Only the encoder kernel is decayed and trust-scaled.
  assert opt._decay_flags == tuple(p == "encoder_dense/kernel" for p in paths)
  assert opt._adapt_flags == opt._decay_flags


def test_two_cpu_replicas():
  strategy = two_cpu_strategy()
  keras.utils.set_random_seed(4)
  exclude = ["batch_norm", r"bias$", "head_supervised"]  # anchored: per-replica names end in '/replica_1:0'
  with strategy.scope():
    model = _model()
    opt = LARS(_schedule(), momentum=0.9, weight_decay=1e-2, exclude_from_weight_decay=exclude)
    # Keras 3 (also its own SGD): under MirroredStrategy the optimizer must be built before the first
    # tf.function step; building lazily inside strategy.run fails with "must feed a value for placeholder".
    opt.build(model.trainable_variables)
  variables = model.trainable_variables
  paths = [v.path for v in variables]
  init = [v.numpy().astype(np.float64) for v in variables]
  rng = np.random.default_rng(5)
  batches = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(2)]  # one per replica
  per_replica_x = strategy.experimental_distribute_values_from_function(
      lambda ctx: tf.constant(batches[ctx.replica_id_in_sync_group]))

  def replica_step(x):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.square(model(x, training=False) - 1.0)) / strategy.num_replicas_in_sync
    grads = tape.gradient(loss, variables)
    opt.apply_gradients(zip(grads, variables))  # all-reduces (sums) the gradients, then update_step per device
    return grads

  @tf.function
  def train_step():
    return strategy.run(replica_step, args=(per_replica_x,))

  ws, vs = init, [np.zeros_like(w) for w in init]
  for step in range(3):
    per_replica_grads = train_step()
    summed = [sum(g.numpy() for g in strategy.experimental_local_results(pg)) for pg in per_replica_grads]
    for i, path in enumerate(paths):
      decay, adapt = _flags(path, exclude, exclude, 1e-2)
      ws[i], vs[i] = _np_lars_step(ws[i], summed[i], vs[i], _np_schedule(step), 0.9, 1e-2, 0.001, decay, adapt)
  for var, slot, w, v in zip(variables, opt.momentums, ws, vs):
    for copy in strategy.experimental_local_results(var.value):
      np.testing.assert_allclose(copy.numpy(), w, rtol=1e-5, atol=1e-7)
    for copy in strategy.experimental_local_results(slot.value):
      np.testing.assert_allclose(copy.numpy(), v, rtol=1e-5, atol=1e-8)


def test_loss_scale_optimizer_with_mixed_precision_layers():
  keras.utils.set_random_seed(6)
  model = _model(dtype="mixed_float16")
  variables = model.trainable_variables
  assert all(v.dtype == "float32" for v in variables)
  paths = [v.path for v in variables]
  opt = keras.optimizers.LossScaleOptimizer(
      LARS(_schedule(), momentum=0.9, weight_decay=1e-2, exclude_from_weight_decay=SIMCLR_EXCLUDE))
  opt.build(variables)  # creates dynamic_scale, so scale_loss uses it
  rng = np.random.default_rng(7)
  xs = [tf.constant(rng.normal(size=(8, 3)).astype(np.float32)) for _ in range(3)]

  @tf.function
  def train_step(x):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.square(tf.cast(model(x, training=True), tf.float32) - 1.0))
      scaled = opt.scale_loss(loss)
    scaled_grads = tape.gradient(scaled, variables)
    opt.apply(scaled_grads, variables)
    return [g / opt.dynamic_scale for g in scaled_grads]  # the unscaled gradients the inner LARS sees

  ws = [v.numpy().astype(np.float64) for v in variables]
  vs = [np.zeros_like(w) for w in ws]
  for step, x in enumerate(xs):
    scale_before = float(opt.dynamic_scale)
    grads = [g.numpy() for g in train_step(x)]
    assert float(opt.dynamic_scale) == scale_before  # finite gradients: the step was applied
    for i, path in enumerate(paths):
      decay, adapt = _flags(path, SIMCLR_EXCLUDE, SIMCLR_EXCLUDE, 1e-2)
      ws[i], vs[i] = _np_lars_step(ws[i], grads[i], vs[i], _np_schedule(step), 0.9, 1e-2, 0.001, decay, adapt)
  for var, w in zip(variables, ws):
    np.testing.assert_allclose(var.numpy(), w, rtol=2e-3, atol=1e-6)


def test_checkpoint_restores_momentum(tmp_path):
  keras.utils.set_random_seed(8)
  x = tf.constant(np.random.default_rng(9).normal(size=(8, 3)).astype(np.float32))

  def make():
    model = _model()
    opt = LARS(_schedule(), weight_decay=1e-2, exclude_from_weight_decay=SIMCLR_EXCLUDE)
    return model, opt

  def step(model, opt):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.square(model(x, training=False) - 1.0))
    opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))

  model, opt = make()
  for _ in range(2):
    step(model, opt)
  path = tf.train.Checkpoint(model=model, optimizer=opt).save(os.path.join(tmp_path, "ckpt"))

  for build_first in (True, False):  # restore into a built optimizer, and deferred (built after restore)
    model2, opt2 = make()
    if build_first:
      opt2.build(model2.trainable_variables)
    status = tf.train.Checkpoint(model=model2, optimizer=opt2).restore(path)
    if not build_first:
      opt2.build(model2.trainable_variables)
    status.assert_existing_objects_matched()
    assert int(opt2.iterations.numpy()) == 2
    for a, b in zip(opt.momentums, opt2.momentums):
      assert np.any(a.numpy() != 0)
      np.testing.assert_array_equal(a.numpy(), b.numpy())
    # The next step continues identically.
    step(model2, opt2)
  step(model, opt)
  for a, b in zip(model.trainable_variables, model2.trainable_variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)


def test_get_config_round_trip():
  opt = LARS(_schedule(), momentum=0.8, weight_decay=1e-6, eeta=0.002,
             exclude_from_weight_decay=["batch_norm", "bias"], exclude_from_layer_adaptation=["batch_norm"])
  config = opt.get_config()
  assert config["momentum"] == 0.8 and config["weight_decay"] == 1e-6 and config["eeta"] == 0.002
  assert config["exclude_from_weight_decay"] == ["batch_norm", "bias"]
  assert config["exclude_from_layer_adaptation"] == ["batch_norm"]
  clone = LARS.from_config(dict(config))  # from_config deserialises learning_rate in place
  assert clone.get_config() == config
  assert clone.weight_decay is None  # the base class's decoupled decay stays off
  restored = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
  assert isinstance(restored, LARS) and restored.get_config() == config
  assert LARS(0.1, exclude_from_weight_decay=["bias"]).get_config()["exclude_from_layer_adaptation"] == ["bias"]


@pytest.mark.parametrize("train_mode", ["pretrain", "finetune"])
def test_trainer_optimizer_exclusions_for_the_supervised_head(train_mode):
  """Both modes keep the head out of weight decay (SimCLR); only pretraining's probe (kernel and bias) keeps the
  trust ratio."""
  from simclr_mura.models import optim
  from simclr_mura.config import Config
  from simclr_mura.models.model import build_model
  config = Config(train_mode=train_mode, resnet_depth=18, width_multiplier=0.25, image_size=32, proj_out_dim=8,
                  optimizer="lars", weight_decay=1e-4, lineareval_while_pretraining=True, model_dir="unused")
  model = build_model(config)
  opt = optim.build_optimizer(config, 0.1)
  opt.build(model.trainable_variables)
  paths = [v.path for v in model.trainable_variables]
  head = [i for i, p in enumerate(paths) if "head_supervised" in p]
  conv = [i for i, p in enumerate(paths) if "conv" in p and p.endswith("kernel")]
  norms = [i for i, p in enumerate(paths) if "batch_norm" in p]
  assert len(head) == 2 and conv and norms  # the probe's kernel and bias
  assert not any(opt._decay_flags[i] for i in head + norms)
  assert all(opt._decay_flags[i] and opt._adapt_flags[i] for i in conv)
  # pretraining's probe, bias included, keeps the trust ratio; fine-tuning's head and batch norm don't
  assert [opt._adapt_flags[i] for i in head] == [train_mode == "pretrain"] * 2
  assert not any(opt._adapt_flags[i] for i in norms)
  # no other layer of this model has a bias; one that had would stay outside the trust ratio, as in SimCLR
  assert not opt._do_layer_adaptation_for_path("simclr_model/projection_head/dense_1/bias")
  assert opt._do_layer_adaptation_for_path("simclr_model/head_supervised/bias") == (train_mode == "pretrain")
