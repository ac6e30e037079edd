#!/usr/bin/env bash
# Issue #16 on the GPU machine: flash-attn 2.8.3's real PyPI sdist for sm_90 alone
# (`--extra flash-attn==2.8.3 --cc 9.0 --torch-from-env`), offline, time-boxed. Its 72 .cu units
# take longer than one 10-minute command, so `start` launches the measured build with setsid (it
# runs on between calls) and `wait` polls it until it ends or until DEADLINE (epoch seconds), then
# writes what it has to $OUT:
#   gpu-extra-flash-attn-plan.txt      the --dry-run plan (the MAX_JOBS and NVCC_THREADS chosen)
#   gpu-extra-flash-attn-progress.txt  RESULT (when done), the last ninja [n/72] line, the output
#
#   bash benchmarks/gpu_extra_flash_attn.sh CARRY start
#   bash benchmarks/gpu_extra_flash_attn.sh CARRY wait DEADLINE
set -uo pipefail
CARRY=$(cd "${1:?usage: gpu_extra_flash_attn.sh CARRY start|wait DEADLINE}" && pwd)
PY=${PYTHON:-$(command -v python3)}
R=/tmp/tb-flash
P="$OUT/gpu-extra-flash-attn"
export PYTHONPATH="$CARRY/repo/src" PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 \
  TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
ARGS=(--cc 9.0 --env existing --python "$PY" --torch-from-env --vision none --audio none
      --extra flash-attn==2.8.3 --offline --cache-dir "$R/cache" --work-dir "$R/work"
      --dist "$R/dist" --recipe-dir "$CARRY/repo/recipes")
# TB_ARGS: more options, for trying the script out elsewhere (e.g. "--stop-after env").
# shellcheck disable=SC2206
ARGS+=(${TB_ARGS:-})
case "${2:-}" in
start)
  rm -rf "$R" && mkdir -p "$R" && cp -r "$CARRY/cache" "$R/cache"
  { echo "\$ python3 -m torchbuild ${ARGS[*]} --dry-run"; "$PY" -m torchbuild "${ARGS[@]}" --dry-run
  } >"$R/plan.txt" 2>&1
  date +%s >"$R/started"
  setsid "$PY" "$CARRY/repo/benchmarks/gpu_measure.py" "$R/result" -- "$PY" -m torchbuild \
    "${ARGS[@]}" >"$R/out.txt" 2>&1 </dev/null &
  echo $! >"$R/pid"   # to stop it by its id, should a later call need the machine's cores
  ;;
wait)
  deadline=${3:?wait needs DEADLINE (epoch seconds)}
  while [ ! -f "$R/result" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 5; done
  cp "$R/plan.txt" "$P-plan.txt"
  {
    echo "elapsed since start: $(( $(date +%s) - $(cat "$R/started") )) s"
    cat "$R/result" 2>/dev/null || echo "RESULT still running"
    echo "last ninja line: $(grep -ohE '\[[0-9]+/[0-9]+\][^\n]{0,160}' "$R"/work/logs/*flash-attn*.log 2>/dev/null | tail -1)"
    echo "nvcc processes now: $(pgrep -c nvcc || true); memory used now: $(awk '/MemTotal/{t=$2}/MemAvailable/{a=$2}END{printf "%.1f GiB", (t-a)/2^20}' /proc/meminfo)"
    echo "--- torchbuild output"; cat "$R/out.txt"
    echo "--- build log tail"; tail -30 "$R"/work/logs/*flash-attn*.log 2>/dev/null
  } >"$P-progress.txt" 2>&1
  head -4 "$P-progress.txt"
  ;;
*) echo "usage: gpu_extra_flash_attn.sh CARRY start|wait DEADLINE" >&2; exit 2 ;;
esac
