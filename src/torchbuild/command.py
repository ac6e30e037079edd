"""The one subprocess helper. Nothing else in torchbuild imports ``subprocess``.

* argv lists only, never a shell;
* ``argv[0]`` is resolved against the PATH of the environment *being passed*, so a missing tool is a
  clear :class:`MissingToolError` instead of a ``FileNotFoundError`` traceback;
* output is streamed line by line to an optional log file, an optional echo callback and an optional
  ``on_line`` observer (progress parsing, failure diagnosis);
* on failure a :class:`CommandFailed` carries argv, exit code, log path and a digest of the lines
  that look like errors;
* Ctrl-C, SIGTERM and SIGHUP stop the child's whole process group -- every member, not just the
  direct child -- and raise :class:`Interrupted` with the signal's exit code (130/143/129);
* every running child is registered, so ``stop_all`` can stop the ones started by worker threads
  too (parallel clones), and ``on_spawn`` lets a caller record a step's process group on disk.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar

from torchbuild.errors import CommandFailed, MissingToolError, interrupted

LineSink = Callable[[str], None]
T = TypeVar("T")
R = TypeVar("R")

# Children started by run(), by pid (= their process group: each runs in its own session).
_RUNNING: dict[int, subprocess.Popen[str]] = {}
_RUNNING_LOCK = threading.Lock()

# Lines worth showing when a command fails, most specific first. The full log is always on disk.
_ERROR_LINE = re.compile(
    r"(error|fatal|FAILED|Killed|not found|No such file|undefined reference|undefined symbol"
    r"|Traceback|exception|cannot|unsupported|denied|No space left|Errno 28|Disk quota)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class RunResult:
    argv: tuple[str, ...]
    returncode: int
    duration_s: float
    output_tail: tuple[str, ...]


def resolve_program(program: str, env: Mapping[str, str] | None) -> str:
    """Return an absolute path for ``program`` using the PATH of ``env`` (or ours)."""
    if os.sep in program:
        if not Path(program).exists():
            msg = f"{program} does not exist"
            raise MissingToolError(msg, fix="check the path, or install the tool")
        return program
    path = (env or os.environ).get("PATH", os.defpath)
    found = shutil.which(program, path=path)
    if found is None:
        msg = f"`{program}` was not found on PATH ({path})"
        raise MissingToolError(msg, fix=f"install {program} or put it on PATH")
    return found


def error_digest(lines: Sequence[str], limit: int = 12) -> list[str]:
    """The first lines that look like errors (the first real error beats the last noise)."""
    hits = [ln for ln in lines if _ERROR_LINE.search(ln)]
    if hits:
        return hits[:limit]
    return list(lines[-limit:])


def proc_stat(pid: int) -> tuple[int, int] | None:
    """(process group, start time in clock ticks since boot) of a live ``pid``, from /proc; None
    when it is gone or a zombie. The start time tells a recycled pid from the process we knew."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    # Field 2 (comm) may contain spaces and parentheses: split after its closing parenthesis.
    fields = text[text.rindex(")") + 2:].split()
    if not fields or fields[0] == "Z":
        return None
    return int(fields[2]), int(fields[19])


def free_mb(path: Path) -> float:
    """Free space (MB) on the disk holding ``path`` or its nearest existing parent."""
    for candidate in [path, *path.parents]:
        try:
            return shutil.disk_usage(candidate).free / 1e6
        except OSError:
            continue
    return 0.0


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(pgid: int, *, reap: Callable[[float], bool] | None = None,
               grace: float = 5.0) -> None:
    """SIGINT the process group, then SIGTERM, then SIGKILL, until *no member* is left.

    Waiting for the direct child is not enough: ninja's compilers or pip's build backend may
    outlive it by a second or two, still writing into the build tree. ``reap`` waits for the
    direct child (ours to reap) up to the given seconds.
    """
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        end = time.monotonic() + grace
        while time.monotonic() < end:
            if reap is not None:
                reap(0.05)
            else:
                time.sleep(0.05)
            if not _group_alive(pgid):
                return


def _reaper(proc: subprocess.Popen[str]) -> Callable[[float], bool]:
    def reap(timeout: float) -> bool:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    return reap


def _stop_group(proc: subprocess.Popen[str]) -> None:
    stop_group(proc.pid, reap=_reaper(proc))


def stop_all() -> None:
    """Stop every child still running (worker threads' clones included): an interrupted run must
    leave no process behind."""
    with _RUNNING_LOCK:
        procs = list(_RUNNING.values())
    for proc in procs:
        _stop_group(proc)


