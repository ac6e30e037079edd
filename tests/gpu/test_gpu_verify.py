"""The CUDA path of verify, on a machine with a GPU and a CUDA torch (skipped elsewhere).

Builds a small CUDA extension against the installed torch with ``TORCH_CUDA_ARCH_LIST`` from
``--cc 9.0`` (override with TORCHBUILD_GPU_CC), packs it as a wheel, and verifies it: SASS for the
arch in the wheel's library, the GPU smoke tests, the extension's own op on the GPU, and a refusal
for an arch that is not in the wheel. Set TORCHBUILD_GPU_REPORT_DIR to keep the reports.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from gitrepos import PROJECTS
from torchbuild.cc import parse_cc
from torchbuild.command import capture
from torchbuild.proof.verify import (
    KernelImageError,
    VerifyReport,
    VerifyRequest,
    check_kernels,
    verify_installed,
    verify_wheels,
)

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")
CC = os.environ.get("TORCHBUILD_GPU_CC", "9.0")


def _keep(name: str, report: VerifyReport) -> None:
    out = os.environ.get("TORCHBUILD_GPU_REPORT_DIR")
    if not out:
        return
    Path(out).mkdir(parents=True, exist_ok=True)
    rows = "\n".join("  ".join(r) for r in report.rows())
    Path(out, f"{name}.txt").write_text(rows + "\n")
    Path(out, f"{name}.json").write_text(json.dumps(report.to_json(), indent=1, default=str))


def _env() -> dict[str, str]:
    keep = ("PATH", "HOME", "CUDA_HOME", "CUOBJDUMP", "CUDA_VISIBLE_DEVICES", "NCCL_NVLS_ENABLE",
            "TORCH_SYMM_MEM_DISABLE_MULTICAST", "NVSHMEM_DISABLE_NVLS")
    return {k: os.environ[k] for k in keep if k in os.environ}


@pytest.fixture(scope="module")
def ext_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The same CUDA extension the pipeline GPU test builds (tests/fixtures/projects/cudaext).
    src = tmp_path_factory.mktemp("tbgpu") / "cudaext"
    shutil.copytree(PROJECTS / "cudaext", src)
    env = {**_env(), "TORCH_CUDA_ARCH_LIST": CC, "MAX_JOBS": "8"}
    started = time.monotonic()
    capture([sys.executable, "-m", "pip", "wheel", ".", "--no-build-isolation", "--no-deps",
             "-w", "dist", "--disable-pip-version-check"], env=env, cwd=src, timeout=900)
    print(f"extension build: {time.monotonic() - started:.1f}s")
    return next((src / "dist").glob("tbgpu-*.whl"))


@pytest.fixture(scope="module")
def ext_report(ext_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> VerifyReport:
    request = VerifyRequest(cuda=torch.version.cuda, archs=parse_cc(CC),
                            features=("cudnn", "mkl"), companions=("torchvision",))
    started = time.monotonic()
    report = verify_wheels([ext_wheel], request, base_python=Path(sys.executable),
                           work_dir=tmp_path_factory.mktemp("verify"), environ=_env())
    print(f"verify of the extension wheel: {time.monotonic() - started:.1f}s")
    _keep("extension", report)
    return report


def test_extension_wheel_has_sass_and_the_gpu_smoke_runs(ext_report: VerifyReport) -> None:
    status = {c.name: c.status for c in ext_report.checks}
    assert ext_report.ok, ext_report.rows()
    assert status[f"kernels {parse_cc(CC)[0]}"] == "ok"
    for name in ("gpu matmul", "gpu conv2d", "gpu nms"):
        assert status[name] == "ok", name
    (code,) = ext_report.device_code
    assert parse_cc(CC)[0].sm in code.sass


def test_extension_op_runs_from_the_throwaway_env(ext_report: VerifyReport) -> None:
    assert ext_report.env_dir is not None
    code = ("import torch, tbgpu; x = torch.arange(4., device='cuda'); "
            "print(torch.ops.tbgpu.add_one(x).cpu().tolist())")
    out = capture([str(ext_report.env_dir / "bin" / "python"), "-I", "-c", code], env=_env(),
                  cwd=ext_report.env_dir)
    assert out.splitlines()[-1] == "[1.0, 2.0, 3.0, 4.0]"


def test_an_arch_missing_from_the_wheel_is_refused(ext_report: VerifyReport) -> None:
    other = "8.6" if parse_cc(CC)[0].base != "8.6" else "8.0"
    checks, _, _ = check_kernels(VerifyRequest(archs=parse_cc(other)), ext_report.probe, _env())
    (check,) = checks
    assert check.status == "FAILED"
    assert check.error is KernelImageError


def test_installed_torch_build_report(tmp_path: Path) -> None:
    """The official wheel here as `verify PYTHON` sees it (cuobjdump over torch's own libs)."""
    request = VerifyRequest(torch_version=torch.__version__.split("+")[0],
                            cuda=torch.version.cuda, archs=parse_cc(CC),
                            features=("cudnn", "magma", "mkl"), companions=("torchvision",))
    started = time.monotonic()
    report = verify_installed(Path(sys.executable), request, work_dir=tmp_path, environ=_env())
    print(f"verify of the installed torch: {time.monotonic() - started:.1f}s")
    _keep("installed", report)
    failed = {c.name for c in report.failures}
    assert not failed - {"pip check"}, report.rows()  # the image's own pip check is not ours
    assert any(c.name == f"kernels {parse_cc(CC)[0]}" and c.status == "ok"
               for c in report.checks)
