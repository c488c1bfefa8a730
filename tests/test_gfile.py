"""Every file of a run goes through tf.io.gfile: a run whose model_dir is on TensorFlow's in-memory filesystem
(`ram://`, standing in for gs:// in one process) leaves all its files there and nothing on local disk."""
import json
import os

import keras
import pytest
import tensorflow as tf

from conftest import TINY_FLAGS
from simclr_mura import flags as trainer_flags
from simclr_mura.errors import UserError
from simclr_mura.layout import RunDir
from simclr_mura.training import results, summaries, trainer


def _run(*argv):
  keras.backend.clear_session()
  return trainer.run(trainer_flags.config_from_argv(list(argv)))


def _files(root):
  return {os.path.relpath(os.path.join(folder, f), root) for folder, _, files in tf.io.gfile.walk(root) for f in files}


@pytest.mark.slow
def test_runs_on_ram_filesystem_leave_every_file_there_and_nothing_local(synthetic_data_dir, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # a run that wrote through os.* would leave ./ram:/... here
  common = ["--dataset=mura_synthetic/elbow", f"--data_dir={synthetic_data_dir}", *TINY_FLAGS]
  pretrain, finetune = "ram://gfile_test/pretrain", "ram://gfile_test/finetune"
  _run("--train_mode=pretrain", "--mode=train", "--train_steps=2", "--checkpoint_steps=2", f"--model_dir={pretrain}",
       *common)
  result = _run("--train_mode=finetune", "--mode=train_then_eval", f"--checkpoint={pretrain}", "--eval_split=test",
                "--train_steps=4", "--checkpoint_steps=2", "--train_epochs=1", f"--model_dir={finetune}", *common)

  run = RunDir(finetune)
  files = _files(finetune)
  for name in (RunDir.FLAGS, RunDir.RESULT, f"result_{result['global_step']}.json", "predictions_test.csv",
               "checkpoint", "export/saved_model.pb", "export/preprocessing.json"):
    assert name in files, (name, sorted(files))
  assert any(f.startswith("ckpt-4.") for f in files) and any(f.startswith("best/ckpt-") for f in files)
  assert not [f for f in files if f.endswith(".tmp")]  # every temporary name was renamed into place
  assert results.read_result(finetune) == result
  assert len(results.read_predictions(run.predictions_csv("test"))) == result["image"]["n"]
  assert json.loads(results.read_text(run.flags_json))["checkpoint"] == pretrain
  assert "supervised_loss" in summaries.read_scalars(run.join(RunDir.TRAIN))
  assert "study/auroc" in summaries.read_scalars(run.join(RunDir.EVAL))
  assert tf.saved_model.load(run.export_dir).serve(tf.zeros([1, 32, 32, 1])).shape == (1,)
  assert os.listdir(tmp_path) == []  # nothing on local disk

  # Fine-tuning from the ram:// pretraining reads its flags.json there and refuses another width.
  with pytest.raises(UserError, match="holds another architecture: width_multiplier=0.25"):
    _run("--train_mode=finetune", f"--checkpoint={pretrain}", "--train_steps=1", f"--model_dir={finetune}_wide",
         *common, "--width_multiplier=0.5")
  assert os.listdir(tmp_path) == []


def test_atomic_write_replaces_a_file_on_ram_filesystem():
  path = "ram://gfile_test/atomic/result.json"
  results.atomic_write_text(path, "first")
  results.atomic_write_text(path, "second")
  assert results.read_text(path) == "second"
  assert tf.io.gfile.listdir("ram://gfile_test/atomic") == ["result.json"]
