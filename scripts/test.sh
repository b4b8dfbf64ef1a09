#!/usr/bin/env bash
# Builds everything and runs every test, on the CPU. Needs only a Rust toolchain
# (rustup's stable; cargo fetches the crates). Ends with one summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
cargo build --workspace --all-targets --locked
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked -- --test-threads=2 2>&1 | tee "$log" || status=$?
passed=$(grep -Eo '^test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '; [0-9]+ failed' "$log" | grep -Eo '[0-9]+' | awk '{s+=$1} END {print s+0}')
echo
echo "tests: ${passed} passed, ${failed} failed"
exit "$status"
