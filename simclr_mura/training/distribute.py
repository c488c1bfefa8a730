"""Choosing and setting up the `tf.distribute` strategy, precision and determinism from a `Config`."""
from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from simclr_mura.config import Config
from simclr_mura.errors import UserError


def split_cpu(replicas: int) -> None:
  """Splits the first CPU into `replicas` logical devices (to run `mirrored` on a laptop).

  Must run before TensorFlow initialises its devices; a no-op when the split is already in place.
  """
  cpus = tf.config.list_physical_devices("CPU")
  try:
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)])
  except RuntimeError as e:  # devices already initialised
    if len(tf.config.list_logical_devices("CPU")) < replicas:
      raise UserError(f"--cpu_replicas={replicas}: TensorFlow's devices were initialised before the CPU could be "
                      "split; set it before anything else runs") from e


def mirrored_strategy(devices: list[str]) -> tf.distribute.MirroredStrategy:
  """A MirroredStrategy over `devices` with collective keys of its own.

  Each MirroredStrategy in one process starts its collective group/instance keys at the same base, so strategies made
  one after another in one process (the study runner, the tests) collide at run time ("Collective instance 100
  expected type ..."). As TensorFlow's own test combinations do (strategy_combinations.py), the base is moved on
  before and after, so neither an earlier nor a later strategy shares this one's keys.
  """
  tf.distribute.MirroredStrategy._collective_key_base += 100000  # pylint: disable=protected-access
  strategy = tf.distribute.MirroredStrategy(devices)
  tf.distribute.MirroredStrategy._collective_key_base += 100000  # pylint: disable=protected-access
  return strategy


def make_strategy(config: Config) -> tf.distribute.Strategy:
  """The strategy `config.strategy` names (one of `config.CHOICES["strategy"]`, checked by `config.validate`): `auto`
  is TPU with --use_tpu, else mirrored over all GPUs, else one device."""
  name = config.strategy
  if name == "auto":
    # physical devices: listing them does not initialise TensorFlow's context (multi-worker must come first).
    if config.use_tpu:
      name = "tpu"
    elif tf.config.list_physical_devices("GPU") or config.cpu_replicas > 1:
      name = "mirrored"
    else:
      name = "one_device"
  if name == "multi_worker":  # collective ops must be configured before anything initialises the context
    return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=_cluster_resolver())
  if name == "tpu":
    resolver = tpu_cluster_resolver(config)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  if config.cpu_replicas > 1:
    split_cpu(config.cpu_replicas)
  gpus = tf.config.list_logical_devices("GPU")
  if name == "mirrored":
    return mirrored_strategy([d.name for d in (gpus or tf.config.list_logical_devices("CPU"))])
  return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


def tpu_cluster_resolver(config: Config) -> tf.distribute.cluster_resolver.TPUClusterResolver:
  """SimCLR tf2/run.py: the TPU named by --tpu_name in --tpu_zone of --gcp_project, else the one at --master."""
  if config.tpu_name:
    return tf.distribute.cluster_resolver.TPUClusterResolver(config.tpu_name, zone=config.tpu_zone,
                                                             project=config.gcp_project)
  return tf.distribute.cluster_resolver.TPUClusterResolver(config.master or "")


def _cluster_resolver() -> tf.distribute.cluster_resolver.ClusterResolver:
  """TF_CONFIG when set, else a Slurm allocation (started by `srun` without TF_CONFIG)."""
  if os.environ.get("TF_CONFIG"):
    try:
      json.loads(os.environ["TF_CONFIG"])
    except json.JSONDecodeError as e:
      raise UserError(f"TF_CONFIG is not valid JSON: {e}") from e
    return tf.distribute.cluster_resolver.TFConfigClusterResolver()
  if os.environ.get("SLURM_PROCID") is not None:
    return tf.distribute.cluster_resolver.SlurmClusterResolver()
  raise UserError("--strategy=multi_worker needs TF_CONFIG (see the README) or a Slurm allocation started by srun")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes checkpoints, summaries and results (the chief, or worker 0 without a chief)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not is_multi_worker(strategy):
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  return task_type is None or task_type == "chief" or (task_type == "worker" and task_id == 0
                                                        and "chief" not in resolver.cluster_spec().as_dict())


def task_id(strategy: tf.distribute.Strategy) -> int:
  resolver = getattr(strategy, "cluster_resolver", None)
  return int(getattr(resolver, "task_id", 0) or 0) if resolver is not None else 0


def set_up_runtime(config: Config) -> None:
  """Seeds, determinism, the mixed-precision policy and graph optimization, before any model is built."""
  keras.utils.set_random_seed(config.seed)
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()
  keras.mixed_precision.set_global_policy("float32" if config.mixed_precision == "none" else config.mixed_precision)
  # Per run, both ways: a study's worker process runs one arm after another.
  tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": not config.graph_optimization})


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
  # tf.distribute.MultiWorkerMirroredStrategy is TF's CollectiveAllReduceStrategy class (hence `describe`).
  return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def describe(strategy: tf.distribute.Strategy) -> str:
  """The strategy's public name (the class behind MultiWorkerMirroredStrategy carries an internal name)."""
  return "MultiWorkerMirroredStrategy" if is_multi_worker(strategy) else type(strategy).__name__
