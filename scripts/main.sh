#!/usr/bin/env bash
# The main job: builds evo, runs the quick experiment (configs/quick-cifar10.toml) on a
# data set, then exports the best individual and scores it on the test images. Running
# it again resumes the same experiment. While it runs, the dashboard is at the address
# `evo run` prints (http://127.0.0.1:8080/ unless --http says otherwise).
#
#   scripts/main.sh [DATA] [evo run flags and KEY=VALUE overrides...]
#
# DATA is a data set folder. Without one, it takes data/cifar-10-batches-bin (or
# ../shared/data/cifar10-jpeg) if it is there, and otherwise downloads CIFAR-10 into
# data/ first (`evo data fetch cifar10 --dir data`: progress bar, MD5 checked).
# Environment: STATE_DIR (default runs/quick-cifar10); EVO_BIN, an evo binary to use
# instead of building one; EVO_DATA_BASE_URL and EVO_DATA_MD5, a mirror of the archive.
set -euo pipefail
cd "$(dirname "$0")/.."
state="${STATE_DIR:-runs/quick-cifar10}"
if [ -n "${EVO_BIN:-}" ]; then
  evo="$EVO_BIN"
else
  cargo build --release -p node -j"${CARGO_BUILD_JOBS:-2}"
  evo="${CARGO_TARGET_DIR:-target}/release/evo"
fi

# The data set: the first argument unless it is a flag or an override.
data=""
if [ $# -gt 0 ] && [[ "$1" != -* ]] && [[ "$1" != *=* ]]; then
  data="$1"
  shift
fi
if [ -z "$data" ]; then
  for found in data/cifar-10-batches-bin ../shared/data/cifar10-jpeg; do
    if [ -e "$found" ]; then
      data="$found"
      echo "data set: $found"
      break
    fi
  done
fi
if [ -z "$data" ]; then
  echo "no data set given or found: downloading CIFAR-10 into data/ (about 170 MB)"
  fetch=("$evo" data fetch cifar10 --dir data)
  if [ -n "${EVO_DATA_BASE_URL:-}" ]; then fetch+=(--base-url "$EVO_DATA_BASE_URL"); fi
  if [ -n "${EVO_DATA_MD5:-}" ]; then fetch+=(--md5 "$EVO_DATA_MD5"); fi
  if ! "${fetch[@]}"; then
    cat >&2 <<EOF
could not download CIFAR-10 (is this machine offline?). Either:
  - download https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz on a machine that
    can, unpack it here into data/ (it makes data/cifar-10-batches-bin), and run $0 again;
  - or give a data set folder you have: $0 DIR (CIFAR-10/100 binary, IDX files, or
    train/CLASS/*.jpg and test/CLASS/*.jpg folders).
EOF
    exit 1
  fi
  data=data/cifar-10-batches-bin
fi
if [ ! -e "$data" ]; then
  echo "no data set at $data: give a data set folder, or run $0 with no argument to download CIFAR-10" >&2
  exit 1
fi

mkdir -p runs
"$evo" run --config configs/quick-cifar10.toml --data "$data" --state-dir "$state" "$@"
"$evo" export --state-dir "$state" --out "$state-best" --top 3
"$evo" evaluate --model "$state-best" --data "$data" --ensemble 3
