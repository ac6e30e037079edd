"""--cpu companions against a CUDA torch in the env (#17).

A CUDA build of torch installs a Caffe2Config.cmake that makes every CMake user find a CUDA
toolkit, --cpu or not (tests/fixtures/projects/cudatorch stands in for it). With no toolkit on the
machine, preflight refuses in seconds with the reason and the fix; with one, its CUDA_HOME is
passed to the companion builds. The interpreter, its probe and the toolkit search are real; only
the machine's default toolkit location is pointed elsewhere to play a machine without one.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from test_toolkit_probe import fake_toolkit

from conftest import make_venv
from gitrepos import FIXTURES, RECIPES
from torchbuild import pipeline
from torchbuild.__main__ import build_parser
from torchbuild.errors import MissingToolError
from torchbuild.machine import probes
from torchbuild.machine.preflight import preflight_for_plan
from torchbuild.options import Options, resolve

pytestmark = pytest.mark.integration


@pytest.fixture
def cuda_torch_python(tmp_path: Path) -> Path:
    python = make_venv(tmp_path / "venv")
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    site = Path(out.stdout.strip())
    shutil.copytree(FIXTURES / "projects" / "cudatorch" / "torch", site / "torch")
    info = site / "torch-2.99.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.99.0\n")
    (info / "RECORD").write_text("")
    return python


def _options(python: Path, tmp: Path, environ: dict[str, str], *extra: str) -> Options:
    argv = ["--recipe-dir", str(RECIPES), "--git-mirror", "file:///nonexistent",
            "--env", "existing", "--python", str(python), "--torch-from-env", "--cpu",
            "--work-dir", str(tmp / "work"), "--cache-dir", str(tmp / "cache"), *extra]
    return resolve(vars(build_parser().parse_args(argv)), environ)


def test_no_toolkit_is_refused_with_reason_and_fix(cuda_torch_python: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probes, "DEFAULT_CUDA_ROOTS", (tmp_path / "no-cuda-here",))
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}   # no nvcc, no CUDA_HOME
    options = _options(cuda_torch_python, tmp_path, environ)
    started = time.monotonic()
    plan, machine = pipeline.prepare(options)
    assert machine.env_torch_cmake_needs_cuda and machine.toolkit is None
    with pytest.raises(MissingToolError) as err:
        preflight_for_plan(plan, options, machine)
    assert time.monotonic() - started < 20
    assert "is a CUDA build" in err.value.message and "Caffe2Config.cmake" in err.value.message
    assert "audio" in err.value.message and "vision" not in err.value.message
    assert "CUDA_HOME" in err.value.fix and "--audio none" in err.value.fix
    assert MissingToolError.exit_code == 7
    # the fix is one the tool accepts: without audio there is nothing CMake-configured left
    options = _options(cuda_torch_python, tmp_path, environ, "--audio", "none")
    plan, machine = pipeline.prepare(options)
    assert not any(f.check == "torch-cuda" for f in preflight_for_plan(plan, options, machine))


def test_a_toolkit_found_is_passed_as_cuda_home(cuda_torch_python: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probes, "DEFAULT_CUDA_ROOTS", (tmp_path / "no-cuda-here",))
    root = fake_toolkit(tmp_path / "cuda-12.8")
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CUDA_HOME": str(root)}
    options = _options(cuda_torch_python, tmp_path, environ)
    plan, machine = pipeline.prepare(options)
    builds = {s.component: s.env for s in plan.steps if s.kind == "build"}
    assert builds["audio"]["CUDA_HOME"] == str(root)
    assert builds["vision"]["CUDA_HOME"] == str(root)
    found = preflight_for_plan(plan, options, machine)
    assert any(f.check == "torch-cuda" and f.level == "ok" for f in found)


def test_a_cpu_torch_needs_no_toolkit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    python = make_venv(tmp_path / "venv")
    site = next((tmp_path / "venv" / "lib").glob("python*/site-packages"))
    shutil.copytree(FIXTURES / "projects" / "cudatorch" / "torch", site / "torch")
    config = site / "torch" / "share" / "cmake" / "Caffe2" / "Caffe2Config.cmake"
    # what a CPU wheel's configure_file() writes there (torch 2.13.0+cpu, verbatim)
    config.write_text("if(0)\n  set(CAFFE2_USE_CUDA 0)\nendif()\n")
    (site / "torch-2.99.0.dist-info").mkdir()
    (site / "torch-2.99.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: torch\nVersion: 2.99.0\n")
    monkeypatch.setattr(probes, "DEFAULT_CUDA_ROOTS", (tmp_path / "no-cuda-here",))
    options = _options(python, tmp_path, {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    plan, machine = pipeline.prepare(options)
    assert not machine.env_torch_cmake_needs_cuda
    assert all("CUDA_HOME" not in s.env for s in plan.steps)
