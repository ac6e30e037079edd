#!/usr/bin/env bash
# The GPU tests of issue #5 on the device machine (the `run` tool); results land in $OUT.
# Usage there: bash tests/gpu/run_device.sh   (python3 is the image's CUDA torch)
set -uo pipefail
export PYTHONPATH="$PWD/src" NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export TORCHBUILD_GPU_REPORT_DIR="$OUT/reports"
CUOBJDUMP="$(command -v cuobjdump || echo /usr/local/cuda/bin/cuobjdump)"
export CUOBJDUMP
{
  nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv
  python3 -c 'import sys, torch; print(sys.version.split()[0], torch.__version__, torch.version.cuda)'
  echo "cuobjdump: $CUOBJDUMP"; command -v nvcc; nproc
} >"$OUT/machine.txt" 2>&1
started=$(date +%s)
python3 -m pytest -q -p no:cacheprovider -rA -s --basetemp=/tmp/tbgpu \
  tests/gpu/test_gpu_pipeline.py tests/gpu/test_gpu_verify.py >"$OUT/pytest.txt" 2>&1
rc=$?
echo "rc=$rc wall=$(( $(date +%s) - started ))s" >>"$OUT/pytest.txt"
cat "$OUT/machine.txt"; tail -60 "$OUT/pytest.txt"
exit $rc
