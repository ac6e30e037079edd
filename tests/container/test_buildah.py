"""A real image build of docker/Dockerfile with buildah (vfs storage, chroot isolation).

No registry is reachable, so BASE is a Debian rootfs bootstrapped locally (conftest.py), and the
smoke switch builds the fixture projects of tests/fixtures/smoke instead of PyTorch. The build
commands are the ones `python -m torchbuild docker export|build` prints, run by buildah instead of
docker: the same Dockerfile, args, targets and --output, so this checks the CLI's wiring too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from torchbuild.commands import docker

from .conftest import REPO, Buildah

pytestmark = pytest.mark.container

UID, GID, TZ = 1234, 2345, "Europe/Berlin"


def cli_values(base_image: str, env_file: Path, *extra: str) -> dict[str, str]:
    """The .env values of `python -m torchbuild docker <verb> --smoke ...`, via the real parser."""
    parser = argparse.ArgumentParser()
    docker.register(parser.add_subparsers())
    args = parser.parse_args([
        "docker", "env", "--smoke", "--base", base_image, "--train-base", base_image,
        "--uid", str(UID), "--gid", str(GID), "--tz", TZ, "--train-name", "ci",
        "--env-file", str(env_file), *extra,
    ])
    container = docker.container_settings(args, {})
    options = docker.resolve_options(args, {}, container)
    return docker.env_values(options, container)


def bud(store: Buildah, docker_argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a printed `docker build` command with buildah (same flags, offline-safe settings)."""
    assert list(docker_argv[:2]) == ["docker", "build"], docker_argv
    # --format docker: honour SHELL like docker does (OCI images drop it). No --layers: on vfs
    # every committed step is a full rootfs copy (3-10 s each), and CI builds from scratch anyway.
    argv = store.argv("bud", "--pull=never", "--isolation", "chroot", "--format", "docker",
                      *docker_argv[2:])
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False,
                          env=store.env)
    print(f"buildah bud {docker_argv[docker_argv.index('--target') + 1]}: "
          f"{time.monotonic() - started:.1f}s")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done


@pytest.fixture(scope="module")
def exported(base_image: str, buildah_store: Buildah,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    tmp = tmp_path_factory.mktemp("export")
    values = cli_values(base_image, tmp / ".env")
    commands = docker.plan_commands("export", values, REPO, tmp / ".env", tmp / "dist")
    assert len(commands) == 1
    bud(buildah_store, commands[0])
    return tmp / "dist", values


def test_export_stage_holds_only_the_wheels_and_manifest(
        exported: tuple[Path, dict[str, str]]) -> None:
    dist, _ = exported
    names = sorted(p.name for p in dist.iterdir())
    wheels = [n for n in names if n.endswith(".whl")]
    assert [w.split("-")[0] for w in wheels] == ["tbsmoke_torch", "tbsmoke_vision"]
    # The local label comes from torchbuild's planner (--cpu), not from the fixture's setup.py.
    assert all("+cpu" in w for w in wheels), wheels
    # Besides the wheels: the manifest, the lock, the build report, and the dist's (empty)
    # publishing lock file.
    assert set(names) - set(wheels) <= {"torchbuild-manifest.json", "conda-lock.yml",
                                        "torchbuild-report.html", "torchbuild-report.png",
                                        ".torchbuild-dist.lock"}
    assert "torchbuild-manifest.json" in names


def test_manifest_describes_the_exported_wheels(exported: tuple[Path, dict[str, str]]) -> None:
    dist, _ = exported
    text = (dist / "torchbuild-manifest.json").read_text(encoding="utf-8")
    manifest = json.loads(text)
    for wheel in dist.glob("*.whl"):
        assert wheel.name in text
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        assert digest in text, f"{wheel.name}'s sha256 is not in the manifest"
    assert manifest, "empty manifest"


def test_cache_mounts_keep_the_git_mirrors_outside_the_image(
        exported: tuple[Path, dict[str, str]], buildah_store: Buildah) -> None:
    mirrors = buildah_store.cache_mounts / "torchbuild-git" / "git"
    found = sorted(p.name for p in mirrors.rglob("*.git") if p.is_dir())
    assert found == ["torch.git", "vision.git"], found


def test_train_image_installs_the_wheels_for_the_host_user(
        exported: tuple[Path, dict[str, str]], buildah_store: Buildah,
        tmp_path: Path) -> None:
    _, values = exported
    commands = docker.plan_commands("build", values, REPO, tmp_path / ".env", tmp_path / "d")
    bud(buildah_store, commands[0])
    image = values["TRAIN_IMAGE"]
    ctr = buildah_store.run("from", "--pull=never", image)
    assert ctr.returncode == 0, ctr.stderr
    cid = ctr.stdout.strip()
    probe = ("import os, tbsmoke_vision; print(tbsmoke_vision.NAME); print(os.getuid(), "
             "os.getgid()); print(open('/etc/timezone').read().strip())")
    ran = buildah_store.run("run", "--isolation", "chroot", cid, "--", "python", "-c", probe)
    buildah_store.run("rm", cid)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split("\n")[:3] == [
        "tbsmoke_vision on tbsmoke_torch", f"{UID} {GID}", TZ], ran.stdout
