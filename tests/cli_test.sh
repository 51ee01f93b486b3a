#!/usr/bin/env bash
# Command-line behaviour of `gati`: usage errors, bad files, and working
# runs on the test fixtures. Usage: cli_test.sh GATI_BINARY FIXTURES_DIR
set -u
GATI="$1"
FIXTURES="$2"
passed=0
failed=0

# expect NAME WANT_RC PATTERN -- COMMAND...: runs COMMAND, checks its exit
# code (0, or "nonzero") and that stdout+stderr match the grep PATTERN.
expect() {
  local name="$1" want_rc="$2" pattern="$3"
  shift 4
  local output rc
  output=$("$@" 2>&1)
  rc=$?
  local ok=1
  if [[ "$want_rc" == "nonzero" ]]; then
    [[ $rc -ne 0 && $rc -lt 128 ]] || ok=0
  else
    [[ $rc -eq $want_rc ]] || ok=0
  fi
  grep -qE -- "$pattern" <<<"$output" || ok=0
  if [[ $ok -eq 1 ]]; then
    passed=$((passed + 1))
    echo "PASS $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name (rc=$rc, wanted $want_rc and /$pattern/)"
    echo "$output" | head -20 | sed 's/^/    /'
  fi
}

expect "no subcommand" nonzero "subcommand" -- "$GATI"
expect "help" 0 "info" -- "$GATI" --help
expect "unknown subcommand" nonzero "" -- "$GATI" frobnicate
expect "info without model" nonzero "MODEL is required" -- "$GATI" info
expect "info unknown flag" nonzero "--bogus" -- "$GATI" info "$FIXTURES/tiny_cnn.pt" --bogus
expect "info bad threads" nonzero "threads" -- "$GATI" info "$FIXTURES/tiny_cnn.pt" --threads 0
expect "info missing file" nonzero "no such file" -- "$GATI" info /nonexistent/model.pt
expect "info not an archive" nonzero "not a TorchScript archive" -- "$GATI" info "$FIXTURES/not_an_archive.pt"
expect "info stage table" 0 "whole model \(frozen, optimized\)" -- "$GATI" info "$FIXTURES/tiny_cnn.pt" --repetitions 5 --warmup 1
expect "info reports threads" 0 "intra-op threads 2" -- "$GATI" info "$FIXTURES/tiny_cnn.pt" --repetitions 3 --warmup 0 --threads 2
expect "info lists stages" 0 "conv_b +8x4x4" -- "$GATI" info "$FIXTURES/tiny_cnn.pt" --repetitions 3 --warmup 0
expect "eval bad split" nonzero "split" -- "$GATI" eval "$FIXTURES/tiny_resnet.pt" --split dev
expect "eval wrong input shape" nonzero "Fashion-MNIST's 1x28x28" -- "$GATI" eval "$FIXTURES/tiny_cnn.pt"
expect "eval missing data" nonzero "no such file" -- "$GATI" eval "$FIXTURES/tiny_resnet.pt" --data-dir /nonexistent
expect "eval runs" 0 "accuracy [01]\.[0-9]+ \([0-9]+/300\) on the validation split" -- "$GATI" eval "$FIXTURES/tiny_resnet.pt" --split validation --limit 300 --batch 64
expect "eval negative limit" nonzero "limit" -- "$GATI" eval "$FIXTURES/tiny_resnet.pt" --limit -5

