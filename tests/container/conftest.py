"""Fixtures for the container tests: a local Debian base image, since no registry is reachable.

The base is a ``debootstrap --variant=minbase`` rootfs with the host's CA files copied in (outbound
HTTPS here is re-signed by a CA only the host trusts; without it ``pip install`` inside the image
fails with CERTIFICATE_VERIFY_FAILED, see shared/reference/containers.md). The tarball is cached in
``TORCHBUILD_CI_CACHE`` (default ``/var/cache/torchbuild-ci``) because debootstrap costs ~25 s and
the tar imports in ~4 s; every test still passes from an empty cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
# Bump when the recipe of the tarball changes, so a stale cache is never reused.
BASE_TAR_VERSION = "3"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# What a CUDA devel image already ships (compilers, python, git): the Dockerfile's apt step then
# finds them installed, so each of the two test builds saves ~35 s of package downloads. The
# Dockerfile still runs its own apt-get, unchanged.
PREINSTALLED = ("ca-certificates", "git", "python3", "python3-venv", "python3-dev",
                "build-essential", "tzdata", "libjpeg-dev", "libpng-dev", "libwebp-dev")


@dataclass(frozen=True)
class Buildah:
    """A buildah with a private vfs store: nothing leaks into /var/lib/containers."""

    root: Path

    def argv(self, *args: str) -> list[str]:
        return [
            "buildah",
            "--root", str(self.root / "storage"),
            "--runroot", str(self.root / "runroot"),
            "--storage-driver", "vfs",
            *args,
        ]

    @property
    def cache_mounts(self) -> Path:
        """Where `RUN --mount=type=cache,id=X` keeps X: buildah puts it under $TMPDIR."""
        return self.root / "tmp" / "buildah-cache"

    @property
    def env(self) -> dict[str, str]:
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        return {**os.environ, "TMPDIR": str(self.root / "tmp")}

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), capture_output=True, text=True, timeout=timeout, check=False,
            env=self.env,
        )


def container_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "container tests need root (buildah vfs/chroot and debootstrap)"
    missing = [t for t in ("buildah", "debootstrap") if shutil.which(t) is None]
    if missing:
        return f"missing {', '.join(missing)}: apt-get install -y buildah debootstrap"
    return None


def _cache_dir() -> Path:
    wanted = Path(os.environ.get("TORCHBUILD_CI_CACHE", "/var/cache/torchbuild-ci"))
    try:
        wanted.mkdir(parents=True, exist_ok=True)
        probe = wanted / ".writable"
        probe.touch()
        probe.unlink()
    except OSError:
        # Where /var/cache is not ours the tarball is rebuilt per session: slower, still correct.
        return Path(tempfile.mkdtemp(prefix="torchbuild-ci-cache-"))
    return wanted


def _copy_host_cas(rootfs: Path) -> None:
    local = rootfs / "usr/local/share/ca-certificates"
    local.mkdir(parents=True, exist_ok=True)
    host_local = Path("/usr/local/share/ca-certificates")
    if host_local.is_dir():
        for crt in host_local.glob("*.crt"):
            shutil.copy2(crt, local / crt.name)
    if Path(CA_BUNDLE).is_file():
        (rootfs / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
        shutil.copy2(CA_BUNDLE, rootfs / CA_BUNDLE.lstrip("/"))


def _make_base_tar(target: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="tb-rootfs-", dir=target.parent) as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PREINSTALLED)}", SUITE,
             str(rootfs)],
            check=True, capture_output=True, text=True, timeout=900,
        )
        # apt lists and .debs are half the size and stale by the next run anyway.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        _copy_host_cas(rootfs)
        partial = target.with_suffix(".partial")
        subprocess.run(
            ["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."],
            check=True, timeout=300,
        )
        # Atomic: a concurrent or interrupted session never sees half a tarball.
        partial.replace(target)


@pytest.fixture(scope="session")
def base_tar() -> Path:
    reason = container_skip_reason()
    if reason:
        pytest.skip(reason)
    target = _cache_dir() / f"{SUITE}-minbase-v{BASE_TAR_VERSION}.tar"
    if not target.is_file():
        _make_base_tar(target)
    return target


@pytest.fixture(scope="session")
def buildah_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Buildah]:
    reason = container_skip_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("buildah")
    yield Buildah(root)
    # vfs layers are full rootfs copies (GBs); drop them with the session.
    Buildah(root).run("rm", "--all")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def base_image(base_tar: Path, buildah_store: Buildah) -> str:
    """Import the cached rootfs tar as ``localhost/torchbuild-ci-base:bookworm`` (~4 s)."""
    name = f"localhost/torchbuild-ci-base:{SUITE}"
    ctr = buildah_store.run("from", "scratch")
    assert ctr.returncode == 0, ctr.stderr
    cid = ctr.stdout.strip()
    added = buildah_store.run("add", cid, str(base_tar), "/")
    assert added.returncode == 0, added.stderr
    env = [f"{k}={CA_BUNDLE}" for k in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")]
    cfg = buildah_store.run(
        "config",
        "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        *[arg for kv in env for arg in ("--env", kv)],
        "--cmd", "/bin/bash",
        cid,
    )
    assert cfg.returncode == 0, cfg.stderr
    committed = buildah_store.run("commit", "-q", "--rm", cid, name)
    assert committed.returncode == 0, committed.stderr
    return name
