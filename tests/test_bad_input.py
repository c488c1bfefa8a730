"""Bad input to every entry point: one line naming the bad value and what is accepted, a non-zero exit, no traceback,
and nothing left behind (no prepared data, no model files). Run in this process, as each command line's `run`."""
import os

import pytest

from simclr_mura import benchmark, explore, predict, prepare, report, synthetic_findings
from simclr_mura import flags as trainer_flags
from simclr_mura import main as trainer_main
from simclr_mura.study import cli as study_cli


def _trainer(argv):
  trainer_flags.FLAGS.unparse_flags()
  trainer_main.main(trainer_main.parse_flags(["simclr_mura", *argv]))


# (flags, what the one line must say); every case runs with its own --model_dir and --data_dir (which must stay absent).
TRAINER_CASES = [
    (["--resnet_depth=17"], "--resnet_depth=17 is not valid; accepted: 18, 34, 50, 101, 152, 200"),
    (["--width_multiplier=0"], "--width_multiplier=0 is out of range; accepted: > 0"),
    (["--temperature=0"], "--temperature=0 is out of range; accepted: > 0"),
    (["--learning_rate=-1"], "--learning_rate=-1 is out of range; accepted: > 0"),
    (["--train_batch_size=0"], "--train_batch_size=0 is out of range; accepted: >= 1"),
    (["--crop_min_area=1.5"], "--crop_min_area=1.5: 1.5 is not a number in the range [0.01, 1.0]"),
    (["--momentum=1"], "--momentum=1 is out of range; accepted: >= 0 and < 1"),
    (["--threshold=2"], "--threshold=2 is out of range; accepted: >= 0 and <= 1"),
    (["--train_epochs=0"], "--train_epochs=0 is out of range; accepted: >= 1"),
    (["--train_steps=-1"], "--train_steps=-1 is out of range; accepted: >= 0"),
    (["--keep_checkpoint_max=0"], "--keep_checkpoint_max=0 is out of range; accepted: >= 1"),
    (["--image_size=4"], "--image_size=4 is out of range; accepted: >= 8 and <= 4096"),
    (["--rotation_degrees=500"], "--rotation_degrees=500 is out of range; accepted: >= 0 and <= 180"),
    (["--batch_norm_decay=1.5"], "--batch_norm_decay=1.5 is out of range; accepted: >= 0 and < 1"),
    (["--synthetic_scale=0"], "--synthetic_scale=0: 0.0 is not number >= 0.001"),
    (["--color_jitter_strength=-1"], "--color_jitter_strength=-1 is out of range; accepted: >= 0"),
    (["--dataset=mura/elbow", "--synthetic_scale=0.5"], "applies to mura_synthetic only"),
    (["--mode=fit"], "value should be one of <train|eval|train_then_eval>"),
    (["--optimizer=sgd"], "value should be one of <lars|momentum|adam>"),
    (["--no_such_flag=1"], "Unknown command line flag 'no_such_flag'"),
    (["--train_split=trian"], "--train_split=trian: bad split 'trian'; accepted: train, validation, test"),
    (["--eval_split=train[:150%]"], "percentage 150% is out of range; accepted: -100% to 100%"),
    (["--train_mode=finetune", "--validation_split=test"], "--validation_split=test would choose the model on the "
                                                           "test split; accepted: validation"),
    (["--dataset=mura/knee"], "unknown dataset 'mura/knee'; accepted: mura/<config> or mura_synthetic/<config>"),
    (["--train_mode=finetune", "--checkpoint=/nonexistent/ckpt-5"], "--checkpoint=/nonexistent/ckpt-5 does not exist"),
    (["--train_mode=finetune", "--backbone=densenet169", "--backbone_weights=/nonexistent/w.h5"],
     "--backbone_weights=/nonexistent/w.h5: no such file; accepted: none, imagenet"),
    (["--train_mode=finetune", "--backbone_weights=imagenet"], "needs --backbone=densenet169"),
    (["--dataset=mura/elbow", "--mura_dir=/nonexistent/MURA"], "--mura_dir=/nonexistent/MURA is not a folder"),
    (["--fine_tune_after_block=2"], "freezes layers, which pretraining does not support; accepted with "
                                    "--train_mode=pretrain: -1"),
    (["--backbone=densenet169"], "--backbone=densenet169 is for supervised runs; pretraining accepts --backbone=resnet"),
    (["--proj_head_mode=linear", "--ft_proj_selector=2"], "--ft_proj_selector=2 is not valid with "
                                                          "--proj_head_mode=linear and --num_proj_layers=3; accepted: 0..1"),
    (["--mode=eval", "--lineareval_while_pretraining=false"], "needs --lineareval_while_pretraining"),
    (["--label_fraction=0"], "--label_fraction=0 is out of range; accepted: > 0 and <= 1"),
    (["--label_fraction=1.5"], "--label_fraction=1.5 is out of range; accepted: > 0 and <= 1"),
    (["--label_fraction=0.1", "--label_draw=-1"], "--label_draw=-1 is out of range; accepted: >= 0"),
    (["--label_draw=3"], "--label_draw=3 selects a draw of --label_fraction, which is unset; accepted: "
                         "--label_fraction in (0, 1] with it"),
    (["--dataset=mura_synthetic/elbow+knee"], "unknown dataset 'mura_synthetic/elbow+knee'; accepted:"),
    (["--positive_pairs=case"], "value should be one of <image|study>"),
    (["--train_mode=finetune", "--positive_pairs=study"], "--positive_pairs=study pairs images for pretraining; "
                                                           "accepted with --train_mode=finetune: image"),
]


