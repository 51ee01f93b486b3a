#!/usr/bin/env bash
# Installs every Debian package gati needs, as listed in
# scripts/debian-packages.txt. Idempotent (installs only what is missing),
# non-interactive, and fails loudly on any error.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
LIST=${GATI_PACKAGE_LIST:-$HERE/debian-packages.txt}

mapfile -t PACKAGES < <(sed 's/#.*//' "$LIST" | tr -s ' \t' '\n' | sed '/^$/d')
if [[ ${#PACKAGES[@]} -eq 0 ]]; then
  echo "install-deps: no packages listed in $LIST" >&2
  exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install-deps: done"
