"""The stage order, in one readable place.

options -> recipe -> (gpu detection) -> facts -> plan -> [dry-run stops] -> preflight -> dist check
-> sources -> environment -> build -> verify -> artifacts -> install-into
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torchbuild import locks
from torchbuild.build import deps, orphans, sources
from torchbuild.build import extras as extra_sources
from torchbuild.build import steps as build
from torchbuild.build.sources import Checkout
from torchbuild.cc import arch_list_env
from torchbuild.env import create as environment
from torchbuild.env.buildenv import BuildEnv
from torchbuild.errors import TorchbuildError
from torchbuild.knowledge.extensions import ResolvedExtra, load_extensions
from torchbuild.knowledge.recipe import RecipeBook, load_recipes
from torchbuild.knowledge.resolve import resolve_options, tables_for
from torchbuild.knowledge.rules import load_knowledge
from torchbuild.logger import log
from torchbuild.machine import facts
from torchbuild.machine.gpu import detect_archs
from torchbuild.machine.preflight import (
    knowledge_dir,
    preflight_for_plan,
    refuse,
    request_problems,
)
from torchbuild.options import Options, require_target
from torchbuild.plan import Plan, Step, make_plan, pin_commits, pin_deps, render
from torchbuild.proof import artifacts, readiness
from torchbuild.proof import report as build_report
from torchbuild.proof.cmake_audit import audit_configure_step
from torchbuild.proof.verify import previous_report, verify_for_plan, verify_key


def _detect_archs(options: Options) -> Options:
    if not options.cc_auto:
        return options
    archs = detect_archs(options.environ)
    log.info(f"--cc auto: found compute capabilities {arch_list_env(archs)}")
    return dataclasses.replace(options, archs=archs)


def _env_python(options: Options) -> str | None:
    if options.env == "existing":
        return options.python or None
    if options.env == "venv" and options.python and not facts.is_version(options.python):
        return options.python
    return None


def prepare(options: Options) -> tuple[Plan, facts.Facts]:
    """Everything up to the plan: cheap, no side effects beyond probes."""
    plan, machine, _resolved = prepare_resolved(options)
    return plan, machine


def prepare_resolved(options: Options) -> tuple[Plan, facts.Facts, Options]:
    """``prepare``, plus the options with the resolved torch/CUDA/Python filled in (origin
    "resolved"), which is what the manifest records so a replay rebuilds the same choice."""
    require_target(options)
    book = load_recipes(options.recipe_dir)
    options = _detect_archs(options)
    env_python = _env_python(options)
    if options.env == "existing" and env_python is None:
        env_python = sys.executable   # build into the interpreter running torchbuild
    machine = facts.gather(options.environ, env_python=env_python)
    plan, options = plan_for(book, options, machine, _resolve_extras(options, book))
    return plan, machine, options


def plan_for(book: RecipeBook, options: Options, machine: facts.Facts,
             extras: tuple[ResolvedExtra, ...] = ()) -> tuple[Plan, Options]:
    """Resolve what the options left open (torch, CUDA, Python), then plan. Pure given the
    recipes, facts and the already-pinned ``--extra`` sources: the fix-hint property test calls
    exactly this."""
    tables = tables_for(load_knowledge(knowledge_dir(options.recipe_dir)), book.releases,
                        book.conda)
    options, reason = resolve_options(tables, options, host_python=machine.host_python_version,
                                      system_cuda=machine.cuda_version,
                                      env_python=machine.env_python_version,
                                      env_torch=machine.env_torch_version)
    plan = make_plan(book, options, machine, extras)
    return (dataclasses.replace(plan, choice=reason) if reason else plan), options


def _resolve_extras(options: Options, book: RecipeBook) -> tuple[ResolvedExtra, ...]:
    """``--extra`` pinned before planning (the index is asked once; --offline reads its cache)."""
    if not options.extra:
        return ()
    core = tuple(c.dist for c in book.components.values())
    return extra_sources.resolve_all(options.extra, load_extensions(book.path),
                                     options.cache_dir, options.environ,
                                     offline=options.offline, reserved=core)


def _preflight(plan: Plan, options: Options, machine: facts.Facts) -> None:
    preflight_for_plan(plan, options, machine)


def _verify(plan: Plan, options: Options, wheels: list[Path], build_env: BuildEnv,
            machine: facts.Facts) -> dict[str, Any] | None:
    key = verify_key(plan, wheels, build_env.lock_sha256, machine.env_packages)
    if not options.verify:
        # A --no-verify rerun keeps the report of an earlier verify of the very same wheels.
        return previous_report(plan, key)
    return verify_for_plan(plan, options, wheels, key=key)


def _report(plan: Plan, result: build.BuildResult, cores: int) -> list[Path]:
    """The build report's files, for the same atomic publish as the wheels they describe. A
    report that cannot be written (a full work dir) costs the report, not the build."""
    out_dir = plan.work_dir / "report"
    if all(r.status == "skipped" for r in result.records):
        # A no-op rerun: the same steps, with the durations of the run that built them, so the
        # report drawn then is still the right one (and drawing it again costs seconds).
        kept = build_report.existing_report(out_dir)
        if kept:
            return kept
    try:
        return build_report.write_report(build_report.report_for(plan, result, cores), out_dir)
    except OSError as exc:
        log.warn(f"no build report: {exc}")
        return []


def run_build(options: Options, *, pins: Mapping[str, str] | None = None,
              deps_pins: Mapping[str, Sequence[deps.Installed]] | None = None) -> int:
    """Build. ``pins`` ({component: commit}) makes the sources exact, ``deps_pins`` the build
    requirements (replay of a manifest)."""
    plan, machine, options = prepare_resolved(options)
    if plan.choice and not options.dry_run:   # the dry-run's own output shows it
        log.info(plan.choice)
    if pins:
        plan = pin_commits(plan, pins)
    if deps_pins:
        plan = pin_deps(plan, deps_pins)
    if options.dry_run:
        print(json.dumps(plan.to_json(), indent=2) if options.json else
              render(plan, min(120, shutil.get_terminal_size((100, 24)).columns)))
        # The checks that cost nothing: exit with the code a real run would (after the plan).
        refuse([*request_problems(plan, options),
                *readiness.local_findings(plan, clean=options.clean)], force=options.force)
        return 0
    log.step("options")
    log.table(options.summary_rows(), ["option", "value", "from"])
    for warning in plan.warnings:
        log.warn(warning)
    _preflight(plan, options, machine)
    artifacts.check_dist_writable(plan.dist)
    if plan.environment.lock is not None:
        readiness.verify_lock(plan.environment.lock)   # before a multi-GB clone, not after
    # One run per work dir: a second one fails in seconds (exit 17) naming the holder. Taken after
    # the checks, so a refused request leaves no lock owner behind; released on every way out.
    with locks.claimed(locks.work_dir_lock_path(plan.work_dir),
                       purpose=f"work dir {plan.work_dir}", timeout=5):
        orphans.check(plan.work_dir, stop=options.clean)
        return _build(plan, options, machine, deps_pins)


def until_configure(steps: tuple[Step, ...]) -> tuple[Step, ...]:
    """The steps ``--stop-after configure`` runs: everything before the first compile (a plan
    without a configure step, e.g. companions only, stops before its first build)."""
    for i, step in enumerate(steps):
        if step.kind == "configure":
            return steps[:i + 1]
        if step.kind == "build":
            return steps[:i]
    return steps


def _stopped(plan: Plan, options: Options, stage: str, checkouts: Mapping[str, Checkout],
             result: build.BuildResult | None = None) -> int:
    report = artifacts.write_stop_report(plan, options, stage, checkouts, result)
    done = [f"{r.id} {r.status}" for r in result.records] if result else []
    log.step(f"stopped after {stage} (--stop-after {stage})")
    log.info(f"done: sources ({', '.join(checkouts)})"
             + (", build environment" if stage != "sources" else "")
             + (f", {', '.join(done)}" if done else ""))
    log.info(f"report: {report}; nothing was compiled or published to {plan.dist}")
    log.info("run the same command without --stop-after to continue: finished steps are "
             "skipped (stamps)")
    log.step_end(ok=True)
    return 0


def _build(plan: Plan, options: Options, machine: facts.Facts,
           deps_pins: Mapping[str, Sequence[deps.Installed]] | None = None) -> int:
    log.step(f"sources ({len(plan.sources)} repositories)")
    ctx = sources.GitContext(plan.cache_dir, environment.base_environment(options.environ),
                             plan.git_mirror, plan.offline, plan.logs_dir / "sources.log")
    plan.logs_dir.mkdir(parents=True, exist_ok=True)
    checkouts = sources.checkout_all(tuple(s for s in plan.sources if s.kind == "git"), ctx)
    checkouts.update(extra_sources.prepare_all(plan.sources, plan.cache_dir,
                                               offline=plan.offline))
    if plan.offline:
        plan, offline_warnings = deps.for_offline(plan)
        for warning in offline_warnings:
            log.warn(warning)
    deps.report_file(plan.work_dir, "-").parent.mkdir(parents=True, exist_ok=True)
    if deps_pins:
        deps.write_replay(plan.work_dir, deps_pins)
    for c in checkouts.values():
        log.info(f"{c.name} {c.tag} @ {c.commit[:12]} ({len(c.submodules)} submodules)")
    if options.stop_after == "sources":
        return _stopped(plan, options, "sources", checkouts)
    log.step(f"build environment ({plan.environment.backend})")
    build_env = environment.create(plan.environment, options.environ, cache_dir=plan.cache_dir,
                                   offline=plan.offline,
                                   log_path=plan.logs_dir / "environment.log",
                                   cuda_home=machine.cuda_home, conda_exe=options.conda_exe,
                                   refresh=plan.clean)
    log.step_end(ok=True)
    if options.stop_after == "env":
        return _stopped(plan, options, "env", checkouts)
    if options.stop_after == "configure":
        # Up to and including the configure step (and its audit): minutes, not hours.
        result = build.execute(dataclasses.replace(plan, steps=until_configure(plan.steps)),
                               build_env, audit=audit_configure_step)
        return _stopped(plan, options, "configure", checkouts, result)
    result = build.execute(plan, build_env, audit=audit_configure_step)
    wheels = [result.wheels[c.name] for c in plan.components]
    report = _verify(plan, options, wheels, build_env, machine)
    manifest = artifacts.build_manifest(plan, options, result, checkouts, build_env, wheels,
                                        report)
    extra = [build_env.lock_path] if build_env.lock_path else []
    extra += _report(plan, result, machine.cores)
    artifacts.publish(plan.dist, wheels, manifest, extra)
    if options.install_into:
        names = environment.install_into([plan.dist / w.name for w in wheels],
                                         options.install_into, options.environ)
        log.info(f"installed into {options.install_into}: {', '.join(names)}")
    artifacts.print_summary(result, manifest, plan.dist)
    return 0


__all__ = ["TorchbuildError", "prepare", "run_build"]
