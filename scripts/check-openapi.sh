#!/usr/bin/env bash
# Validates an OpenAPI document with the PyPI openapi-spec-validator.
#
#   scripts/check-openapi.sh FILE     a document on disk (JSON or YAML)
#   scripts/check-openapi.sh URL      e.g. http://127.0.0.1:8080/api/v1/openapi.json
#
# Uses the virtual environment at .venv (the one scripts/install-test-deps.sh
# makes), creating it and installing the validator when missing.
set -euo pipefail

if [ "$#" -ne 1 ]; then
  echo "usage: $0 FILE|URL" >&2
  exit 2
fi
target="$1"
# A relative FILE is relative to where the script was started.
case "$target" in
  http://* | https://* | /*) ;;
  *) target="$PWD/$target" ;;
esac
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import openapi_spec_validator" 2>/dev/null; then
  .venv/bin/pip install -q --disable-pip-version-check openapi-spec-validator
fi

case "$target" in
  http://* | https://*)
    file="$(mktemp --suffix=.json)"
    trap 'rm -f "$file"' EXIT
    curl -fsS "$target" -o "$file"
    ;;
  *)
    file="$target"
    if [ ! -f "$file" ]; then
      echo "check-openapi: no such file: $file" >&2
      exit 2
    fi
    ;;
esac

.venv/bin/python -m openapi_spec_validator "$file"
