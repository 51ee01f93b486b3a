#!/usr/bin/env bash
# Latency of concurrent requests while the online learner trains, against
# the same run's requests at rest. Usage:
#   learner_interference.sh GATI_BINARY BUNDLE OUT_DIR [REQUESTS]
# The learner is kept busy (feedback rate 0.2, a round every 300 feedback
# requests); two clients replay an iid trace. Look for the line
# "while the learner trained ... p99 gati A vs B ms (xR)": R is the rise of
# gati's p99 during training (target <= 1.10); the base model's own ratio in
# the same line shows how much of it is the machine.
set -euo pipefail
GATI="$1"
BUNDLE="$2"
OUT="$3"
REQUESTS="${4:-6000}"
mkdir -p "$OUT"
"$GATI" trace --kind iid --n "$REQUESTS" --seed 11 --out "$OUT/learner_bench.npy"
"$GATI" replay "$BUNDLE" --trace "$OUT/learner_bench.npy" \
  --labels "$OUT/learner_bench.labels.npy" --online on --feedback-rate 0.2 \
  --trigger-rows 300 --concurrency 2 2>&1 | grep -v "online learner:" | grep -v "^replay \["
