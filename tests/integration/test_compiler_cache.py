"""Compiler caches for real: a tiny CMake/C++ project built from two fresh copies, through the
CMake launcher variables. The second copy must be served from the cache (ccache locally, sccache
through a real redis-server on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from conftest import base_env as cli_env
from resumerepos import cppext_args, make_cppext_server
from torchbuild import command
from torchbuild.build.compiler_cache import (
    CacheStats,
    CompilerCache,
    probe_cuda,
    select,
    start_server,
    stats,
    stop_server,
)

pytestmark = pytest.mark.integration

VENV_BIN = str(Path(sys.executable).parent)

CMAKELISTS = """\
cmake_minimum_required(VERSION 3.18)
project(tiny CXX)
add_library(tiny STATIC a.cpp b.cpp)
add_executable(hello main.cpp)
target_link_libraries(hello tiny)
"""
SOURCES = {
    "a.cpp": "#include <vector>\nint a(int n) { std::vector<int> v(n, 2); return v.size(); }\n",
    "b.cpp": "#include <string>\nint b() { return std::string(\"cache\").size(); }\n",
    "main.cpp": "#include <cstdio>\nint a(int); int b();\n"
                "int main() { std::printf(\"%d\\n\", a(3) + b()); return 0; }\n",
}


def _need(tool: str) -> None:
    if shutil.which(tool, path=f"{VENV_BIN}:{os.environ.get('PATH', '')}") is None:
        pytest.skip(f"{tool} is not installed (pip install {tool})")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(CMAKELISTS, encoding="utf-8")
    for name, text in SOURCES.items():
        (src / name).write_text(text, encoding="utf-8")
    return src


def base_env(tmp_path: Path) -> dict[str, str]:
    return {"PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path),
            "LANG": "C.UTF-8"}


def fresh_clone(project: Path, dest: Path) -> Path:
    shutil.copytree(project, dest)
    return dest


def build(tree: Path, cache: CompilerCache, env: Mapping[str, str]) -> CacheStats:
    """Configure + build ``tree`` through the cache; returns this build's hits/misses."""
    child = {**env, **cache.env(env)}
    command.run(["cmake", "-S", str(tree), "-B", str(tree / "build"), "-G", "Ninja",
                 "-DCMAKE_BUILD_TYPE=Release"], env=child)
    # Counted around the build only: configure's compiler checks compile in random scratch dirs.
    before = stats(cache, env)
    command.run(["cmake", "--build", str(tree / "build")], env=child)
    assert command.capture([str(tree / "build" / "hello")], env=child) == "8"
    return stats(cache, env) - before


def test_ccache_second_fresh_clone_hits(tmp_path: Path, project: Path) -> None:
    _need("ccache")
    _need("cmake")
    _need("ninja")
    env = base_env(tmp_path)
    cache = select("ccache", tmp_path / "cache", env, base_dir=tmp_path)
    assert cache is not None
    assert cache.kind == "ccache"
    first = build(fresh_clone(project, tmp_path / "clone1"), cache, env)
    second = build(fresh_clone(project, tmp_path / "clone2"), cache, env)
    assert first == CacheStats(hits=0, misses=3)
    assert second == CacheStats(hits=3, misses=0)
    assert second.hit_rate == 1.0
    assert (tmp_path / "cache" / "ccache").is_dir()


def test_auto_prefers_ccache_and_none_disables(tmp_path: Path) -> None:
    _need("ccache")
    env = base_env(tmp_path)
    auto = select("auto", tmp_path / "cache", env)
    assert auto is not None
    assert auto.kind == "ccache"
    assert select("none", tmp_path / "cache", env) is None


@pytest.fixture
def redis_port(tmp_path: Path) -> Iterator[int]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    pidfile = tmp_path / "redis.pid"
    command.run(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--daemonize", "yes", "--pidfile", str(pidfile),
                 "--dir", str(tmp_path)], env=base_env(tmp_path))
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail("redis-server did not start listening")
            time.sleep(0.05)
    yield port
    os.kill(int(pidfile.read_text(encoding="utf-8").strip()), 15)


