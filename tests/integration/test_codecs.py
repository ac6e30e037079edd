"""torchvision's image codecs on a venv build host: found where torchvision looks, or a refusal
that names the exact packages -- checked against the real system headers and libpng-config
(installed by .ci/run: libjpeg-dev libpng-dev libwebp-dev), then with them hidden in a private
mount namespace (`unshare -rm`, an empty directory bound over /usr/include)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import base_env, fixture_args
from torchbuild.machine.codecs import probe_codecs

pytestmark = pytest.mark.integration


def _system_has_codecs() -> bool:
    return all(Path("/usr/include", h).is_file() for h in ("jpeglib.h", "png.h", "webp/decode.h"))


def _can_hide() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-rm", "true"], capture_output=True).returncode == 0


def _hidden(tmp: Path, argv: list[str]) -> list[str]:
    """argv run with /usr/include replaced by an empty directory (nothing else changes)."""
    empty = tmp / "empty-include"
    empty.mkdir(exist_ok=True)
    # The mount target and source are argv items of `mount`, not text of a script.
    return ["unshare", "-rm", "--", "sh", "-c", 'mount --bind "$0" /usr/include && exec "$@"',
            str(empty), *argv]


@pytest.mark.skipif(not _system_has_codecs(), reason="apt-get install libjpeg-dev libpng-dev "
                    "libwebp-dev (.ci/run does)")
def test_system_codecs_are_found_where_torchvision_looks() -> None:
    env = {"PATH": "/usr/bin:/bin"}
    found = {s.name: s for s in probe_codecs(env, ["jpeg", "png", "webp"], cuda_home=None)}
    assert found["jpeg"].found == "/usr/include/jpeglib.h"
    assert found["webp"].found == "/usr/include/webp/decode.h"
    assert (found["png"].found or "").startswith("libpng 1.6")


def test_include_dirs_follow_torchvision_order(tmp_path: Path) -> None:
    first, conda = tmp_path / "first", tmp_path / "conda"
    (first / "webp").mkdir(parents=True)
    (first / "webp" / "decode.h").write_text("")
    (conda / "include").mkdir(parents=True)
    (conda / "include" / "jpeglib.h").write_text("")
    env = {"PATH": "/nonexistent", "TORCHVISION_INCLUDE": str(first), "CONDA_PREFIX": str(conda)}
    got = {s.name: s for s in probe_codecs(env, CODEC_NAMES, cuda_home=str(tmp_path / "cuda"),
                                           system=())}
    assert got["webp"].found == str(first / "webp" / "decode.h")
    assert got["jpeg"].found == str(conda / "include" / "jpeglib.h")
    assert got["png"].found is None and "libpng-config is not on PATH" in got["png"].why
    assert got["nvjpeg"].found is None and "include/nvjpeg.h" in got["nvjpeg"].why


CODEC_NAMES = ["jpeg", "png", "webp", "nvjpeg"]


def test_a_libpng_config_that_fails_is_not_called_missing(tmp_path: Path) -> None:
    """A libpng-config on PATH that exits non-zero (a broken install) says so, with its message,
    instead of "not on PATH"."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "libpng-config"
    script.write_text("#!/bin/sh\necho 'libpng-config: libpng16.pc: no such file' >&2\nexit 3\n")
    script.chmod(0o755)
    got = probe_codecs({"PATH": f"{bin_dir}:/usr/bin:/bin"}, ["png"], cuda_home=None, system=())
    assert got[0].found is None
    assert got[0].why == ("libpng-config --version failed (exit 3: libpng-config: libpng16.pc: "
                          "no such file)")


@pytest.mark.skipif(not _can_hide(), reason="needs unshare -rm (a private mount namespace)")
def test_preflight_refuses_missing_codecs_with_package_names(mirror_root, tmp_path: Path) -> None:
    root, _ = mirror_root
    args = fixture_args(root, tmp_path, "--cpu", "--env", "venv", "--no-verify")
    cmd = _hidden(tmp_path, [sys.executable, "-m", "torchbuild", *args])
    proc = subprocess.run(cmd, env=base_env(tmp_path), cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    text = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 5, text[-3000:]
    assert "torchvision would be built without JPEG/PNG/WEBP support" in text
    assert "sudo apt-get install libjpeg-dev libpng-dev libwebp-dev" in text
    assert "sudo dnf install libjpeg-turbo-devel libpng-devel libwebp-devel" in text
    assert "--allow-missing jpeg --allow-missing png --allow-missing webp" in text
    assert not (tmp_path / "work" / "src").exists(), "refused before anything was cloned"

    # The suggested way out is accepted: the build runs, torchvision told to skip them.
    args += ["--allow-missing", "jpeg", "--allow-missing", "png", "--allow-missing", "webp"]
    cmd = _hidden(tmp_path, [sys.executable, "-m", "torchbuild", *args])
    proc = subprocess.run(cmd, env=base_env(tmp_path), cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
