"""One cache, one dist, several runs: real concurrent builds, another run's staging dir, a stuck
publisher holding the dist lock, a refused run's work-dir lock, and a mirror whose pack is damaged
in place (which its hard-linked checkout shares)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import base_env, dir_listing, fixture_args, make_venv

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def build_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_venv(tmp_path_factory.mktemp("distvenv") / "venv", "setuptools", "wheel")


def _args(root: Path, tmp: Path, python: Path, *extra: str, work: str = "work") -> list[str]:
    args = fixture_args(root, tmp, "--env", "existing", "--python", str(python), "--cpu",
                        "--no-verify", "--vision", "none", "--audio", "none", *extra)
    args[args.index("--work-dir") + 1] = str(tmp / work)
    return args


def _popen(args: list[str], tmp: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "torchbuild", *args], env=base_env(tmp),
                            cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _start_ticks(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def _manifest_matches_wheels(dist: Path) -> None:
    manifest = json.loads((dist / "torchbuild-manifest.json").read_text())
    for wheel in manifest["wheels"]:
        digest = subprocess.run(["sha256sum", str(dist / wheel["file"])], capture_output=True,
                                text=True, check=True).stdout.split()[0]
        assert digest == wheel["sha256"]


def test_two_concurrent_runs_share_one_dist(mirror_root, tmp_path, build_python):
    root, _ = mirror_root
    a = _popen(_args(root, tmp_path, build_python, work="work-a"), tmp_path)
    b = _popen(_args(root, tmp_path, build_python, work="work-b"), tmp_path)
    out_a, err_a = a.communicate(timeout=600)
    out_b, err_b = b.communicate(timeout=600)
    assert a.returncode == 0, err_a
    assert b.returncode == 0, err_b
    _manifest_matches_wheels(tmp_path / "dist")
    assert not [n for n in dir_listing(tmp_path / "dist") if n.startswith(".torchbuild-staging")]


def test_only_dead_runs_staging_dirs_are_cleaned(mirror_root, tmp_path, build_python, cli):
    root, _ = mirror_root
    dist = tmp_path / "dist"
    dist.mkdir()
    host = socket.gethostname()
    alive = subprocess.Popen(["sleep", "300"])           # "another run", still publishing
    dead = subprocess.Popen(["true"])
    dead.wait()                                          # a run killed mid-publish
    try:
        live_dir = dist / f".torchbuild-staging-{host}-{alive.pid}-{_start_ticks(alive.pid)}-aa"
        dead_dir = dist / f".torchbuild-staging-{host}-{dead.pid}-1-bb"
        for d in (live_dir, dead_dir):
            d.mkdir()
            (d / "torch-2.99.0-py3-none-any.whl").write_text("half-copied")
        proc = cli(*_args(root, tmp_path, build_python))
        assert proc.returncode == 0, proc.stderr
        assert live_dir.is_dir(), "a live run's staging dir was deleted under it"
        assert not dead_dir.exists()
    finally:
        alive.kill()
        alive.wait()


HOLD_LOCK = """
import filelock, sys, time
lock = filelock.FileLock(sys.argv[1]); lock.acquire()
open(sys.argv[2], 'w').close(); time.sleep(300)
"""


def test_publishing_waits_for_the_dist_lock_then_exits_17(mirror_root, tmp_path, build_python,
                                                           cli):
    root, _ = mirror_root
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "old.whl").write_text("from an earlier build")
    held = tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK,
                               str(dist / ".torchbuild-dist.lock"), str(held)])
    try:
        while not held.exists():
            time.sleep(0.05)
        proc = cli(*_args(root, tmp_path, build_python))
        assert proc.returncode == 17, proc.stderr
        assert "publishing into --dist" in proc.stderr and "Traceback" not in proc.stderr
        assert sorted(n for n in dir_listing(dist) if not n.startswith(".")) == ["old.whl"]
        assert not [n for n in dir_listing(dist) if n.startswith(".torchbuild-staging")]
    finally:
        holder.kill()
        holder.wait()
    # The wheel waits in the work dir: the same command now publishes it without rebuilding.
    again = cli(*_args(root, tmp_path, build_python))
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout
    _manifest_matches_wheels(dist)


def test_refused_run_leaves_no_lock_owner(mirror_root, tmp_path, build_python, cli):
    """A preflight refusal (not enough disk for the work dir: a 16 MiB tmpfs) must not leave the
    work-dir lock's owner file behind."""
    root, _ = mirror_root
    work = tmp_path / "work"
    work.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(work)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        proc = cli(*_args(root, tmp_path, build_python))
        assert proc.returncode == 5, proc.stderr
        assert "GB free at" in proc.stderr and "Traceback" not in proc.stderr
        assert not (work / ".torchbuild.lock.owner").exists()
    finally:
        subprocess.run(["umount", str(work)], check=True)


def _damage_in_place(pack: Path) -> None:
    """Overwrite a pack's object data where it lies (a bad disk block): every hard link to the
    file -- the checkout's clone -- sees the damage too."""
    size = pack.stat().st_size
    with open(pack, "r+b") as fh:
        fh.seek(12)
        fh.write(os.urandom(size - 12 - 20))


def test_damaged_mirror_pack_also_reclones_the_checkout(mirror_root, tmp_path, build_python, cli):
    root, _ = mirror_root
    args = _args(root, tmp_path, build_python)
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    mirror = tmp_path / "cache" / "git" / "git.example.invalid" / "pytorch" / "pytorch.git"
    checkout = tmp_path / "work" / "src" / "torch"
    packs = list((mirror / "objects" / "pack").glob("*.pack"))
    assert packs
    for pack in packs:
        assert pack.stat().st_nlink > 1, "the checkout is expected to hard-link the mirror's pack"
        _damage_in_place(pack)
    second = cli(*args)
    assert second.returncode == 0, second.stderr
    assert "is corrupted" in second.stderr
    for repo in (mirror, checkout):
        fsck = subprocess.run(["git", "-C", str(repo), "fsck", "--connectivity-only"],
                              capture_output=True, text=True)
        assert fsck.returncode == 0, f"{repo}: {fsck.stderr}"
