"""The oneDNN default of the package's entry points: on where this project turns it on; the user's choice wins."""
import os
import pathlib
import subprocess
import sys

import pytest

from simclr_mura import cpu_defaults

REPO = pathlib.Path(__file__).resolve().parents[1]


def _run(code: str, env_value: str | None) -> list[str]:
  env = {k: v for k, v in os.environ.items() if k != cpu_defaults.ONEDNN_ENV}
  if env_value is not None:
    env[cpu_defaults.ONEDNN_ENV] = env_value
  out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True)
  return out.stdout.split()


_PROBE = "import os; from simclr_mura import cpu_defaults as c; print(os.environ.get(c.ONEDNN_ENV), c.onednn_enabled())"


def test_entry_points_turn_onednn_on_unless_the_user_chose():
  # `run.py` (the trainer's shim) imports the package before TensorFlow, as every console script does.
  default = cpu_defaults.onednn_default()
  value, enabled = _run("import run; " + _PROBE, None)
  assert value == str(default)
  if default == "1":
    assert enabled == "True"


@pytest.mark.parametrize("value,enabled", [("0", "False"), ("1", "True")])
def test_the_users_setting_wins(value, enabled):
  assert _run("import run; " + _PROBE, value) == [value, enabled]


def test_default_is_only_for_x86_64(monkeypatch):
  for machine, expected in (("x86_64", "1"), ("AMD64", "1"), ("aarch64", None), ("arm64", None)):
    monkeypatch.setattr(cpu_defaults.platform, "machine", lambda m=machine: m)
    assert cpu_defaults.onednn_default() == expected
