"""The trainer's command line: `python run.py --mode=... --train_mode=...` (console script `simclr-mura`)."""
from __future__ import annotations

from absl import app, flags, logging

from simclr_mura import config as config_lib
from simclr_mura import flags as trainer_flags
from simclr_mura.errors import UserError, exit_with

PROG = "simclr_mura"


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing with a bad flag (unknown name, bad type or choice) reported in one line, exit status 2."""
  try:
    return trainer_flags.FLAGS(argv)
  except flags.Error as e:
    exit_with(PROG, UserError(str(e)))


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    exit_with(PROG, UserError(f"unexpected arguments: {' '.join(argv[1:])}; accepted: --flag=value pairs only"))
  if not trainer_flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # TFDS logs every file it reads at INFO
  try:
    config = trainer_flags.config_from_flags()
    config_lib.validate(config)  # the one validation pass, before TensorFlow builds or prepares anything
    from simclr_mura.training import trainer  # imported after validation: TensorFlow start-up is slow
    trainer.run(config)
  except UserError as e:
    exit_with(PROG, e)


def run() -> None:
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  run()
