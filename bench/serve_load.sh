#!/usr/bin/env bash
# HTTP load on `gati serve`: wrk at concurrency C for D seconds against
# /v2/models/demo/infer, first with the bundle's caches, then the same
# server with --no-cache, in one run. Requests rotate over 500 test images
# (JSON bodies), so cache hits and misses mix as in the trace. Usage:
#   serve_load.sh GATI_BINARY BUNDLE OUT_DIR [SECONDS] [CONCURRENCY]
# Prints, per side: requests, errors (non-2xx and socket), throughput,
# p50 / p90 / p99 latency; then gati / base ratios. wrk runs on the same
# machine and takes CPU from the server; both sides pay it alike.
set -euo pipefail
GATI="$1"
BUNDLE="$2"
OUT="$3"
SECONDS_EACH="${4:-60}"
CONCURRENCY="${5:-32}"
HERE="$(cd "$(dirname "$0")" && pwd)"
PYTHON=/usr/bin/python3
mkdir -p "$OUT"
WRK_THREADS=$(( CONCURRENCY < 2 ? 1 : 2 ))

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

# run_side NAME [extra serve flags]: starts the server, loads it, stops it.
run_side() {
  local name="$1"
  shift
  local log="$OUT/serve_load.$name.log"
  "$GATI" serve --model "demo=$BUNDLE" --host 127.0.0.1 --http-port 0 --grpc-port 0 \
    --metrics-port 0 "$@" >"$log" 2>&1 &
  local pid=$!
  local port=""
  for _ in $(seq 1 600); do
    port=$(grep -oE "HTTP on 127.0.0.1:[0-9]+" "$log" | grep -oE "[0-9]+$" || true)
    [[ -n "$port" ]] && break
    kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.1
  done
  [[ -n "$port" ]] || { echo "serve_load: $name did not start"; cat "$log"; exit 1; }
  # Warm-up, untimed.
  GATI_BODIES="$OUT/serve_load.bodies" wrk -t"$WRK_THREADS" -c"$CONCURRENCY" -d3s \
    -s "$HERE/serve_load.lua" "http://127.0.0.1:$port/v2/models/demo/infer" >/dev/null
  GATI_BODIES="$OUT/serve_load.bodies" wrk -t"$WRK_THREADS" -c"$CONCURRENCY" -d"${SECONDS_EACH}s" \
    --timeout 10s -s "$HERE/serve_load.lua" \
    "http://127.0.0.1:$port/v2/models/demo/infer" | tee "$OUT/serve_load.$name.wrk" |
    grep -E "^RESULT" | sed "s/^RESULT/$name/"
  kill -TERM "$pid"
  wait "$pid"
}

echo "wrk: $CONCURRENCY connections, $WRK_THREADS threads, ${SECONDS_EACH} s per side, 500 rotating images"
run_side gati
run_side base --no-cache
"$PYTHON" - "$OUT/serve_load.gati.wrk" "$OUT/serve_load.base.wrk" <<'PY'
import sys
def parse(path):
    for line in open(path):
        if line.startswith("RESULT"):
            return dict(kv.split("=") for kv in line.split()[1:])
    raise SystemExit(f"{path}: no RESULT line")
gati, base = parse(sys.argv[1]), parse(sys.argv[2])
for name, side in (("gati", gati), ("base", base)):
    print(f"{name:5s} {float(side['rps']):8.1f} req/s  p50 {float(side['p50_ms']):7.2f} ms  "
          f"p90 {float(side['p90_ms']):7.2f} ms  p99 {float(side['p99_ms']):7.2f} ms  "
          f"errors {side['errors']}")
print(f"gati/base: throughput x{float(gati['rps']) / float(base['rps']):.2f}, "
      f"p50 x{float(base['p50_ms']) / float(gati['p50_ms']):.2f} faster, "
      f"p99 x{float(base['p99_ms']) / float(gati['p99_ms']):.2f} faster")
if int(gati["errors"]) or int(base["errors"]):
    raise SystemExit("serve_load: some requests failed")
PY
