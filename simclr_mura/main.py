"""The trainer's command line: `python run.py --mode=... --train_mode=...` (console script `simclr-mura`)."""
from __future__ import annotations

import sys

from absl import app, logging

from simclr_mura import flags as trainer_flags
from simclr_mura.errors import UserError


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  if not trainer_flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # TFDS logs every file it reads at INFO
  config = trainer_flags.config_from_flags()
  from simclr_mura.training import trainer  # imported after flag parsing: TensorFlow start-up is slow
  try:
    trainer.run(config)
  except UserError as e:
    sys.exit(f"simclr_mura: error: {e}")


def run() -> None:
  app.run(main)


if __name__ == "__main__":
  run()
