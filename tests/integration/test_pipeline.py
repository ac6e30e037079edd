"""The whole pipeline on real git repos (tags + a submodule), a real venv and real wheel builds.

The stand-in projects (tests/fixtures/projects) record the environment they were built with into
their wheels, so the assertions read what each build really saw.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from conftest import base_env, dir_listing, fixture_args

pytestmark = pytest.mark.integration


def _buildinfo(wheel: Path) -> dict:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith("_buildinfo.json"))
        return json.loads(zf.read(name))


def _metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()


@pytest.fixture(scope="module")
def built(mirror_root, tmp_path_factory):
    """One full fixture build, shared by the assertions below."""
    import subprocess
    import sys

    root, commits = mirror_root
    tmp = tmp_path_factory.mktemp("build")
    # --allow-missing nvjpeg: the fixture torchvision compiles nothing, and the toolkit on a test
    # machine may be installed without nvjpeg (preflight would rightly refuse; test_codecs.py).
    args = fixture_args(root, tmp, "--env", "venv", "--cc", "8.6 9.0+PTX", "--cuda", "13.0",
                        "--set", "CUSTOM_FLAG=hello world", "--no-verify",
                        "--allow-missing", "nvjpeg")
    proc = subprocess.run([sys.executable, "-m", "torchbuild", *args], env=base_env(tmp),
                          cwd=tmp, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp, commits, proc


def test_wheels_and_manifest(built):
    tmp, commits, _ = built
    dist = tmp / "dist"
    names = dir_listing(dist)
    assert names == ["torch-2.99.0+cu130.sm86.sm90ptx-py3-none-any.whl",
                     "torchaudio-2.99.0+cu130.sm86.sm90ptx-py3-none-any.whl",
                     "torchbuild-manifest.json", "torchbuild-report.html",
                     "torchbuild-report.png",
                     "torchvision-0.99.0+cu130.sm86.sm90ptx-py3-none-any.whl"]
    manifest = json.loads((dist / "torchbuild-manifest.json").read_text())
    assert manifest["schema_version"] == 1
    assert manifest["sources"]["torch"]["commit"] == commits["pytorch@v2.99.0"]
    assert manifest["sources"]["vision"]["commit"] == commits["vision@v0.99.0"]
    assert manifest["sources"]["torch"]["submodules"] == {"third_party/fakedep":
                                                          commits["fakedep"]}
    import hashlib

    for entry in manifest["wheels"]:
        data = (dist / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert len(data) == entry["size"]
    assert [s["id"] for s in manifest["steps"]] == [
        "deps-torch", "build-torch", "install-torch", "build-vision", "install-vision",
        "build-audio", "install-audio"]
    assert manifest["options"]["cc"] == {"value": "8.6 9.0+PTX", "origin": "command line"}
    assert manifest["toolchain"]["python"].count(".") >= 1


def test_each_build_saw_its_flags_in_order(built):
    tmp, commits, _ = built
    dist = tmp / "dist"
    torch = _buildinfo(next(dist.glob("torch-*.whl")))
    vision = _buildinfo(next(dist.glob("torchvision-*.whl")))
    audio = _buildinfo(next(dist.glob("torchaudio-*.whl")))
    assert torch["env"]["TORCH_CUDA_ARCH_LIST"] == "8.6;9.0+PTX"
    assert torch["env"]["USE_CUDA"] == "1" and torch["env"]["BUILD_TEST"] == "0"
    assert torch["env"]["CUSTOM_FLAG"] == "hello world"       # --set passed as data, spaces intact
    assert torch["fakedep"] == "1.2.3"                          # the submodule was checked out
    assert vision["env"]["FORCE_CUDA"] == "1"
    assert vision["env"]["TORCH_CUDA_ARCH_LIST"] == "8.6;9.0+PTX"
    # companions were built against the torch wheel built a moment before, in order
    assert vision["torch_seen"] == audio["torch_seen"] == "2.99.0+cu130.sm86.sm90ptx"
    assert torch["time_ns"] < vision["time_ns"] < audio["time_ns"]
    assert "Requires-Dist: torch==2.99.0+cu130.sm86.sm90ptx" in _metadata(
        next(dist.glob("torchvision-*.whl")))


def test_logs_per_step(built):
    tmp, _, _ = built
    logs = dir_listing(tmp / "work" / "logs")
    assert "02-build-torch.log" in logs and "06-build-audio.log" in logs
    text = (tmp / "work" / "logs" / "02-build-torch.log").read_text()
    assert "pip wheel" in text.splitlines()[0]


def test_second_tag_reuses_the_mirror_offline(built, mirror_root, cli, tmp_path):
    """Another tag of the same repos builds from the mirror cache with --offline."""
    root, commits = mirror_root
    tmp, _, _ = built
    cache = tmp / "cache"
    # pip cannot fetch setuptools offline: build in the first build's (complete) venv instead.
    python = tmp / "work" / "env" / "bin" / "python"
    args = fixture_args(root, tmp_path, "--env", "existing", "--python", str(python), "--cpu",
                        "--torch", "2.98.0", "--no-verify", "--offline")
    args[args.index("--cache-dir") + 1] = str(cache)
    # Point the mirror prefix at nothing: any network/fetch attempt would fail.
    args[args.index("--git-mirror") + 1] = "file:///nonexistent"
    proc = cli(*args)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    manifest = json.loads((tmp_path / "dist" / "torchbuild-manifest.json").read_text())
    assert manifest["sources"]["torch"]["commit"] == commits["pytorch@v2.98.0"]
    assert _buildinfo(next((tmp_path / "dist").glob("torch-*.whl")))["env"]["USE_CUDA"] == "0"


def test_offline_with_empty_cache_names_what_is_missing(mirror_root, cli, tmp_path):
    root, _ = mirror_root
    proc = cli(*fixture_args(root, tmp_path, "--env", "venv", "--cpu", "--offline",
                             "--no-verify"))
    assert proc.returncode == 16
    assert "tag v2.99.0 of https://git.example.invalid/pytorch/pytorch.git" in proc.stderr
    assert dir_listing(tmp_path / "dist") == []


def test_missing_tag_in_mirror(mirror_root, cli, tmp_path):
    root, _ = mirror_root
    recipes = tmp_path / "recipes"
    from gitrepos import RECIPES

    shutil.copytree(RECIPES, recipes)
    text = (recipes / "releases.toml").read_text().replace('tag = "v2.98.0"', 'tag = "v2.97.5"')
    (recipes / "releases.toml").write_text(text)
    args = fixture_args(root, tmp_path, "--env", "venv", "--cpu", "--torch", "2.98.0",
                        "--no-verify")
    args[args.index("--recipe-dir") + 1] = str(recipes)
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "keep.txt").write_text("unchanged")
    proc = cli(*args)
    assert proc.returncode == 11, proc.stderr
    assert "tag 'v2.97.5' does not exist" in proc.stderr
    assert dir_listing(tmp_path / "dist") == ["keep.txt"]


def test_missing_git(mirror_root, cli, tmp_path):
    root, _ = mirror_root
    env = base_env(tmp_path)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    import sys

    # a PATH with python but without git
    os.symlink(sys.executable, bindir / "python3")
    env["PATH"] = str(bindir)
    proc = cli(*fixture_args(root, tmp_path, "--env", "venv", "--cpu", "--no-verify"), env=env)
    assert proc.returncode == 7, proc.stderr
    assert "`git` was not found on PATH" in proc.stderr


def test_unwritable_dist(mirror_root, cli, tmp_path):
    root, _ = mirror_root
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    args = fixture_args(root, tmp_path, "--env", "venv", "--cpu", "--no-verify")
    args[args.index("--dist") + 1] = str(blocker / "dist")
    proc = cli(*args)
    assert proc.returncode == 15, proc.stderr
    assert f"{blocker} is a file" in proc.stderr      # the cause, not "fix its permissions"
    assert blocker.read_text() == "x"
    assert not (tmp_path / "work" / "src").exists()      # refused before cloning anything
