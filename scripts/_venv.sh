# Sourced by scripts/demo and scripts/test: make sure .venv exists and holds the project with the given extras.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
extras="${1:-}"
stamp=".venv/.installed-${extras:-base}-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" >&2 || true
  .venv/bin/python -m pip install --quiet -e ".${extras:+[$extras]}" 2>&1 | grep -v "is ignored" >&2 || true
  .venv/bin/python -c 'import risk_zoning, warnings_svc' # fail here, not later, if the install did not work
  touch "$stamp"
fi
if [[ ",$extras," == *,test,* ]]; then
  scripts/install-debian-peers # Chromium (tests/browser), Mosquitto (MQTT terminals), espeak-ng (speech), promtool
  scripts/install-smsc-peer # the SMPP tests talk to node-smpp in server mode (tests/peers/smsc)
fi
