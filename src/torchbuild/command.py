"""The one subprocess helper. Nothing else in torchbuild imports ``subprocess``.

* argv lists only, never a shell;
* ``argv[0]`` is resolved against the PATH of the environment *being passed*, so a missing tool is a
  clear :class:`MissingToolError` instead of a ``FileNotFoundError`` traceback;
* output is streamed line by line to an optional log file, an optional echo callback and an optional
  ``on_line`` observer (progress parsing, failure diagnosis);
* on failure a :class:`CommandFailed` carries argv, exit code, log path and a digest of the lines
  that look like errors;
* Ctrl-C stops the child's whole process group and raises :class:`Interrupted`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from torchbuild.errors import CommandFailed, Interrupted, MissingToolError

LineSink = Callable[[str], None]

# Lines worth showing when a command fails, most specific first. The full log is always on disk.
_ERROR_LINE = re.compile(
    r"(error|fatal|FAILED|Killed|not found|No such file|undefined reference|undefined symbol"
    r"|Traceback|exception|cannot|unsupported|denied)",
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


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGINT the child's process group, then SIGTERM, then SIGKILL: compilers get a clean exit."""
    for sig, grace in ((signal.SIGINT, 5.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


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
) -> RunResult:
    """Run ``argv`` to completion, streaming its merged stdout/stderr.

    ``env`` is the *complete* environment of the child (callers build it as data); ``None`` means
    inherit ours. The log file is appended to, line-buffered, so a crash still leaves evidence.
    """
    argv = [str(a) for a in argv]
    program = resolve_program(argv[0], env)
    tail: deque[str] = deque(maxlen=tail_lines)
    started = time.monotonic()
    log = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
        log.write(f"+ {' '.join(argv)}\n")
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
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip("\n")
                tail.append(line)
                if log is not None:
                    log.write(line + "\n")
                if echo is not None:
                    echo(line)
                if on_line is not None:
                    on_line(line)
            returncode = proc.wait()
        except KeyboardInterrupt:
            _stop_group(proc)
            msg = f"stopped `{' '.join(argv)}`"
            raise Interrupted(msg, fix="re-run the same command to continue") from None
    finally:
        if log is not None:
            log.close()
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
