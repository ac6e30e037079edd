"""``python -m torchbuild fetch [build options]``: fill the caches on a connected machine.

Mirrors every repository the same build would clone, with all submodules recursively, at the
commits the tags pin; for the venv backend also downloads the build env's pip packages into
``<cache>/pip``. Copy the cache dir to an air-gapped machine and build there with ``--offline``.

Submodules are found without a checkout: ``.gitmodules`` and the gitlinks are read straight from
the bare mirror at the pinned commit, so fetching pytorch does not write a 1 GB work tree.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import sources
from .command import capture, probe, run
from .environment import base_environment
from .errors import CommandFailed, EnvironmentSetupError
from .logger import log
from .options import add_build_arguments, resolve
from .plan import EnvSpec, Plan, SourceSpec


@dataclass(frozen=True)
class Mirrored:
    url: str
    commit: str
    path: Path


def pip_cache(cache_dir: Path) -> Path:
    """Where ``fetch`` puts the venv backend's packages (``--find-links`` for offline builds)."""
    return cache_dir / "pip"


def _resolve(mirror: Path, rev: str, env: Mapping[str, str]) -> str:
    return capture(["git", "-C", str(mirror), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                   env=env)


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


def mirror_recursive(url: str, rev: str, ctx: sources.GitContext, *,
                     is_tag: bool) -> list[Mirrored]:
    """Mirror ``url`` so it has ``rev``, then every submodule it pins, recursively."""
    mirror = sources.ensure_mirror(url, rev, ctx, is_tag=is_tag)
    commit = _resolve(mirror, f"refs/tags/{rev}" if is_tag else rev, ctx.env)
    subs = [(sources.absolute_url(sub_url, url), sub_commit)
            for sub_url, sub_commit in submodules_at(mirror, commit, ctx.env)]
    # Submodules are independent network operations: fetch them in parallel.
    with ThreadPoolExecutor(max_workers=4) as pool:
        nested = list(pool.map(lambda s: mirror_recursive(s[0], s[1], ctx, is_tag=False), subs))
    return [Mirrored(url, commit, mirror)] + [m for group in nested for m in group]


def _readable(mirror: Path, ref: str, env: Mapping[str, str]) -> bool:
    out = probe(["git", "-C", str(mirror), "cat-file", "-e", f"{ref}^{{tree}}"], env=env)
    return bool(out and out[0] == 0)


def _missing_below(url: str, ref: str, what: str, ctx: sources.GitContext) -> list[str]:
    mirror = sources.mirror_path(ctx.cache_dir, url)
    if not mirror.is_dir():
        return [f"{what} of {url} (no mirror at {mirror})"]
    if not _readable(mirror, ref, ctx.env):
        problem = sources.corruption(mirror, ctx)
        where = f"the mirror {mirror} is corrupted: {problem}" if problem else f"not in {mirror}"
        return [f"{what} of {url} ({where})"]
    commit = _resolve(mirror, ref, ctx.env)
    missing = []
    for sub_url, sub_commit in submodules_at(mirror, commit, ctx.env):
        absolute = sources.absolute_url(sub_url, url)
        missing += _missing_below(absolute, sub_commit,
                                  f"submodule commit {sub_commit[:12]}", ctx)
    return missing


def offline_missing(specs: Sequence[SourceSpec], ctx: sources.GitContext) -> list[str]:
    """Everything an --offline checkout of ``specs`` would need but the mirror cache lacks.

    Checked up front, all at once: a run that would fail on the third submodule after cloning the
    first two fails immediately instead, with the whole list.
    """
    missing = []
    for spec in specs:
        missing += [f"{spec.name}: {m}" for m in
                    _missing_below(spec.url, f"refs/tags/{spec.tag}", f"tag {spec.tag}", ctx)]
    return missing


def download_pip(spec: EnvSpec, cache_dir: Path, environ: Mapping[str, str],
                 log_path: Path) -> int:
    """``pip download`` the venv's requirements (with dependencies); returns the file count."""
    if spec.backend != "venv" or not spec.pip_requirements:
        return 0
    dest = pip_cache(cache_dir)
    dest.mkdir(parents=True, exist_ok=True)
    python = spec.base_python or "python3"
    try:
        run([python, "-m", "pip", "download", "--dest", str(dest), *spec.pip_requirements],
            env=base_environment(environ), log_path=log_path, echo=log.detail)
    except CommandFailed as exc:
        msg = f"could not download the venv's packages: {' | '.join(exc.digest[-3:])}"
        raise EnvironmentSetupError(msg, fix=f"check the network / pip index; log: {log_path}")\
            from None
    return sum(1 for _ in dest.iterdir())


def fetch(plan: Plan, environ: Mapping[str, str], mirror_prefix: str | None) -> list[Mirrored]:
    plan.logs_dir.mkdir(parents=True, exist_ok=True)
    ctx = sources.GitContext(plan.cache_dir, base_environment(environ), mirror_prefix, False,
                             plan.logs_dir / "fetch.log")
    mirrored: list[Mirrored] = []
    for spec in plan.sources:
        log.step(f"mirror {spec.name} {spec.tag} with its submodules")
        found = mirror_recursive(spec.url, spec.tag, ctx, is_tag=True)
        log.info(f"{spec.name}: {found[0].commit[:12]}, {len(found) - 1} submodule mirrors")
        mirrored += found
    if plan.environment.backend == "venv":
        log.step("download the build env's pip packages")
        count = download_pip(plan.environment, plan.cache_dir, environ,
                             plan.logs_dir / "fetch.log")
        log.info(f"{count} files in {pip_cache(plan.cache_dir)}")
    elif plan.environment.backend in {"conda", "conda-exe"}:
        log.info("conda packages are cached by the first (online) build of this env; "
                 "run one build before going offline")
    log.step_end(ok=True)
    return mirrored


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "fetch", help="fill the mirror cache for an --offline build later",
        description="Mirror every repository (with submodules) and download the packages the "
        "same build would need. Takes the build's options; copy --cache-dir afterwards.")
    add_build_arguments(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from .pipeline import prepare  # late: pipeline imports the whole build stack

    cli = {k: v for k, v in vars(args).items() if k not in {"verb", "func"}}
    options = resolve(cli, environ)
    plan, _ = prepare(options)
    mirrored = fetch(plan, environ, options.git_mirror)
    log.info(f"{len(mirrored)} repositories mirrored under {plan.cache_dir / 'git'}; build with "
             "--offline (same --cache-dir) to use only these")
    return 0
