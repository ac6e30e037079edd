"""``python -m torchbuild fetch [build options]``: fill the caches on a connected machine.

Mirrors every repository the same build would clone, with all submodules recursively, at the
commits the tags pin; for the venv backend also downloads the build env's pip packages into
``<cache>/pip``; and for every deps step the tag's own build requirements (its requirements.txt
or dependency group, read from the mirror) into ``<cache>/wheelhouse/<component>-<tag>/`` with a
hash-pinned requirements file next to it. Copy the cache dir to an air-gapped machine and build
there with ``--offline``.

Submodules are found without a checkout: ``.gitmodules`` and the gitlinks are read straight from
the bare mirror at the pinned commit, so fetching pytorch does not write a 1 GB work tree.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from torchbuild.build import deps, sources
from torchbuild.build.extras import download_sdist, sdist_cache
from torchbuild.build.sources import Mirrored, mirror_recursive
from torchbuild.command import probe, run
from torchbuild.env.buildenv import base_environment
from torchbuild.errors import CommandFailed, EnvironmentSetupError, SourceError
from torchbuild.logger import log
from torchbuild.options import HelpFormatter, add_build_arguments, resolve
from torchbuild.pipeline import prepare
from torchbuild.plan import EnvSpec, Plan, Step


def pip_cache(cache_dir: Path) -> Path:
    """Where ``fetch`` puts the venv backend's packages (``--find-links`` for offline builds)."""
    return cache_dir / "pip"


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


def _pip_runner(plan: Plan) -> list[str]:
    """The interpreter whose pip downloads the build requirements: the build env's own where it
    exists already, else this one, told the build env's Python version."""
    env = plan.environment
    if env.backend == "existing":
        return [str(env.python)]
    if env.backend == "venv":
        return [env.base_python or sys.executable]
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    wanted = ".".join(plan.python_version.split(".")[:2])
    return [sys.executable] if here == wanted else \
        [sys.executable, "--python-version", wanted, "--only-binary=:all:"]


def download_deps(plan: Plan, step: Step, mirror: Mirrored, environ: Mapping[str, str],
                  log_path: Path) -> int:
    """``pip download`` what ``step`` installs, at the mirrored tag; write its hash lock."""
    comp = next(c for c in plan.components if c.name == step.component)
    dest = deps.wheelhouse(plan.cache_dir, comp.name, comp.tag)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    base = base_environment(environ)   # keeps the user's PIP_INDEX_URL / PIP_FIND_LINKS

    def read(rel: str) -> str:
        got = probe(["git", "-C", str(mirror.path), "show", f"{mirror.commit}:{rel}"], env=base)
        if got is None or got[0] != 0:
            msg = f"{comp.name} {comp.tag} has no {rel}, which its deps step installs from"
            raise SourceError(msg, fix="check the recipe's deps argv for this release")
        return got[1]

    install_at = step.argv.index("install") + 1
    runner = _pip_runner(plan)
    with tempfile.TemporaryDirectory(prefix="torchbuild-deps-") as scratch:
        args = deps.download_args(step.argv[install_at:], read, Path(scratch))
        try:
            run([runner[0], "-m", "pip", "download", "--dest", str(dest), *runner[1:], *args],
                env=base, cwd=Path(scratch), log_path=log_path, echo=log.detail)
        except CommandFailed as exc:
            msg = (f"could not download {comp.name} {comp.tag}'s build requirements: "
                   f"{' | '.join(exc.digest[-3:])}")
            raise EnvironmentSetupError(msg, fix="check the network / PIP_INDEX_URL; log: "
                                        f"{log_path}") from None
    return deps.lock_file(dest, deps.wheelhouse_lock(plan.cache_dir, comp.name, comp.tag))


