#!/usr/bin/env bash
# Installs everything the build and the test suite need on a fresh Debian 12 (bookworm) machine.
# Python is needed only for the Python package (python/; .ci/run builds and tests it in a venv);
# tools/reference/ scripts are only used to regenerate golden fixtures.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
PKGS=(
  build-essential cmake pkg-config file
  libeigen3-dev            # dense linear algebra (nn/)
  libomp-dev               # OpenMP runtime
  googletest libgtest-dev libgmock-dev  # tests
  libbenchmark-dev         # bench/
  libutf8proc-dev          # Unicode tables for the tokenizer
  nlohmann-json3-dev       # JSON (CLI, bundle metadata, server)
  libcli11-dev             # command-line parsing
  zlib1g-dev               # gzip'd datasets
  libboost-dev             # Boost.Beast/Asio, header-only: the REST server (server/http_server.cpp)
  libssl-dev               # OpenSSL: https for create-dataset (harvest/http_client.cpp)
  ccache                   # compiler cache (optional; CMake uses it when present)
  python3 python3-venv python3-dev  # the Python package (pip install .; .ci/run tests it)
  openmpi-bin libopenmpi-dev  # -DINSPIRE_MPI=ON: data-parallel training (dist/; .ci/run tests it)
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "install-deps: all build dependencies present"
