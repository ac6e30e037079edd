#!/usr/bin/env bash
# Issue #16 on the GPU machine (the `run` tool): causal-conv1d 1.7.0's real PyPI sdist built with
# `--extra` and `--cc 9.0` against the machine's own torch, offline (the sdist and the index answer
# travel in a cache filled here by `python -m torchbuild fetch`), verified by the pipeline (SASS
# per arch with cuobjdump, the GPU smoke op), then its op run once more from a fresh --target dir
# against the package's reference formula. Wall time and peak memory go to $OUT.
# Usage there: bash benchmarks/gpu_extra_causal_conv1d.sh CARRY_DIR   (CARRY_DIR holds repo/, cache/)
set -uo pipefail
CARRY="$1"
export PYTHONPATH="$CARRY/repo/src" NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 \
  NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
cp -r "$CARRY/cache" /tmp/tbcache
{
  nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv
  python3 -c 'import sys, torch; print(sys.version.split()[0], torch.__version__, torch.version.cuda)'
  nvcc --version | tail -2; nproc; grep -E 'MemTotal|MemAvailable' /proc/meminfo
} >"$OUT/machine.txt" 2>&1
# Wall time, the largest single process (ru_maxrss of the children) and the machine's peak use
# (MemTotal - MemAvailable, sampled every 0.5 s).
python3 - "$OUT" "$CARRY" <<'EOF' >"$OUT/pipeline.txt" 2>&1
import resource, subprocess, sys, threading, time
out, carry = sys.argv[1], sys.argv[2]
def used():
    info = dict(l.split(":", 1) for l in open("/proc/meminfo"))
    kb = lambda k: int(info[k].split()[0])
    return (kb("MemTotal") - kb("MemAvailable")) / 2**20
base, peak, done = used(), [0.0], threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], used()); time.sleep(0.5)
threading.Thread(target=sample, daemon=True).start()
argv = [sys.executable, "-m", "torchbuild", "--cc", "9.0", "--env", "existing", "--python",
        sys.executable, "--torch-from-env", "--vision", "none", "--audio", "none",
        "--extra", "causal-conv1d==1.7.0", "--offline", "--cache-dir", "/tmp/tbcache",
        "--work-dir", "/tmp/tbwork", "--dist", "/tmp/tbdist", "--recipe-dir", f"{carry}/repo/recipes"]
t = time.monotonic(); rc = subprocess.run(argv).returncode; wall = time.monotonic() - t
done.set()
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
print(f"RESULT rc={rc} wall_s={wall:.1f} largest_process_gib={rss:.2f} "
      f"machine_peak_used_gib={peak[0]:.2f} (before: {base:.2f})")
EOF
cp /tmp/tbdist/torchbuild-manifest.json "$OUT/" 2>/dev/null
wheel=$(ls /tmp/tbdist/causal_conv1d-*.whl 2>/dev/null | head -1)
echo "wheel: $wheel" >>"$OUT/pipeline.txt"
if [ -n "$wheel" ]; then
  python3 -m pip install -q --no-deps --no-index --target /tmp/site "$wheel"
  so=$(ls /tmp/site/causal_conv1d_cuda*.so)
  cuobjdump --list-elf "$so" >"$OUT/cuobjdump.txt" 2>&1
  cd /tmp && PYTHONPATH=/tmp/site python3 - <<'EOF' >>"$OUT/pipeline.txt" 2>&1
import torch, torch.nn.functional as F
import causal_conv1d
from causal_conv1d import causal_conv1d_fn
print("imported", causal_conv1d.__file__)
torch.manual_seed(0)
for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 3e-2)):
    x = torch.randn(4, 512, 2048, device="cuda", dtype=dtype)
    w = torch.randn(512, 4, device="cuda", dtype=dtype)
    b = torch.randn(512, device="cuda", dtype=dtype)
    got = causal_conv1d_fn(x, w, b, activation="silu").float()
    ref = F.silu(F.conv1d(x.float(), w.float().unsqueeze(1), b.float(), padding=3,
                          groups=512)[..., :2048])
    err = (got - ref).abs().max().item()
    print(f"OP {dtype}: max abs err vs F.conv1d reference {err:.2e} (tol {tol}) ->",
          "ok" if err <= tol * max(1.0, ref.abs().max().item()) else "FAILED")
EOF
fi
cat "$OUT/machine.txt"; tail -40 "$OUT/pipeline.txt"; grep -c sm_90 "$OUT/cuobjdump.txt"
