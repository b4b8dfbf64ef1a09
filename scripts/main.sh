#!/usr/bin/env bash
# The main job: builds evo, runs the quick experiment (configs/quick-cifar10.toml) on the
# data set given (default ../shared/data/cifar10-jpeg), then exports the best individual
# and scores it on the test images. Running it again resumes the same experiment.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data/cifar10-jpeg}"
state="${STATE_DIR:-runs/quick-cifar10}"
cargo build --release -p node -j"${CARGO_BUILD_JOBS:-2}"
evo=target/release/evo
if [ ! -e "$data" ]; then
  echo "no data set at $data: fetch one with '$evo data fetch cifar10 --dir data'" >&2
  echo "and run: $0 data/cifar-10-batches-bin" >&2
  exit 1
fi
mkdir -p runs
"$evo" run --config configs/quick-cifar10.toml --data "$data" --state-dir "$state" "${@:2}"
"$evo" export --state-dir "$state" --out "$state-best" --top 3
"$evo" evaluate --model "$state-best" --data "$data" --ensemble 3