@pytest.mark.parametrize("flags, message", TRAINER_CASES, ids=[" ".join(c[0]) for c in TRAINER_CASES])
def test_trainer_refuses_bad_flags_in_one_line_before_any_work(flags, message, tmp_path, capsys):
  model_dir, data_dir = tmp_path / "model", tmp_path / "tfds"
  with pytest.raises(SystemExit) as exit_info:
    _trainer(["--dataset=mura_synthetic/elbow", f"--model_dir={model_dir}", f"--data_dir={data_dir}", *flags])
  _assert_one_line(exit_info, capsys, "simclr_mura: error: ", message)
  assert not model_dir.exists() and not data_dir.exists()


OTHER_CASES = [
    (study_cli.run, ["--parts=elbow,knee"], "./run.sh: error: --parts: unknown body part(s) knee; accepted: elbow"),
    (study_cli.run, ["--preset=huge"],
     "argument --preset: invalid choice: 'huge' (choose from 'quick', 'cpu', 'paper', 'tiny')"),
    (study_cli.run, ["--jobs=0"], "--jobs=0: accepted: a whole number of at least 1"),
    (study_cli.run, ["--mura_dir=/nonexistent/MURA"], "--mura_dir=/nonexistent/MURA is not a folder"),
    (predict.run, ["--model_dir={tmp}/none", "x.png"], "--model_dir={tmp}/none is not a folder; accepted: a finished"),
    (predict.run, ["--model_dir={tmp}", "--threshold=2", "x.png"], "--threshold=2 is out of range; accepted: 0 to 1"),
    (predict.run, ["--model_dir={tmp}", "{tmp}/missing.png"], "no such file or folder: {tmp}/missing.png; accepted"),
    (prepare.run, ["--dataset=mura/knee", "--data_dir={tmp}/tfds"], "unknown dataset 'mura/knee'; accepted: "),
    (prepare.run, ["--dataset=mura_synthetic/elbow", "--scale=0", "--data_dir={tmp}/tfds"],
     "--scale=0: accepted: a positive number, with mura_synthetic only"),
    (prepare.run, ["--dataset=mura/elbow", "--mura_dir={tmp}/nope", "--data_dir={tmp}/tfds"],
     "--mura_dir={tmp}/nope is not a folder; accepted: the folder holding MURA-v1.1/"),
    (explore.run, ["--dataset=mura_synthetic/knee", "--out={tmp}/out", "--data_dir={tmp}/tfds"],
     "unknown dataset 'mura_synthetic/knee'; accepted"),
    (benchmark.run, ["--suite=tpu"], "argument --suite: invalid choice: 'tpu' (choose from 'cpu', 'gpu')"),
    (benchmark.run, ["--suite=cpu", "--image_size=0", "--work_dir={tmp}/work"],
     "--image_size=0 is out of range; accepted: a whole number >= 1"),
    (benchmark.run, ["--suite=cpu", "--resnet_depth=17", "--work_dir={tmp}/work"],
     "--resnet_depth=17 is not valid; accepted: 18, 34, 50"),
    (benchmark.run, ["--suite=gpu", "--gpu_settings=float8", "--work_dir={tmp}/work"],
     "--gpu_settings: unknown setting 'float8'; accepted: float32"),
    (benchmark.run, ["--suite=cpu", "--no_build", "--data_scale=0", "--work_dir={tmp}/work"],
     "--data_scale=0 is out of range; accepted: a positive number"),
    (benchmark.run, ["--suite=cpu", "--synthetic_config=knee", "--work_dir={tmp}/work"],
     "--synthetic_config=knee is not a mura_synthetic config; accepted: elbow, finger"),
    (report.run, ["--study={tmp}/none"], "--study={tmp}/none: no such folder; accepted: a study folder"),
    (synthetic_findings.run, ["{tmp}/missing.csv"], "{tmp}/missing.csv: no such file (pass a run's predictions"),
]


@pytest.mark.parametrize("entry, argv, message", OTHER_CASES,
                         ids=[f"{c[0].__module__}:{' '.join(c[1])}" for c in OTHER_CASES])
def test_other_entry_points_refuse_bad_arguments_in_one_line(entry, argv, message, tmp_path, capsys):
  tmp = str(tmp_path)
  with pytest.raises(SystemExit) as exit_info:
    entry([a.format(tmp=tmp) for a in argv])
  _assert_one_line(exit_info, capsys, "error: ", message.format(tmp=tmp))
  assert os.listdir(tmp) == []  # nothing prepared, built or written


def test_there_are_at_least_thirty_cases():
  assert len(TRAINER_CASES) + len(OTHER_CASES) >= 30


def _assert_one_line(exit_info, capsys, prefix, message):
  assert exit_info.value.code not in (0, None)
  err = capsys.readouterr().err
  lines = [line for line in err.splitlines() if line.strip()]
  assert len(lines) == 1, err
  assert prefix in lines[0] and message in lines[0], lines[0]
  assert "Traceback" not in err
