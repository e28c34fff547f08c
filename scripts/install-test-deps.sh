#!/usr/bin/env bash
# Installs what the test suite and the benchmarks need on a Debian machine:
# peers from Debian's packages, a running PostgreSQL, and a Python virtual
# environment with the OpenAPI validator. Safe to run again: each step does
# nothing when its work is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

# Root runs apt-get and pg_ctlcluster directly; anyone else goes through sudo.
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install-test-deps: not root and no sudo; installing as is (may fail)" >&2
  fi
fi

# Debian packages, installed only when missing (apt-get update only then):
#   wrk                          API benchmark (switchyard bench api)
#   rtpengine-daemon             media benchmark peer (switchyard bench sip media);
#                                where policy-rc.d forbids it (containers) its
#                                service does not start; either way the
#                                benchmark runs its own on ports of its own
#   sip-tester (sipp), baresip-core, tshark
#                                SIP peers and captures for the SIP engine tests
#   sox, espeak-ng, ffmpeg       audio fixtures and checks for media/recordings
#   chromium, chromium-driver    browser tests (Swagger UI, WebRTC join page)
#   python3-venv                 the .venv below
#   postgresql-client            pg_isready, psql
PACKAGES=(wrk rtpengine-daemon sip-tester baresip-core tshark sox espeak-ng ffmpeg
          chromium chromium-driver python3-venv postgresql-client)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-test-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# PostgreSQL on 127.0.0.1:5432 for the tests that run on both back-ends.
# If it is installed but stopped, start its cluster and wait for it.
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql)" ]; then
    version="$(ls /etc/postgresql | sort -V | tail -n1)"
    echo "install-test-deps: starting PostgreSQL $version"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do
      pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null && break
      sleep 1
    done
  fi
  if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    echo "install-test-deps: PostgreSQL is not reachable on 127.0.0.1:5432;" \
      "its tests will skip (or fail with SWITCHYARD_REQUIRE_PEERS=1)" >&2
  fi
fi

# A virtual environment at .venv with what the tests run from PyPI:
#   openapi-spec-validator  checks the served OpenAPI document
#   moto[server]            a real S3 API on loopback (moto_server) for the
#                           recordings' S3 storage test
#   standardwebhooks        the official Standard Webhooks verifier the
#                           webhook receiver in crates/server/tests checks
#                           every delivery with
#   schemathesis (pinned)   fuzzes the served OpenAPI document's operations
#                           in CI (scripts/schemathesis.sh)
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import openapi_spec_validator" 2>/dev/null; then
  .venv/bin/python -m pip install -q --disable-pip-version-check openapi-spec-validator
fi
if [ ! -x .venv/bin/moto_server ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check 'moto[server]'
fi
if ! .venv/bin/python -c "import standardwebhooks" 2>/dev/null; then
  .venv/bin/python -m pip install -q --disable-pip-version-check standardwebhooks
fi

SCHEMATHESIS_VERSION=4.32.5
if [ "$(.venv/bin/schemathesis --version 2>/dev/null)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

echo "install-test-deps: ready"