def test_sccache_shared_redis_backend(tmp_path: Path, project: Path, redis_port: int) -> None:
    _need("sccache")
    _need("cmake")
    _need("ninja")
    env = {**base_env(tmp_path), "SCCACHE_REDIS_ENDPOINT": f"redis://127.0.0.1:{redis_port}"}
    # Two "machines": separate local cache dirs and servers, one shared Redis.
    results = []
    for n in (1, 2):
        cache = select("auto", tmp_path / f"cache{n}", env, base_dir=tmp_path)
        assert cache is not None
        assert cache.kind == "sccache"  # a shared backend is configured
        assert start_server(cache, env)
        try:
            results.append(build(fresh_clone(project, tmp_path / f"clone{n}"), cache, env))
        finally:
            stop_server(cache, env)
        assert not (tmp_path / f"cache{n}" / "sccache").exists()  # nothing went to local disk
    assert results[0] == CacheStats(hits=0, misses=3)
    assert results[1] == CacheStats(hits=3, misses=0)
    redis = pytest.importorskip("redis")
    assert redis.Redis(host="127.0.0.1", port=redis_port).dbsize() >= 3


def test_ccache_through_nvcc_probe(tmp_path: Path) -> None:
    nvcc = shutil.which("nvcc", path="/usr/local/cuda/bin:" + os.environ.get("PATH", ""))
    if nvcc is None:
        pytest.skip("nvcc is not installed")
    _need("ccache")
    env = base_env(tmp_path)
    cache = select("ccache", tmp_path / "cache", env)
    assert cache is not None
    assert probe_cuda(cache, nvcc, env, tmp_path / "probe")
    assert (tmp_path / "probe" / "probe.o").stat().st_size > 0


# --- the real-compile fixture through the whole pipeline --------------------------------------


def _pipeline_build(args: list[str], tmp: Path, extra_env: Mapping[str, str]) -> dict[str, object]:
    """Run torchbuild; return the build step's manifest record (duration, cache hit rate)."""
    env = {**cli_env(tmp), "PATH": "/usr/local/bin:/usr/bin:/bin", **extra_env}
    proc = subprocess.run([sys.executable, "-m", "torchbuild", *args], env=env, cwd=tmp,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    dist = Path(args[args.index("--dist") + 1])
    manifest = json.loads((dist / "torchbuild-manifest.json").read_text())
    return next(s for s in manifest["steps"] if s["id"] == "build-vision")


@pytest.mark.slow
@pytest.mark.parametrize("tool", ["ccache", "sccache-redis"])
def test_real_compile_fresh_clone_hits_the_cache(tool: str, torch_venv: Path, tmp_path: Path,
                                                 request: pytest.FixtureRequest) -> None:
    """The C++ torch operator built twice, each time from a fresh clone: the second build's
    compiles all come from the cache.

    ccache gets the second clone in another work dir (CCACHE_BASEDIR makes the paths relative).
    sccache hashes cpp_extension's absolute depfile paths, so it gets the fresh clone at the same
    path (the first work dir deleted), which is what a re-build after `--clean` looks like."""
    _need(tool.split("-")[0])
    extra: dict[str, str] = {}
    choice = "ccache"
    if tool == "sccache-redis":
        port = request.getfixturevalue("redis_port")
        extra["SCCACHE_REDIS_ENDPOINT"] = f"redis://127.0.0.1:{port}"
        choice = "auto"  # a shared backend is configured: auto must pick sccache
    root = tmp_path / "srv"
    make_cppext_server(root)
    records = []
    for n in (1, 2):
        work = tmp_path / (f"work{n}" if tool == "ccache" else "work")
        shutil.rmtree(work, ignore_errors=True)
        args = cppext_args(root, torch_venv, work, tmp_path / "cache", tmp_path / f"dist{n}",
                           "--compiler-cache", choice)
        records.append(_pipeline_build(args, tmp_path, extra))
    assert records[0]["cache_hit_rate"] == 0.0
    assert records[1]["cache_hit_rate"] == 1.0
    kind = "ccache" if tool == "ccache" else "sccache"
    if kind == "ccache":
        assert any((tmp_path / "cache" / "ccache").rglob("*"))
    else:
        assert not (tmp_path / "cache" / "sccache").exists()  # everything went to Redis
    print(f"\n{tool}: cold {records[0]['duration_s']:.1f}s, warm {records[1]['duration_s']:.1f}s")
