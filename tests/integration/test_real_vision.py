"""A real torchvision (0.21.0, Debian's source package) built against the real torch 2.13.0 CPU
wheel through the companions-against-an-existing-torch path (``--env existing --torch-from-env``).

PyPI has no torchvision sdist; Debian's ``pytorch-vision`` source package is the real upstream
tree. trixie has 0.21.0-3; its orig tarball's sha256 is pinned below as read from
``dists/trixie/main/source/Sources.xz`` (stanza ``Package: pytorch-vision``,
``Checksums-Sha256``). The test makes a local git repo tagged v0.21.0 from it and points
``--git-mirror`` there.

torch 2.13's own companion is torchvision 0.28.0, so the pairing is what a user would write: a copy
of the built-in ``recipes/`` whose 2.13.0 entry names vision 0.21.0 (``--recipe-dir``), nothing
else changed. Two facts of that old tree show up on the way, and the tool must say them:

- its setup.py imports ``pkg_resources``, which setuptools 82 removed: the first build fails in
  seconds with that diagnosis (FM-38) and the fix ``pip install 'setuptools<82'``; the test does
  exactly that, and the same command then builds;
- with the system codec headers (libjpeg-dev, libpng-dev, libwebp-dev: ``.ci/run``), verify
  decodes a JPEG and a PNG the probe wrote and encodes them back.

With the headers hidden -- a private mount namespace over ``/usr/include/jpeglib.h``,
``/usr/include/webp`` and ``libpng-config``, so the real tool looks at a real filesystem that has
none of them -- preflight refuses (exit 5) with the Debian and RHEL package names, before anything
is built.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import requests

from conftest import REPO, base_env, shared_dir
from gitrepos import git
from torchbuild.digest import sha256_file
from torchbuild.errors import BuildStepError, PreflightError
from torchbuild.machine import codecs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ORIG_URL = ("http://deb.debian.org/debian/pool/main/p/pytorch-vision/"
            "pytorch-vision_0.21.0.orig.tar.gz")
# trixie Sources.xz, Package: pytorch-vision, Version: 0.21.0-3, Checksums-Sha256 (13149842 bytes)
ORIG_SHA256 = "0a4a967bbb7f9810f792cd0289a07fb98c8fb5d1303fae8b63e3a6b05d720058"
VERSION = "0.21.0"


def _download(dest: Path) -> None:
    """The orig tarball, refused unless its sha256 is Debian's."""
    with requests.get(ORIG_URL, stream=True, timeout=60) as resp:
        resp.raise_for_status()
        with dest.open("wb") as fh:
            for chunk in resp.iter_content(1 << 20):
                fh.write(chunk)
    got = sha256_file(dest)
    if got != ORIG_SHA256:
        dest.unlink()
        pytest.fail(f"{ORIG_URL}: sha256 {got}, Debian's Sources.xz says {ORIG_SHA256}")


def _make_mirror(path: Path) -> None:
    """root/pytorch/vision.git: one commit of the unpacked tarball, tagged v0.21.0."""
    tarball = path / "orig.tar.gz"
    _download(tarball)
    work = path / "work"
    with tarfile.open(tarball) as tf:
        tf.extractall(work, filter="data")
    tree = work / f"vision-{VERSION}"
    git("init", "-q", cwd=tree)
    git("add", "-A", cwd=tree)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m",
        f"pytorch-vision {VERSION} (Debian orig tarball)", cwd=tree)
    git("tag", f"v{VERSION}", cwd=tree)
    git("clone", "-q", "--bare", str(tree), str(path / "root" / "pytorch" / "vision.git"),
        cwd=path)
    shutil.rmtree(work)
    tarball.unlink()


@pytest.fixture(scope="module")
def vision_mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_dir(tmp_path_factory, "vision-0.21.0", _make_mirror) / "root"


@pytest.fixture(scope="module")
def recipes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in recipes, with torch 2.13.0 paired with torchvision 0.21.0."""
    dest = tmp_path_factory.mktemp("recipes") / "recipes"
    shutil.copytree(REPO / "recipes", dest)
    releases = dest / "releases.toml"
    text = releases.read_text()
    head, sep, rest = text.partition('[releases."2.13.0"]\n')
    assert sep, "releases.toml has no 2.13.0 entry"
    entry, nxt, tail = rest.partition("\n[")
    paired = entry.replace('vision = "0.28.0"', f'vision = "{VERSION}"').replace(
        'vision_tag = "v0.28.0"', f'vision_tag = "v{VERSION}"')
    assert paired != entry, entry
    releases.write_text(head + sep + paired + nxt + tail)
    return dest


@pytest.fixture(scope="module")
def user_venv(torch_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the shared torch 2.13.0 venv (the build installs into it), with a
    setuptools that has no pkg_resources, as a fresh venv gets from PyPI today."""
    dest = tmp_path_factory.mktemp("uservenv") / "venv"
    shutil.copytree(torch_venv.parent.parent, dest, symlinks=True)
    python = dest / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "setuptools>=82"], check=True)
    return python


def _args(mirror: Path, recipes: Path, python: Path, tmp: Path) -> list[str]:
    return ["--recipe-dir", str(recipes), "--git-mirror", f"file://{mirror}",
            "--env", "existing", "--python", str(python), "--torch-from-env", "--torch",
            "2.13.0", "--cpu",
            "--audio", "none", "--work-dir", str(tmp / "work"),
            "--cache-dir", str(tmp / "cache"), "--dist", str(tmp / "dist")]


def _env(tmp: Path) -> dict[str, str]:
    env = base_env(tmp)
    for var in ("CONDA_PREFIX", "BUILD_PREFIX", "TORCHVISION_INCLUDE", "TORCHVISION_LIBRARY"):
        env.pop(var, None)
    return env


