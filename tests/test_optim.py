"""The optimizers `optim.build_optimizer` returns: the fused Adam against Keras's own Adam."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from simclr_mura.config import Config
from simclr_mura.models import optim


def _adam_reference(w, grads, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
  """Adam (Kingma & Ba 2015, Algorithm 1, with Keras's ε outside the square root) in NumPy."""
  m, v = np.zeros_like(w), np.zeros_like(w)
  for t, g in enumerate(grads, 1):
    m = beta_1 * m + (1 - beta_1) * g
    v = beta_2 * v + (1 - beta_2) * g * g
    w = w - lr * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t) * m / (np.sqrt(v) + epsilon)
  return w


@pytest.mark.parametrize("compiled", [False, True])
def test_fused_adam_matches_keras_adam_and_the_formula(compiled):
  rng = np.random.default_rng(0)
  w0 = rng.normal(size=(3, 4)).astype(np.float32)
  grads = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(5)]
  out = {}
  for name, cls in (("fused", optim.FusedAdam), ("keras", keras.optimizers.Adam)):
    var = keras.Variable(w0)
    opt = cls(learning_rate=0.01)
    opt.build([var])
    apply = lambda g: opt.apply_gradients([(g, var)])  # noqa: E731
    if compiled:
      apply = tf.function(apply)
    for g in grads:
      apply(tf.constant(g))
    out[name] = var.numpy()
  np.testing.assert_allclose(out["fused"], out["keras"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out["fused"], _adam_reference(w0, grads, 0.01), rtol=1e-5, atol=1e-6)


def test_adam_flag_builds_the_fused_adam_with_keras_adam_slots():
  opt = optim.build_optimizer(Config(optimizer="adam"), 1e-3)
  assert isinstance(opt, optim.FusedAdam) and isinstance(opt, keras.optimizers.Adam)
  var = keras.Variable(np.ones((2,), np.float32), name="w")
  opt.build([var])
  reference = keras.optimizers.Adam(1e-3)
  reference.build([keras.Variable(np.ones((2,), np.float32), name="w")])
  slots = lambda o: sorted((v.name, tuple(v.shape)) for v in o.variables)  # noqa: E731
  assert slots(opt) == slots(reference)  # the same slots: checkpoints stay interchangeable
