"""Execute the plan's steps in order: one log file per step, wheels moved out only on success."""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .command import run
from .environment import BuildEnv
from .errors import BuildStepError, CommandFailed
from .logger import log
from .plan import Plan, Step


@dataclass
class StepRecord:
    id: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    duration_s: float = 0.0
    status: str = "pending"     # pending | ok | skipped | failed
    log: str = ""


@dataclass
class BuildResult:
    records: list[StepRecord] = field(default_factory=list)
    wheels: dict[str, Path] = field(default_factory=dict)


def resolve_argv(step: Step, wheels: Mapping[str, Path]) -> tuple[str, ...]:
    out = []
    for arg in step.argv:
        if arg.startswith("{wheel:") and arg.endswith("}"):
            name = arg[len("{wheel:"):-1]
            if name not in wheels:
                msg = f"step {step.id} needs the {name} wheel, which was not built"
                raise BuildStepError(msg, fix="re-run without --only/--skip for that component")
            out.append(str(wheels[name]))
        else:
            out.append(arg)
    return tuple(out)


def collect_wheel(step: Step, tmp: Path, dest_dir: Path) -> Path:
    """Move the single wheel a build step produced from its temp dir into ``dest_dir``."""
    found = sorted(tmp.glob("*.whl")) if tmp.is_dir() else []
    if len(found) != 1:
        msg = (f"step {step.id} finished but produced {len(found)} wheels in {tmp} "
               f"({', '.join(p.name for p in found) or 'none'}); exactly one was expected")
        raise BuildStepError(msg, fix="look at the step log; a setup.py that writes elsewhere "
                             "needs its recipe's build argv to point at {wheel_dir}")
    shutil.rmtree(dest_dir, ignore_errors=True)
    dest_dir.mkdir(parents=True)
    final = dest_dir / found[0].name
    found[0].replace(final)
    shutil.rmtree(tmp, ignore_errors=True)
    return final


def step_failed(step: Step, exc: CommandFailed, log_path: Path) -> BuildStepError:
    digest = "\n    ".join(exc.digest[:12])
    msg = (f"step {step.id} failed: `{step.command_line()}` exited with {exc.returncode} "
           f"(in {step.cwd}).\n  first error lines:\n    {digest}\n  full log: {log_path}")
    return BuildStepError(msg, fix="fix the cause above and re-run the same command: finished "
                          "steps are not repeated")


def execute_step(step: Step, index: int, plan: Plan, build_env: BuildEnv,
                 result: BuildResult) -> StepRecord:
    log_path = plan.logs_dir / f"{index:02d}-{step.id}.log"
    argv = resolve_argv(step, result.wheels)
    env = {**build_env.env, **step.env}
    record = StepRecord(step.id, argv, dict(step.env), str(step.cwd), log=str(log_path))
    tmp = plan.wheels_dir / f".tmp-{step.component}"
    if step.kind == "build":
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    log.step(f"[{index}/{len(plan.steps)}] {step.description}")
    log.info(f"log: {log_path}")
    started = time.monotonic()
    try:
        run(argv, env=env, cwd=step.cwd, log_path=log_path, echo=log.detail)
    except CommandFailed as exc:
        record.status, record.duration_s = "failed", time.monotonic() - started
        result.records.append(record)
        raise step_failed(step, exc, log_path) from None
    if step.kind == "build":
        result.wheels[step.component] = collect_wheel(step, tmp, step.outputs[0])
        log.info(f"wheel: {result.wheels[step.component].name}")
    record.status, record.duration_s = "ok", time.monotonic() - started
    result.records.append(record)
    log.step_end(ok=True)
    return record


def execute(plan: Plan, build_env: BuildEnv) -> BuildResult:
    result = BuildResult()
    plan.logs_dir.mkdir(parents=True, exist_ok=True)
    for index, step in enumerate(plan.steps, 1):
        execute_step(step, index, plan, build_env, result)
    return result
