"""Companions against the torch of a fresh venv, first time, no manual steps (#17).

The venv has only the real torch 2.13.0 wheel: no wheel, numpy or pillow, and an old setuptools
(65: no bdist_wheel of its own). ``--torch-from-env --env existing`` must install the missing build
requirements into it, say so in the plan, build the fixture companions and the real C++ operator
project, and verify them in a throwaway env -- all in one run of one command.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from conftest import CLI, base_env, fixture_args, make_venv
from gitrepos import FIXTURES, PROJECTS, _commit_all, _publish, git
from resumerepos import make_cppext_server
from torchbuild.proof.verify import (
    WheelInstallError,
    install_runtime_requirements,
    make_throwaway_env,
)
from venvs import pure_wheel as _wheel

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _installed(python: Path, name: str) -> str | None:
    code = ("import importlib.metadata as m, sys\ntry: print(m.version(sys.argv[1]))\n"
            "except m.PackageNotFoundError: print('')")
    out = subprocess.run([str(python), "-c", code, name], capture_output=True, text=True,
                         check=True)
    return out.stdout.strip() or None


@pytest.fixture(scope="session")
def bare_torch_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """torch 2.13.0 and what it pulls in, then setuptools forced back to < 66, wheel removed."""
    python = make_venv(tmp_path_factory.mktemp("bare") / "venv", "torch==2.13.0")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "setuptools<66"], check=True)
    subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", "wheel"], check=True)
    return python


@pytest.fixture
def fresh_copy(bare_torch_venv: Path, tmp_path: Path) -> Path:
    """A private copy per test (the build installs into it); torchbuild runs bin/python -m pip,
    so the copied console scripts' old shebangs do not matter."""
    dest = tmp_path / "user-venv"
    shutil.copytree(bare_torch_venv.parent.parent, dest, symlinks=True)
    python = dest / "bin" / "python"
    assert _installed(python, "wheel") is None and _installed(python, "numpy") is None
    assert _installed(python, "pillow") is None
    assert str(_installed(python, "setuptools")).startswith("65.")
    return python


