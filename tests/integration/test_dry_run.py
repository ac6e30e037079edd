"""``--dry-run`` exits with the code the real run would, for every check that needs no network and
no build, and still prints the plan; it writes nothing. Each case runs both, for real: a read-only
bind mount, a file where a directory belongs, a git mirror that is not there, a missing and a
tampered ``--lock``, a build process an earlier (killed) run left behind."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import dir_listing, fixture_args

pytestmark = pytest.mark.integration

# The goal is < 10 s (docs/reliability.md; about 2 s on an idle 2-core machine). The bound here
# allows for the whole suite running beside it on every core (load 10 on 2 cores was seen).
REFUSAL_S = 45.0

LOCK = """\
version: 1
metadata:
  content_hash: {{linux-64: x}}
  channels: [{{url: "{channel}", used_env_vars: []}}]
  platforms: [linux-64]
  sources: [environment.yml]
package:
- name: python
  version: 3.11.9
  manager: conda
  platform: linux-64
  dependencies: {{}}
  url: "{url}"
  hash: {{md5: {md5}, sha256: {sha256}}}
  build: h0_0
  category: main
  optional: false
"""


def _read_only(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "--bind", str(path), str(path)]).returncode != 0:
        pytest.skip("cannot bind-mount here (needs root)")
    subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)


def _tampered_lock(tmp: Path) -> list[str]:
    """A lock whose local package no longer has the bytes the lock recorded."""
    channel = tmp / "channel" / "linux-64"
    channel.mkdir(parents=True)
    archive = channel / "python-3.11.9-h0_0.conda"
    archive.write_bytes(b"original bytes")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    (tmp / "conda-lock.yml").write_text(LOCK.format(channel=(tmp / "channel").as_uri(),
                                                    url=archive.as_uri(), md5=md5, sha256=sha))
    archive.write_bytes(b"tampered bytes")
    return ["--env", "conda", "--lock", str(tmp / "conda-lock.yml")]


def _live_orphan(tmp: Path) -> list[str]:
    sleeper = subprocess.Popen(["sleep", "120"], start_new_session=True)
    stat = Path(f"/proc/{sleeper.pid}/stat").read_text().rsplit(")", 1)[1].split()
    (tmp / "work" / "running").mkdir(parents=True)
    (tmp / "work" / "running" / "build-torch.json").write_text(json.dumps(
        {"step": "build-torch", "pgid": sleeper.pid, "start_ticks": int(stat[19]),
         "argv": "sleep 120"}))
    (tmp / "sleeper.pid").write_text(str(sleeper.pid))
    return []


def _args_for(tmp: Path, root: Path, case: str) -> list[str]:
    setups: dict[str, Callable[[], list[str]]] = {
        "read-only dist": lambda: (_read_only(tmp / "dist"), [])[1],
        "dist is a file": lambda: ((tmp / "dist").write_text("x"), [])[1],
        "dist under a file": lambda: ((tmp / "afile").write_text("x"),
                                      ["--dist", str(tmp / "afile" / "dist")])[1],
        "read-only work dir": lambda: (_read_only(tmp / "work"), [])[1],
        "missing git mirror": lambda: ["--git-mirror", (tmp / "no-such-mirror").as_uri()],
        "orphan still running": lambda: _live_orphan(tmp),
    }
    if case.endswith("--lock"):
        # The conda backend needs the real recipes (the fixture ones have no conda.toml); the
        # lock is refused before anything is cloned, so no fixture git server is needed.
        lock = _tampered_lock(tmp) if case.startswith("tampered") else [
            "--env", "conda", "--lock", str(tmp / "nope.yml")]
        return ["--cpu", "--no-verify", "--work-dir", str(tmp / "work"), "--cache-dir",
                str(tmp / "cache"), "--dist", str(tmp / "dist"), *lock]
    return fixture_args(root, tmp, "--env", "venv", "--cpu", "--no-verify", "--vision", "none",
                        "--audio", "none", *setups[case]())


def _tree(tmp: Path) -> list[str]:
    """Everything under the test dir but the user cache (XDG_CACHE_HOME), where probes keep
    their results: the work dir, --dist and --cache-dir must stay as they were."""
    return sorted(str(p) for p in tmp.rglob("*") if not p.is_relative_to(tmp / "xdg-cache"))


CASES = [("read-only dist", 15), ("dist is a file", 15), ("dist under a file", 15),
         ("read-only work dir", 5), ("missing git mirror", 11), ("missing --lock", 8),
         ("tampered --lock", 10), ("orphan still running", 17)]


@pytest.mark.parametrize(("case", "code"), CASES, ids=[c for c, _ in CASES])
def test_dry_run_exits_like_the_real_run(mirror_root, tmp_path, cli, case, code):
    root, _ = mirror_root
    args = _args_for(tmp_path, root, case)
    try:
        before = _tree(tmp_path)
        dry = cli(*args, "--dry-run")
        assert _tree(tmp_path) == before, "the dry run wrote"
        assert "steps:" in dry.stdout                          # the plan is still printed
        assert dry.returncode == code, dry.stderr
        assert "Traceback" not in dry.stderr and "fix:" in dry.stderr

        started = time.monotonic()
        real = cli(*args)
        assert real.returncode == code, real.stderr
        assert time.monotonic() - started < REFUSAL_S
        assert "Traceback" not in real.stderr
        assert not (tmp_path / "work" / "src").exists()      # refused before any clone
        if (tmp_path / "dist").is_dir():
            assert dir_listing(tmp_path / "dist") == []
    finally:
        for mount in (tmp_path / "dist", tmp_path / "work"):
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        if (tmp_path / "sleeper.pid").exists():
            pid = int((tmp_path / "sleeper.pid").read_text())
            subprocess.run(["kill", f"-{signal.SIGKILL.value}", str(pid)], capture_output=True)


def test_refused_request_dry_run_exits_like_the_real_run(cli):
    """A request-level refusal (no CUDA 13 toolkit compiles sm_35): the same code both ways."""
    dry = cli("--cc", "3.5", "--cuda", "13.0", "--dry-run")
    real = cli("--cc", "3.5", "--cuda", "13.0")
    assert dry.returncode == real.returncode != 0, (dry.stderr, real.stderr)


def test_plain_http_sources_are_warned_about(cli):
    proc = cli("--cc", "8.6", "--channel", "http://conda.example.invalid/cf", "--git-mirror",
               "http://git.example.invalid", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert "http://conda.example.invalid/cf is plain http://" in out
    assert "--git-mirror http://git.example.invalid is unencrypted" in out
