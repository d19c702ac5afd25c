#!/usr/bin/env bash
# Creates (or brings up to date) the project's Python environment: a venv at $LAYERFREEZE_VENV
# (default .venv/ in the checkout) with the pinned packages of scripts/python-requirements.txt —
# PyTorch 2.13.0 (CPU; its torch/share/cmake is LibTorch 2.13), transformers, Lightning and the
# finetuning-scheduler. Idempotent: does nothing when the venv already holds exactly those pins.
# Prints the venv's path on its last line. Needs PyPI (no network at test time).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${LAYERFREEZE_VENV:-$PWD/.venv}"
req="$PWD/scripts/python-requirements.txt"
stamp="$venv/.layerfreeze-requirements"

# The wheel is for CPython 3.11; Debian 12's python3 is 3.11 too (with python3-venv).
python=""
for candidate in python3.11 python3; do
  if command -v "$candidate" >/dev/null &&
     "$candidate" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    python="$(command -v "$candidate")"
    break
  fi
done
if [[ -z "$python" ]]; then
  echo "python-env: no CPython 3.11 with venv found (apt-get install python3-venv)" >&2
  exit 1
fi

if [[ -f "$stamp" ]] && cmp -s "$stamp" "$req" && [[ -x "$venv/bin/python" ]]; then
  echo "python-env: $venv is up to date" >&2
else
  echo "python-env: installing the pinned packages into $venv (torch 2.13.0 CPU, transformers, lightning, finetuning-scheduler)" >&2
  "$python" -m venv "$venv"
  # torch first, on its own: with it installed, nothing else can pull a CUDA build.
  "$venv/bin/pip" install -q --disable-pip-version-check "torch==2.13.0" 2> >(grep -v '^WARNING: Location' >&2)
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" 2> >(grep -v '^WARNING: Location' >&2)
  "$venv/bin/python" -c 'import torch; assert torch.__version__.startswith("2.13.0"), torch.__version__'
  cp "$req" "$stamp"
fi
echo "$venv"
