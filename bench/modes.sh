#!/usr/bin/env bash
# gati against the frozen base model per demo bundle, mode (auto, the
# default, then parallel and sequential) and trace kind (iid, video), each
# run interleaved with the base model in one `gati replay`, REPEATS times;
# plus `--no-cache` on iid, the engine without caches against the base
# model, whose distance from 1.0x is the machine's noise floor. Usage:
#   modes.sh GATI_BINARY OUT_DIR REQUESTS REPEATS BUNDLE...
# Writes OUT_DIR/modes/*.json (one `gati replay --summary-json` per run) and
# OUT_DIR/modes.md: per configuration the median over the repeats of each
# speedup (mean, p50, p95, p99), with every configuration that misses a
# target flagged.
set -euo pipefail
GATI="$1"
OUT="$2"
REQUESTS="$3"
REPEATS="$4"
shift 4
HERE=$(cd "$(dirname "$0")" && pwd)
rm -rf "$OUT/modes"
mkdir -p "$OUT/modes"
for kind in iid video; do
  "$GATI" trace --kind "$kind" --n "$REQUESTS" --seed 21 --out "$OUT/modes/$kind.npy" >/dev/null
done
run() {  # run NAME KIND REPEAT TAG FLAGS...
  local name=$1 kind=$2 repeat=$3 tag=$4
  shift 4
  local log="$OUT/modes/$name.$kind.$tag.$repeat.log"
  if ! "$GATI" replay "$bundle" --trace "$OUT/modes/$kind.npy" "$@" \
      --summary-json "$OUT/modes/$name.$kind.$tag.$repeat.json" >"$log" 2>&1; then
    echo "modes: gati replay failed for $name $kind $tag:" >&2
    tail -5 "$log" >&2
    exit 1
  fi
  grep -E "^mode:|^speedup" "$log" || true
}
for bundle in "$@"; do
  name=$(basename "$bundle" .bundle)
  for repeat in $(seq 1 "$REPEATS"); do
    for kind in iid video; do
      for mode in auto parallel sequential; do
        echo "modes: $name $kind $mode (run $repeat of $REPEATS)"
        run "$name" "$kind" "$repeat" "$mode" --mode "$mode"
      done
    done
    echo "modes: $name iid --no-cache (run $repeat of $REPEATS)"
    run "$name" iid "$repeat" no-cache --no-cache
  done
done
/usr/bin/python3 "$HERE/modes_report.py" "$OUT/modes" "$OUT/modes.md"
cat "$OUT/modes.md"
