#!/usr/bin/env bash
# Side-by-side training speed: evo (candle) against ../shared/bench/torch_reference.py
# (PyTorch), one net at a time, alternating, on this machine. Prints both JSON lines and
# a table with the ratio of steps/s. Needs `pip install torch`.
#   scripts/bench.sh [SECONDS] [NET ...]      (default: 10 s; linear small mid large)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"; shift || true
nets=("${@:-linear small mid large}")
[ $# -eq 0 ] && nets=(linear small mid large)
cargo build --release -p node -j"${CARGO_BUILD_JOBS:-2}" >&2
out=$(mktemp)
for net in "${nets[@]}"; do
  python3 ../shared/bench/torch_reference.py --seconds "$seconds" "$net" 2>/dev/null | tee -a "$out"
  target/release/evo bench train --net "$net" --seconds "$seconds" | tee -a "$out"
done
python3 - "$out" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    side = "torch" if r["framework"].startswith("pytorch") else "evo"
    rows.setdefault(r["net"], {})[side] = r["steps_per_s"]
print(f"{'net':8} {'pytorch steps/s':>16} {'evo steps/s':>12} {'evo/pytorch':>12}")
for net, r in rows.items():
    t, e = r.get("torch"), r.get("evo")
    ratio = f"{e / t:.2f}x" if t and e else "-"
    print(f"{net:8} {t or 0:16.2f} {e or 0:12.2f} {ratio:>12}")
PY
rm -f "$out"