def dry_run_lines(plan: Plan) -> list[str]:
    """What ``fetch`` would do, in its order, without doing any of it (``--dry-run``)."""
    lines = []
    for spec in plan.sources:
        if spec.kind == "sdist":
            lines.append(f"would download {spec.tag} (sha256 {spec.sha256[:12]}) into "
                         f"{sdist_cache(plan.cache_dir)}")
        elif spec.kind == "git":
            lines.append(f"would mirror {spec.name} {spec.tag} from {spec.fetch_url} (with "
                         f"submodules) into {plan.cache_dir / 'git'}")
            lines += [f"would download {spec.name} {spec.tag}'s build requirements into "
                      f"{deps.wheelhouse(plan.cache_dir, spec.name, spec.tag)}"
                      for s in plan.steps if s.id == f"deps-{spec.name}"]
    if plan.environment.backend == "venv":
        lines.append(f"would download the build env's pip packages into "
                     f"{pip_cache(plan.cache_dir)}")
    elif plan.environment.backend in {"conda", "conda-exe"}:
        lines.append("conda packages are not fetched: the first (online) build of this env "
                     "caches them")
    return lines


def fetch(plan: Plan, environ: Mapping[str, str], mirror_prefix: str | None) -> list[Mirrored]:
    plan.logs_dir.mkdir(parents=True, exist_ok=True)
    ctx = sources.GitContext(plan.cache_dir, base_environment(environ), mirror_prefix, False,
                             plan.logs_dir / "fetch.log")
    mirrored: list[Mirrored] = []
    for spec in plan.sources:
        if spec.kind == "sdist":
            # --extra from PyPI: the index answer is cached by prepare(); the file goes here.
            log.step(f"download {spec.tag}")
            path = download_sdist(spec, plan.cache_dir, offline=False)
            log.info(f"{spec.name}: {path} (sha256 {spec.sha256[:12]} checked)")
            continue
        if spec.kind != "git":
            continue   # a local directory needs no network
        log.step(f"mirror {spec.name} {spec.tag} with its submodules")
        found = mirror_recursive(spec.url, spec.tag, ctx, is_tag=True)
        log.info(f"{spec.name}: {found[0].commit[:12]}, {len(found) - 1} submodule mirrors")
        mirrored += found
        for step in (s for s in plan.steps if s.id == f"deps-{spec.name}"):
            log.step(f"download {spec.name} {spec.tag}'s build requirements")
            try:
                count = download_deps(plan, step, found[0], environ, plan.logs_dir / "fetch.log")
            except SourceError as exc:   # the build's deps step would fail the same way
                log.warn(f"{exc.message}: nothing to download")
                continue
            log.info(f"{count} files in {deps.wheelhouse(plan.cache_dir, spec.name, spec.tag)}")
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


# What decides what is fetched (the release, its companions, the --extra sources, whether torch
# itself is built, the env's packages) and where from or to; build-only options (jobs, dist,
# verify, ...) mean nothing here.
FETCH_OPTIONS = ("cc", "cpu", "torch", "vision", "audio", "text", "cuda", "python", "env",
                 "conda_exe", "lock", "channel", "extra", "torch_from_env", "recipe_dir",
                 "git_mirror", "cache_dir", "work_dir", "dry_run", "verbose", "quiet", "debug")

DESCRIPTION = """\
Mirror every repository (with submodules) and download the packages the same build would need,
on a connected machine; copy --cache-dir afterwards and build there with --offline. Takes only
the options that decide what is fetched; --dry-run lists it and clones nothing.

  torchbuild fetch --cc 8.6 --cache-dir /media/usb/torchbuild
  torchbuild --cc 8.6 --offline --cache-dir /media/usb/torchbuild    # later, air-gapped"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "fetch", help="fill the mirror cache for an --offline build later",
        description=DESCRIPTION, formatter_class=HelpFormatter)
    add_build_arguments(parser, FETCH_OPTIONS)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    cli = {k: v for k, v in vars(args).items() if k not in {"verb", "func"}}
    options = resolve(cli, environ)
    plan, _ = prepare(options)
    if options.dry_run:
        for line in dry_run_lines(plan):
            print(line)
        return 0
    mirrored = fetch(plan, environ, options.git_mirror)
    log.info(f"{len(mirrored)} repositories mirrored under {plan.cache_dir / 'git'}; build with "
             "--offline (same --cache-dir) to use only these")
    return 0
