"""A wheel deleted from work/wheels is rebuilt *and* installed again into the build env (the
install stamp is keyed on the wheel's bytes); the git argv puts `--` before URLs and paths and
allows the file transport only for the submodule update from our own mirrors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import fixture_args, make_venv

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def build_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_venv(tmp_path_factory.mktemp("wheelvenv") / "venv", "setuptools", "wheel")


def _steps(dist: Path) -> dict[str, str]:
    manifest = json.loads((dist / "torchbuild-manifest.json").read_text())
    return {s["id"]: s["status"] for s in manifest["steps"]}


def test_deleted_wheel_is_rebuilt_and_reinstalled(mirror_root, tmp_path, build_python, cli):
    root, _ = mirror_root
    args = fixture_args(root, tmp_path, "--env", "existing", "--python", str(build_python),
                        "--cpu", "--no-verify", "--vision", "none", "--audio", "none")
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    wheel = next((tmp_path / "work" / "wheels" / "torch").glob("*.whl"))
    wheel.unlink()
    second = cli(*args)
    assert second.returncode == 0, second.stderr
    steps = _steps(tmp_path / "dist")
    assert steps["build-torch"] == "ok"
    assert steps["install-torch"] == "ok", "the build env kept the old wheel"
    third = cli(*args)
    assert third.returncode == 0 and set(_steps(tmp_path / "dist").values()) == {"skipped"}

    log = (tmp_path / "work" / "logs" / "sources.log").read_text().splitlines()
    commands = [line for line in log if line.startswith("+ git")]
    assert commands
    for line in commands:
        words = line.split()
        if "protocol.file.allow=always" in words:
            assert "submodule" in words and "update" in words, line
        if "clone" in words:
            assert words[words.index("clone") + 2] == "--" or "--" in words, line
            assert words.index("--") < len(words) - 2, line     # URL and dest come after it