def map_parallel(fn: Callable[[T], R], items: Iterable[T], *, workers: int = 4) -> list[R]:
    """``[fn(x) for x in items]`` on a few threads. On Ctrl-C/SIGTERM the children of every
    thread are stopped first, so the pool's shutdown does not wait for a clone to finish."""
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        return list(pool.map(fn, items))
    except BaseException:
        stop_all()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP for a few milliseconds of work that must not be cut in half
    (the renames that publish a build into --dist). Main thread only."""
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _open_log(log_path: Path | None, argv: Sequence[str]) -> TextIO | None:
    if log_path is None:
        return None
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
        log.write(f"+ {' '.join(argv)}\n")
    except OSError:
        return None     # a full or read-only disk: run without a log, keep the output tail
    return log


def _log_line(log: TextIO, line: str) -> TextIO | None:
    """Append a line; on a full disk stop logging (the tail in memory still carries the error)
    instead of abandoning the child mid-output."""
    try:
        log.write(line + "\n")
    except OSError:
        _close_log(log)
        return None
    return log


def _close_log(log: TextIO) -> None:
    with suppress(OSError):
        log.close()


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    log_path: Path | None = None,
    echo: LineSink | None = None,
    on_line: LineSink | None = None,
    check: bool = True,
    tail_lines: int = 400,
    on_spawn: Callable[[int], None] | None = None,
) -> RunResult:
    """Run ``argv`` to completion, streaming its merged stdout/stderr.

    ``env`` is the *complete* environment of the child (callers build it as data); ``None`` means
    inherit ours. The log file is appended to, line-buffered, so a crash still leaves evidence.
    ``on_spawn(pid)`` is called once the child runs (its pid is its process group id).
    """
    argv = [str(a) for a in argv]
    program = resolve_program(argv[0], env)
    tail: deque[str] = deque(maxlen=tail_lines)
    started = time.monotonic()
    log = _open_log(log_path, argv)
    try:
        proc = subprocess.Popen(
            [program, *argv[1:]],
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            # Own process group: Ctrl-C is handled here, and we stop the whole build tree.
            start_new_session=True,
        )
        with _RUNNING_LOCK:
            _RUNNING[proc.pid] = proc
        try:
            if on_spawn is not None:
                on_spawn(proc.pid)
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip("\n")
                tail.append(line)
                if log is not None:
                    log = _log_line(log, line)
                if echo is not None:
                    echo(line)
                if on_line is not None:
                    on_line(line)
            returncode = proc.wait()
        except KeyboardInterrupt as exc:
            _stop_group(proc)
            raise interrupted(exc, f"stopped `{' '.join(argv)}`") from None
        except BaseException:
            _stop_group(proc)    # whatever failed here, the child must not run on unwatched
            raise
        finally:
            with _RUNNING_LOCK:
                _RUNNING.pop(proc.pid, None)
    finally:
        if log is not None:
            _close_log(log)
    result = RunResult(tuple(argv), returncode, time.monotonic() - started, tuple(tail))
    if check and returncode != 0:
        raise CommandFailed(
            argv,
            returncode,
            log_path=log_path,
            digest=error_digest(list(tail)),
            cwd=Path(cwd) if cwd else None,
        )
    return result


def capture(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    timeout: float | None = 60.0,
    check: bool = True,
) -> str:
    """Run a short probe and return its stdout (stripped). stderr goes into the error digest."""
    argv = [str(a) for a in argv]
    program = resolve_program(argv[0], env)
    try:
        proc = subprocess.run(
            [program, *argv[1:]],
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CommandFailed(argv, -1, digest=[f"timed out after {timeout} s"]) from None
    if check and proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).splitlines()
        raise CommandFailed(argv, proc.returncode, digest=error_digest(lines),
                            cwd=Path(cwd) if cwd else None)
    return proc.stdout.strip()


def probe(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
          timeout: float | None = 20.0) -> tuple[int, str, str] | None:
    """Run a probe that may fail: (rc, stdout, stderr), or None if the tool is absent."""
    argv = [str(a) for a in argv]
    try:
        program = resolve_program(argv[0], env)
    except MissingToolError:
        return None
    try:
        proc = subprocess.run(
            [program, *argv[1:]],
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except (subprocess.TimeoutExpired, OSError):
        return None
    return proc.returncode, proc.stdout, proc.stderr
