#!/usr/bin/env bash
# Builds everything and runs every test, on the CPU. Needs only a Rust toolchain
# (rustup's stable; cargo fetches the crates).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
cargo build --workspace --all-targets --locked
cargo test --workspace --locked -- --test-threads=2
