"""simclr_mura.models.schedule against hand-computed values (SimCLR tf2/model.py WarmUpAndCosineDecay, tf2/run.py steps)."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from simclr_mura.models import schedule

# N = 1000, B = 64, warmup_epochs = 2: warmup_steps = round(2·1000 // 64) = round(31.0) = 31; total_steps = 100,
# so decay_steps = 69. linear: 0.3·64/256 = 0.075; sqrt: 0.3·√64 = 2.4.
_CASES = [("linear", 0.075), ("sqrt", 2.4)]


def _make(scaling, total_steps=100, warmup_epochs=2):
  return schedule.WarmUpAndCosineDecay(
      base_learning_rate=0.3, num_examples=1000, train_batch_size=64, learning_rate_scaling=scaling,
      warmup_epochs=warmup_epochs, total_steps=total_steps)


@pytest.mark.parametrize("scaling,peak", _CASES)
def test_warmup_and_cosine_values(scaling, peak):
  lr = _make(scaling)
  assert lr.warmup_steps == 31
  assert lr.scaled_lr == pytest.approx(peak)
  expected = {
      0: 0.0,
      15: peak * 15 / 31,  # mid warm-up
      30: peak * 30 / 31,  # last warm-up step
      31: peak,  # end of warm-up: cosine starts at the peak
      54: peak * 0.75,  # 23 of 69 decay steps: ½(1 + cos(π/3)) = 0.75
      65: peak * 0.5 * (1 + math.cos(math.pi * 34 / 69)),
      99: peak * 0.5 * (1 + math.cos(math.pi * 68 / 69)),  # the last training step
      100: 0.0,
      150: 0.0,  # clamped after total_steps
  }
  for step, value in expected.items():
    got = float(lr(tf.constant(step, tf.int64)))
    assert got == pytest.approx(value, rel=1e-5, abs=1e-7), (step, got, value)
  # Monotone up to the peak, then down.
  values = [float(lr(s)) for s in range(101)]
  assert np.all(np.diff(values[:32]) > 0) and np.all(np.diff(values[31:]) <= 0)


def test_no_warmup_starts_at_peak():
  lr = _make("linear", total_steps=10, warmup_epochs=0)
  assert lr.warmup_steps == 0
  assert float(lr(0)) == pytest.approx(0.075)
  assert float(lr(5)) == pytest.approx(0.075 * 0.5, rel=1e-5)
  assert float(lr(10)) == pytest.approx(0.0, abs=1e-8)


def test_warmup_steps_use_floor_division_then_round():
  # SimCLR: int(round(warmup_epochs · N // B)); 2.5·100 // 64 = 3.0 (not round(3.906) = 4).
  assert schedule.get_warmup_steps(2.5, 100, 64) == 3
  assert schedule.get_warmup_steps(10, 1000, 512) == 19


def test_unknown_scaling_raises():
  with pytest.raises(ValueError, match="linear.*sqrt"):
    _make("cubic")


def test_inside_tf_function_and_as_optimizer_learning_rate():
  lr = _make("sqrt")

  @tf.function
  def at(step):
    return lr(step)

  assert float(at(tf.constant(54, tf.int64))) == pytest.approx(1.8, rel=1e-5)
  opt = keras.optimizers.SGD(learning_rate=lr)
  opt.iterations.assign(15)
  assert float(opt.learning_rate) == pytest.approx(2.4 * 15 / 31, rel=1e-5)


def test_get_config_round_trip():
  lr = _make("sqrt", total_steps=77, warmup_epochs=3)
  clone = schedule.WarmUpAndCosineDecay.from_config(lr.get_config())
  restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(lr))
  for step in (0, 10, 46, 60, 77):
    assert float(clone(step)) == pytest.approx(float(lr(step)))
    assert float(restored(step)) == pytest.approx(float(lr(step)))


def test_step_counts():
  # total = 1000·10 // 64 + 1 = 157; epoch = round(15.625) = 16.
  assert schedule.step_counts(1000, 64, 10) == schedule.StepCounts(157, 16, 16)
  assert schedule.step_counts(1000, 64, 10, train_steps=50) == schedule.StepCounts(50, 16, 16)
  assert schedule.step_counts(1000, 64, 10, checkpoint_steps=7).checkpoint_steps == 7
  assert schedule.step_counts(1000, 64, 10, checkpoint_epochs=2).checkpoint_steps == 32
  # round(1000 / 400) = round(2.5) = 2 (Python's round, as in SimCLR).
  assert schedule.step_counts(1000, 400, 1) == schedule.StepCounts(3, 2, 2)
  assert schedule.get_train_steps(1000, 64, 10) == 157
  assert schedule.get_train_steps(1000, 64, 10, 9) == 9


def test_step_counts_small_dataset_guard():
  # N < B/2: SimCLR's epoch_steps = round(10/64) = 0; guarded to 1, and so is checkpoint_steps.
  counts = schedule.step_counts(10, 64, 10)
  assert counts == schedule.StepCounts(total_steps=2, epoch_steps=1, checkpoint_steps=1)
  assert schedule.step_counts(10, 64, 10, checkpoint_epochs=0).checkpoint_steps == 1


def test_step_counts_errors():
  with pytest.raises(ValueError, match="num_train_examples"):
    schedule.step_counts(0, 64, 10)
  with pytest.raises(ValueError, match="train_batch_size"):
    schedule.step_counts(100, 0, 10)
  with pytest.raises(ValueError, match="train_batch_size"):
    schedule.WarmUpAndCosineDecay(0.3, 100, 0, "linear", 1, 10)


def test_eval_steps():
  assert schedule.eval_steps(1000, 256) == 4
  assert schedule.eval_steps(1024, 256) == 4
  assert schedule.eval_steps(1000, 256, eval_steps_flag=2) == 2
