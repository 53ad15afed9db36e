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
stamp="$VENV/.installed-$(cksum < pyproject.toml | cut -d' ' -f1)-${extras//,/-}"
if [ ! -f "$stamp" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".[$extras]"
  touch "$stamp"
fi
py="$root/$VENV/bin/python"
