"""The trainer as a user runs it (`python run.py ...`): files it leaves, resume, NaN, replicas, multi-worker, bad flags."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from conftest import REPO, TINY_FLAGS, run_trainer
from simclr_mura.training import summaries
from simclr_mura.config import Config

SIMCLR_SCALARS = {"contrast_loss", "contrast_acc", "contrast_entropy", "supervised_loss", "supervised_acc",
                  "weight_decay", "total_loss", "learning_rate"}


def _train_size(data_dir: str) -> int:
  import tensorflow_datasets as tfds
  return tfds.builder("mura_synthetic/elbow", data_dir=data_dir).info.splits["train"].num_examples


def _step_of(prefix: str) -> int:
  return int(tf.train.load_variable(prefix, "global_step/.ATTRIBUTES/VARIABLE_VALUE"))


def test_pretrain_leaves_checkpoints_events_flags_and_export(synthetic_data_dir, pretrained_dir):
  latest = tf.train.latest_checkpoint(pretrained_dir)
  assert latest is not None
  # SimCLR run.py: train_steps = N * epochs // B + 1, epoch_steps = round(N / B); a checkpoint every epoch.
  n = _train_size(synthetic_data_dir)
  total, epoch = n * 2 // 32 + 1, round(n / 32)
  assert _step_of(latest) == total
  assert latest.endswith(f"ckpt-{total}")
  with open(os.path.join(pretrained_dir, "flags.json")) as f:
    flags = json.load(f)
  assert set(flags) == set(Config().to_dict())
  assert flags["train_mode"] == "pretrain" and flags["resnet_depth"] == 18
  scalars = summaries.read_scalars(os.path.join(pretrained_dir, "train"))
  assert SIMCLR_SCALARS <= set(scalars)
  assert [s for s, _ in scalars["contrast_loss"]] == [epoch, 2 * epoch, total]
  assert os.path.isfile(os.path.join(pretrained_dir, "export", "saved_model.pb"))
  assert summaries.read_plugin_tags(pretrained_dir).get("_hparams_/session_start_info") == "hparams"
  assert summaries.read_plugin_tags(os.path.join(pretrained_dir, "train"))["augmented_views"] == "images"


def test_contrastive_loss_falls(synthetic_data_dir, tmp_path):
  # 64 images seen again and again under fresh augmentations: the views of one image become recognisable.
  model_dir = str(tmp_path / "m")
  run_trainer("--dataset=mura_synthetic/elbow", f"--data_dir={synthetic_data_dir}", f"--model_dir={model_dir}",
              "--train_split=train[:64]", "--train_epochs=40", "--checkpoint_epochs=10", "--learning_rate=1.0",
              "--learning_rate_scaling=sqrt", "--temperature=0.5", *TINY_FLAGS)
  loss = [v for _, v in summaries.read_scalars(os.path.join(model_dir, "train"))["contrast_loss"]]
  assert len(loss) == 41  # one point per epoch (2 steps) and the final step
  assert sum(loss[-8:]) / 8 < sum(loss[:8]) / 8 - 0.3, loss


def test_rerun_resumes_after_kill_and_ends_at_same_step(synthetic_data_dir, tmp_path):
  model_dir = str(tmp_path / "m")
  args = [sys.executable, os.path.join(REPO, "run.py"), "--dataset=mura_synthetic/elbow",
          f"--data_dir={synthetic_data_dir}", f"--model_dir={model_dir}", "--train_epochs=2", "--checkpoint_steps=3",
          *TINY_FLAGS]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while tf.train.latest_checkpoint(model_dir) is None and time.time() < deadline and proc.poll() is None:
    time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  total = _train_size(synthetic_data_dir) * 2 // 32 + 1
  killed_at = _step_of(tf.train.latest_checkpoint(model_dir))
  assert 3 <= killed_at < total
  out = run_trainer(*args[2:])
  assert "Resuming from" in out.stdout
  assert _step_of(tf.train.latest_checkpoint(model_dir)) == total


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(synthetic_data_dir, tmp_path):
  model_dir = str(tmp_path / "m")
  proc = run_trainer("--dataset=mura_synthetic/elbow", f"--data_dir={synthetic_data_dir}", f"--model_dir={model_dir}",
                     "--train_epochs=3", "--learning_rate=1e30", *TINY_FLAGS, check=False)
  assert proc.returncode != 0
  assert "non-finite loss" in proc.stderr
  latest = tf.train.latest_checkpoint(model_dir)
  assert latest is None  # the first loop already diverged: nothing non-finite became a checkpoint


def test_mirrored_on_two_cpu_replicas_with_micle_pairs(synthetic_data_dir, tmp_path):
  # MICLe's pairs (--positive_pairs=study) through the whole trainer; the multi-worker test runs SimCLR's.
  model_dir = str(tmp_path / "m")
  out = run_trainer("--dataset=mura_synthetic/elbow", f"--data_dir={synthetic_data_dir}", f"--model_dir={model_dir}",
                    "--train_steps=4", "--strategy=mirrored", "--cpu_replicas=2", "--positive_pairs=study",
                    *TINY_FLAGS)
  assert "on 2 replica(s) (MirroredStrategy)" in out.stdout
  assert _step_of(tf.train.latest_checkpoint(model_dir)) == 4
  assert summaries.read_plugin_tags(os.path.join(model_dir, "train"))["augmented_views"] == "images"  # the pairs
  with open(os.path.join(model_dir, "flags.json")) as f:
    assert json.load(f)["positive_pairs"] == "study"


def _free_ports(n):
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(("localhost", 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def test_multi_worker_on_localhost(synthetic_data_dir, tmp_path):
  model_dir = str(tmp_path / "m")
  cluster = {"worker": [f"localhost:{p}" for p in _free_ports(2)]}
  procs = []
  for index in range(2):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
    procs.append(subprocess.Popen(
        [sys.executable, os.path.join(REPO, "run.py"), "--dataset=mura_synthetic/elbow",
         f"--data_dir={synthetic_data_dir}", f"--model_dir={model_dir}", "--strategy=multi_worker",
         "--train_steps=4", "--checkpoint_steps=2", *TINY_FLAGS],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
  outputs = []
  try:
    for p in procs:
      outputs.append(p.communicate(timeout=300)[0])
  finally:
    for p in procs:
      p.kill()
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-4000:]
    assert "on 2 replica(s) (MultiWorkerMirroredStrategy)" in out
  assert _step_of(tf.train.latest_checkpoint(model_dir)) == 4
  assert summaries.read_scalars(os.path.join(model_dir, "train"))["contrast_loss"][-1][0] == 4
  assert not [d for d in os.listdir(model_dir) if d.startswith(".worker_")]  # scratch folders removed


@pytest.mark.parametrize("flag, message", [
    ("--train_split=trian", "bad split 'trian'"),
    ("--train_split=train[:150%]", "out of range"),
    ("--checkpoint=/nonexistent/ckpt", "does not exist"),
    ("--dataset=mura/knee", "unknown dataset 'mura/knee'"),
])
def test_bad_flags_stop_before_training_with_one_line(synthetic_data_dir, tmp_path, flag, message):
  model_dir = str(tmp_path / "m")
  proc = run_trainer("--train_mode=finetune", "--dataset=mura_synthetic/elbow", f"--data_dir={synthetic_data_dir}",
                     f"--model_dir={model_dir}", flag, *TINY_FLAGS, check=False)
  assert proc.returncode != 0
  errors = [line for line in proc.stderr.splitlines() if line.startswith("simclr_mura: error:")]
  assert len(errors) == 1 and message in errors[0], proc.stderr[-2000:]
  assert tf.train.latest_checkpoint(model_dir) is None


def test_tpu_flags_reach_the_cluster_resolver_as_in_simclr(monkeypatch):
  """SimCLR tf2/run.py: TPUClusterResolver(tpu_name, zone=tpu_zone, project=gcp_project), else TPUClusterResolver(master)."""
  from simclr_mura import flags as trainer_flags
  from simclr_mura.training import distribute
  calls = []
  monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", lambda *a, **k: calls.append((a, k)))
  config = trainer_flags.config_from_argv(["--model_dir=unused", "--use_tpu", "--tpu_name=my-tpu", "--tpu_zone=us-c1",
                                           "--gcp_project=proj"])
  distribute.tpu_cluster_resolver(config)
  assert calls == [(("my-tpu",), {"zone": "us-c1", "project": "proj"})]
  distribute.tpu_cluster_resolver(trainer_flags.config_from_argv(["--model_dir=unused", "--master=grpc://10.0.0.2:8470"]))
  assert calls[-1] == (("grpc://10.0.0.2:8470",), {})
