"""Sources: a cache of bare mirrors, checkouts at pinned commits, submodules through the mirrors.

Every upstream repository (and every submodule, recursively) has one bare mirror under
``<cache>/git/``. A build clones from the local mirror (hard links, seconds), so a second build of
the same tag never touches the network, and ``--git-mirror`` / ``--offline`` apply to submodules
too: their URLs are rewritten to local mirror paths before ``git submodule update``.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

from filelock import FileLock, Timeout

from .command import capture, probe, run
from .errors import CommandFailed, LockTimeoutError, OfflineError, SourceError
from .logger import log
from .plan import SourceSpec, redirect_url

# git >= 2.38.1 refuses file:// submodule clones unless asked (CVE-2022-39253); our mirrors are
# local bare repos we created ourselves.
_GIT = ("git", "-c", "protocol.file.allow=always", "-c", "advice.detachedHead=false")


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


def mirror_path(cache_dir: Path, url: str) -> Path:
    """``https://github.com/pytorch/vision.git`` -> ``<cache>/git/github.com/pytorch/vision.git``.
    """
    body = re.sub(r"^[a-z+]+://", "", url.strip())
    body = body.replace(":", "/").strip("/")
    safe = re.sub(r"[^A-Za-z0-9._/-]", "_", body)
    if not safe.endswith(".git"):
        safe += ".git"
    return cache_dir / "git" / safe


def _git(args: list[str], ctx: GitContext, cwd: Path | None = None) -> None:
    run([*_GIT, *args], env=ctx.env, cwd=cwd, log_path=ctx.log_path, echo=log.detail)


def _has_commit(repo: Path, rev: str, ctx: GitContext) -> str | None:
    out = probe(["git", "-C", str(repo), "rev-parse", "-q", "--verify", f"{rev}^{{commit}}"],
                env=ctx.env)
    return out[1].strip() if out and out[0] == 0 else None


def _lock(path: Path) -> FileLock:
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock", timeout=600)


def ensure_mirror(url: str, rev: str, ctx: GitContext, *, is_tag: bool) -> Path:
    """A local bare mirror of ``url`` that contains ``rev`` (a tag name or a commit)."""
    fetch_url = redirect_url(url, ctx.mirror_prefix)
    path = mirror_path(ctx.cache_dir, url)
    ref = f"refs/tags/{rev}" if is_tag else rev
    try:
        with _lock(path):
            if path.is_dir() and _has_commit(path, ref, ctx):
                return path
            if ctx.offline:
                what = f"tag {rev}" if is_tag else f"commit {rev}"
                msg = f"--offline: {what} of {url} is not in the mirror cache ({path})"
                raise OfflineError(msg, fix="on a connected machine run `python -m torchbuild "
                                   "fetch` with the same options, then copy the cache dir")
            _fetch_into(path, fetch_url, ctx)
            if not _has_commit(path, ref, ctx):
                what = f"tag {rev!r}" if is_tag else f"commit {rev}"
                msg = f"{what} does not exist in {fetch_url}"
                raise SourceError(msg, fix="check the version (`git ls-remote --tags "
                                  f"{fetch_url}`), or the --git-mirror prefix")
    except Timeout:
        msg = f"another torchbuild holds the lock on {path} for over 10 minutes"
        raise LockTimeoutError(msg, fix="wait for the other run, or remove the stale .lock") \
            from None
    return path


def _fetch_into(path: Path, fetch_url: str, ctx: GitContext) -> None:
    try:
        if not path.is_dir():
            tmp = path.with_name(path.name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            _git(["clone", "--mirror", fetch_url, str(tmp)], ctx)
            tmp.rename(path)
        else:
            _git(["-C", str(path), "remote", "set-url", "origin", fetch_url], ctx)
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
        _git(["-C", str(dest), "fetch", "--tags", str(mirror), commit], ctx)
    else:
        tmp = dest.with_name(dest.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        _git(["clone", "--no-checkout", str(mirror), str(tmp)], ctx)
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


def update_submodules(repo: Path, parent_url: str, ctx: GitContext,
                      prefix: str = "") -> dict[str, str]:
    """Initialise every submodule (recursively) from local mirrors; return {path: commit}."""
    subs = []
    for name, path, url in _submodules(repo):
        commit = _gitlink(repo, path, ctx)
        if commit is not None:
            subs.append((name, path, _absolute(url, parent_url), commit))
    # Mirrors are independent network operations: fetch them in parallel.
    with ThreadPoolExecutor(max_workers=4) as pool:
        mirrors = list(pool.map(lambda s: ensure_mirror(s[2], s[3], ctx, is_tag=False), subs))
    recorded: dict[str, str] = {}
    for (name, path, url, commit), mirror in zip(subs, mirrors, strict=True):
        _git(["-C", str(repo), "config", f"submodule.{name}.url", str(mirror)], ctx)
        _git(["-C", str(repo), "submodule", "update", "--init", "--force", "--", path], ctx)
        recorded[prefix + path] = commit
        recorded.update(update_submodules(repo / path, url, ctx, prefix + path + "/"))
    return recorded


def checkout(spec: SourceSpec, ctx: GitContext) -> Checkout:
    """Clone ``spec`` at its tag via the mirror cache, verify the pin, bring in submodules."""
    mirror = ensure_mirror(spec.url, spec.tag, ctx, is_tag=True)
    commit = _checkout_repo(mirror, spec.path, f"refs/tags/{spec.tag}", ctx)
    if spec.commit and spec.commit != commit:
        msg = (f"{spec.name} tag {spec.tag} now points at {commit[:12]}, but the recorded build "
               f"used {spec.commit[:12]} (the tag was moved upstream)")
        raise SourceError(msg, fix="investigate the tag, or build from the new commit without "
                          "the manifest pin")
    subs = update_submodules(spec.path, spec.url, ctx)
    return Checkout(spec.name, spec.path, spec.tag, commit, spec.url, subs)


def checkout_all(specs: tuple[SourceSpec, ...], ctx: GitContext) -> dict[str, Checkout]:
    # Top-level repos in parallel too: the first build of a release is dominated by network time.
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = list(pool.map(lambda s: checkout(s, ctx), specs))
    return {c.name: c for c in done}