# gati build: flag validation, then a small real build on the tiny fixture.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
TINY="$FIXTURES/tiny_resnet.pt"
QUICK=(--taps 0 --variants gap:linear --limit 600 --epochs 2)
expect "build without out" nonzero "--out is required" -- "$GATI" build --model "$TINY"
expect "build epsilon zero" nonzero "--epsilon must lie in \(0, 1\)" -- "$GATI" build --model "$TINY" --out "$WORK/b" --epsilon 0
expect "build epsilon above one" nonzero "--epsilon must lie in \(0, 1\)" -- "$GATI" build --model "$TINY" --out "$WORK/b" --epsilon 1.5
expect "build unknown variant" nonzero "unknown variant 'pool3:x'; known: gap:linear" -- "$GATI" build --model "$TINY" --out "$WORK/b" --variants gap:linear,pool3:x
expect "build unknown tap" nonzero "tap 999 does not exist" -- "$GATI" build --model "$TINY" --out "$WORK/b" --taps 999 --limit 600
expect "build bad tap list" nonzero "'a' is not a tap index" -- "$GATI" build --model "$TINY" --out "$WORK/b" --taps a,1
expect "build unreadable model" nonzero "no such file" -- "$GATI" build --model /nonexistent/model.pt --out "$WORK/b"
mkdir -p "$WORK/empty"
expect "build empty data" nonzero "no such file" -- "$GATI" build --model "$TINY" --out "$WORK/b" --data "$WORK/empty"
expect "build wrong input shape" nonzero "takes inputs of shape \[1,8,8\]" -- "$GATI" build --model "$FIXTURES/tiny_cnn.pt" --out "$WORK/b" --limit 600
expect "build bad threads" nonzero "threads" -- "$GATI" build --model "$TINY" --out "$WORK/b" --threads 0
expect "build failures write nothing" 0 "^absent$" -- bash -c "[[ -e '$WORK/b' ]] && echo present || echo absent"
expect "build runs" 0 "predictor agreement with the base model" -- "$GATI" build --model "$TINY" --out "$WORK/b" "${QUICK[@]}"
expect "build wrote a bundle" 0 "\"format\": \"gati-bundle\"" -- cat "$WORK/b/manifest.json"
expect "build replaces a bundle" 0 "95% bound" -- "$GATI" build --model "$TINY" --out "$WORK/b" "${QUICK[@]}" --seed 2
expect "build prints a plan" 0 "oracle bound: mean" -- "$GATI" build --model "$TINY" --out "$WORK/b" "${QUICK[@]}" --seed 3
expect "build bad memory budget" nonzero "--memory-budget: 'lots' is not a size" -- "$GATI" build --model "$TINY" --out "$WORK/c" "${QUICK[@]}" --memory-budget lots
expect "build without plan" 0 "^absent$" -- bash -c "'$GATI' build --model '$TINY' --out '$WORK/np' ${QUICK[*]} --no-plan >/dev/null 2>&1; grep -q '\"plan\"' '$WORK/np/manifest.json' && echo present || echo absent"

# gati plan: re-plan the bundle just built.
expect "plan without bundle" nonzero "BUNDLE is required" -- "$GATI" plan
expect "plan missing bundle" nonzero "manifest.json: cannot open" -- "$GATI" plan "$WORK/absent"
expect "plan bad budget" nonzero "--memory-budget: '4XB' is not a size" -- "$GATI" plan "$WORK/b" --memory-budget 4XB
expect "plan bad mode" nonzero "--mode must be parallel or sequential" -- "$GATI" plan "$WORK/b" --mode fast
expect "plan bad epsilon" nonzero "--epsilon must lie in \(0, 1\)" -- "$GATI" plan "$WORK/b" --epsilon 2
expect "plan negative max taps" nonzero "--max-taps must be >= 0" -- "$GATI" plan "$WORK/b" --max-taps -1
expect "plan runs" 0 "predicted latency: mean [0-9.]+ ms" -- "$GATI" plan "$WORK/b" --memory-budget 1MB --mode sequential
expect "plan stored" 0 "\"mode\": \"sequential\"" -- cat "$WORK/b/manifest.json"
expect "plan infeasible is the base model" 0 "no caches: every request runs the base model \(no cache fits the memory budget" -- "$GATI" plan "$WORK/b" --memory-budget 10B
expect "plan bundle still loads" 0 "search: [0-9]+ plans replayed" -- "$GATI" plan "$WORK/b"
mkdir -p "$WORK/notes" && echo keep > "$WORK/notes/file.txt"
expect "build keeps other directories" nonzero "exists and is not a bundle" -- "$GATI" build --model "$TINY" --out "$WORK/notes" "${QUICK[@]}"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
