#!/usr/bin/env bash
# Fill CARRY (default .devcarry-ext, git-ignored through .git/info/exclude) with what
# benchmarks/gpu_extra_causal_conv1d.sh and gpu_extra_flash_attn.sh need on the GPU machine, which
# has no network: this checkout's src/ recipes/ benchmarks/, and a torchbuild cache holding the
# causal-conv1d 1.7.0 and flash-attn 2.8.3 sdists and the index answers they were chosen from
# (hash-checked by `torchbuild fetch`). PYTHON: an interpreter whose env has torch (any build: the
# fetch only plans). Needs PyPI here. About 8.5 MB, most of it flash-attn's sdist.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CARRY=${1:-$ROOT/.devcarry-ext}
PY=${PYTHON:?set PYTHON to an interpreter with torch installed}
rm -rf "$CARRY/repo"
mkdir -p "$CARRY/repo"
cp -r "$ROOT/src" "$ROOT/recipes" "$ROOT/benchmarks" "$CARRY/repo/"
find "$CARRY/repo" -name __pycache__ -prune -exec rm -rf {} +
rm -rf "$CARRY/repo/benchmarks/results"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
PYTHONPATH="$ROOT/src" "${TORCHBUILD_PYTHON:-python3}" -m torchbuild fetch --cc 9.0 --env existing \
  --python "$PY" --torch-from-env --vision none --audio none --extra causal-conv1d==1.7.0 \
  --extra flash-attn==2.8.3 --cache-dir "$CARRY/cache" --work-dir "$work"
du -sh "$CARRY"
