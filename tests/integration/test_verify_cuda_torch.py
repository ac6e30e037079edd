"""verify on a real CUDA torch without a GPU: the math-library rows (#13) read a real binary.

torch 2.14.1's CUDA wheel (with its nvidia-* wheels) lies on this machine's disk; installed into
a venv, it is what a user's official-wheel env looks like. verify then reports cuSPARSELt and
cuFile from the compiled torch, the archs from cuobjdump, and refuses a ``--require cudss`` that
this wheel cannot meet (it is built without cuDSS: no nvidia-cudss among its requirements).
No GPU is needed: the device smoke is skipped and says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CLI, shared_dir
from torchbuild.errors import MissingToolError
from torchbuild.proof.cubin import find_cuobjdump

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TORCH = "torch==2.14.1"
# The several-hundred-MB pieces: these must come from this machine's disk, not a download.
LARGE = ("torch", "nvidia-cudnn-cu13", "nvidia-cublas", "nvidia-cusparselt-cu13",
         "nvidia-nccl-cu13", "nvidia-cusparse", "nvidia-cufft", "nvidia-cusolver")


def _remote_wheels(python: Path) -> list[str]:
    """The large wheels pip would download rather than take from this machine's disk (pip's own
    report); a small one such as nvidia-nvjitlink may come from PyPI."""
    proc = subprocess.run([str(python), "-m", "pip", "install", "--dry-run", "--quiet",
                           "--disable-pip-version-check", "--report", "-", TORCH],
                          capture_output=True, text=True, check=True)
    report = json.loads(proc.stdout)
    return [i["metadata"]["name"] for i in report.get("install", [])
            if not i.get("download_info", {}).get("url", "").startswith("file:")
            and i["metadata"]["name"].lower() in LARGE]


@pytest.fixture(scope="session")
def cuda_torch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    def make(path: Path) -> None:
        subprocess.run([sys.executable, "-m", "venv", str(path / "venv")], check=True)
        python = path / "venv" / "bin" / "python"
        remote = _remote_wheels(python)
        if remote:
            pytest.skip(f"{TORCH}'s CUDA wheels are not on this machine's disk (pip would "
                        f"download {', '.join(remote[:3])}, several GB)")
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        TORCH], check=True)

    return shared_dir(tmp_path_factory, "cudatorch", make) / "venv" / "bin" / "python"


def _report(cli: CLI, python: Path, *args: str) -> tuple[int, dict[str, dict[str, str]], str]:
    proc = cli("verify", str(python), "--json", *args, timeout=300)
    report = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    return proc.returncode, {c["check"]: c for c in report.get("checks", [])}, proc.stderr


def _has_cuobjdump() -> bool:
    try:
        find_cuobjdump(os.environ)   # where verify itself looks (the dev extras bring a wheel)
    except MissingToolError:
        return False
    return True


@pytest.mark.skipif(not _has_cuobjdump(), reason="no cuobjdump where verify looks for one")
def test_math_libraries_and_archs_of_an_official_cuda_wheel(cli: CLI, cuda_torch: Path) -> None:
    rc, checks, err = _report(cli, cuda_torch, "--cuda", "13.0", "--cc", "8.6 9.0",
                              "--require", "cusparselt", "--require", "cufile")
    assert rc == 0, err
    assert checks["cuda"]["status"] == "ok" and "13.0" in checks["cuda"]["found"]
    assert checks["magma"]["status"] == "ok"
    assert checks["cusparselt"]["status"] == "ok"
    assert "is_available()=True" in checks["cusparselt"]["found"]
    assert checks["cufile"]["status"] == "ok"
    assert "compiled in=True" in checks["cufile"]["found"]
    assert checks["cudss"]["status"] == "info"       # not asked for: said, not failed
    assert checks["kernels 8.6"]["status"] == "ok" and checks["kernels 9.0"]["status"] == "ok"
    assert checks["gpu smoke"]["status"] == "skipped"


def test_a_library_the_wheel_lacks_is_refused(cli: CLI, cuda_torch: Path) -> None:
    rc, checks, err = _report(cli, cuda_torch, "--cuda", "13.0", "--require", "cudss")
    assert rc == 25, err
    assert checks["cudss"]["status"] == "FAILED"
    assert "cudss: expected on" in err and "fix:" in err
