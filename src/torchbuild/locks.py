"""Cross-process locks on the shared cache and the work dir, so two runs never corrupt each other.

``filelock`` uses ``flock``: the kernel drops the lock when its holder dies, so a crashed run never
leaves a lock behind. Next to each lock an ``.owner`` file records who holds it, which turns a
timeout into "busy: pid 4242 (python -m torchbuild --cc 8.6) holds it" instead of a bare hang.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import filelock

from torchbuild.errors import LockTimeoutError, PreflightError

DEFAULT_TIMEOUT_S = 10.0


def _owner_path(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name + ".owner")


def _holder(lock_path: Path) -> str:
    try:
        data = json.loads(_owner_path(lock_path).read_text(encoding="utf-8"))
        return f"pid {data['pid']} ({data['cmd']}, since {data['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"  # it took the lock but has not written its name yet


def _write_owner(lock_path: Path, purpose: str) -> None:
    owner = {"pid": os.getpid(), "cmd": " ".join(sys.argv) or "python", "purpose": purpose,
             "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _owner_path(lock_path).write_text(json.dumps(owner), encoding="utf-8")


BUSY_FIX = "wait for that run to finish (or stop it), or use another --work-dir"


def _acquire(lock_path: Path, purpose: str, timeout: float,
             busy_fix: str = BUSY_FIX) -> filelock.FileLock:
    lock = filelock.FileLock(str(lock_path), is_singleton=False)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire(timeout=timeout)
        _write_owner(lock_path, purpose)
    except filelock.Timeout:    # a TimeoutError, i.e. an OSError: caught first
        who = _holder(lock_path)
        msg = f"{purpose} is in use by {who}; waited {timeout:.0f} s for {lock_path}"
        raise LockTimeoutError(msg, fix=busy_fix) from None
    except OSError as exc:
        # A read-only or full --work-dir / --cache-dir: the first write of a run is its lock.
        lock.release()
        msg = (f"cannot write the lock for {purpose} at {lock_path}: "
               f"{exc.strerror or exc}")
        raise PreflightError(msg, fix=f"make {lock_path.parent} writable (read-only mount? full "
                             "disk?), or choose another --work-dir / --cache-dir") from None
    return lock


@contextmanager
def hold(lock_path: Path, *, purpose: str, timeout: float = DEFAULT_TIMEOUT_S,
         busy_fix: str = BUSY_FIX) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` for the ``with`` block.

    Waits up to ``timeout`` seconds (``-1`` waits forever), then raises LockTimeoutError naming the
    holder. ``purpose`` says what is protected ("mirror pytorch", "work dir /w").
    """
    lock = _acquire(lock_path, purpose, timeout, busy_fix)
    try:
        yield
    finally:
        _owner_path(lock_path).unlink(missing_ok=True)
        lock.release()


# Locks this process keeps until it exits (the kernel releases them then, also on a crash).
_CLAIMED: dict[Path, filelock.FileLock] = {}


def claim(lock_path: Path, *, purpose: str, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """Take ``lock_path`` for the rest of this process; a no-op if this process already has it.

    For the work dir: the sources stage and the build stage must be one critical section (a second
    run checking out another tag under a running compile is exactly the corruption to avoid), and
    each stage claims it without having to know whether the other already did.
    """
    key = lock_path.absolute()
    if key not in _CLAIMED:
        _CLAIMED[key] = _acquire(lock_path, purpose, timeout)


@contextmanager
def claimed(lock_path: Path, *, purpose: str,
            timeout: float = DEFAULT_TIMEOUT_S) -> Iterator[None]:
    """``claim`` for the ``with`` block: nested ``claim`` calls are no-ops, and on every way out
    (error, Ctrl-C, SIGTERM) the lock is released and its owner file removed, so a refused or
    interrupted run leaves no stale owner behind."""
    key = lock_path.absolute()
    if key in _CLAIMED:
        yield
        return
    _CLAIMED[key] = _acquire(lock_path, purpose, timeout)
    try:
        yield
    finally:
        lock = _CLAIMED.pop(key)
        _owner_path(lock_path).unlink(missing_ok=True)
        lock.release()


def mirror_lock_path(cache_dir: Path, name: str) -> Path:
    """One lock per mirror: two runs may update *different* mirrors at the same time."""
    return cache_dir / "locks" / f"mirror-{name}.lock"


def work_dir_lock_path(work_dir: Path) -> Path:
    return work_dir / ".torchbuild.lock"
