#!/usr/bin/env bash
# Installs every Debian package gati needs. Idempotent (installs only what is
# missing), non-interactive, and fails loudly on any error.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libopenblas0-pthread
  python3 python3-torch python3-torchvision python3-numpy
  dataset-fashion-mnist
  libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libabsl-dev
  libgtest-dev libgmock-dev libbenchmark-dev zlib1g-dev libssl-dev
  clang libclang-rt-14-dev
  libcpp-httplib-dev libgrpc++-dev libprotobuf-dev protobuf-compiler
  protobuf-compiler-grpc
  python3-requests python3-grpcio python3-grpc-tools python3-protobuf
  prometheus hey wrk curl iproute2
)

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