def test_fixture_companions_into_a_bare_torch_venv(mirror_root, cli: CLI, tmp_path: Path,
                                                   fresh_copy: Path) -> None:
    root, _ = mirror_root
    # The stand-in torchvision links no image codec and has no torchvision.io: said up front,
    # so verify reports the codecs instead of failing on them.
    args = fixture_args(root, tmp_path, "--env", "existing", "--python", str(fresh_copy),
                        "--torch-from-env", "--cpu", "--allow-missing", "jpeg",
                        "--allow-missing", "png", "--allow-missing", "webp")
    started = time.monotonic()
    dry = cli(*args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert time.monotonic() - started < 30
    said = " ".join((dry.stdout + dry.stderr).split())   # the dry-run wraps to the terminal
    assert "installed into it first (missing): wheel" in said
    assert "lacks build requirements: wheel (not installed)" in said

    proc = cli(*args)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    assert _installed(fresh_copy, "wheel") is not None
    manifest = json.loads((tmp_path / "dist" / "torchbuild-manifest.json").read_text())
    assert manifest["environment"]["pip_requirements"] == ["setuptools", "wheel"]
    assert manifest["verify"] is not None and manifest["verify"]["ok"] is True
    names = sorted(w["file"].split("-")[0] for w in manifest["wheels"])
    assert names == ["torchaudio", "torchvision"]
    # torchvision needs numpy and pillow at run time: verify put them into its throwaway env
    # (from the index here), not into the user's env, and the stand-in's nms ran there.
    checks = {c["check"]: c for c in manifest["verify"]["checks"]}
    installed = checks["runtime deps"]["found"].split(" from ")[0].split()
    assert [Requirement(r).name for r in installed] == ["numpy", "pillow"]
    assert checks["torchvision"]["status"] == "ok"
    assert checks["torchvision codecs"]["status"] == "info"
    assert _installed(fresh_copy, "numpy") is None
    # torch's own requirement (setuptools>=77) is broken in the user's env: said, not failed
    assert checks["pip check"]["status"] == "info"
    assert "setuptools" in checks["pip check"]["found"]


def test_real_cpp_operator_into_a_bare_torch_venv(cli: CLI, tmp_path: Path,
                                                  fresh_copy: Path) -> None:
    root = tmp_path / "srv"
    make_cppext_server(root)
    args = ["--recipe-dir", str(FIXTURES / "recipes-cppext"), "--git-mirror", f"file://{root}",
            "--env", "existing", "--python", str(fresh_copy), "--torch-from-env", "--cpu",
            "--work-dir", str(tmp_path / "work"), "--cache-dir", str(tmp_path / "cache"),
            "--dist", str(tmp_path / "dist")]
    proc = cli(*args, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    assert "installing the missing build requirements" in proc.stdout + proc.stderr
    manifest = json.loads((tmp_path / "dist" / "torchbuild-manifest.json").read_text())
    assert manifest["verify"]["ok"] is True
    assert [w["file"].split("-")[:2] for w in manifest["wheels"]] == [["tbext", "0.99.0+cpu"]]


def test_offline_verify_names_the_runtime_requirement_it_cannot_get(tmp_path: Path) -> None:
    base = make_venv(tmp_path / "base")    # no numpy; pip only
    wheel = _wheel(tmp_path, "tbneedsnp", ["numpy>=1.20", "torch==2.13.0; python_version<'3'"])
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    python = make_throwaway_env(base, [wheel], tmp_path / "throwaway", env)
    empty = tmp_path / "pip-cache"
    empty.mkdir()
    with pytest.raises(WheelInstallError) as err:
        install_runtime_requirements(python, base, [wheel], env, offline=True, wheelhouse=empty)
    assert "numpy>=1.20" in err.value.message and "--offline" in err.value.message
    assert f"{base} -m pip install 'numpy>=1.20'" in err.value.fix
    assert WheelInstallError.exit_code == 20



def test_an_extras_build_requirements_are_installed_into_a_bare_torch_venv(
        tmp_path: Path, fresh_copy: Path) -> None:
    """``--extra`` in a venv that has torch but neither ninja nor wheel (#16): the plan names the
    generic extension build requirements it lacks, the env step installs them, and the extra's
    ``pip wheel --no-build-isolation`` then builds with ninja."""
    work = tmp_path / "tbext-work"
    shutil.copytree(PROJECTS / "cppext", work)
    git("init", "-q", cwd=work)
    _commit_all(work, "tbext")
    git("tag", "v0.99.0", cwd=work)
    root = tmp_path / "srv"
    _publish(work, root / "example" / "tbext.git")
    assert _installed(fresh_copy, "ninja") is None
    args = ["--cpu", "--env", "existing", "--python", str(fresh_copy), "--torch-from-env",
            "--vision", "none", "--audio", "none",
            "--extra", "git+https://git.example.org/example/tbext.git@v0.99.0",
            "--git-mirror", f"file://{root}", "--work-dir", str(tmp_path / "work"),
            "--cache-dir", str(tmp_path / "cache"), "--dist", str(tmp_path / "dist")]
    env = base_env(tmp_path)
    dry = subprocess.run([sys.executable, "-m", "torchbuild", *args, "--dry-run"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stderr
    said = " ".join((dry.stdout + dry.stderr).split())
    assert "installed into it first (missing): wheel ninja" in said
    proc = subprocess.run([sys.executable, "-m", "torchbuild", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    assert _installed(fresh_copy, "ninja") is not None
    log = next((tmp_path / "work" / "logs").glob("*-build-tbext.log")).read_text()
    # BuildExtension found it: ninja's [n/N] progress, not the slow distutils fallback.
    assert "could not find ninja" not in log
    assert re.search(r"^\s*\[1/\d+\] ", log, re.MULTILINE), log[-3000:]
    manifest = json.loads((tmp_path / "dist" / "torchbuild-manifest.json").read_text())
    assert manifest["environment"]["pip_requirements"] == ["setuptools", "wheel", "ninja"]
    assert manifest["verify"]["ok"] is True
