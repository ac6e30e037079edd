"""The scikit-build-core era (torch >= 2.14) end to end on a stand-in with the same shape.

tests/fixtures/projects/torch-skbuild is a scikit-build-core >= 1.0 project: a CMake project
with a C++ extension, options read from the environment, a CMake cache in build/ and the version
label from PYTORCH_BUILD_VERSION. The pipeline installs the backend from PyPI (real pip, real
scikit-build-core), configures with plain CMake, audits build/CMakeCache.txt, and builds the
wheel. The stand-in turns USE_DISTRIBUTED off when its gloo submodule is missing, as PyTorch
does: the audit must stop that before the compile, and --allow-missing must let it through.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import base_env, dir_listing
from gitrepos import PROJECTS, _commit_all, _publish, git

pytestmark = pytest.mark.integration

RECIPES = Path(__file__).resolve().parents[1] / "fixtures" / "recipes-skbuild"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("skbuild-srv")
    work = root.parent / (root.name + "-work")
    work.mkdir()
    git("init", "-q", cwd=work)
    subprocess.run(["cp", "-r", f"{PROJECTS / 'torch-skbuild'}/.", str(work)], check=True)
    _commit_all(work, "release 2.99.0")
    git("tag", "v2.99.0", cwd=work)
    _publish(work, root / "pytorch" / "pytorch.git")
    return root


def _run(server: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = ["--recipe-dir", str(RECIPES), "--git-mirror", f"file://{server}", "--cpu",
            "--env", "venv", "--work-dir", str(tmp / "work"), "--cache-dir", str(tmp / "cache"),
            "--dist", str(tmp / "dist"), "--no-verify", "--set", "BLAS=Eigen", *extra]
    return subprocess.run([sys.executable, "-m", "torchbuild", *args], env=base_env(tmp),
                          cwd=tmp, capture_output=True, text=True, timeout=900)


def test_plan_installs_the_backend_and_configures_with_cmake(server: Path, tmp_path: Path
                                                             ) -> None:
    proc = _run(server, tmp_path, "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    steps = {s["id"]: s for s in json.loads(proc.stdout)["steps"]}
    assert list(steps) == ["backend-torch", "configure-torch", "build-torch", "install-torch"]
    assert steps["backend-torch"]["argv"][-1] == "scikit-build-core>=1.0"
    assert steps["configure-torch"]["argv"][:5] == ["cmake", "-S", ".", "-B", "build"]
    assert steps["configure-torch"]["outputs"][0].endswith("src/torch/build/CMakeCache.txt")
    assert steps["build-torch"]["env"]["PYTORCH_BUILD_VERSION"] == "2.99.0+cpu"


def test_clean_request_builds_the_wheel_with_its_label(server: Path, tmp_path: Path) -> None:
    proc = _run(server, tmp_path, "--set", "USE_DISTRIBUTED=0")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "feature" in proc.stdout and "evidence" in proc.stdout   # the audit table
    dist = tmp_path / "dist"
    wheels = [n for n in dir_listing(dist) if n.endswith(".whl")]
    assert len(wheels) == 1 and wheels[0].startswith("torch-2.99.0+cpu-"), wheels
    with zipfile.ZipFile(dist / wheels[0]) as zf:
        assert any(n.startswith("torch/_C.") and n.endswith(".so") for n in zf.namelist())
    manifest = json.loads((dist / "torchbuild-manifest.json").read_text())
    configure = next(s for s in manifest["steps"] if s["id"] == "configure-torch")
    checks = {c["feature"]: c for c in configure["audit"]["checks"]}
    assert checks["numpy"]["ok"] and checks["numpy"]["found"] == "USE_NUMPY=ON"
    assert "distributed" not in checks   # not asked for


def test_downgrade_stops_before_the_compile_and_allow_missing_continues(
        server: Path, tmp_path: Path) -> None:
    proc = _run(server, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 13, out[-4000:]
    assert "distributed was requested but CMake configured USE_DISTRIBUTED=OFF" in out
    assert "Could not find third_party/gloo" in out          # CMake's own reason, quoted
    assert "--allow-missing distributed" in out              # the fix the tool accepts
    assert "build torch" not in proc.stdout                  # the compile step never started
    assert not (tmp_path / "work" / "logs" / "03-build-torch.log").exists()
    assert dir_listing(tmp_path / "dist") == []

    again = _run(server, tmp_path, "--allow-missing", "distributed")
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert "USE_DISTRIBUTED=OFF (allowed missing)" in again.stdout
    manifest = json.loads((tmp_path / "dist" / "torchbuild-manifest.json").read_text())
    configure = next(s for s in manifest["steps"] if s["id"] == "configure-torch")
    assert any(c["feature"] == "distributed" and c["allowed_missing"]
               for c in configure["audit"]["checks"])


def test_stop_after_stops_each_stage_and_a_later_run_continues(server: Path, tmp_path: Path
                                                               ) -> None:
    proc = _run(server, tmp_path, "--set", "USE_DISTRIBUTED=0", "--stop-after", "sources")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "stopped after sources (--stop-after sources)" in proc.stdout
    assert not (tmp_path / "work" / "env").exists()          # the env stage did not run

    proc = _run(server, tmp_path, "--set", "USE_DISTRIBUTED=0", "--stop-after", "configure")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "stopped after configure (--stop-after configure)" in proc.stdout
    assert "evidence" in proc.stdout                         # the audit ran before stopping
    report = json.loads((tmp_path / "work" / "torchbuild-report.json").read_text())
    assert report["stopped_after"] == "configure"
    assert [s["id"] for s in report["steps"]] == ["backend-torch", "configure-torch"]
    assert report["steps"][1]["audit"]["ok"] is True
    assert not list((tmp_path / "work" / "logs").glob("*build-torch*"))
    assert dir_listing(tmp_path / "dist") == []

    again = _run(server, tmp_path, "--set", "USE_DISTRIBUTED=0")
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    manifest = json.loads((tmp_path / "dist" / "torchbuild-manifest.json").read_text())
    status = {s["id"]: s["status"] for s in manifest["steps"]}
    assert status == {"backend-torch": "skipped", "configure-torch": "skipped",
                      "build-torch": "ok", "install-torch": "ok"}
