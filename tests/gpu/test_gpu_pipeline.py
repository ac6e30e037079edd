"""The CUDA path for real, on a GPU machine: a CUDA extension built *through the pipeline* with
`--cc 9.0` (or $TORCHBUILD_GPU_CC) against the installed torch, then verified by the pipeline
itself (SASS per arch with cuobjdump, GPU smoke test), then its kernel run. Skips without a GPU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gitrepos import FIXTURES, PROJECTS, _commit_all, _publish, git

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")
CC = os.environ.get("TORCHBUILD_GPU_CC", "9.0")


def test_cuda_extension_through_pipeline(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    root = tmp_path / "srv"
    work = tmp_path / "cudaext-work"
    shutil.copytree(PROJECTS / "cudaext", work)
    git("init", "-q", cwd=work)
    _commit_all(work, "cudaext")
    git("tag", "v0.99.0", cwd=work)
    _publish(work, root / "pytorch" / "cudaext.git")

    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHBUILD_")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    proc = subprocess.run(
        [sys.executable, "-m", "torchbuild", "--recipe-dir", str(FIXTURES / "recipes-cudaext"),
         "--git-mirror", f"file://{root}", "--env", "existing", "--python", sys.executable,
         "--torch-from-env", "--cc", CC, "--work-dir", str(tmp_path / "w"),
         "--cache-dir", str(tmp_path / "c"), "--dist", str(tmp_path / "dist")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    report_dir = os.environ.get("TORCHBUILD_GPU_REPORT_DIR")
    if report_dir:
        Path(report_dir).mkdir(parents=True, exist_ok=True)
        Path(report_dir, "pipeline-stdout.txt").write_text(proc.stdout + "\n" + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]

    manifest = json.loads((tmp_path / "dist" / "torchbuild-manifest.json").read_text())
    checks = {c["check"]: c for c in manifest["verify"]["checks"]}
    if report_dir:
        Path(report_dir, "pipeline-verify.json").write_text(json.dumps(manifest["verify"],
                                                                      indent=1))
    assert manifest["verify"]["ok"] is True
    kernel_checks = [c for name, c in checks.items() if name.startswith("kernels")]
    assert kernel_checks and all(c["status"] == "ok" for c in kernel_checks), kernel_checks
    smoke = [c for name, c in checks.items() if name.startswith("gpu")]
    assert smoke and all(c["status"] == "ok" for c in smoke), smoke

    wheel = next((tmp_path / "dist").glob("tbgpu-*.whl"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True)
    code = ("import torch, tbgpu; x=torch.arange(4.0, device='cuda'); "
            "print(torch.ops.tbgpu.add_one(x).cpu().tolist())")
    out = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(target)},
                         cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[1.0, 2.0, 3.0, 4.0]"
