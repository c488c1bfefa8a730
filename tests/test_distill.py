"""SimCLRv2's distillation (`--train_mode=distill`): the loss, the frozen teacher, learning from it, the trainer."""
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, TINY_FLAGS, run_trainer, two_cpu_strategy
from simclr_mura import config as config_lib
from simclr_mura.config import Config
from simclr_mura.errors import UserError
from simclr_mura.models.model import build_model
from simclr_mura.models.objective import distillation_loss
from simclr_mura.training import results, steps

STUDENT_STEPS = 80  # distillation steps of the known-teacher test (60 already learn it)
TINY = dict(resnet_depth=18, width_multiplier=0.25, image_size=32, proj_out_dim=16, ft_proj_selector=1,
            train_batch_size=16, optimizer="adam", learning_rate=0.003, weight_decay=0.0, global_bn=False,
            model_dir="unused", dataset="mura_synthetic/elbow")


def _log_softmax(x):
  x = x - x.max(axis=1, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def test_distillation_loss_is_simclrv2_eq2():
  rng = np.random.default_rng(0)
  teacher, student = rng.normal(size=(6, 3)) * 3, rng.normal(size=(6, 3)) * 3
  for tau in (1.0, 0.1, 2.5):
    p_teacher = np.exp(_log_softmax(teacher / tau))
    expected = -(p_teacher * _log_softmax(student / tau)).sum(axis=1).mean()  # −Σ_y P_T(y|x;τ) log P_S(y|x;τ)
    got = float(distillation_loss(tf.constant(teacher, tf.float32), tf.constant(student, tf.float32), tau))
    assert got == pytest.approx(expected, rel=1e-5), tau
  t, s = tf.constant(teacher, tf.float32), tf.Variable(student, dtype=tf.float32)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(t)
    loss = distillation_loss(t, s, 0.5)
  assert tape.gradient(loss, t) is None  # the teacher's side is a target, not trained
  # its gradient w.r.t. the student's logits: (P_S − P_T) / (τ n)
  expected_grad = (np.exp(_log_softmax(student / 0.5)) - np.exp(_log_softmax(teacher / 0.5))) / (0.5 * 6)
  np.testing.assert_allclose(tape.gradient(loss, s).numpy(), expected_grad, rtol=1e-4, atol=1e-6)


class _BrightnessTeacher(keras.Model):
  """A teacher whose answer is known: abnormal when the image is brighter than mid-grey."""

  def __init__(self):
    super().__init__(name="brightness_teacher")

  def call(self, images, training=None):
    score = 20.0 * (tf.reduce_mean(images, axis=[1, 2, 3]) - 0.5)
    return None, tf.stack([-score, score], axis=1)


def _images(rng, n):
  """Noise images with a random brightness (the known teacher's feature)."""
  level = rng.uniform(0.2, 0.8, size=(n, 1, 1, 1))
  return np.clip(level + rng.normal(0, 0.1, size=(n, 32, 32, 1)), 0, 1).astype(np.float32), level.ravel()


@pytest.mark.slow  # trains a small network for a few seconds
def test_the_student_learns_what_a_known_teacher_says():
  keras.utils.set_random_seed(0)
  config = Config(**TINY, train_mode="distill", teacher="unused", distill_temperature=1.0)
  strategy = tf.distribute.get_strategy()
  student = build_model(config)
  optimizer = keras.optimizers.Adam(config.learning_rate)
  step = tf.function(steps.make_train_step(student, optimizer, config, strategy, teacher=_BrightnessTeacher()))
  rng = np.random.default_rng(0)
  for _ in range(STUDENT_STEPS):
    images, _ = _images(rng, 16)
    metrics = step(tf.constant(images), tf.zeros([16], tf.int32))  # the labels are never used
  assert set(metrics) == {"distill_loss", "teacher_agreement", "weight_decay", "total_loss"}
  images, level = _images(rng, 200)
  _, logits = student(tf.constant(images), training=False)
  abnormal = tf.nn.softmax(logits)[:, 1].numpy()
  bright = level > 0.5
  auroc = np.mean([a > b for a in abnormal[bright] for b in abnormal[~bright]])
  assert auroc > 0.95, auroc


def _teacher_run(folder, **overrides) -> str:
  """A fine-tuned run's folder as the trainer leaves it: flags.json and a checkpoint of its model."""
  config = Config(**{**TINY, "train_mode": "finetune", "model_dir": str(folder), **overrides})
  model = build_model(config)
  model(tf.random.uniform([4, 32, 32, 1]), training=True)  # moves the batch-norm statistics off their start
  tf.train.Checkpoint(model=model).save(os.path.join(folder, "ckpt"))
  results.write_flags_json(folder, config)
  return str(folder)


def test_the_teacher_is_frozen_in_inference_mode_on_two_replicas(tmp_path):
  """One distillation step on two CPU replicas: the student's weights move, not one of the teacher's (its batch-norm
  statistics included), and the teacher has nothing to train."""
  from simclr_mura.training.teacher import load_teacher

  config = Config(**TINY, train_mode="distill", teacher=_teacher_run(tmp_path / "teacher"))
  strategy = two_cpu_strategy()
  with strategy.scope():
    student = build_model(config)
    teacher = load_teacher(config)
    optimizer = keras.optimizers.Adam(0.01)
    optimizer.build(student.trainable_variables)
  assert teacher.trainable_variables == []
  before_teacher = [v.numpy().copy() for v in teacher.weights]
  before_student = [v.numpy().copy() for v in student.trainable_variables]
  step = steps.make_train_step(student, optimizer, config, strategy, teacher=teacher)
  images = tf.random.uniform([8, 32, 32, 1], seed=1)
  data = strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors((images, tf.zeros([8], tf.int32))).repeat())
  metrics = tf.function(lambda batch: strategy.run(step, args=batch))(next(iter(data)))
  assert len(strategy.experimental_local_results(metrics["distill_loss"])) == 2
  for a, b in zip(before_teacher, teacher.weights):
    np.testing.assert_array_equal(a, b.numpy())
  assert any(not np.array_equal(a, b.numpy()) for a, b in zip(before_student, student.trainable_variables))


