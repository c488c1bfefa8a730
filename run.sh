#!/usr/bin/env bash
# The two commands of the README:
#   ./run.sh [--mura_dir=DIR] [--parts=elbow,hand,shoulder] [--preset=quick|paper] [--out=runs/NAME]
#       the whole study (python -m simclr_mura.study), on mura_synthetic with the quick preset by default;
#   ./run.sh test [PYTEST ARGS]
#       the test suite (./run.sh test -m "not slow": the unit tests only, without the end-to-end runs).
# Both create .venv on first use and install the package into it from setup.py (no other install step anywhere).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
extras=""
[ "${1:-}" = "test" ] && extras="[test]"

if [ ! -x .venv/bin/python ]; then
  echo "run.sh: creating .venv with $("$PYTHON" --version 2>&1)" >&2
  "$PYTHON" -m venv .venv
fi
# Reinstall only when setup.py changed since the last install, or the requested extras are not installed yet. The
# stamp lists the extras an install serves: one with [test] serves the study too (so the tests never reinstall).
stamp=".venv/.simclr_mura-installed-$(sha1sum setup.py | cut -c1-12)"
if [ ! -f "$stamp" ] || ! grep -qxF -- "$extras" "$stamp"; then
  echo "run.sh: installing simclr_mura$extras into .venv (first use; takes a few minutes)" >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".$extras"
  served=""
  [ -f "$stamp" ] && served=$(cat "$stamp")
  rm -f .venv/.simclr_mura-installed-*
  printf '%s\n' "$served" "" "$extras" | sort -u > "$stamp"
fi

export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
if [ "${1:-}" = "test" ]; then
  shift
  exec .venv/bin/python -m pytest tests "$@"
fi
exec .venv/bin/python -m simclr_mura.study "$@"
