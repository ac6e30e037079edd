"""The deps step's build requirements: recorded in the manifest, fetched into a wheelhouse,
installed from it under --offline with the package index unreachable, a tampered wheel refused.

The index is the user's own (PIP_FIND_LINKS at a directory with a wheel built here, and
PIP_INDEX_URL at a port where nothing listens): that they keep working is part of the test, and
nothing here reaches the network.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import base_env, make_venv
from resumerepos import cli_args, fetch_args, make_resume_server, write_recipes

pytestmark = pytest.mark.integration

DEAD_INDEX = "http://127.0.0.1:9/simple"   # discard port: connection refused at once


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def make_wheel(dest: Path, name: str = "tbdep", version: str = "1.0") -> Path:
    """A minimal, valid pure-Python wheel (what pip needs: METADATA, WHEEL, RECORD)."""
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{name}-{version}.dist-info/METADATA":
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{name}-{version}.dist-info/WHEEL":
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = f"{name}-{version}.dist-info/RECORD"
    lines = [_record_line(n, d) for n, d in files.items()] + [f"{record},,"]
    files[record] = ("\n".join(lines) + "\n").encode()
    path = dest / f"{name}-{version}-py3-none-any.whl"
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in files.items():
            zf.writestr(n, d)
    return path


@pytest.fixture(scope="module")
def build_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The fixture build needs setuptools and ninja: from PyPI, once per module.
    return make_venv(tmp_path_factory.mktemp("depsvenv") / "venv", "setuptools>=70.1", "ninja")


def _env(tmp: Path, **pip: str) -> dict[str, str]:
    env = base_env(tmp)
    env.pop("PIP_FIND_LINKS", None)
    env.update(PIP_INDEX_URL=DEAD_INDEX, PIP_DISABLE_PIP_VERSION_CHECK="1", **pip)
    return env


def _torchbuild(args: list[str], tmp: Path,
                env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "torchbuild", *args], env=env, cwd=tmp,
                          capture_output=True, text=True, timeout=600)


def _uninstall(python: Path) -> None:
    subprocess.run([str(python), "-m", "pip", "uninstall", "-y", "-q", "tbdep"], check=False,
                   capture_output=True)


def _project(tmp: Path, build_python: Path) -> list[str]:
    """The build command line for a fixture torch tag whose requirements.txt asks for tbdep==1.0
    (its mirror and recipes made under ``tmp``); tbdep starts uninstalled."""
    root = tmp / "srv"
    make_resume_server(root, units=1, delay="0", requirements="tbdep==1.0\n")
    recipes = write_recipes(tmp / "recipes", deps=True)
    _uninstall(build_python)
    return cli_args(root, recipes, tmp, build_python, "--force")


def test_fetch_then_offline_installs_hash_checked_and_records(tmp_path: Path,
                                                               build_python: Path) -> None:
    args = _project(tmp_path, build_python)
    links = tmp_path / "links"
    wheel = make_wheel(links)

    # fetch: the tag's requirements.txt read from the mirror, downloaded through the user's
    # PIP_FIND_LINKS (the index itself is dead).
    proc = _torchbuild(["fetch", *fetch_args(args)], tmp_path,
                       _env(tmp_path, PIP_FIND_LINKS=str(links)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    house = tmp_path / "cache" / "wheelhouse" / "torch-v2.99.0"
    assert [p.name for p in house.iterdir()] == [wheel.name]
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    lock = (tmp_path / "cache" / "wheelhouse" / "torch-v2.99.0.txt").read_text()
    assert lock == f"tbdep==1.0 --hash=sha256:{sha}\n"

    # --offline, with the find-links directory gone too: only the wheelhouse can serve.
    links.rename(tmp_path / "links-gone")
    proc = _torchbuild([*args, "--offline"], tmp_path, _env(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = next((tmp_path / "work" / "logs").glob("*-deps-torch.log")).read_text()
    assert "--no-index" in log and "--require-hashes" in log
    manifest = json.loads((tmp_path / "dist" / "torchbuild-manifest.json").read_text())
    (installed,) = manifest["deps"]["torch"]["installed"]
    assert (installed["name"], installed["version"], installed["sha256"]) == ("tbdep", "1.0", sha)
    assert installed["file"] == wheel.name

    # A wheel changed after fetch is refused by pip's hash check.
    _uninstall(build_python)
    tampered = house / wheel.name
    with zipfile.ZipFile(tampered, "a") as zf:
        zf.writestr("tbdep/evil.py", "print('changed after fetch')\n")
    proc = _torchbuild([*args, "--offline", "--clean"], tmp_path, _env(tmp_path))
    assert proc.returncode == 12, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = next((tmp_path / "work" / "logs").glob("*-deps-torch.log")).read_text()
    assert "DO NOT MATCH THE HASHES" in log
    assert sha in log


def test_offline_without_a_wheelhouse_says_so_and_uses_what_is_there(
        tmp_path: Path, build_python: Path) -> None:
    args = _project(tmp_path, build_python)
    proc = _torchbuild(["fetch", *fetch_args(args)], tmp_path, _env(tmp_path, PIP_FIND_LINKS=str(
        make_wheel(tmp_path / "links").parent)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (tmp_path / "cache" / "wheelhouse" / "torch-v2.99.0.txt").unlink()
    _uninstall(build_python)
    proc = _torchbuild([*args, "--offline"], tmp_path, _env(tmp_path))
    text = " ".join(proc.stderr.split())
    assert "--offline: no wheelhouse for torch v2.99.0's build requirements" in text
    assert "torchbuild fetch" in text
    assert proc.returncode == 12, proc.stdout[-3000:] + proc.stderr[-3000:]   # tbdep: not there
    log = next((tmp_path / "work" / "logs").glob("*-deps-torch.log")).read_text()
    assert "--no-index" in log and "tbdep" in log


def test_replay_reinstalls_exactly_the_recorded_files_hash_checked(tmp_path: Path,
                                                                   build_python: Path) -> None:
    args = _project(tmp_path, build_python)
    links = tmp_path / "links"
    wheel = make_wheel(links)
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    env = _env(tmp_path, PIP_FIND_LINKS=str(links))
    proc = _torchbuild(args, tmp_path, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    manifest = tmp_path / "dist" / "torchbuild-manifest.json"
    (recorded,) = json.loads(manifest.read_text())["deps"]["torch"]["installed"]
    assert recorded["sha256"] == sha

    # The replay's deps step installs the recorded file by its hash, nothing resolved anew.
    _uninstall(build_python)
    replay = ["replay", str(manifest), "--force", "--trust-manifest"]
    proc = _torchbuild(replay, tmp_path, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    pins = (tmp_path / "work" / "deps" / "torch.replay.txt").read_text()
    assert pins == f"tbdep==1.0 --hash=sha256:{sha}\n"
    log = next((tmp_path / "work" / "logs").glob("*-deps-torch.log")).read_text()
    assert "--require-hashes" in log and "--no-deps" in log and "torch.replay.txt" in log
    replayed = json.loads((tmp_path / "dist" / "replay" / "torchbuild-manifest.json").read_text())
    assert replayed["deps"]["torch"]["installed"] == [recorded]

    # The index now serves another tbdep 1.0 (same name and version, other bytes): refused.
    wheel.unlink()
    other = make_wheel(tmp_path / "other")
    with zipfile.ZipFile(other, "a") as zf:
        zf.writestr("tbdep/changed.py", "print('not what was recorded')\n")
    shutil.move(str(other), str(links / other.name))
    _uninstall(build_python)
    proc = _torchbuild(replay, tmp_path, env)
    assert proc.returncode == 12, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = next((tmp_path / "work" / "logs").glob("*-deps-torch.log")).read_text()
    assert "DO NOT MATCH THE HASHES" in log and sha in log
