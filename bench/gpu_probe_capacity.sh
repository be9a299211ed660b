#!/bin/sh
# The probe's capacity answers against a real engine on the GPU lab (docs/probe.md; the GPU lab itself, which
# builds and starts llama-server with CUDA, is scripts/ and docs/gpu-lab.md). Run with the engine already serving:
#
#   URL=http://127.0.0.1:8080 MODEL=smollm2 SLOTS=64 OUT=/tmp/capacity sh bench/gpu_probe_capacity.sh
#
# 1. The closed ladder 1…256 with bisection and the noise guard: with llama-server -np 64 and an SLO that queueing
#    breaks, max usable concurrency should be 64 exactly, the bisection levels said in the verdict.
# 2. The open loop at rates around the measured capacity (the ladder's req/s at the max usable level), Poisson
#    arrivals: achieved rate and goodput should flatten there, send lag stay small.
# Every run is saved in the store too (`enginedeck probe history`); the JSON documents land in $OUT.
set -u
: "${URL:?URL of the running engine}" "${MODEL:?model name it serves}"
SLOTS=${SLOTS:-64}
LEVELS=${LEVELS:-1,2,4,8,16,32,64,128,256}
REQUESTS=${REQUESTS:-40}
OUT=${OUT:-/tmp/capacity}
ED=${ENGINEDECK:-enginedeck}
mkdir -p "$OUT"
uptime
echo "== closed ladder with bisection and the noise guard"
$ED probe "$URL" "$MODEL" --levels "$LEVELS" --requests "$REQUESTS" --max-tokens 64 --ignore-eos \
    --slo ttft_p90=500ms,decode_p10=10 --noise-guard --precision 1 --json > "$OUT/ladder.json"
echo "rc $?"
$ED probe show "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["run_id"])' "$OUT/ladder.json")" --wide
CAP=$(python3 -c '
import json, sys
doc = json.load(open(sys.argv[1]))
usable = doc["max_usable_concurrency"]
levels = [lv for lv in doc["levels"] if lv["concurrency"] == usable and lv["phase"] != "noise"]
print(round(levels[0]["req_s"], 1) if levels else 10)' "$OUT/ladder.json")
echo "== open loop around the closed loop's rate at max usable concurrency: $CAP req/s"
RATES=$(python3 -c 'import sys; c = float(sys.argv[1]); print(",".join(f"{c * f:.1f}" for f in (0.5, 0.9, 1.2, 2.0)))' "$CAP")
$ED probe "$URL" "$MODEL" --rates "$RATES" --requests $((REQUESTS * 5)) --max-tokens 64 --ignore-eos \
    --slo ttft_p90=500ms,decode_p10=10 --max-in-flight $((SLOTS * 2)) --json > "$OUT/open.json"
echo "rc $?"
$ED probe show "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["run_id"])' "$OUT/open.json")" --wide
uptime
date -u
