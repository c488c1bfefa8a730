"""`python -m simclr_mura.study`: the whole study (see `simclr_mura.study.cli`)."""
import sys

from simclr_mura.study.cli import run

if __name__ == "__main__":
  sys.exit(run())
