"""The output directory: wheels + ``torchbuild-manifest.json`` (+ the env lock), written atomically.

Everything is first written into a hidden staging directory inside ``--dist`` (same filesystem),
then renamed into place file by file; an interrupted or failed run leaves no partial wheel or
manifest behind.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import secrets
import shutil
import socket
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torchbuild import __version__, locks
from torchbuild.build import deps
from torchbuild.build.sources import Checkout
from torchbuild.build.steps import BuildResult
from torchbuild.command import proc_stat, signals_deferred
from torchbuild.digest import sha256_file
from torchbuild.env.buildenv import BuildEnv
from torchbuild.errors import ArtifactError
from torchbuild.logger import log
from torchbuild.options import Options
from torchbuild.plan import Plan

MANIFEST_NAME = "torchbuild-manifest.json"
MANIFEST_SCHEMA = 1
_STAGING = ".torchbuild-staging-"




# Publishing is a few renames; a lock held longer than this belongs to a stuck run.
DIST_LOCK_TIMEOUT_S = 10.0
DIST_LOCK_NAME = ".torchbuild-dist.lock"
DIST_BUSY_FIX = ("that process is stuck publishing: stop it, then re-run the same command (the "
                 "wheels are kept in the work dir and published without rebuilding); or pass "
                 "another --dist")


def _dist_problem(dist: Path, exc: OSError) -> ArtifactError:
    if dist.exists() and not dist.is_dir():
        msg = f"--dist {dist} is a file, not a directory"
        return ArtifactError(msg, fix=f"pass a directory as --dist (e.g. --dist {dist}.d), or "
                             "move the file away")
    parent = next((p for p in [dist, *dist.parents] if p.exists()), dist)
    if not parent.is_dir():
        msg = f"--dist {dist} cannot be created: {parent} is a file"
        return ArtifactError(msg, fix="pass a --dist whose parents are directories")
    if exc.errno == errno.ENOSPC:
        free = shutil.disk_usage(parent).free / 1e6
        msg = f"--dist {dist} is on a full disk ({free:.0f} MB free)"
        return ArtifactError(msg, fix="free space there, or pass another --dist; the built "
                             "wheels stay in the work dir, and re-running the same command "
                             "publishes them without rebuilding")
    msg = f"--dist {dist} is not writable ({exc.strerror or exc})"
    return ArtifactError(msg, fix="choose another --dist directory, or fix its permissions")


def dist_problem(dist: Path) -> ArtifactError | None:
    """Why ``--dist`` cannot receive the wheels, or None; writes (and removes) one probe file."""
    try:
        dist.mkdir(parents=True, exist_ok=True)
        probe = dist / f"{_STAGING}probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        return _dist_problem(dist, exc)
    return None


def dist_problem_readonly(dist: Path) -> ArtifactError | None:
    """The same verdict without writing anything (``--dry-run``)."""
    existing = next((p for p in [dist, *dist.parents] if p.exists()), None)
    if existing is None:
        return None
    if not existing.is_dir():
        return _dist_problem(dist, OSError(errno.ENOTDIR, "Not a directory"))
    if not os.access(existing, os.W_OK | os.X_OK) or _read_only_mount(existing):
        return _dist_problem(dist, OSError(errno.EROFS, "not writable"))
    return None


def _read_only_mount(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def check_dist_writable(dist: Path) -> None:
    """Fail in seconds, before any build, if ``--dist`` cannot receive the wheels."""
    problem = dist_problem(dist)
    if problem is not None:
        raise problem
    _remove_dead_staging(dist)


def _staging_name() -> str:
    """Unique per run: host, pid, the pid's start time (a recycled pid is another process)."""
    stat = proc_stat(os.getpid())
    ticks = stat[1] if stat else 0
    return f"{_STAGING}{socket.gethostname()}-{os.getpid()}-{ticks}-{secrets.token_hex(4)}"


def _provably_dead(name: str) -> bool:
    """Is the run that made staging dir ``name`` gone? Only provable for a run on this host."""
    try:
        host, pid, ticks, _ = name[len(_STAGING):].rsplit("-", 3)
        pid_n, ticks_n = int(pid), int(ticks)
    except ValueError:
        return False           # not ours to judge (another naming scheme, another tool)
    if host != socket.gethostname():
        return False           # a shared dist on NFS: that run may be alive on its own host
    stat = proc_stat(pid_n)
    return stat is None or stat[1] != ticks_n


def _remove_dead_staging(dist: Path) -> None:
    """Staging dirs left by runs killed mid-publish; never one of a run still publishing."""
    for stale in dist.glob(f"{_STAGING}*"):
        if stale.is_dir() and _provably_dead(stale.name):
            shutil.rmtree(stale, ignore_errors=True)


def package_hash(backend: str) -> str | None:
    """How the env's packages were checked against the lock: rattler checks sha256; the
    @EXPLICIT list a user's conda/mamba installs (--env conda-exe) carries md5 only."""
    return {"conda": "sha256", "conda-exe": "md5 (the @EXPLICIT list carries no sha256)"}.get(
        backend)


