"""A resumed fine-tuning run continues model selection and the plateau schedule where the interrupted run left them."""
import keras
import pytest
import tensorflow as tf

from conftest import TINY_FLAGS
from simclr_mura import flags as trainer_flags
from simclr_mura.layout import RunDir
from simclr_mura.training import evaluation, trainer


@pytest.mark.slow
def test_resume_keeps_the_best_checkpoint_and_the_plateau_count(synthetic_data_dir, tmp_path, monkeypatch):
  # Validation after every epoch (2 steps); its score and loss are scripted so the outcome is known: the best score
  # comes before the interruption at step 4, and every later one is worse.
  scores, losses = iter([0.9, 0.5, 0.6, 0.7]), iter([1.0, 1.1, 1.2, 1.3])
  monkeypatch.setattr(trainer, "_selection_score", lambda metrics, loss: next(scores))
  monkeypatch.setattr(evaluation, "log_loss", lambda predictions: next(losses))
  model_dir = str(tmp_path / "run")
  argv = ["--train_mode=finetune", "--mode=train_then_eval", "--dataset=mura_synthetic/elbow",
          f"--data_dir={synthetic_data_dir}", f"--model_dir={model_dir}", "--train_split=train[:64]",
          "--optimizer=momentum", "--learning_rate=0.1", "--lr_schedule=plateau", "--plateau_patience=2",
          "--checkpoint_steps=2", *TINY_FLAGS]

  def run(steps):
    keras.backend.clear_session()
    return trainer.run(trainer_flags.config_from_argv([*argv, f"--train_steps={steps}"]))

  run(4)  # stops after the step-4 checkpoint, as a run killed there would have left it
  assert tf.train.latest_checkpoint(RunDir(model_dir).best_dir).endswith("ckpt-2")
  result = run(8)  # the same command with more steps resumes from ckpt-4

  assert tf.train.latest_checkpoint(model_dir).endswith("ckpt-8")
  assert tf.train.latest_checkpoint(RunDir(model_dir).best_dir).endswith("ckpt-2")  # 0.6 and 0.7 never beat 0.9
  assert result["global_step"] == 2  # train_then_eval evaluated the best checkpoint
  # Plateau (patience 2): loss 1.0 best, 1.1 waits 1, then after resuming 1.2 waits 2 -> the rate is divided by 10.
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(model_dir))
  rates = [reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if "learning_rate" in k]
  assert rates and all(abs(r - 0.1 * 32 / 256 / 10) < 1e-9 for r in rates), rates
  assert reader.get_tensor("selection/best_step/.ATTRIBUTES/VARIABLE_VALUE") == 2


@pytest.mark.slow
def test_kill_9_after_a_validation_keeps_the_selection_state(synthetic_data_dir, tmp_path):
  """A fine-tuning run killed with SIGKILL once its step-4 checkpoint exists and rerun: the rerun restores the best
  score and step, and at the end `best/` holds the checkpoint with the best validation score of the whole run."""
  import os
  import signal
  import subprocess
  import sys
  import time

  from conftest import REPO, run_trainer
  from simclr_mura.training import summaries

  model_dir = str(tmp_path / "run")
  args = ["--train_mode=finetune", "--dataset=mura_synthetic/elbow", f"--data_dir={synthetic_data_dir}",
          f"--model_dir={model_dir}", "--train_split=train[:64]", "--train_steps=12", "--checkpoint_steps=2",
          *TINY_FLAGS]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  proc = subprocess.Popen([sys.executable, os.path.join(REPO, "run.py"), *args], cwd=REPO, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    latest = tf.train.latest_checkpoint(model_dir)
    if latest and int(latest.rsplit("-", 1)[1]) >= 4:
      break
    time.sleep(0.1)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  killed_at = int(tf.train.latest_checkpoint(model_dir).rsplit("-", 1)[1])
  assert 4 <= killed_at < 12
  saved = tf.train.load_checkpoint(tf.train.latest_checkpoint(model_dir))
  assert saved.get_tensor("selection/best_step/.ATTRIBUTES/VARIABLE_VALUE") >= 2  # the state is in the checkpoint

  out = run_trainer(*args).stdout
  assert "Resuming from" in out and "Resumed model selection: best validation score" in out
  final = tf.train.load_checkpoint(tf.train.latest_checkpoint(model_dir))
  best_step = int(final.get_tensor("selection/best_step/.ATTRIBUTES/VARIABLE_VALUE"))
  assert tf.train.latest_checkpoint(RunDir(model_dir).best_dir).endswith(f"ckpt-{best_step}")
  curve = summaries.read_scalars(os.path.join(model_dir, RunDir.VALIDATION))["study/auroc"]
  assert [s for s, _ in curve] == [2, 4, 6, 8, 10, 12]  # every validation of the run, before and after the kill
  best_score = float(final.get_tensor("selection/best_score/.ATTRIBUTES/VARIABLE_VALUE"))
  assert best_score == pytest.approx(max(v for _, v in curve), abs=1e-6)


def test_a_checkpoint_written_before_the_selection_state_existed_still_resumes(tmp_path):
  from simclr_mura.training import checkpoints
  model = keras.Sequential([keras.layers.Dense(2)])
  model.build((None, 3))
  optimizer = keras.optimizers.SGD(0.1)
  optimizer.build(model.trainable_variables)
  step = tf.Variable(5, dtype=tf.int64)
  tf.train.CheckpointManager(tf.train.Checkpoint(model=model, optimizer=optimizer, global_step=step), str(tmp_path),
                             max_to_keep=1, checkpoint_name=RunDir.CHECKPOINT_PREFIX).save(checkpoint_number=5)
  step.assign(0)
  selection = trainer.SelectionState()
  checkpointer = checkpoints.Checkpointer(model, optimizer, step, str(tmp_path), 1, selection=selection)
  assert checkpointer.restore_latest().endswith("ckpt-5")
  assert int(step.numpy()) == 5 and int(selection.best_step.numpy()) == -1  # the defaults: nothing selected yet
