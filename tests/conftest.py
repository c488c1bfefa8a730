"""Test-wide set-up: quiet TF, CPU only, and two logical CPU devices for the multi-replica tests."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
  tf.config.set_logical_device_configuration(
      _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
except RuntimeError:  # already initialised by an earlier import
  pass


import pytest  # noqa: E402


@pytest.fixture
def fresh_collective_keys():
  """Gives each MirroredStrategy a fresh range of collective keys.

  Strategies created in one process start their cross-replica op keys at the same number and collide ("Collective
  instance 100 expected type 2 ... but got type 0"); TensorFlow's own tests bump the base the same way.
  """
  tf.distribute.MirroredStrategy._collective_key_base += 100000  # pylint: disable=protected-access
  yield
  tf.distribute.MirroredStrategy._collective_key_base += 100000  # pylint: disable=protected-access
