#!/usr/bin/env bash
# Installs the Debian 12 packages layerfreeze needs, only those that are missing.
# Idempotent; runs as root or through sudo. Usage: scripts/install-deps.sh [--with-torch]
# (--with-torch: LibTorch for the adapter, the executor and the seed API; scripts/build.sh passes it)
set -euo pipefail

packages=(cmake ninja-build g++ pkg-config ccache
          libyaml-cpp-dev libre2-dev libfmt-dev libgtest-dev nlohmann-json3-dev libsimdjson-dev
          libcli11-dev libbenchmark-dev
          chromium fonts-dejavu-core git python3-yaml python3-jsonschema)  # chromium: the browser tests of the SVG and HTML reports (tests/browser); git: diff REV:PATH; python3-jsonschema: rules/schema.json against the parser
if [[ "${1:-}" == "--with-torch" ]]; then
  # python3-torch: the TorchScript fixtures of the tests are exported by Debian's /usr/bin/python3.
  # python3-venv: scripts/python-env.sh (LibTorch 2.13 from the PyTorch wheel, the Python peers).
  packages+=(libtorch-dev libgloo-dev libopenblas0-pthread python3-torch python3-torchvision
             python3-venv)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if (( ${#missing[@]} == 0 )); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
if (( EUID != 0 )); then sudo="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
