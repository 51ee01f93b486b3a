#!/usr/bin/env bash
# HTTP load on `gati serve` (issue 18): wrk at each concurrency of a sweep
# against /v2/models/demo/infer, on four servers in one run:
#   gati         the bundle's caches, behind the dynamic batcher (default);
#   gati-bN      a copy of the bundle re-planned for batches of N
#                (`gati plan --batch N`), behind the same batcher;
#   base         the base model alone (--no-cache), behind the same batcher;
#   base-nobatch the base model alone, each request on its own.
# Requests rotate over 500 test images (JSON bodies), so cache hits and
# misses mix as in the trace. Every server admits 256 requests (--max-queue),
# so that 64 connections are queued, not refused. All servers run at once
# and take turns, in an order that rotates per concurrency. Usage:
#   serve_load.sh GATI_BINARY BUNDLE OUT_DIR [SECONDS] [CONCURRENCIES] [PLAN_BATCH]
# CONCURRENCIES: space-separated, default "1 8 32 64". PLAN_BATCH: N above,
# default 32 (the batcher's default --max-batch-size); 0 skips gati-bN. Writes
# OUT_DIR/serve_load.md (throughput, p50, p99 per server and concurrency;
# gati against the batched base model, with the targets flagged) and
# OUT_DIR/serve_load.png. wrk runs on the same machine and takes CPU from
# the server; every server pays it alike.
set -euo pipefail
GATI="$1"
BUNDLE="$2"
OUT="$3"
SECONDS_EACH="${4:-20}"
CONCURRENCIES="${5:-1 8 32 64}"
PLAN_BATCH="${6:-32}"
HERE="$(cd "$(dirname "$0")" && pwd)"
PYTHON=/usr/bin/python3
mkdir -p "$OUT"
RESULTS="$OUT/serve_load.tsv"
: >"$RESULTS"

"$GATI" trace --kind iid --n 500 --seed 21 --out "$OUT/serve_load.npy" >/dev/null
"$PYTHON" - "$OUT/serve_load.npy" "$BUNDLE" "$OUT/serve_load.bodies" <<'PY'
import sys
sys.path.insert(0, "tools")
import numpy as np
import gati_client
pixels = np.load(sys.argv[1])
mean, std = gati_client.bundle_normalization(sys.argv[2])
with open(sys.argv[3], "wb") as out:
    for image in pixels:
        body, _ = gati_client.request_body(((image[None] - mean) / std).astype(np.float32))
        out.write(body + b"\n")
PY

# start_side NAME [extra serve flags]: starts a server in the background;
# its pid and port go to $OUT/serve_load.NAME.{pid,port}.
start_side() {
  local name="$1"
  shift
  local log="$OUT/serve_load.$name.log"
  local bundle="$BUNDLE"
  if [[ "$name" == gati-b* ]]; then bundle="$OUT/batch-plan.bundle"; fi
  "$GATI" serve --model "demo=$bundle" --host 127.0.0.1 --http-port 0 --grpc-port 0 \
    --metrics-port 0 --max-queue 256 "$@" >"$log" 2>&1 &
  local pid=$!
  echo "$pid" >"$OUT/serve_load.$name.pid"
  local port=""
  for _ in $(seq 1 600); do
    port=$(grep -oE "HTTP on 127.0.0.1:[0-9]+" "$log" | grep -oE "[0-9]+$" || true)
    [[ -n "$port" ]] && break
    kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.1
  done
  [[ -n "$port" ]] || { echo "serve_load: $name did not start"; cat "$log"; exit 1; }
  echo "$port" >"$OUT/serve_load.$name.port"
}

# load_side NAME C: a warm-up and a timed run at concurrency C.
load_side() {
  local name="$1" c="$2"
  local port threads=$(( $2 < 2 ? 1 : 2 ))
  port=$(cat "$OUT/serve_load.$name.port")
  # Warm-up, untimed.
  GATI_BODIES="$OUT/serve_load.bodies" wrk -t"$threads" -c"$c" -d3s \
    -s "$HERE/serve_load.lua" "http://127.0.0.1:$port/v2/models/demo/infer" >/dev/null
  # The warm-up's last requests finish before the timed run opens its
  # connections.
  sleep 1
  GATI_BODIES="$OUT/serve_load.bodies" wrk -t"$threads" -c"$c" -d"${SECONDS_EACH}s" \
    --timeout 10s -s "$HERE/serve_load.lua" \
    "http://127.0.0.1:$port/v2/models/demo/infer" >"$OUT/serve_load.$name.$c.wrk"
  local result
  result=$(grep -E "^RESULT" "$OUT/serve_load.$name.$c.wrk" | sed "s/^RESULT //")
  echo "$name c=$c $result"
  printf '%s\t%s\t%s\n' "$name" "$c" "$result" >>"$RESULTS"
}

echo "wrk: concurrency $CONCURRENCIES, ${SECONDS_EACH} s each, 500 rotating images"
SIDES=(gati)
if [[ "$PLAN_BATCH" != 0 ]]; then
  rm -rf "$OUT/batch-plan.bundle"
  cp -r "$BUNDLE" "$OUT/batch-plan.bundle"
  "$GATI" plan "$OUT/batch-plan.bundle" --batch "$PLAN_BATCH" >"$OUT/batch-plan.txt"
  grep -E "^made for|^predicted latency" "$OUT/batch-plan.txt"
  SIDES+=("gati-b$PLAN_BATCH")
fi
SIDES+=("base" "base-nobatch")
# Every server runs at once, idle but for its turn, and the turns rotate
# from one concurrency to the next: the machine's drift and the order fall
# on every server alike. Each server has an untimed turn first, since the
# first run after start-up ran slower.
rm -f "$OUT"/serve_load.*.pid "$OUT"/serve_load.*.port
stop_all() {
  local status=0 pid
  for name in "${SIDES[@]}"; do
    [[ -f "$OUT/serve_load.$name.pid" ]] || continue
    pid=$(cat "$OUT/serve_load.$name.pid")
    rm -f "$OUT/serve_load.$name.pid"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait "$pid"; then
      echo "serve_load: the $name server exited with an error (log: $OUT/serve_load.$name.log)" >&2
      status=1
    fi
  done
  return "$status"
}
trap 'stop_all || true' EXIT
for name in "${SIDES[@]}"; do
  case "$name" in
    base) start_side base --no-cache ;;
    base-nobatch) start_side base-nobatch --no-cache --batching off ;;
    *) start_side "$name" ;;
  esac
done
first_c="${CONCURRENCIES%% *}"
for name in "${SIDES[@]}"; do
  port=$(cat "$OUT/serve_load.$name.port")
  GATI_BODIES="$OUT/serve_load.bodies" wrk -t1 -c"$first_c" -d3s \
    -s "$HERE/serve_load.lua" "http://127.0.0.1:$port/v2/models/demo/infer" >/dev/null
done
level=0
for c in $CONCURRENCIES; do
  for k in "${!SIDES[@]}"; do
    load_side "${SIDES[$(( (k + level) % ${#SIDES[@]} ))]}" "$c"
  done
  level=$((level + 1))
done
trap - EXIT
stopped=0
stop_all || stopped=1
"$PYTHON" "$HERE/serve_load_report.py" "$RESULTS" "$OUT/serve_load.md" "$OUT/serve_load.png"
exit "$stopped"