def test_the_labeled_weight_adds_the_cross_entropy_of_the_labeled_images_only():
  config = Config(**TINY, train_mode="distill", teacher="unused", distill_labeled_weight=0.25)
  logits = tf.constant([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
  labels = tf.constant([1, 1, 0])
  labeled = tf.constant([1.0, 0.0, 1.0])  # the second image is not in the label draw

  def teacher(images, training=None):
    return None, tf.constant([[0.0, 3.0], [3.0, 0.0], [0.0, 0.0]])

  total, metrics = steps._distilled(teacher, logits, tf.zeros([3, 32, 32, 1]), labels, labeled, config)  # pylint: disable=protected-access
  ce = -_log_softmax(logits.numpy())[[0, 2], [1, 0]]
  assert float(metrics["supervised_loss"]) == pytest.approx(ce.mean(), rel=1e-5)
  assert float(total) == pytest.approx(0.75 * float(metrics["distill_loss"]) + 0.25 * ce.mean(), rel=1e-5)
  assert steps.metric_names(config) == steps.DISTILL_METRICS


def test_the_labeled_term_is_the_mean_over_the_global_batch_on_two_replicas():
  """Replica 0 holds two labelled images, replica 1 one: the labelled cross-entropy, summed over replicas as the
  gradients are, is the mean over the three, whatever replica holds them."""
  config = Config(**TINY, train_mode="distill", teacher="unused", distill_labeled_weight=1.0)
  strategy = two_cpu_strategy()
  logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 3.0]], np.float32)
  labels, labeled = np.array([1, 1, 0, 0]), np.array([1.0, 1.0, 0.0, 1.0], np.float32)

  def teacher(images, training=None):
    return None, tf.zeros([tf.shape(images)[0], 2])

  def replica_loss(l, y, m):
    total, _ = steps._distilled(teacher, l, tf.zeros([tf.shape(l)[0], 32, 32, 1]), y, m, config,  # pylint: disable=protected-access
                                replicas=2)
    return total / 2  # as the step scales it before the replicas' gradients are summed

  data = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices((logits, labels, labeled)).batch(4))
  per_replica = tf.function(lambda batch: strategy.run(replica_loss, args=batch))(next(iter(data)))
  summed = sum(float(v) for v in strategy.experimental_local_results(per_replica))
  ce = -_log_softmax(logits)[np.arange(4), labels]
  assert summed == pytest.approx(ce[labeled > 0].mean(), rel=1e-5)


