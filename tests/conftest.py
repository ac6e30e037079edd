"""Shared fixtures: fixture git servers, a CLI runner, GPU skipping."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from filelock import FileLock

sys.path.insert(0, str(Path(__file__).parent))   # tests/gitrepos.py and friends

from gitrepos import RECIPES, make_mirror_root
from venvs import make_venv

REPO = Path(__file__).resolve().parent.parent


UNIT = Path(__file__).parent / "unit"


def _refuse(*args: object, **_kwargs: object) -> None:
    what = args[1] if len(args) > 1 else args[0] if args else "?"
    msg = f"a unit test started a process ({what!r}): move it to tests/integration"
    raise AssertionError(msg)


@pytest.fixture(autouse=True)
def no_processes_in_unit_tests(request: pytest.FixtureRequest,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests are pure logic: any process a test under tests/unit starts fails it
    (cibuildwheel's ``mock_protection``, nox's ``prevent_conda``). Lives here, not in a
    tests/unit/conftest.py, because the integration tests import this file as ``conftest``."""
    if UNIT not in request.node.path.parents:
        return
    monkeypatch.setattr(subprocess.Popen, "_execute_child", _refuse)
    for name in ("system", "fork", "forkpty", "posix_spawn", "posix_spawnp", "execv", "execve",
                 "execvp", "execvpe", "spawnv", "spawnve", "spawnvp", "spawnvpe"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, _refuse)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if shutil.which("nvidia-smi") is None:
        skip = pytest.mark.skip(reason="no NVIDIA GPU here (nvidia-smi not found)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


def shared_dir(tmp_path_factory: pytest.TempPathFactory, name: str,
               make: Callable[[Path], None]) -> Path:
    """``make(path)`` once per test run, not once per pytest-xdist worker: the workers' base
    temp dirs share a parent, and a file lock lets the first worker build while the others wait.
    The result must be read-only for the tests that share it."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    target = base / f"shared-{name}"
    with FileLock(str(base / f"shared-{name}.lock")):
        if not (target / ".complete").is_file():
            shutil.rmtree(target, ignore_errors=True)   # a worker died half-way
            target.mkdir(parents=True)
            make(target)
            (target / ".complete").write_text("")
    return target


@pytest.fixture(scope="session")
def mirror_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The fixture git server (read-only for the tests), built once per test run."""

    def make(path: Path) -> None:
        commits = make_mirror_root(path / "srv")
        (path / "commits.json").write_text(json.dumps(commits))

    shared = shared_dir(tmp_path_factory, "gitserver", make)
    return shared / "srv", json.loads((shared / "commits.json").read_text())


@pytest.fixture(scope="session")
def fixture_recipes() -> Path:
    return RECIPES


CLI = Callable[..., subprocess.CompletedProcess[str]]


def base_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHBUILD_")}
    env["XDG_CACHE_HOME"] = str(tmp / "xdg-cache")
    env["NO_COLOR"] = "1"
    return env


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    """Run ``python -m torchbuild ARGS`` as a user would, in a subprocess."""

    def _run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
             timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "torchbuild", *args],
                              env=env if env is not None else base_env(tmp_path),
                              cwd=cwd or tmp_path, capture_output=True, text=True,
                              timeout=timeout)

    return _run


def fixture_args(root: Path, tmp: Path, *extra: str) -> list[str]:
    return ["--recipe-dir", str(RECIPES), "--git-mirror", f"file://{root}",
            "--work-dir", str(tmp / "work"), "--cache-dir", str(tmp / "cache"),
            "--dist", str(tmp / "dist"), *extra]


def dir_listing(path: Path) -> Sequence[str]:
    """What a user sees in ``path``; the empty lock that serialises publishing into a shared
    --dist (artifacts.DIST_LOCK_NAME) is not content."""
    if not path.exists():
        return []
    return sorted(p.name for p in path.iterdir() if p.name != ".torchbuild-dist.lock")


@pytest.fixture(scope="session")
def torch_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the real torch 2.13.0 CPU wheel (a local file on these machines) + build tools.

    Shared by every test that compiles against real torch; built once per test run (all xdist
    workers); the tests only run it and compile against it.
    """

    def make(path: Path) -> None:
        make_venv(path / "venv", "torch==2.13.0", "setuptools", "wheel", "ninja")

    return shared_dir(tmp_path_factory, "torchvenv", make) / "venv" / "bin" / "python"
