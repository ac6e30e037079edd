"""`torchbuild docker ...` from an installed wheel finds its Dockerfile and compose file.

The real wheel is built from this checkout (pip wheel, hatchling), installed outside the checkout,
and run from a directory that is not one; there is no Docker engine here, so the verbs print the
commands and exit 18, having laid out the build context the commands name.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import base_env

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, installed (--no-deps: the test interpreter has the deps) into
    a directory of its own, far from the checkout."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(root),
                    str(REPO)], check=True, timeout=600)
    wheel = next(root.glob("torchbuild-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "torchbuild/docker_context/docker/Dockerfile" in names
    assert "torchbuild/docker_context/docker-compose.yaml" in names
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, timeout=600)
    return target


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = base_env(cwd)
    env["PYTHONPATH"] = str(site)          # the installed copy, not the checkout's src/
    # No docker engine: a PATH without a docker binary makes that certain on any machine.
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if not (Path(p) / "docker").exists())
    return subprocess.run([sys.executable, "-m", "torchbuild", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_installed_wheel_runs_from_its_own_copy(installed: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", "import torchbuild; print(torchbuild.__file__)"],
                          cwd=tmp_path, env={**base_env(tmp_path), "PYTHONPATH": str(installed)},
                          capture_output=True, text=True, check=True)
    assert Path(proc.stdout.strip()).is_relative_to(installed)


def test_docker_export_from_a_wheel_finds_its_files(installed: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    proc = _run(installed, tmp_path, "docker", "export", "--cc", "8.6", "--torch", "2.9.1",
                "--cache-dir", str(cache))
    assert proc.returncode == 18, proc.stdout + proc.stderr     # no engine: print and say so
    assert "docker build" in proc.stdout and "--target export" in proc.stdout
    dockerfile = Path(re.search(r" -f (\S+)", proc.stdout).group(1))
    context = Path(proc.stdout.split()[-1])
    assert dockerfile == context / "docker" / "Dockerfile" and dockerfile.is_file()
    assert context.is_relative_to(cache) and not context.is_relative_to(REPO)
    # Everything the Dockerfile COPYs from the context is there, and it is this torchbuild.
    for needed in ("pyproject.toml", "README.md", "docker-compose.yaml", ".dockerignore",
                   "src/torchbuild/__main__.py", "recipes/releases.toml",
                   "tests/fixtures/smoke/make_repos.py"):
        assert (context / needed).is_file(), needed
    assert not (context / "src" / "torchbuild" / "docker_context").exists()
    assert (context / "src/torchbuild/commands/docker.py").read_bytes() == \
        (installed / "torchbuild/commands/docker.py").read_bytes()


def test_the_context_a_wheel_lays_out_builds_the_same_wheel(installed: Path,
                                                            tmp_path: Path) -> None:
    """The image runs `pip install /src` on that context: it must be a buildable project."""
    cache = tmp_path / "cache"
    proc = _run(installed, tmp_path, "docker", "build", "--cpu", "--cache-dir", str(cache))
    assert proc.returncode == 18, proc.stdout + proc.stderr
    context = Path(proc.stdout.split()[-1])
    out = tmp_path / "rebuilt"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                    str(context)], check=True, timeout=600)
    names = zipfile.ZipFile(next(out.glob("torchbuild-*.whl"))).namelist()
    assert "torchbuild/__main__.py" in names and "torchbuild/recipes/releases.toml" in names
    assert "torchbuild/docker_context/docker/Dockerfile" in names


def test_docker_dry_run_from_a_wheel_writes_no_context(installed: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    proc = _run(installed, tmp_path, "docker", "export", "--cc", "8.6", "--dry-run",
                "--cache-dir", str(cache))
    assert proc.returncode == 0, proc.stderr
    assert "build context:" in proc.stdout and not cache.exists()
