"""The checks that need no network and no build: where the run will write, where it will read.

``--dry-run`` runs them (with the request-level checks) and exits with the code the real run
would; the real run does the writing versions of the same checks (a probe file in --dist, the
work-dir lock, the orphan check) and verifies ``--lock`` here, before any source is cloned.

Nothing here writes: a path's writability is read from its nearest existing parent (permissions,
a read-only mount) so a dry run leaves no trace.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from torchbuild.build import orphans
from torchbuild.env import conda, conda_lock
from torchbuild.errors import (
    ArtifactError,
    EnvironmentSetupError,
    LockTimeoutError,
    PreflightError,
    SourceError,
    TorchbuildError,
)
from torchbuild.knowledge.rules import Finding, error
from torchbuild.plan import Plan
from torchbuild.proof.artifacts import dist_problem_readonly


def _existing(path: Path) -> Path | None:
    return next((p for p in [path, *path.parents] if p.exists()), None)


def writable_problem(path: Path, what: str, option: str) -> Finding | None:
    """Why ``path`` (or the directory that would hold it) cannot be written, or None."""
    found = _existing(path)
    if found is None:
        return None
    if not found.is_dir():
        return error(what, f"{what} {path} cannot be created: {found} is a file",
                     f"pass a directory as {option}", PreflightError, forceable=False)
    read_only = bool(os.statvfs(found).f_flag & os.ST_RDONLY)
    if read_only or not os.access(found, os.W_OK | os.X_OK):
        why = "on a read-only mount" if read_only else "not writable by this user"
        return error(what, f"{what} {path} is {why} ({found})",
                     f"pass {option} on a writable disk, or fix the permissions of {found}",
                     PreflightError, forceable=False)
    return None


def _local_mirror(fetch_url: str) -> Path | None:
    """The local repository a file:// URL (or plain path) names; None for network URLs."""
    if fetch_url.startswith("file://"):
        return Path(unquote(urlparse(fetch_url).path))
    if fetch_url.startswith("/"):
        return Path(fetch_url)
    return None


def mirror_problems(plan: Plan) -> list[Finding]:
    """A --git-mirror on this machine that lacks a repository the plan clones: the clone would
    fail (exit 11) after everything before it ran."""
    found = []
    for spec in plan.sources:
        local = _local_mirror(spec.fetch_url)
        if local is not None and not local.exists():
            found.append(error("git-mirror", f"{spec.name}: {spec.fetch_url} does not exist "
                               f"(from --git-mirror {plan.git_mirror})",
                               "pass the --git-mirror prefix under which "
                               f"{spec.url.rsplit('/', 2)[-2]}/{spec.url.rsplit('/', 1)[-1]} "
                               "exists, or drop --git-mirror", SourceError, forceable=False))
    return found


def verify_lock(lock: Path) -> None:
    """``--lock`` read, parsed and its local packages hash-checked: a tampered lock is refused in
    seconds, not after a multi-GB clone (http packages are checked by rattler as they download)."""
    if not lock.is_file():
        msg = f"--lock {lock} does not exist"
        raise EnvironmentSetupError(msg, fix="pass the conda-lock.yml a previous build "
                                    "wrote into --dist")
    parsed = conda_lock.read(lock)
    conda.refuse_pip_entries(parsed, lock)
    conda.verify_local_packages(parsed)


def _as_finding(check: str, exc: TorchbuildError) -> Finding:
    return error(check, exc.message, exc.fix or "", type(exc), forceable=False)


def lock_problems(plan: Plan) -> list[Finding]:
    if plan.environment.lock is None:
        return []
    try:
        verify_lock(plan.environment.lock)
    except TorchbuildError as exc:
        return [_as_finding("lock", exc)]
    return []


def orphan_problems(plan: Plan, clean: bool) -> list[Finding]:
    if clean:
        return []    # --clean stops them first
    try:
        orphans.check(plan.work_dir, stop=False)
    except LockTimeoutError as exc:
        return [_as_finding("orphans", exc)]
    return []


def dist_problems(plan: Plan) -> list[Finding]:
    problem: ArtifactError | None = dist_problem_readonly(plan.dist)
    return [_as_finding("dist", problem)] if problem else []


def local_findings(plan: Plan, *, clean: bool) -> list[Finding]:
    """Every local check a dry run can make without writing, in the order a real run meets
    them: dist, work and cache dir, leftover processes, the lock, the git mirror."""
    found = dist_problems(plan)
    for path, what, option in ((plan.work_dir, "work dir", "--work-dir"),
                               (plan.cache_dir, "cache dir", "--cache-dir")):
        problem = writable_problem(path, what, option)
        if problem is not None:
            found.append(problem)
    found += orphan_problems(plan, clean)
    found += lock_problems(plan)
    found += mirror_problems(plan)
    return found


__all__ = ["local_findings", "verify_lock", "writable_problem"]
