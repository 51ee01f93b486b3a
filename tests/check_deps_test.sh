#!/usr/bin/env bash
# scripts/check-deps.sh passes on the project's package list, and fails,
# naming the package, on copies of the list with one needed package removed:
# one found through the build tree (a CMake config file), one through a
# script (a program it runs), one through a Python import, one through a
# path the code opens, one through a library the binaries load.
# Usage: check_deps_test.sh BUILD_DIR
set -uo pipefail
BUILD=${1:?usage: check_deps_test.sh BUILD_DIR}
SOURCE=$(cd "$(dirname "$0")/.." && pwd)
CHECK="$SOURCE/scripts/check-deps.sh"
LIST="$SOURCE/scripts/debian-packages.txt"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
passed=0
failed=0

report() {  # report NAME OK DETAIL
  if [[ $2 -eq 1 ]]; then passed=$((passed + 1)); echo "PASS $1"
  else failed=$((failed + 1)); echo "FAIL $1: $3"; fi
}

output=$(bash "$CHECK" --build-dir "$BUILD" 2>&1); rc=$?
report "the project's list is complete" $((rc == 0)) "rc=$rc: $output"

# libopenblas0-pthread is found only by following the first alternative of
# libtorch's "libblas3 | libblas.so.3", as apt does on a fresh machine.
for package in libfaiss-dev wrk python3-matplotlib dataset-fashion-mnist libopenblas0-pthread; do
  grep -qw -- "$package" "$LIST" || { report "$package is listed" 0 "not in $LIST"; continue; }
  sed "s/\(^\|[[:space:]]\)$package\([[:space:]]\|$\)/\1\2/" "$LIST" > "$WORK/list.txt"
  output=$(bash "$CHECK" --build-dir "$BUILD" --packages "$WORK/list.txt" 2>&1); rc=$?
  ok=$((rc == 1)); grep -q "MISSING $package:" <<<"$output" || ok=0
  report "a list without $package fails and names it" $ok "rc=$rc: $output"
done

output=$(bash "$CHECK" --build-dir "$BUILD" --packages "$WORK/absent.txt" 2>&1); rc=$?
ok=$((rc == 2)); grep -q "cannot read the package list" <<<"$output" || ok=0
report "an unreadable list is a usage error" $ok "rc=$rc: $output"

output=$(bash "$CHECK" --build-dir "$WORK" 2>&1); rc=$?
ok=$((rc == 2)); grep -q "not a configured build tree" <<<"$output" || ok=0
report "a folder that is no build tree is a usage error" $ok "rc=$rc: $output"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
