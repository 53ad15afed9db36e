# Sourced by scripts/*: make (or reuse) a virtualenv with the package and all extras.
# PYTHON picks the interpreter (default: python3); VENV the folder (default: .venv).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
extras="celery,gevent,eventlet,test${EXTRA_EXTRAS:-}"
# One stamp per pyproject.toml and set of extras: scripts/bench needs more than scripts/test.
# PINS: extra requirements for this venv (scripts/matrix: "celery~=5.3.0 wrapt==1.15.*").
pins=${PINS:-}
stamp="$VENV/.installed-$(cksum < pyproject.toml | cut -d' ' -f1)-${extras//,/-}"
if [ -n "$pins" ]; then
  stamp="$stamp-$(printf %s "$pins" | cksum | cut -d' ' -f1)"
fi
if [ ! -f "$stamp" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # shellcheck disable=SC2086  # PINS is a list of requirements
  "$VENV/bin/python" -m pip install -q -e ".[$extras]" $pins
  # What pre-commit needs to install our hook offline (tests/test_pre_commit.py).
  "$VENV/bin/python" -m pip download -q -d "$VENV/wheelhouse" "setuptools>=68" wheel wrapt
  touch "$stamp"
fi
py="$root/$VENV/bin/python"
