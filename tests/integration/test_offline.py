"""Offline for real: `fetch` fills the mirror cache, then an `--offline` build runs with no network
at all (`unshare -n`, and the fixture git server moved away). Missing pieces are named at once;
a corrupted mirror is detected (and re-cloned when online)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import base_env, make_venv
from resumerepos import cli_args, fetch_args, make_resume_server, write_recipes

pytestmark = pytest.mark.integration

MIRRORS = ("pytorch/fakedep.git", "pytorch/pytorch.git", "pytorch/vision.git")


@pytest.fixture(scope="module")
def build_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_venv(tmp_path_factory.mktemp("offlinevenv") / "venv", "setuptools", "wheel",
                     "ninja")


def _torchbuild(args: list[str], tmp: Path, *, no_network: bool = False,
                ) -> subprocess.CompletedProcess[str]:
    prefix = ["unshare", "-n"] if no_network else []
    return subprocess.run([*prefix, sys.executable, "-m", "torchbuild", *args],
                          env=base_env(tmp), cwd=tmp, capture_output=True, text=True,
                          timeout=600)


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.fixture
def fetched(tmp_path: Path, build_python: Path) -> tuple[Path, list[str]]:
    """A fixture server, and a cache filled by `torchbuild fetch` from it."""
    root = tmp_path / "srv"
    make_resume_server(root, delay="0")
    args = cli_args(root, write_recipes(tmp_path / "recipes"), tmp_path, build_python)
    proc = _torchbuild(["fetch", *fetch_args(args)], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "3 repositories mirrored" in proc.stdout
    mirrors = tmp_path / "cache" / "git" / "git.example.invalid"
    assert sorted(str(p.relative_to(mirrors)) for p in mirrors.glob("*/*.git")) == list(MIRRORS)
    assert not (tmp_path / "work" / "src").exists()  # fetch mirrors only, no checkout
    return root, args


def test_fetch_then_offline_build_without_network(fetched: tuple[Path, list[str]],
                                                  tmp_path: Path) -> None:
    if not _can_unshare():
        pytest.skip("`unshare -n` is not permitted here (needs root or user namespaces)")
    root, args = fetched
    root.rename(root.with_name("srv-gone"))  # the "upstream" is unreachable too
    proc = _torchbuild([*args, "--offline"], tmp_path, no_network=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    manifest = json.loads((tmp_path / "dist" / "torchbuild-manifest.json").read_text())
    assert manifest["sources"]["torch"]["submodules"] == {
        "third_party/fakedep": manifest["sources"]["torch"]["submodules"]["third_party/fakedep"]}
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "dist").glob("*.whl")) == [
        "torch", "torchvision"]


def test_offline_names_everything_missing_at_once(fetched: tuple[Path, list[str]],
                                                  tmp_path: Path) -> None:
    _, args = fetched
    shutil.rmtree(tmp_path / "cache" / "git" / "git.example.invalid" / "pytorch" / "fakedep.git")
    proc = _torchbuild([*args, "--offline"], tmp_path)
    assert proc.returncode == 16, proc.stderr
    assert "submodule commit" in proc.stderr
    assert "https://git.example.invalid/pytorch/fakedep.git" in proc.stderr
    assert "torchbuild fetch" in proc.stderr  # the fix names the command that fills the cache
    assert not (tmp_path / "work" / "src").exists()  # failed before cloning anything

    empty = list(args)
    empty[empty.index("--cache-dir") + 1] = str(tmp_path / "empty-cache")
    proc = _torchbuild([*empty, "--offline"], tmp_path)
    assert proc.returncode == 16
    assert "tag v2.99.0 of https://git.example.invalid/pytorch/pytorch.git" in proc.stderr
    assert "tag v0.99.0 of https://git.example.invalid/pytorch/vision.git" in proc.stderr


def _corrupt(mirror: Path) -> None:
    """What a disk error or a killed `git gc` leaves: refs that point at missing objects."""
    for pack in (mirror / "objects" / "pack").glob("*"):
        pack.unlink()
    for loose in (mirror / "objects").glob("[0-9a-f][0-9a-f]"):
        shutil.rmtree(loose)


def test_corrupted_mirror_is_detected_and_recloned(fetched: tuple[Path, list[str]],
                                                   tmp_path: Path) -> None:
    _, args = fetched
    mirror = tmp_path / "cache" / "git" / "git.example.invalid" / "pytorch" / "pytorch.git"
    _corrupt(mirror)
    proc = _torchbuild([*args, "--offline"], tmp_path)
    assert proc.returncode == 16, proc.stderr
    assert "is corrupted" in proc.stderr
    proc = _torchbuild(args, tmp_path)  # online: cloned again, build succeeds
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "is corrupted" in proc.stderr
    assert "cloning it again" in proc.stderr
    ok = subprocess.run(["git", "-C", str(mirror), "fsck", "--connectivity-only"],
                        capture_output=True)
    assert ok.returncode == 0


def test_fetch_downloads_the_venv_packages(tmp_path: Path) -> None:
    """For --env venv, fetch also puts the env's pip packages into <cache>/pip (PyPI via pip)."""
    from gitrepos import RECIPES

    root = tmp_path / "srv"
    make_resume_server(root, delay="0")
    args = ["--recipe-dir", str(RECIPES), "--git-mirror", f"file://{root}", "--env", "venv",
            "--cpu", "--work-dir", str(tmp_path / "work"), "--cache-dir",
            str(tmp_path / "cache"), "--dist", str(tmp_path / "dist"), "--vision", "none",
            "--audio", "none"]
    proc = _torchbuild(["fetch", *fetch_args(args)], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    names = sorted(p.name.split("-")[0] for p in (tmp_path / "cache" / "pip").iterdir())
    assert "setuptools" in names
    assert "wheel" in names
