"""``python -m torchbuild fetch [build options]``: fill the caches on a connected machine.

Mirrors every repository the same build would clone, with all submodules recursively, at the
commits the tags pin; for the venv backend also downloads the build env's pip packages into
``<cache>/pip``. Copy the cache dir to an air-gapped machine and build there with ``--offline``.

Submodules are found without a checkout: ``.gitmodules`` and the gitlinks are read straight from
the bare mirror at the pinned commit, so fetching pytorch does not write a 1 GB work tree.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from torchbuild.build import sources
from torchbuild.build.sources import Mirrored, mirror_recursive
from torchbuild.command import run
from torchbuild.env.buildenv import base_environment
from torchbuild.errors import CommandFailed, EnvironmentSetupError
from torchbuild.logger import log
from torchbuild.options import add_build_arguments, resolve
from torchbuild.pipeline import prepare
from torchbuild.plan import EnvSpec, Plan


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
    cli = {k: v for k, v in vars(args).items() if k not in {"verb", "func"}}
    options = resolve(cli, environ)
    plan, _ = prepare(options)
    mirrored = fetch(plan, environ, options.git_mirror)
    log.info(f"{len(mirrored)} repositories mirrored under {plan.cache_dir / 'git'}; build with "
             "--offline (same --cache-dir) to use only these")
    return 0
