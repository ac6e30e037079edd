"""Build processes that outlived the run that started them.

Each build step runs in its own process group (command.run), so Ctrl-C reaches torchbuild alone
and torchbuild stops the whole group. A ``kill -9`` of torchbuild (or an OOM kill of it) cannot be
handled: the step's compilers keep running, detached. A re-run in the same work dir must then not
build in the same tree under them.

While a step runs, ``<work dir>/running/<step>.json`` records its process group (pid, start time,
argv). It is removed when the step's command returns, however it returns; one left behind names a
group that may still be alive. Liveness is read from ``/proc`` (no ``ps``): a group is the set of
processes whose pgrp is the recorded id, started no earlier than the recorded leader, so a
recycled pid is not mistaken for the old build.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torchbuild.command import proc_stat, stop_group
from torchbuild.errors import LockTimeoutError
from torchbuild.logger import log


@dataclass(frozen=True)
class Orphan:
    step: str
    pgid: int
    pids: tuple[int, ...]
    argv: str
    record: Path


def running_dir(work_dir: Path) -> Path:
    return work_dir / "running"


def record(work_dir: Path, step_id: str, pid: int, argv: Sequence[str]) -> Path:
    """Write the running step's process group (its leader is ``pid``)."""
    stat = proc_stat(pid)
    path = running_dir(work_dir) / f"{step_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"step": step_id, "pgid": pid, "start_ticks": stat[1] if stat else 0,
            "argv": " ".join(argv), "torchbuild_pid": os.getpid(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)
    return path


def forget(work_dir: Path, step_id: str) -> None:
    (running_dir(work_dir) / f"{step_id}.json").unlink(missing_ok=True)


def _members(pgid: int, not_before: int) -> tuple[int, ...]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = proc_stat(int(entry.name))
        if stat is not None and stat[0] == pgid and stat[1] >= not_before:
            pids.append(int(entry.name))
    return tuple(sorted(pids))


def survivors(work_dir: Path) -> list[Orphan]:
    """Process groups recorded in ``work_dir`` that still have live members."""
    found = []
    directory = running_dir(work_dir)
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            pgid, ticks = int(data["pgid"]), int(data.get("start_ticks", 0))
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)     # half-written by a run killed mid-write
            continue
        pids = _members(pgid, ticks)
        if pids:
            found.append(Orphan(str(data.get("step", path.stem)), pgid, pids,
                                str(data.get("argv", "")), path))
        else:
            path.unlink(missing_ok=True)     # the group is gone: the record is stale
    return found


def _describe(orphans: Sequence[Orphan]) -> str:
    return "; ".join(f"step {o.step}: process group {o.pgid}, pids "
                     f"{' '.join(map(str, o.pids))} (`{o.argv[:80]}`)" for o in orphans)


def check(work_dir: Path, *, stop: bool) -> None:
    """Refuse to build under a live orphan (exit 17), or with ``stop`` (``--clean``) stop it."""
    orphans = survivors(work_dir)
    if not orphans:
        return
    if not stop:
        kills = " ".join(f"kill -TERM -- -{o.pgid}" for o in orphans)
        msg = (f"an earlier run in {work_dir} was killed, but its build processes are still "
               f"running there: {_describe(orphans)}")
        raise LockTimeoutError(msg, fix=f"stop them (`{kills}`), then re-run the same command "
                               "(the step continues in its tree); or add --clean, which stops "
                               "them and starts the build over")
    for o in orphans:
        log.warn(f"--clean: stopping the processes an earlier run left running: "
                 f"{_describe([o])}")
        stop_group(o.pgid, grace=3.0)
        left = _members(o.pgid, 0)
        if left:
            msg = f"--clean could not stop pids {' '.join(map(str, left))} (process group {o.pgid})"
            raise LockTimeoutError(msg, fix=f"stop them as their owner or root (`kill -KILL -- "
                                   f"-{o.pgid}`), then re-run")
        o.record.unlink(missing_ok=True)
