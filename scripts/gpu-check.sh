#!/usr/bin/env bash
# The GPU check (issue 14), one script for the device machine, inside 8 minutes:
#   1. evo doctor on the device (every op against the CPU reference);
#   2. evo bench train for mid and large: one model, and --concurrent K for K in 1, 4, 16;
#   3. ../shared/bench/torch_reference.py for the same nets on the same card (one
#      process, and 16 processes of mid at once), if PyTorch is there;
#   4. one long training of mid (25,600 steps, the paper's length) on CIFAR-10 data,
#      then its test accuracy;
# and writes every figure into one JSON file.
#
#   scripts/gpu-check.sh [--evo PATH] [--device cuda:0] [--data DIR] [--torch-ref PATH]
#                        [--out FILE] [--quick]
#
# --evo: the binary (default: evo beside this script, else .carry/evo, else
# target/release/evo); on a GPU machine run through ../shared/cuda/on-gpu.sh's library
# path (set LD_LIBRARY_PATH, or call this script through it). --quick: the dry run for a
# CPU build (--device cpu): 2-second benchmarks, K in 1 and 2, 200 steps.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
evo=""
device="cuda:0"
data=""
torch_ref="$here/../../shared/bench/torch_reference.py"
out="gpu-check.json"
quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    --evo) evo="$2"; shift 2 ;;
    --device) device="$2"; shift 2 ;;
    --data) data="$2"; shift 2 ;;
    --torch-ref) torch_ref="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$evo" ]; then
  for candidate in "$here/evo" "$here/../.carry/evo" "$here/../target/release/evo"; do
    if [ -x "$candidate" ]; then evo="$candidate"; break; fi
  done
fi
[ -x "$evo" ] || { echo "no evo binary: give --evo PATH" >&2; exit 2; }
if [ "$quick" = 1 ]; then
  seconds=2; concurrent=(1 2); long_steps=200; processes=2
else
  seconds=10; concurrent=(1 4 16); long_steps=25600; processes=16
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
started=$(date +%s)
say() { echo "[$(( $(date +%s) - started ))s] $*" >&2; }

# 1. The doctor.
say "evo doctor --device $device"
timeout 120 "$evo" doctor --device "$device" --json > "$work/doctor.jsonl" 2> "$work/doctor.err"
echo $? > "$work/doctor.rc"
tail -1 "$work/doctor.err" >&2

# 2. evo's training speed, one model and K at once.
for net in mid large; do
  for k in "${concurrent[@]}"; do
    say "evo bench train --net $net --concurrent $k"
    timeout 120 "$evo" bench train --net "$net" --device "$device" --seconds "$seconds" \
      --concurrent "$k" >> "$work/evo-bench.jsonl" 2>> "$work/evo-bench.err" \
      || echo "{\"net\":\"$net\",\"concurrent\":$k,\"failed\":true}" >> "$work/evo-bench.jsonl"
  done
done

# 3. PyTorch on the same card, if it is there.
torch_device="$device"
if [ -f "$torch_ref" ] && python3 -c "import torch" 2> /dev/null; then
  say "torch_reference.py --device $torch_device mid large"
  timeout 120 python3 "$torch_ref" --device "$torch_device" --seconds "$seconds" mid large \
    > "$work/torch.jsonl" 2> "$work/torch.err"
  say "torch_reference.py mid, $processes processes at once"
  for i in $(seq 1 "$processes"); do
    timeout 120 python3 "$torch_ref" --device "$torch_device" --seconds "$seconds" mid \
      > "$work/torch-many-$i.jsonl" 2>> "$work/torch.err" &
  done
  wait
  cat "$work"/torch-many-*.jsonl > "$work/torch-many.jsonl" 2> /dev/null
else
  say "no PyTorch (or no $torch_ref): its figures are left out"
fi

# 4. One long training of mid on CIFAR-10 data.
if [ -n "$data" ] && [ -e "$data" ]; then
  "$evo" genome reference mid > "$work/mid.json"
  say "evo train mid for $long_steps steps on $data"
  timeout 420 "$evo" train --genome "$work/mid.json" --data "$data" --steps "$long_steps" \
    --device "$device" --schedule cosine --gradient-clip 0.1 --quiet \
    > "$work/long.json" 2> "$work/long.err" \
    || echo "{\"failed\":true}" > "$work/long.json"
else
  say "no --data: the long training is left out"
fi

# Every figure in one JSON.
python3 - "$work" "$out" "$device" "$quick" "$(( $(date +%s) - started ))" <<'PY'
import json, os, sys
work, out, device, quick, seconds = sys.argv[1:6]
def lines(name):
    path = os.path.join(work, name)
    if not os.path.exists(path):
        return []
    rows = []
    for l in open(path):
        l = l.strip()
        if l:
            try:
                rows.append(json.loads(l))
            except ValueError:
                rows.append({"unparsed": l})
    return rows
doctor = lines("doctor.jsonl")
result = {
    "device": device,
    "quick": quick == "1",
    "seconds": int(seconds),
    "doctor": {
        "exit_code": int(open(os.path.join(work, "doctor.rc")).read().strip() or 1),
        "checks": doctor,
        "failed": [c["op"] for c in doctor if not c.get("passed", False)],
    },
    "evo_bench": lines("evo-bench.jsonl"),
    "torch": lines("torch.jsonl"),
    "torch_many_mid": lines("torch-many.jsonl"),
    "long_training": (lines("long.json") or [None])[-1],
}
many = result["torch_many_mid"]
result["torch_many_mid_images_per_s"] = sum(r.get("images_per_s", 0) for r in many) if many else None
json.dump(result, open(out, "w"), indent=1)
print(json.dumps({k: result[k] for k in ("device", "seconds")} | {
    "doctor_failed": result["doctor"]["failed"],
    "evo_bench": [(r.get("net"), r.get("concurrent"), r.get("steps_per_s"), r.get("images_per_s")) for r in result["evo_bench"]],
    "torch": [(r.get("net"), r.get("steps_per_s")) for r in result["torch"]],
    "torch_many_mid_images_per_s": result["torch_many_mid_images_per_s"],
    "long_training": result["long_training"],
}, indent=1))
PY
say "wrote $out"
