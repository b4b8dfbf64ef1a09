#!/usr/bin/env bash
# Side-by-side training speed: evo (candle) against ../shared/bench/torch_reference.py
# (PyTorch), one net at a time, on this machine. Each net is measured in REPEAT pairs
# (default 1), the order within a pair alternating (torch first, then evo first, ...), so
# that slow drift of the machine hits both sides alike. Prints every JSON line, then a
# table: the median steps/s of each side and the median and range of the per-pair ratios.
# Needs `pip install torch`.
#   [REPEAT=5] scripts/bench.sh [SECONDS] [NET ...]      (default: 10 s; linear small mid large)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"; shift || true
nets=("$@")
[ $# -eq 0 ] && nets=(linear small mid large)
repeat="${REPEAT:-1}"
cargo build --release -p node -j"${CARGO_BUILD_JOBS:-2}" >&2
out=$(mktemp)
torch() { python3 ../shared/bench/torch_reference.py --seconds "$seconds" "$1" 2>/dev/null | sed "s/^{/{\"pair\": $2, /" | tee -a "$out"; }
evo() { "${CARGO_TARGET_DIR:-target}/release/evo" bench train --net "$1" --seconds "$seconds" | sed "s/^{/{\"pair\": $2, /" | tee -a "$out"; }
for net in "${nets[@]}"; do
  for ((i = 0; i < repeat; i++)); do
    if ((i % 2 == 0)); then torch "$net" "$i"; evo "$net" "$i"; else evo "$net" "$i"; torch "$net" "$i"; fi
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    side = "torch" if r["framework"].startswith("pytorch") else "evo"
    runs.setdefault(r["net"], {}).setdefault(r["pair"], {})[side] = r["steps_per_s"]
print(f"{'net':8} {'pairs':>5} {'pytorch steps/s':>16} {'evo steps/s':>12} {'evo/pytorch':>12} {'ratio range':>14}")
for net, pairs in runs.items():
    full = [p for p in pairs.values() if "torch" in p and "evo" in p]
    if not full:
        continue
    t = statistics.median(p["torch"] for p in full)
    e = statistics.median(p["evo"] for p in full)
    ratios = [p["evo"] / p["torch"] for p in full]
    r = statistics.median(ratios)
    print(f"{net:8} {len(full):5} {t:16.2f} {e:12.2f} {r:11.2f}x {min(ratios):6.2f}-{max(ratios):.2f}x")
PY
rm -f "$out"
