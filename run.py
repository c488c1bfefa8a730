"""Thin shim: `python run.py --mode=... --train_split=...` runs simclr_mura's trainer (absl app)."""
from simclr_mura.main import run

if __name__ == "__main__":
  run()
