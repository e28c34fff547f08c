#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ (what the SIP engine reads off the
# network: SIP messages, SDP; and what an API client can put into our
# INVITEs: to_number, trunk hosts) for a bounded time each, starting from the
# seeds in fuzz/seeds. A crash fails the run and leaves its input in
# fuzz/artifacts/<target>/. Usage: scripts/fuzz.sh [seconds per target]
#
# Stable Rust: libFuzzer's coverage instrumentation needs no nightly flag,
# only the address sanitizer does, so the targets run without it (the code
# under test is safe Rust; panics are what is looked for).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-${FUZZ_SECONDS:-60}}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi
for target in sip_message sdp outbound_uri; do
  corpus="$(mktemp -d)"
  log="$(mktemp)"
  echo "==> fuzz $target for ${seconds}s"
  status=0
  cargo fuzz run -O --sanitizer none "$target" "$corpus" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E "^Done|^stat::number_of_executed_units|panicked|SUMMARY|Test unit written" "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$log" >&2
    echo "fuzz: $target failed (its input is in fuzz/artifacts/$target/)" >&2
  fi
  rm -rf "$corpus" "$log"
  [ "$status" -eq 0 ] || exit "$status"
done