def _torchbuild(args: list[str], tmp: Path, *, prefix: tuple[str, ...] = (),
                timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "torchbuild", *args], env=_env(tmp),
                          cwd=tmp, capture_output=True, text=True, timeout=timeout)


# Bind-mounts each SOURCE over its TARGET, then runs the command: `sh -c SCRIPT sh SRC DST ... --
# CMD...` (the paths are arguments, never script text).
_BIND_THEN_RUN = ('set -e; while [ "$1" != "--" ]; do mount --bind "$1" "$2"; shift 2; done; '
                  'shift; exec "$@"')


def _hidden_codecs() -> list[str]:
    """SOURCE TARGET pairs that hide, from a private mount namespace, every codec preflight (and
    torchvision's setup.py) would find here: the headers, and libpng-config."""
    pairs: list[str] = []
    for name in ("jpeg", "webp"):
        for d in codecs.SYSTEM_INCLUDE:
            if (d / codecs.HEADERS[name]).is_file():
                pairs += [os.devnull, str(d / codecs.HEADERS[name])]
    config = shutil.which("libpng-config")
    if config:
        pairs += [os.devnull, str(Path(config).resolve())]
    return pairs


def _namespace() -> tuple[str, ...]:
    """unshare's arguments for a private mount namespace, or a skip where there is none."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare (util-linux) here: cannot hide the system codec headers")
    ways = [("unshare", "--mount")] if os.geteuid() == 0 else []
    ways.append(("unshare", "--user", "--map-root-user", "--mount"))
    for way in ways:
        probe = subprocess.run([*way, "sh", "-c", _BIND_THEN_RUN, "sh", os.devnull, os.devnull,
                                "--", "true"], capture_output=True, text=True)
        if probe.returncode == 0:
            return way
    pytest.skip(f"no private mount namespace here ({probe.stderr.strip()[:200]})")


def test_hidden_codecs_are_refused_with_the_package_names(vision_mirror: Path, recipes: Path,
                                                          user_venv: Path,
                                                          tmp_path: Path) -> None:
    pairs = _hidden_codecs()
    assert len(pairs) == 6, f"this host lacks a codec the build case needs: {pairs}"
    prefix = (*_namespace(), "sh", "-c", _BIND_THEN_RUN, "sh", *pairs, "--")
    started = time.monotonic()
    proc = _torchbuild(_args(vision_mirror, recipes, user_venv, tmp_path), tmp_path,
                       prefix=prefix, timeout=300)
    elapsed = time.monotonic() - started
    said = " ".join(proc.stderr.split())
    assert proc.returncode == PreflightError.exit_code, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "torchvision would be built without JPEG/PNG/WEBP support" in said
    assert "sudo apt-get install libjpeg-dev libpng-dev libwebp-dev" in said
    assert "sudo dnf install libjpeg-turbo-devel libpng-devel libwebp-devel" in said
    assert "--allow-missing jpeg --allow-missing png --allow-missing webp" in said
    # Refused before anything was built: no build step ran, nothing in dist.
    assert not list((tmp_path / "work").glob("logs/*build-vision*")), said[-2000:]
    assert not list((tmp_path / "dist").glob("*.whl"))
    assert elapsed < 120, f"preflight took {elapsed:.0f} s"
    # Outside the namespace the same host has them (so the refusal above was the hiding).
    status = codecs.probe_codecs(_env(tmp_path), ["jpeg", "png", "webp"], cuda_home=None)
    assert all(s.found for s in status), status


def test_real_torchvision_builds_and_round_trips_images(vision_mirror: Path, recipes: Path,
                                                        user_venv: Path, tmp_path: Path) -> None:
    args = _args(vision_mirror, recipes, user_venv, tmp_path)
    # 1. The old setup.py meets a setuptools without pkg_resources: diagnosed, with the fix.
    started = time.monotonic()
    proc = _torchbuild(args, tmp_path)
    said = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == BuildStepError.exit_code, said[-4000:]
    assert "this tag's setup.py needs pkg_resources, gone from setuptools >= 82" in said
    assert "python -m pip install 'setuptools<82'" in said
    assert time.monotonic() - started < 300

    # 2. The user applies the fix in their env and re-runs the same command.
    subprocess.run([str(user_venv), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "setuptools<82"], check=True)
    started = time.monotonic()
    proc = _torchbuild(args, tmp_path)
    built_s = time.monotonic() - started
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    print(f"torchvision {VERSION} against torch 2.13.0 CPU: {built_s:.0f} s")
    manifest = json.loads((tmp_path / "dist" / "torchbuild-manifest.json").read_text())
    (wheel,) = manifest["wheels"]
    assert wheel["file"].startswith(f"torchvision-{VERSION}+cpu-"), wheel
    checks = {c["check"]: c for c in manifest["verify"]["checks"]}
    assert manifest["verify"]["ok"] is True, checks
    assert checks["torchvision"]["status"] == "ok"          # imports, nms runs
    for codec in ("jpeg", "png"):
        row = checks[f"torchvision {codec}"]
        assert (row["status"], row["expected"]) == ("ok", "decodes, encodes"), row
        assert row["found"] == "decode + encode round trip"
    # A CPU torch has none of the CUDA library rows.
    assert not {"magma", "cusparselt", "cudss", "cufile"} & set(checks)
    log = next((tmp_path / "work" / "logs").glob("*build-vision*.log")).read_text()
    for codec in ("PNG", "JPEG", "WEBP"):
        assert f"Building torchvision with {codec} support" in log
