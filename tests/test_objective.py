"""simclr_mura.models.objective against independent NumPy computations (SimCLR tf2/objective.py semantics)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from simclr_mura.models import objective
from conftest import two_cpu_strategy


def _np_log_softmax(x):
  x = x - x.max(axis=1, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def _np_ntxent(hidden1_all, hidden2_all, rows, temperature, hidden_norm):
  """NT-Xent for the rows `rows` of the global batch, negatives from every row (float64).

  Returns (loss, logits_ab, labels) as SimCLR's add_contrastive_loss would on the replica owning `rows`.
  """
  a_all = np.asarray(hidden1_all, np.float64)
  b_all = np.asarray(hidden2_all, np.float64)
  if hidden_norm:
    a_all = a_all / np.maximum(np.linalg.norm(a_all, axis=1, keepdims=True), 1e-6)
    b_all = b_all / np.maximum(np.linalg.norm(b_all, axis=1, keepdims=True), 1e-6)
  total = a_all.shape[0]
  a, b = a_all[rows], b_all[rows]
  pos = np.arange(total)[rows]
  loss = 0.0
  logits_ab = a @ b_all.T / temperature
  for x, x_all, y_all in ((a, a_all, b_all), (b, b_all, a_all)):
    cross = x @ y_all.T / temperature  # positives and the other view's negatives
    same = x @ x_all.T / temperature
    same[np.arange(len(pos)), pos] = -np.inf  # a row never contrasts with itself
    logp = _np_log_softmax(np.concatenate([cross, same], axis=1))
    loss = loss - logp[np.arange(len(pos)), pos]
  labels = np.zeros((len(pos), 2 * total))
  labels[np.arange(len(pos)), pos] = 1.0
  return loss.mean(), logits_ab, labels


def _np_global_loss(hidden, temperature, hidden_norm):
  n = hidden.shape[0] // 2
  return _np_ntxent(hidden[:n], hidden[n:], slice(0, n), temperature, hidden_norm)[0]


def _np_numerical_grad(fn, x, eps=1e-6):
  grad = np.zeros_like(x)
  for idx in np.ndindex(*x.shape):
    xp, xm = x.copy(), x.copy()
    xp[idx] += eps
    xm[idx] -= eps
    grad[idx] = (fn(xp) - fn(xm)) / (2 * eps)
  return grad


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("hidden_norm", [True, False])
def test_single_device_matches_numpy(temperature, hidden_norm):
  rng = np.random.default_rng(0)
  n, d = 6, 5
  hidden = rng.normal(size=(2 * n, d)).astype(np.float32)
  if not hidden_norm:
    hidden *= 0.3  # keep unnormalised logits moderate
  loss, logits_ab, labels = objective.contrastive_loss(
      tf.constant(hidden), hidden_norm=hidden_norm, temperature=temperature)
  np_loss, np_logits_ab, np_labels = _np_ntxent(hidden[:n], hidden[n:], slice(0, n), temperature, hidden_norm)
  assert loss.dtype == tf.float32
  assert logits_ab.shape == (n, n) and labels.shape == (n, 2 * n)
  np.testing.assert_allclose(loss.numpy(), np_loss, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(logits_ab.numpy(), np_logits_ab, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(labels.numpy(), np_labels)


def test_loss_is_sum_of_both_directions_not_average():
  # Identical views and orthogonal rows: each direction's CE is log(1 + (2n-2)·e^0 / e^(1/τ)) exactly.
  n, tau = 4, 0.5
  eye = np.eye(n, dtype=np.float32)
  hidden = np.concatenate([eye, eye], axis=0)
  loss, _, _ = objective.contrastive_loss(tf.constant(hidden), temperature=tau)
  one_direction = np.log(1.0 + (2 * n - 2) * np.exp(-1.0 / tau))
  np.testing.assert_allclose(loss.numpy(), 2 * one_direction, rtol=1e-5)


def test_float16_input_is_computed_in_float32():
  rng = np.random.default_rng(1)
  hidden = rng.normal(size=(8, 4)).astype(np.float16)
  loss, logits_ab, labels = objective.contrastive_loss(tf.constant(hidden), temperature=0.2)
  assert loss.dtype == tf.float32 and logits_ab.dtype == tf.float32 and labels.dtype == tf.float32
  np_loss = _np_global_loss(hidden.astype(np.float64), 0.2, True)
  np.testing.assert_allclose(loss.numpy(), np_loss, rtol=1e-5)


def test_contrast_accuracy_and_entropy_match_numpy():
  rng = np.random.default_rng(2)
  n, total = 5, 10  # a replica's 5 rows out of a global 10, positives at columns 5..9
  logits_ab = rng.normal(size=(n, total)).astype(np.float32)
  pos = np.arange(5, 10)
  logits_ab[[0, 2, 3], pos[[0, 2, 3]]] = 10.0  # three rows hit their positive
  logits_ab[1, 0] = 20.0  # rows 1 and 4 miss
  logits_ab[4, 7] = 20.0
  labels = np.zeros((n, 2 * total), np.float32)
  labels[np.arange(n), pos] = 1.0
  acc = objective.contrast_accuracy(tf.constant(logits_ab), tf.constant(labels))
  np_acc = np.mean(np.argmax(logits_ab, axis=1) == pos)
  assert np_acc == pytest.approx(0.6)
  np.testing.assert_allclose(acc.numpy(), np_acc, rtol=1e-6)

  ent = objective.contrast_entropy(tf.constant(logits_ab))
  p = np.exp(_np_log_softmax(logits_ab.astype(np.float64)))
  np_ent = np.mean(-np.sum(p * np.log(p + 1e-8), axis=1))
  np.testing.assert_allclose(ent.numpy(), np_ent, rtol=1e-5)
  # Uniform logits: entropy log(total).
  uniform = objective.contrast_entropy(tf.zeros((3, total)))
  np.testing.assert_allclose(uniform.numpy(), np.log(total), rtol=1e-5)


def test_accuracy_on_real_loss_outputs():
  # Well-separated views: every row's argmax is its positive.
  rng = np.random.default_rng(3)
  base = rng.normal(size=(6, 16)).astype(np.float32)
  hidden = np.concatenate([base, base + 0.01 * rng.normal(size=base.shape).astype(np.float32)], axis=0)
  _, logits_ab, labels = objective.contrastive_loss(tf.constant(hidden), temperature=0.1)
  assert objective.contrast_accuracy(logits_ab, labels).numpy() == 1.0


@pytest.mark.parametrize("hidden_norm", [True, False])
def test_two_replicas_match_global_batch_and_gradients(hidden_norm):
  strategy = two_cpu_strategy()
  num_replicas = strategy.num_replicas_in_sync
  assert num_replicas == 2
  rng = np.random.default_rng(4)
  n, d, tau = 3, 4, 0.3
  view1 = (0.5 * rng.normal(size=(num_replicas * n, d))).astype(np.float64)
  view2 = (0.5 * rng.normal(size=(num_replicas * n, d))).astype(np.float64)
  # Replica r sees [view1 rows of r; view2 rows of r].
  local = [np.concatenate([view1[r * n:(r + 1) * n], view2[r * n:(r + 1) * n]], 0).astype(np.float32)
           for r in range(num_replicas)]
  per_replica_hidden = strategy.experimental_distribute_values_from_function(
      lambda ctx: tf.constant(local[ctx.replica_id_in_sync_group]))

  def replica_fn(hidden):
    with tf.GradientTape() as tape:
      tape.watch(hidden)
      loss, logits_ab, labels = objective.contrastive_loss(
          hidden, hidden_norm=hidden_norm, temperature=tau, strategy=strategy)
      scaled = loss / num_replicas  # what a training step optimises per replica
    return loss, logits_ab, labels, tape.gradient(scaled, hidden)

  @tf.function
  def run():
    return strategy.run(replica_fn, args=(per_replica_hidden,))

  outputs = run()
  losses, logits, labels, grads = (strategy.experimental_local_results(o) for o in outputs)

  global_hidden = np.concatenate([view1, view2], 0)
  # Single-device reference gradient of the global-batch mean loss (numerical, float64).
  num_grad = _np_numerical_grad(lambda h: _np_global_loss(h, tau, hidden_norm), global_hidden)
  total = num_replicas * n
  for r in range(num_replicas):
    rows = slice(r * n, (r + 1) * n)
    np_loss, np_logits_ab, np_labels = _np_ntxent(view1, view2, rows, tau, hidden_norm)
    assert logits[r].shape == (n, total) and labels[r].shape == (n, 2 * total)
    np.testing.assert_allclose(losses[r].numpy(), np_loss, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits[r].numpy(), np_logits_ab, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(labels[r].numpy(), np_labels)
    # The gradient reaches this replica's rows from BOTH replicas' losses through the gather.
    expected = np.concatenate([num_grad[:total][rows], num_grad[total:][rows]], 0)
    np.testing.assert_allclose(grads[r].numpy(), expected, rtol=1e-4, atol=1e-6)
  # The mean of the replica losses is the global-batch loss.
  np.testing.assert_allclose(np.mean([l.numpy() for l in losses]), _np_global_loss(global_hidden, tau, hidden_norm),
                             rtol=1e-5)


def test_two_replicas_outside_strategy_run_raises():
  strategy = two_cpu_strategy()
  with strategy.scope():
    with pytest.raises(ValueError, match="strategy.run"):
      objective.contrastive_loss(tf.zeros((4, 3)), strategy=strategy)


def _small_model():
  inputs = keras.Input((3,))
  x = keras.layers.Dense(4, name="encoder_dense")(inputs)
  x = keras.layers.BatchNormalization(name="encoder_batch_norm")(x)
  proj = keras.layers.Dense(2, name="head_contrastive_0")(x)
  proj = keras.layers.BatchNormalization(name="head_contrastive_batch_norm_0")(proj)
  sup = keras.layers.Dense(2, name="head_supervised")(x)
  return keras.Model(inputs, [proj, sup])


def test_weight_decay_loss_lars_vs_momentum():
  keras.utils.set_random_seed(0)
  model = _small_model()
  # Make BN parameters non-trivial so including them by mistake would change the value.
  for v in model.trainable_variables:
    v.assign(np.random.default_rng(len(v.path)).normal(size=v.shape).astype(np.float32))
  values = {v.path: v.numpy().astype(np.float64) for v in model.trainable_variables}
  wd = 1e-3
  np_lars = wd * 0.5 * np.sum(values["head_supervised/kernel"] ** 2)
  np_momentum = wd * 0.5 * sum(np.sum(x ** 2) for p, x in values.items() if "batch_norm" not in p)
  assert any("batch_norm" in p for p in values) and "head_supervised/bias" in values

  lars = objective.weight_decay_loss(model.trainable_variables, wd, "lars")
  momentum = objective.weight_decay_loss(model.trainable_variables, wd, "momentum")
  adam = objective.weight_decay_loss(model.trainable_variables, wd, "adam")
  np.testing.assert_allclose(lars.numpy(), np_lars, rtol=1e-6)
  np.testing.assert_allclose(momentum.numpy(), np_momentum, rtol=1e-6)
  np.testing.assert_allclose(adam.numpy(), np_momentum, rtol=1e-6)
  assert lars.numpy() < momentum.numpy()


def test_weight_decay_loss_without_head_and_raw_tf_variables():
  # No supervised head under LARS: zero. Raw tf.Variables are matched by `.name`.
  kernel = tf.Variable([[1.0, 2.0]], name="encoder/kernel")
  bn = tf.Variable([3.0], name="encoder/batch_norm/gamma")
  head = tf.Variable([[4.0], [5.0]], name="head_supervised/kernel")
  head_bias = tf.Variable([6.0], name="head_supervised/bias")
  assert objective.weight_decay_loss([kernel, bn], 0.1, "lars").numpy() == 0.0
  np.testing.assert_allclose(
      objective.weight_decay_loss([kernel, bn, head, head_bias], 0.1, "lars").numpy(), 0.1 * 0.5 * (16 + 25))
  np.testing.assert_allclose(
      objective.weight_decay_loss([kernel, bn, head, head_bias], 0.1, "momentum").numpy(),
      0.1 * 0.5 * (1 + 4 + 16 + 25 + 36), rtol=1e-6)
