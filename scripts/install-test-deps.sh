#!/usr/bin/env bash
# Installs what the test suite and the benchmarks need on a fresh Debian
# machine: peers from Debian's packages, a running PostgreSQL, and a Python
# virtual environment with the OpenAPI validator. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

# Debian packages: wrk (API benchmark), sipp/baresip/tshark/sox/espeak-ng/ffmpeg
# (SIP and media tests), chromium + driver (browser tests), python3-venv.
PACKAGES=(wrk sip-tester baresip-core tshark sox espeak-ng ffmpeg chromium chromium-driver python3-venv postgresql-client)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# PostgreSQL for the tests that run on both back-ends.
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if [ -d /etc/postgresql ]; then
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
fi

# The OpenAPI document is checked with the PyPI openapi-spec-validator.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import openapi_spec_validator" 2>/dev/null; then
  .venv/bin/pip install -q openapi-spec-validator
fi
echo "test dependencies ready"
