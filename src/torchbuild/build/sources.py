"""Sources: a cache of bare mirrors, checkouts at pinned commits, submodules through the mirrors.

Every upstream repository (and every submodule, recursively) has one bare mirror under
``<cache>/git/``. A build clones from the local mirror (hard links, seconds), so a second build of
the same tag never touches the network, and ``--git-mirror`` / ``--offline`` apply to submodules
too: their URLs are rewritten to local mirror paths before ``git submodule update``.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

from torchbuild import locks
from torchbuild.command import capture, free_mb, map_parallel, probe, run
from torchbuild.errors import CommandFailed, OfflineError, SourceError
from torchbuild.logger import log
from torchbuild.plan import SourceSpec, redirect_url

_GIT = ("git", "-c", "advice.detachedHead=false")
# git >= 2.38.1 refuses file-transport submodule clones unless asked (CVE-2022-39253). Only the
# `submodule update` whose URLs we pointed at our own local mirrors gets the permission; a URL
# from an upstream .gitmodules never does. Every URL and path in an argv follows a `--`, so none
# is read as an option (a mirror URL starting with `-`).
_ALLOW_FILE = ("-c", "protocol.file.allow=always")


@dataclass(frozen=True)
class Checkout:
    name: str
    path: Path
    tag: str
    commit: str
    url: str
    submodules: Mapping[str, str] = field(default_factory=dict)   # path -> commit


@dataclass(frozen=True)
class GitContext:
    cache_dir: Path
    env: Mapping[str, str]
    mirror_prefix: str | None
    offline: bool
    log_path: Path | None = None
    # Mirrors found corrupted and cloned again by this run. Checkouts are hard-linked clones of
    # their mirror, so they share its damaged pack files and must be verified too.
    recloned: set[Path] = field(default_factory=set)


def mirror_path(cache_dir: Path, url: str) -> Path:
    """``https://github.com/pytorch/vision.git`` -> ``<cache>/git/github.com/pytorch/vision.git``.
    """
    body = re.sub(r"^[a-z+]+://", "", url.strip())
    body = body.replace(":", "/").strip("/")
    safe = re.sub(r"[^A-Za-z0-9._/-]", "_", body)
    if not safe.endswith(".git"):
        safe += ".git"
    return cache_dir / "git" / safe


def _git(args: list[str], ctx: GitContext, cwd: Path | None = None, *,
         local_mirrors: bool = False) -> None:
    allow = _ALLOW_FILE if local_mirrors else ()
    try:
        run([*_GIT, *allow, *args], env=ctx.env, cwd=cwd, log_path=ctx.log_path, echo=log.detail)
    except CommandFailed as exc:
        if not exc.disk_full:
            raise
        target = Path(args[args.index("-C") + 1]) if "-C" in args else Path(args[-1])
        msg = (f"no space left on the disk holding {target} during `git {args[0]}` "
               f"({free_mb(target):.0f} MB free there now): {' | '.join(exc.digest[-2:])}")
        raise SourceError(msg, fix="free space there, or pass --work-dir / --cache-dir on a "
                          "larger disk; then re-run the same command (the mirrors already "
                          f"fetched are kept; log: {exc.log_path})") from None


def _has_commit(repo: Path, rev: str, ctx: GitContext) -> str | None:
    out = probe(["git", "-C", str(repo), "rev-parse", "-q", "--verify", f"{rev}^{{commit}}"],
                env=ctx.env)
    return out[1].strip() if out and out[0] == 0 else None


# Mirror updates are short (a fetch); another run updating the same mirror is worth waiting for.
MIRROR_LOCK_TIMEOUT_S = 600.0
# A run that finds its work dir busy fails fast instead of waiting hours for another build.
WORK_DIR_LOCK_TIMEOUT_S = 5.0
OFFLINE_FIX = ("on a connected machine run `python -m torchbuild fetch` with the same options "
               "(and --cache-dir), then copy the cache dir here")


def _mirror_lock(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _intact(path: Path, ref: str, ctx: GitContext) -> bool:
    """``ref`` resolves *and* its commit and tree objects are readable (not just a ref name)."""
    out = probe(["git", "-C", str(path), "cat-file", "-e", f"{ref}^{{tree}}"], env=ctx.env)
    return bool(out and out[0] == 0)


def corruption(path: Path, ctx: GitContext) -> str | None:
    """Why the mirror at ``path`` is unusable, or None. Run only when something already failed:
    ``fsck`` reads every object, which takes a while on pytorch."""
    bare = probe(["git", "-C", str(path), "rev-parse", "--is-bare-repository"], env=ctx.env)
    if not bare or bare[0] != 0 or bare[1].strip() != "true":
        return "not a bare git repository"
    fsck = probe(["git", "-C", str(path), "fsck", "--connectivity-only", "--no-dangling"],
                 env=ctx.env, timeout=1800)
    if fsck is None or fsck[0] != 0:
        lines = (fsck[2] if fsck else "git fsck timed out").strip().splitlines()
        return lines[0] if lines else "git fsck failed"
    return None


def _drop_if_corrupt(path: Path, ctx: GitContext) -> None:
    problem = corruption(path, ctx) if path.is_dir() else None
    if problem is None:
        return
    if ctx.offline:
        msg = f"--offline: the mirror {path} is corrupted ({problem})"
        raise OfflineError(msg, fix=OFFLINE_FIX)
    log.warn(f"mirror {path} is corrupted ({problem}); cloning it again")
    shutil.rmtree(path)
    ctx.recloned.add(path)


def _drop_corrupt_checkout(dest: Path, ctx: GitContext) -> None:
    """A checkout (or a submodule's git dir) that shares a damaged pack with its mirror is removed,
    so it is cloned again from the fresh mirror. Only run after its mirror was found damaged."""
    if not dest.exists():
        return
    fsck = probe(["git", "-C", str(dest), "fsck", "--connectivity-only", "--no-dangling"],
                 env=ctx.env, timeout=1800)
    if fsck is not None and fsck[0] == 0:
        return
    lines = (fsck[2] if fsck else "git fsck timed out").strip().splitlines()
    log.warn(f"checkout {dest} shares the corrupted objects of its mirror "
             f"({lines[0] if lines else 'git fsck failed'}); cloning it again")
    shutil.rmtree(dest)


def ensure_mirror(url: str, rev: str, ctx: GitContext, *, is_tag: bool) -> Path:
    """A local bare mirror of ``url`` that contains ``rev`` (a tag name or a commit)."""
    fetch_url = redirect_url(url, ctx.mirror_prefix)
    path = mirror_path(ctx.cache_dir, url)
    ref = f"refs/tags/{rev}" if is_tag else rev
    with locks.hold(_mirror_lock(path), purpose=f"the mirror of {url}",
                    timeout=MIRROR_LOCK_TIMEOUT_S):
        if path.is_dir() and _intact(path, ref, ctx):
            return path
        _drop_if_corrupt(path, ctx)
        if ctx.offline:
            what = f"tag {rev}" if is_tag else f"commit {rev}"
            msg = f"--offline: {what} of {url} is not in the mirror cache ({path})"
            raise OfflineError(msg, fix=OFFLINE_FIX)
        _fetch_into(path, fetch_url, ctx)
        if not _has_commit(path, ref, ctx):
            what = f"tag {rev!r}" if is_tag else f"commit {rev}"
            msg = f"{what} does not exist in {fetch_url}"
            raise SourceError(msg, fix="check the version (`git ls-remote --tags "
                              f"{fetch_url}`), or the --git-mirror prefix")
    return path


def _fetch_into(path: Path, fetch_url: str, ctx: GitContext) -> None:
    try:
        if not path.is_dir():
            tmp = path.with_name(path.name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            _git(["clone", "--mirror", "--", fetch_url, str(tmp)], ctx)
            tmp.rename(path)
        else:
            _git(["-C", str(path), "remote", "set-url", "--", "origin", fetch_url], ctx)
            _git(["-C", str(path), "fetch", "--prune", "origin"], ctx)
    except CommandFailed as exc:
        msg = f"cannot fetch {fetch_url}: {' '.join(exc.digest[-3:]) or exc.message}"
        raise SourceError(msg, fix="check the URL / --git-mirror and your network; "
                          f"log: {exc.log_path}") from None


def _checkout_repo(mirror: Path, dest: Path, rev: str, ctx: GitContext) -> str:
    """Put ``dest`` at ``rev`` (detached), reusing an existing checkout (and its build tree)."""
    commit = _has_commit(mirror, rev, ctx)
    assert commit is not None
    if (dest / ".git").exists():
        head = _has_commit(dest, "HEAD", ctx)
        if head == commit:
            return commit
        _git(["-C", str(dest), "fetch", "--tags", "--", str(mirror), commit], ctx)
    else:
        tmp = dest.with_name(dest.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        _git(["clone", "--no-checkout", "--", str(mirror), str(tmp)], ctx)
        tmp.rename(dest)
    _git(["-C", str(dest), "checkout", "--force", "--detach", commit], ctx)
    return commit


def _submodules(repo: Path) -> list[tuple[str, str, str]]:
    """[(name, path, url)] from .gitmodules (GitPython's config parser: no git process needed)."""
    gitmodules = repo / ".gitmodules"
    if not gitmodules.is_file():
        return []
    # Imported late: GitPython probes for a git binary at import time, and by now we know there is
    # one (a missing git is reported earlier as a MissingToolError with its own exit code).
    from git import GitConfigParser

    parser = GitConfigParser(str(gitmodules), read_only=True)
    out = []
    for section in parser.sections():
        m = re.match(r'^submodule "(.+)"$', section)
        if m and parser.has_option(section, "path") and parser.has_option(section, "url"):
            out.append((m.group(1), str(parser.get(section, "path")),
                        str(parser.get(section, "url"))))
    return out


def _gitlink(repo: Path, path: str, ctx: GitContext) -> str | None:
    out = capture(["git", "-C", str(repo), "ls-tree", "HEAD", "--", path], env=ctx.env)
    parts = out.split()
    return parts[2] if len(parts) >= 3 and parts[1] == "commit" else None


def _absolute(url: str, parent_url: str) -> str:
    if url.startswith(("./", "../")):
        base = parent_url if parent_url.endswith("/") else parent_url + "/"
        return urljoin(base, url).rstrip("/")
    return url


absolute_url = _absolute


def update_submodules(repo: Path, parent_url: str, ctx: GitContext,
                      prefix: str = "") -> dict[str, str]:
    """Initialise every submodule (recursively) from local mirrors; return {path: commit}."""
    subs = []
    for name, path, url in _submodules(repo):
        commit = _gitlink(repo, path, ctx)
        if commit is not None:
            subs.append((name, path, _absolute(url, parent_url), commit))
    # Mirrors are independent network operations: fetch them in parallel.
    mirrors = map_parallel(lambda s: ensure_mirror(s[2], s[3], ctx, is_tag=False), subs)
    recorded: dict[str, str] = {}
    for (name, path, url, commit), mirror in zip(subs, mirrors, strict=True):
        if mirror in ctx.recloned and (repo / ".git" / "modules" / name).exists():
            _drop_corrupt_checkout(repo / ".git" / "modules" / name, ctx)
            if not (repo / ".git" / "modules" / name).exists():
                shutil.rmtree(repo / path, ignore_errors=True)
        _git(["-C", str(repo), "config", "--", f"submodule.{name}.url", str(mirror)], ctx)
        _git(["-C", str(repo), "submodule", "update", "--init", "--force", "--", path], ctx,
             local_mirrors=True)
        recorded[prefix + path] = commit
        recorded.update(update_submodules(repo / path, url, ctx, prefix + path + "/"))
    return recorded


def _checkout_from_mirror(spec: SourceSpec, ctx: GitContext) -> str:
    mirror = ensure_mirror(spec.url, spec.tag, ctx, is_tag=True)
    if mirror in ctx.recloned:
        _drop_corrupt_checkout(spec.path, ctx)
    try:
        return _checkout_repo(mirror, spec.path, f"refs/tags/{spec.tag}", ctx)
    except CommandFailed:
        # Missing objects show up only when a checkout reads them: re-clone the mirror, once.
        with locks.hold(_mirror_lock(mirror), purpose=f"the mirror of {spec.url}",
                        timeout=MIRROR_LOCK_TIMEOUT_S):
            if corruption(mirror, ctx) is None:
                raise
            _drop_if_corrupt(mirror, ctx)
        shutil.rmtree(spec.path, ignore_errors=True)
        mirror = ensure_mirror(spec.url, spec.tag, ctx, is_tag=True)
        return _checkout_repo(mirror, spec.path, f"refs/tags/{spec.tag}", ctx)


def checkout(spec: SourceSpec, ctx: GitContext) -> Checkout:
    """Clone ``spec`` at its tag via the mirror cache, verify the pin, bring in submodules."""
    try:
        return _checkout(spec, ctx)
    except CommandFailed as exc:
        raise _checkout_failed(spec, exc, ctx) from None


def _checkout_failed(spec: SourceSpec, exc: CommandFailed, ctx: GitContext) -> SourceError:
    detail = " | ".join(exc.digest[-3:]) or exc.message
    msg = f"git could not check out {spec.name} {spec.tag} in {spec.path}: {detail}"
    return SourceError(msg, fix=f"delete {spec.path} (the mirror cache stays) and re-run the same "
                       f"command; git's output is in {ctx.log_path}")


def _checkout(spec: SourceSpec, ctx: GitContext) -> Checkout:
    commit = _checkout_from_mirror(spec, ctx)
    if spec.commit and spec.commit != commit:
        msg = (f"{spec.name} tag {spec.tag} now points at {commit[:12]}, but the recorded build "
               f"used {spec.commit[:12]} (the tag was moved upstream)")
        raise SourceError(msg, fix="investigate the tag, or build from the new commit without "
                          "the manifest pin")
    subs = update_submodules(spec.path, spec.url, ctx)
    return Checkout(spec.name, spec.path, spec.tag, commit, spec.url, subs)


def checkout_all(specs: tuple[SourceSpec, ...], ctx: GitContext) -> dict[str, Checkout]:
    if specs:
        # Checkouts live in <work dir>/src/<name>; the build stage claims the same lock.
        work_dir = specs[0].path.parent.parent
        locks.claim(locks.work_dir_lock_path(work_dir), purpose=f"work dir {work_dir}",
                    timeout=WORK_DIR_LOCK_TIMEOUT_S)
    if ctx.offline:
        missing = offline_missing(specs, ctx)
        if missing:
            msg = "--offline: not in the mirror cache: " + "; ".join(missing)
            raise OfflineError(msg, fix=OFFLINE_FIX)
    # Top-level repos in parallel too: the first build of a release is dominated by network time.
    try:
        done = map_parallel(lambda s: checkout(s, ctx), specs)
    except CommandFailed as exc:
        msg = f"git failed: {exc.message}: {' | '.join(exc.digest[-3:])}"
        raise SourceError(msg, fix="see the log; if the checkout is damaged, re-run with "
                          f"--clean (log: {exc.log_path})") from None
    return {c.name: c for c in done}


# --------------------------------------------------------------------------------------------
# Reading the mirror cache without a checkout (``fetch`` and ``--offline``)


@dataclass(frozen=True)
class Mirrored:
    url: str
    commit: str
    path: Path


def _resolve(mirror: Path, rev: str, env: Mapping[str, str]) -> str:
    try:
        return capture(["git", "-C", str(mirror), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                       env=env)
    except CommandFailed as exc:
        msg = f"the mirror {mirror} cannot resolve {rev}: {' | '.join(exc.digest[-3:])}"
        raise SourceError(msg, fix=f"delete {mirror} and re-run the same command") from None


def submodules_at(mirror: Path, commit: str, env: Mapping[str, str]) -> list[tuple[str, str]]:
    """[(url, commit)] of the submodules recorded in ``mirror`` at ``commit`` (no checkout)."""
    listed = probe(["git", "-C", str(mirror), "config", "--blob", f"{commit}:.gitmodules",
                    "--get-regexp", r"^submodule\..*\.(path|url)$"], env=env)
    if listed is None or listed[0] != 0:
        return []  # no .gitmodules at this commit
    paths: dict[str, str] = {}
    urls: dict[str, str] = {}
    for line in listed[1].splitlines():
        key, _, value = line.partition(" ")
        name, _, field = key.removeprefix("submodule.").rpartition(".")
        (paths if field == "path" else urls)[name] = value
    out = []
    for name, path in paths.items():
        tree = probe(["git", "-C", str(mirror), "ls-tree", commit, "--", path], env=env)
        parts = tree[1].split() if tree and tree[0] == 0 else []
        if len(parts) >= 3 and parts[1] == "commit" and name in urls:
            out.append((urls[name], parts[2]))
    return out


def mirror_recursive(url: str, rev: str, ctx: GitContext, *,
                     is_tag: bool) -> list[Mirrored]:
    """Mirror ``url`` so it has ``rev``, then every submodule it pins, recursively."""
    mirror = ensure_mirror(url, rev, ctx, is_tag=is_tag)
    commit = _resolve(mirror, f"refs/tags/{rev}" if is_tag else rev, ctx.env)
    subs = [(absolute_url(sub_url, url), sub_commit)
            for sub_url, sub_commit in submodules_at(mirror, commit, ctx.env)]
    # Submodules are independent network operations: fetch them in parallel.
    nested = map_parallel(lambda s: mirror_recursive(s[0], s[1], ctx, is_tag=False), subs)
    return [Mirrored(url, commit, mirror)] + [m for group in nested for m in group]


def _readable(mirror: Path, ref: str, env: Mapping[str, str]) -> bool:
    out = probe(["git", "-C", str(mirror), "cat-file", "-e", f"{ref}^{{tree}}"], env=env)
    return bool(out and out[0] == 0)


def _missing_below(url: str, ref: str, what: str, ctx: GitContext) -> list[str]:
    mirror = mirror_path(ctx.cache_dir, url)
    if not mirror.is_dir():
        return [f"{what} of {url} (no mirror at {mirror})"]
    if not _readable(mirror, ref, ctx.env):
        problem = corruption(mirror, ctx)
        where = f"the mirror {mirror} is corrupted: {problem}" if problem else f"not in {mirror}"
        return [f"{what} of {url} ({where})"]
    commit = _resolve(mirror, ref, ctx.env)
    missing = []
    for sub_url, sub_commit in submodules_at(mirror, commit, ctx.env):
        absolute = absolute_url(sub_url, url)
        missing += _missing_below(absolute, sub_commit,
                                  f"submodule commit {sub_commit[:12]}", ctx)
    return missing


def offline_missing(specs: Sequence[SourceSpec], ctx: GitContext) -> list[str]:
    """Everything an --offline checkout of ``specs`` would need but the mirror cache lacks.

    Checked up front, all at once: a run that would fail on the third submodule after cloning the
    first two fails immediately instead, with the whole list.
    """
    missing = []
    for spec in specs:
        missing += [f"{spec.name}: {m}" for m in
                    _missing_below(spec.url, f"refs/tags/{spec.tag}", f"tag {spec.tag}", ctx)]
    return missing
