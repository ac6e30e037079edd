"""The torch step on the real PyTorch v2.6.0 tree (../shared/real-sources, see its README).

The mirror is built at test time with make_mirror.sh; the pipeline then runs for torch 2.6.0
--cpu with the README's lean flag set, --git-mirror file://..., an existing venv whose build
requirements come from PyPI (the deps step), through --stop-after configure: real CMake on the
real tree (~65 s on 2 cores). Then a request the tree cannot give (USE_MKLDNN=1 without the
ideep submodule) must stop at configure with the right diagnosis.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import base_env, dir_listing, make_venv

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
LEAN = ("USE_DISTRIBUTED=0", "USE_MKLDNN=0", "USE_FBGEMM=0", "USE_XNNPACK=0", "USE_KINETO=0",
        "USE_PYTORCH_QNNPACK=0", "USE_MPI=0", "USE_ITT=0", "USE_NUMA=0", "USE_OPENMP=1",
        "BLAS=Eigen")
# make_mirror.sh's EXPECT column: the deterministic commits of the submodule mirrors.
SUBMODULES = {
    "third_party/pybind11": "2ed13497bb7515be9b3d241ff4c054dbc6ddff91",
    "third_party/protobuf": "8788107b836c4f48e7fd188ed86bf959596bb872",
    "third_party/onnx": "b31164357c7c7c2774ab9c8032e2247d59bdb43b",
    "third_party/fbgemm": "a1dd9119334a3a360da0967fc586ec6d71950dbd",
    "third_party/opentelemetry-cpp": "dba2b8377dc599ffdd65d737d545ba67a5c6f9ea",
}
TORCH_COMMIT = "01988a441fefea1137c77ae2cf072e78456e3a64"


def real_sources() -> Path | None:
    """../shared beside the checkout (CI), or beside a folder above it (a worktree)."""
    for parent in REPO.parents:
        candidate = parent / "shared" / "real-sources" / "pytorch-2.6.0" / "make_mirror.sh"
        if candidate.is_file():
            return candidate
    return None


MAKE_MIRROR = real_sources()
pytestmark.append(pytest.mark.skipif(
    MAKE_MIRROR is None, reason="no shared/real-sources/pytorch-2.6.0 beside the checkout"))


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("real-torch")
    assert MAKE_MIRROR is not None
    subprocess.run(["bash", str(MAKE_MIRROR), str(tmp / "mirror")], check=True,
                   capture_output=True, timeout=600)
    # The build env: a venv with pip's own tools; the deps step adds requirements.txt from PyPI.
    python = make_venv(tmp / "venv", "numpy", "pyyaml", "typing-extensions", "setuptools")
    return {"tmp": tmp, "mirror": tmp / "mirror", "python": python}


def _run(real: dict[str, Path], name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    tmp = real["tmp"]
    sets = [a for kv in LEAN for a in ("--set", kv)]
    args = ["--cpu", "--torch", "2.6.0", "--vision", "none", "--audio", "none",
            "--env", "existing", "--python", str(real["python"]),
            "--git-mirror", f"file://{real['mirror']}/", "--work-dir", str(tmp / name),
            "--cache-dir", str(tmp / "cache"), "--dist", str(tmp / f"dist-{name}"),
            "--compiler-cache", "none", "--stop-after", "configure", *sets, *extra]
    env = base_env(tmp)
    env["PATH"] = f"{real['python'].parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run([sys.executable, "-m", "torchbuild", *args], env=env, cwd=tmp,
                          capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def lean(real: dict[str, Path]) -> tuple[subprocess.CompletedProcess[str], dict]:
    proc = _run(real, "lean")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    report = json.loads((real["tmp"] / "lean" / "torchbuild-report.json").read_text())
    return proc, report


def test_lean_cpu_configure_of_the_real_tree(lean: tuple, real: dict[str, Path]) -> None:
    proc, report = lean
    assert "stopped after configure (--stop-after configure)" in proc.stdout
    assert report["stopped_after"] == "configure"
    torch = report["sources"]["torch"]
    assert torch["commit"] == TORCH_COMMIT
    assert len(torch["submodules"]) == 16
    assert {k: torch["submodules"][k] for k in SUBMODULES} == SUBMODULES
    assert [s["id"] for s in report["steps"]] == ["deps-torch", "configure-torch"]
    assert dir_listing(real["tmp"] / "dist-lean") == []      # nothing compiled, nothing published


def test_audit_table_from_the_real_cmake_cache(lean: tuple, real: dict[str, Path]) -> None:
    proc, report = lean
    audit = report["steps"][1]["audit"]
    cache = Path(audit["cache"])
    assert cache == real["tmp"] / "lean" / "src" / "torch" / "build" / "CMakeCache.txt"
    assert cache.is_file()
    checks = {c["feature"]: c for c in audit["checks"]}
    # Lean CPU: only NumPy is asked for (no CUDA, BLAS=Eigen, distributed and oneDNN off).
    assert list(checks) == ["numpy"]
    assert checks["numpy"]["ok"] and checks["numpy"]["found"] == "USE_NUMPY=ON"
    assert "USE_NUMPY:BOOL=ON" in cache.read_text()
    header = next(ln for ln in proc.stdout.splitlines() if ln.startswith("feature"))
    assert header.split() == ["feature", "asked", "CMake", "says", "evidence"]


def test_mkldnn_without_ideep_stops_at_configure(lean: tuple, real: dict[str, Path]) -> None:
    # The same work dir on purpose: the changed request must reach CMake (the configure step
    # removes the stale CMakeCache.txt; setup.py would otherwise keep USE_MKLDNN=0 from it).
    proc = _run(real, "lean", "--set", "USE_MKLDNN=1")   # --set: the last value wins
    out = proc.stdout + proc.stderr
    assert proc.returncode == 13, out[-5000:]
    assert re.search(r"mkldnn was requested but CMake configured USE_MKLDNN=(OFF|0)", out), \
        out[-6000:]
    assert re.search(r"MKLDNN (could not be found|source files not found)", out), out[-6000:]
    assert "third_party/ideep" in out                         # the fix names the submodule
    assert "--allow-missing mkldnn" in out
    assert not list((real["tmp"] / "lean" / "logs").glob("*build-torch*"))