def test_bad_teacher_is_refused_in_one_line(tmp_path):
  base = Config(**TINY, train_mode="distill")
  teacher = _teacher_run(tmp_path / "teacher")
  pretrained_dir = _teacher_run(tmp_path / "pretrain", train_mode="pretrain")  # a pretraining run's folder
  cases = [
      (base.replace(teacher=None), "--train_mode=distill needs --teacher"),
      (base.replace(teacher=str(tmp_path / "missing")), "not a run folder"),
      (base.replace(teacher=pretrained_dir), "is a pretrain run without a fine-tuned classifier"),
      (base.replace(teacher=teacher, image_size=64), "sees 32 px images, this run 64 px"),
      (base.replace(teacher=teacher, checkpoint=pretrained_dir), "the student starts from random weights"),
      (base.replace(train_mode="finetune", teacher=teacher), "--teacher=" + teacher + " teaches a distillation"),
      (base.replace(teacher=teacher, distill_temperature=0), "--distill_temperature=0 is out of range"),
      (base.replace(teacher=teacher, distill_labeled_weight=1.5), "--distill_labeled_weight=1.5 is out of range"),
      (base.replace(teacher=teacher, num_classes=3), "predicts 2 classes, this run 3"),
      (base.replace(teacher=teacher, dataset="mura_synthetic/hand"),
       "was fine-tuned on mura_synthetic/elbow, this run trains on mura_synthetic/hand"),
      (base.replace(teacher=teacher, fine_tune_after_block=4), "would freeze a randomly initialised student"),
  ]
  for config, message in cases:
    with pytest.raises(UserError) as e:
      config_lib.validate(config)
    assert message in str(e.value) and "\n" not in str(e.value), (message, str(e.value))
  empty = tmp_path / "empty_run"
  empty.mkdir()
  results.write_flags_json(empty, Config(**{**TINY, "train_mode": "finetune", "model_dir": str(empty)}))
  with pytest.raises(UserError, match="holds no checkpoint yet"):
    config_lib.validate(base.replace(teacher=str(empty)))
  # refused by the command line before any data is prepared
  data_dir = tmp_path / "tfds"
  proc = run_trainer("--train_mode=distill", f"--teacher={tmp_path / 'missing'}", "--dataset=mura_synthetic/elbow",
                     f"--data_dir={data_dir}", f"--model_dir={tmp_path / 'student'}", check=False)
  assert proc.returncode != 0 and "not a run folder" in proc.stderr and not data_dir.exists()


def _step_of(prefix: str) -> int:
  return int(prefix.rsplit("-", 1)[1])


@pytest.mark.slow
def test_distill_run_on_two_replicas_resumes_after_kill(synthetic_data_dir, tmp_path):
  """The trainer end to end: a distillation on two CPU replicas is killed after its first checkpoint, rerun, and
  finishes at the same step; it evaluates the selected student and records its teacher (a fine-tuned run's folder
  as the trainer leaves it: how well the teacher predicts does not matter here)."""
  teacher_dir = _teacher_run(tmp_path / "teacher")
  model_dir = str(tmp_path / "student")
  args = ["--train_mode=distill", f"--teacher={teacher_dir}", "--mode=train_then_eval", "--eval_split=test",
          "--dataset=mura_synthetic/elbow", f"--data_dir={synthetic_data_dir}", f"--model_dir={model_dir}",
          "--train_steps=9", "--checkpoint_steps=3", "--ft_proj_selector=1", "--optimizer=adam",
          "--learning_rate=0.01", "--strategy=mirrored", "--cpu_replicas=2", "--export=false", *TINY_FLAGS]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  proc = subprocess.Popen([sys.executable, os.path.join(REPO, "run.py"), *args], cwd=REPO, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while tf.train.latest_checkpoint(model_dir) is None and time.time() < deadline and proc.poll() is None:
    time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  killed_at = _step_of(tf.train.latest_checkpoint(model_dir))
  assert 3 <= killed_at < 9
  out = run_trainer(*args)
  assert "Resuming from" in out.stdout and "on 2 replica(s) (MirroredStrategy)" in out.stdout
  assert f"Teacher: {teacher_dir}" in out.stdout
  assert _step_of(tf.train.latest_checkpoint(model_dir)) == 9
  with open(os.path.join(model_dir, "result.json")) as f:
    assert json.load(f)["train_mode"] == "distill"
  with open(os.path.join(model_dir, "flags.json")) as f:
    assert json.load(f)["teacher"] == teacher_dir
