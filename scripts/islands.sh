#!/usr/bin/env bash
# Three islands against one node on one machine, the quick config, the same wall time:
#   scripts/islands.sh DATA [MINUTES] [THREADS_PER_ISLAND]
# First one node alone (--offline, every core), then three nodes together (A, then B and
# C bootstrapping to A), each with its own state directory and HTTP port and
# THREADS_PER_ISLAND training threads (default 1: three nodes sharing two cores). Prints
# each run's trained count and best validation accuracy. Wall time is the only stop (the
# quick config's cap of 2,000 individuals is lifted). Runs go to runs/islands-*.
# SKIP_SOLO=1 reuses the last one-node run; SKIP_ISLANDS=1 runs only the one node;
# SOLO_THREADS=N gives the one node N training threads (default: every core), e.g. 1 to
# compare with islands that each have a machine of that size.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:?usage: scripts/islands.sh DATA [MINUTES] [THREADS_PER_ISLAND]}"
minutes="${2:-10}"
threads="${3:-1}"
evo="${CARGO_TARGET_DIR:-target}/release/evo"
[ -x "$evo" ] || cargo build --release -p node -j2
mkdir -p runs
run() { # name port extra...
    local name=$1 port=$2
    shift 2
    "$evo" run --config configs/quick-cifar10.toml --data "$data" --state-dir "runs/islands-$name" \
        --http "127.0.0.1:$port" --max-minutes "$minutes" stop.max_individuals=1000000 "$@" \
        > "runs/islands-$name.log" 2>&1
}
best() { # state dir: best validation accuracy and count of individuals trained
    python3 - "$1" <<'PY'
import json, sys
best, n = 0.0, 0
for line in open(sys.argv[1] + "/events.jsonl"):
    e = json.loads(line)
    if e["event"] == "training_finished":
        n += 1
        best = max(best, e.get("fitness") or 0.0)
    if e["event"] == "migration" and e["direction"] == "in":
        best = max(best, e["fitness"])
print(f"{sys.argv[1]}: {n} trained, best val {100 * best:.2f}%")
PY
}
if [ -z "${SKIP_SOLO:-}" ]; then
    rm -rf runs/islands-solo
    run solo 8090 --offline --node.threads "${SOLO_THREADS:-0}"
fi
if [ -n "${SKIP_ISLANDS:-}" ]; then
    best runs/islands-solo
    exit 0
fi
rm -rf runs/islands-a runs/islands-b runs/islands-c
run a 8091 --listen /ip4/127.0.0.1/tcp/0 --node.threads "$threads" &
addr=""
for _ in $(seq 100); do
    addr=$(curl -s 127.0.0.1:8091/status | python3 -c 'import json,sys; a=json.load(sys.stdin)["listen_addrs"]; print(a[0] if a else "")' 2>/dev/null || true)
    [ -n "$addr" ] && break
    sleep 0.2
done
[ -n "$addr" ] || { echo "node A did not start: see runs/islands-a.log" >&2; exit 1; }
run b 8092 --listen /ip4/127.0.0.1/tcp/0 --node.threads "$threads" --bootstrap "$addr" &
run c 8093 --listen /ip4/127.0.0.1/tcp/0 --node.threads "$threads" --bootstrap "$addr" &
wait
for n in solo a b c; do best "runs/islands-$n"; done
