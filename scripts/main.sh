#!/usr/bin/env bash
# The main job: builds evo and trains the paper's initial individual (a linear classifier
# on pixels, learning rate 0.1) on the data set given (default ../shared/data/cifar10-jpeg).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data/cifar10-jpeg}"
steps="${STEPS:-2000}"
cargo build --release -p node -j"${CARGO_BUILD_JOBS:-2}"
evo=target/release/evo
if [ ! -e "$data" ]; then
  echo "no data set at $data: fetch one with '$evo data fetch cifar10 --dir data'" >&2
  echo "and run: $0 data/cifar-10-batches-bin" >&2
  exit 1
fi
mkdir -p runs
"$evo" genome initial > runs/initial.json
"$evo" train --genome runs/initial.json --data "$data" --steps "$steps" --out runs/initial-model