def options_json(options: Options) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, origin in options.origin.items():
        value = getattr(options, name)
        out[name] = {"value": value if not isinstance(value, Path) else str(value),
                     "origin": origin}
    result: dict[str, Any] = json.loads(json.dumps(out, default=str))
    return result


def _sources_json(checkouts: Mapping[str, Checkout]) -> dict[str, Any]:
    return {name: {"url": c.url, "tag": c.tag, "commit": c.commit,
                   "submodules": dict(c.submodules)} for name, c in checkouts.items()}


def write_stop_report(plan: Plan, options: Options, stage: str,
                      checkouts: Mapping[str, Checkout],
                      result: BuildResult | None = None) -> Path:
    """``--stop-after``: what the run did, in the work dir (``--dist`` only ever gets finished
    wheels): the sources with their submodule commits and the steps with the configure audit."""
    report = {
        "schema_version": MANIFEST_SCHEMA,
        "tool": {"name": "torchbuild", "version": __version__},
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "stopped_after": stage,
        "options": options_json(options),
        "sources": _sources_json(checkouts),
        "steps": [asdict(r) for r in result.records] if result else [],
    }
    path = plan.work_dir / "torchbuild-report.json"
    tmp = path.with_suffix(".json.partial")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def build_manifest(plan: Plan, options: Options, result: BuildResult, checkouts: Mapping[str,
                   Checkout], build_env: BuildEnv, wheels: Sequence[Path],
                   verify_report: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {
        "schema_version": MANIFEST_SCHEMA,
        "tool": {"name": "torchbuild", "version": __version__},
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "options": options_json(options),
        "recipe": {"release": asdict(plan.release), "components": [asdict(c) for c in
                                                                    plan.components]},
        "sources": _sources_json(checkouts),
        "environment": {"backend": build_env.backend, "prefix": str(build_env.prefix),
                        "python": str(build_env.python),
                        "python_version": plan.environment.python_version,
                        "lock": build_env.lock_path.name if build_env.lock_path else None,
                        "lock_sha256": build_env.lock_sha256,
                        "package_hash": package_hash(build_env.backend),
                        "pip_requirements": list(plan.environment.pip_requirements),
                        "conda_specs": list(plan.environment.conda_specs)},
        "toolchain": dict(build_env.tools),
        # What each deps step installed: name, version, file, sha256 (pip's --report).
        "deps": deps.manifest_section(plan.work_dir, [s.component for s in plan.steps
                                                      if deps.is_requirements_step(s)]),
        "steps": [asdict(r) for r in result.records],
        "wheels": [{"file": w.name, "sha256": sha256_file(w), "size": w.stat().st_size}
                   for w in wheels],
        "verify": dict(verify_report) if verify_report else None,
        "plan": plan.to_json(),
    }


def publish(dist: Path, wheels: Sequence[Path], manifest: Mapping[str, Any],
            extra_files: Sequence[Path] = ()) -> list[Path]:
    """Copy wheels (+extra files) and write the manifest into ``dist`` atomically.

    The copies go into this run's own staging dir (slow: GBs); the renames into place are done
    under the dist lock (fast), so two runs publishing into one dist never interleave their wheels
    and manifests, and signals wait the few milliseconds the renames take.
    """
    check_dist_writable(dist)
    staging = dist / _staging_name()
    try:
        staging.mkdir()
        for path in [*wheels, *extra_files]:
            shutil.copy2(path, staging / path.name)
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        # Wheels first, manifest last: a manifest on disk always describes wheels on disk.
        names = [p.name for p in [*wheels, *extra_files]] + [MANIFEST_NAME]
        with locks.hold(dist / DIST_LOCK_NAME, purpose=f"publishing into --dist {dist}",
                        timeout=DIST_LOCK_TIMEOUT_S, busy_fix=DIST_BUSY_FIX), signals_deferred():
            for name in names:
                os.replace(staging / name, dist / name)
        return [dist / name for name in names]
    except OSError as exc:
        raise _dist_problem(dist, exc) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def print_summary(result: BuildResult, manifest: Mapping[str, Any], dist: Path) -> None:
    rows = [[r.id, r.status, f"{r.duration_s:.1f}s" if r.status != "skipped"
             else f"(built in {r.duration_s:.1f}s)",
             f"{100 * r.cache_hit_rate:.0f}%" if r.cache_hit_rate is not None else "-"]
            for r in result.records]
    if rows:
        log.table(rows, ["step", "status", "time", "cache hits"])
    wheel_rows = [[w["file"], f"{w['size'] / 1e6:.1f} MB", w["sha256"]]
                  for w in manifest["wheels"]]
    if wheel_rows:
        log.table(wheel_rows, ["wheel", "size", "sha256"])
    log.info(f"wheels and {MANIFEST_NAME} are in {dist.resolve()}")
