#!/usr/bin/env bash
# Issue #16 on the GPU machine (the `run` tool): causal-conv1d 1.7.0's real PyPI sdist built with
# `--extra` and `--cc 9.0 --torch-from-env` against the machine's own torch, offline (the sdist and
# the index answer travel in a cache filled here by `python -m torchbuild fetch`), verified by the
# pipeline (SASS per arch with cuobjdump, the GPU smoke op), then its op run once more from a fresh
# --target dir against the package's reference formula (causal_conv1d_interface.causal_conv1d_ref:
# a depthwise F.conv1d padded by width-1, cut to seqlen, then SiLU).
#
#   bash benchmarks/gpu_extra_causal_conv1d.sh CARRY      (there; $OUT set by the run tool)
#
# The whole run takes about 15 minutes on the H200 machine (16 cores): causal_conv1d_bwd.cu alone
# compiles for 13.5 minutes, since its setup.py hard-codes 9 -gencode archs at --threads 4. That is
# longer than one 10-minute command, so start it with setsid and poll for the last line, e.g.
#   OUT=/tmp/o setsid bash .../gpu_extra_causal_conv1d.sh CARRY >/tmp/o/log 2>&1 </dev/null &
#   while ! grep -q "sm_90 ELF" /tmp/o/log; do sleep 5; done; cp /tmp/o/* "$OUT"/
# (benchmarks/results/gpu-extra-causal-conv1d.md has the calls that made the committed results).
#
# CARRY holds repo/ (this checkout's src/ recipes/ benchmarks/) and cache/ (from `fetch --extra
# causal-conv1d==1.7.0 --cache-dir CARRY/cache`). Writes into $OUT, copied as they are to
# benchmarks/results/:
#   gpu-extra-causal-conv1d-plan.txt      the machine, and the --dry-run plan (MAX_JOBS, reasoning)
#   gpu-extra-causal-conv1d-pipeline.txt  the build + verify output, RESULT (wall, memory), op check
#   gpu-extra-causal-conv1d-cuobjdump.txt cuobjdump --list-elf of the built .so
#   gpu-extra-causal-conv1d-manifest.json the dist's manifest
set -uo pipefail
CARRY=$(cd "${1:?usage: gpu_extra_causal_conv1d.sh CARRY}" && pwd)
PY=${PYTHON:-$(command -v python3)}
R=/tmp/tb-causal
P="$OUT/gpu-extra-causal-conv1d"
rm -rf "$R" && mkdir -p "$R" && cp -r "$CARRY/cache" "$R/cache"
export PYTHONPATH="$CARRY/repo/src" PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 \
  TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
ARGS=(--cc 9.0 --env existing --python "$PY" --torch-from-env --vision none --audio none
      --extra causal-conv1d==1.7.0 --offline --cache-dir "$R/cache" --work-dir "$R/work"
      --dist "$R/dist" --recipe-dir "$CARRY/repo/recipes")
# TB_ARGS: more options, for trying the script out elsewhere (e.g. "--stop-after env").
# shellcheck disable=SC2206
ARGS+=(${TB_ARGS:-})
{
  nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader
  "$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)'
  nvcc --version | tail -2; echo "cores $(nproc)"; grep -E 'MemTotal|MemAvailable' /proc/meminfo
  echo; echo "\$ python3 -m torchbuild ${ARGS[*]} --dry-run"
  "$PY" -m torchbuild "${ARGS[@]}" --dry-run
} >"$P-plan.txt" 2>&1
echo "\$ python3 -m torchbuild ${ARGS[*]}" >"$P-pipeline.txt"
"$PY" "$CARRY/repo/benchmarks/gpu_measure.py" "$R/result" -- "$PY" -m torchbuild "${ARGS[@]}" \
  >>"$P-pipeline.txt" 2>&1
cp "$R/dist/torchbuild-manifest.json" "$P-manifest.json" 2>/dev/null
wheel=$(ls "$R"/dist/causal_conv1d-*.whl 2>/dev/null | head -1)
echo "wheel: ${wheel:-none}" >>"$P-pipeline.txt"
if [ -n "$wheel" ]; then
  "$PY" -m pip install -q --no-deps --no-index --target "$R/site" "$wheel"
  cuobjdump --list-elf "$R"/site/causal_conv1d_cuda*.so >"$P-cuobjdump.txt" 2>&1
  (cd /tmp && PYTHONPATH="$R/site" "$PY" - >>"$P-pipeline.txt" 2>&1) <<'PYEOF'
import torch, torch.nn.functional as F
import causal_conv1d
from causal_conv1d import causal_conv1d_fn
print("imported", causal_conv1d.__file__, causal_conv1d.__version__)
torch.manual_seed(0)
batch, dim, seqlen, width = 4, 1024, 4096, 4
def timed(fn):
    fn(); torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(20):
        fn()
    end.record(); torch.cuda.synchronize()
    return start.elapsed_time(end) / 20
failed = False
for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 1e-2)):
    x = torch.randn(batch, dim, seqlen, device="cuda", dtype=dtype)
    w = torch.randn(dim, width, device="cuda", dtype=dtype)
    b = torch.randn(dim, device="cuda", dtype=dtype)
    torch.cuda.reset_peak_memory_stats()
    got = causal_conv1d_fn(x, w, b, activation="silu")
    ref = F.silu(F.conv1d(x.float(), w.float().unsqueeze(1), b.float(), padding=width - 1,
                          groups=dim)[..., :seqlen])
    err = (got.float() - ref).abs().max().item()
    bound = tol * ref.abs().max().item()
    ok = err <= bound
    failed |= not ok
    kernel = timed(lambda: causal_conv1d_fn(x, w, b, activation="silu"))
    eager = timed(lambda: F.silu(F.conv1d(x, w.unsqueeze(1), b, padding=width - 1,
                                          groups=dim)[..., :seqlen]))
    print(f"OP {dtype} x={tuple(x.shape)} width={width}: max abs err {err:.2e} vs fp32 F.conv1d "
          f"reference (bound {bound:.2e}) -> {'ok' if ok else 'FAILED'}; kernel {kernel:.3f} ms, "
          f"F.conv1d+silu {eager:.3f} ms; peak GPU memory "
          f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
print("OP CHECK", "FAILED" if failed else "ok", "on", torch.cuda.get_device_name())
PYEOF
fi
grep -E "^RESULT|^OP|^wheel" "$P-pipeline.txt"
echo "sm_90 ELF entries: $(grep -c 'sm_90' "$P-cuobjdump.txt" 2>/dev/null)"
