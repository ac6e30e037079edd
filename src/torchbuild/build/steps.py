"""Execute the plan's steps in order: one log file per step, wheels moved out only on success.

Resumable (issue #6): each step is stamped with a digest of its inputs (stamps.py). A re-run skips
finished steps, continues an interrupted one in its existing build tree, and cleans a tree whose
inputs changed, saying why. Compiles go through the compiler cache and show live progress; a
failure shows the first real errors and the known causes (diagnose.py).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchbuild import locks
from torchbuild.build import compiler_cache, orphans
from torchbuild.build.compiler_cache import CacheStats, CompilerCache
from torchbuild.build.diagnose import explain_failure
from torchbuild.build.extras import source_pin
from torchbuild.build.progress import ProgressLine
from torchbuild.build.relabel import relabel_wheel
from torchbuild.build.stamps import Stamps, StampStatus, StepInputs, step_inputs
from torchbuild.command import probe, run
from torchbuild.digest import sha256_file
from torchbuild.env.buildenv import BuildEnv
from torchbuild.errors import BuildStepError, CommandFailed, ConfigureAuditError
from torchbuild.logger import log
from torchbuild.plan import Plan, Step

# What runs after a configure step: the CMake cache audit (proof/cmake_audit.py, handed in by the
# pipeline: the build wing does not import the proof wing). Returns the report as JSON or None;
# raises ConfigureAuditError (exit 13) on a downgrade.
Auditor = Callable[[Step, Plan, Path], "dict[str, Any] | None"]

# A second run on the same work dir would interleave two builds in one tree: fail fast, naming it.
WORK_DIR_LOCK_TIMEOUT_S = 5.0


@dataclass
class StepRecord:
    id: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    duration_s: float = 0.0
    status: str = "pending"     # pending | ok | skipped | failed
    log: str = ""
    cache_hit_rate: float | None = None   # compiler cache hits / cacheable compiles of this step
    audit: dict[str, Any] | None = None   # configure steps: the CMake cache audit (#12)
    note: str = ""              # why it was skipped, continued or cleaned


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


def step_failed(step: Step, exc: CommandFailed, log_path: Path, jobs: int) -> BuildStepError:
    # The whole log, not the tail: the first error is the cause, the tail is ninja unwinding.
    explained = explain_failure(log_path, returncode=exc.returncode, jobs=jobs,
                                fallback=exc.digest).replace("\n", "\n  ")
    msg = (f"step {step.id} failed: `{step.command_line()}` exited with {exc.returncode} "
           f"(in {step.cwd}).\n  {explained}\n  full log: {log_path}")
    return BuildStepError(msg, fix="fix the cause above and re-run the same command: finished "
                          "steps are skipped and this one continues in its build tree")


@dataclass
class RunState:
    """What the steps of one run share: stamps, the compiler cache, the previous step's digest."""

    stamps: Stamps
    cache: CompilerCache | None = None
    # The digest of each component's last step: a step re-runs when an earlier step *it depends
    # on* re-ran with other inputs -- its own component's, and torch's for a companion -- never
    # because another companion changed (--set audio:X must not rebuild torchvision, #17).
    last: dict[str, str] = field(default_factory=dict)

    def previous(self, component: str) -> str:
        return self.last.get(component) or ("" if component == "torch"
                                            else self.last.get("torch", ""))
    commits: dict[Path, str] = field(default_factory=dict)
    audit: Auditor | None = None

    def audit_step(self, step: Step, plan: Plan, log_path: Path) -> dict[str, Any] | None:
        if step.kind != "configure" or self.audit is None:
            return None
        return self.audit(step, plan, log_path)

    def commit_of(self, cwd: Path, env: Mapping[str, str]) -> dict[str, str]:
        """The checkout's HEAD (its submodules are pinned by it), as a stamp input."""
        pin = source_pin(cwd)   # an --extra sdist or local tree: its content pin, not git's
        if pin:
            return {cwd.name: pin}
        if cwd not in self.commits:
            out = probe(["git", "-C", str(cwd), "rev-parse", "HEAD"], env=env)
            self.commits[cwd] = out[1].strip() if out and out[0] == 0 else ""
        return {cwd.name: self.commits[cwd]} if self.commits[cwd] else {}


def _inputs(step: Step, argv: tuple[str, ...], env: Mapping[str, str], build_env: BuildEnv,
            state: RunState) -> StepInputs:
    tools = {k: v for k, v in build_env.tools.items() if k != "git"}
    inputs = step_inputs(argv, env, step.env, sources=state.commit_of(step.cwd, env),
                         lock_sha256=build_env.lock_sha256, tools=tools,
                         previous=state.previous(step.component))
    if step.kind != "install":
        return inputs
    # The wheel's path is the same after a rebuild: its bytes decide whether the build env has
    # it. Without this a wheel deleted from work/wheels and rebuilt left the old one installed.
    wheels = {f"wheel {Path(a).name}": sha256_file(Path(a)) for a in argv
              if a.endswith(".whl") and Path(a).is_file()}
    return dataclasses.replace(inputs, extra={**inputs.extra, **wheels})




def clean_tree(step: Step, env: Mapping[str, str], log_path: Path) -> None:
    """Remove every untracked file of our own checkout (build/, generated code, .so files).

    ``setup.py clean`` misses leftovers (pain.md FM-24); the checkout is torchbuild's, so a full
    ``git clean`` is safe here.
    """
    if not (step.cwd / ".git").exists():
        return
    try:
        run(["git", "-C", str(step.cwd), "clean", "-xdffq"], env=env, log_path=log_path)
        run(["git", "-C", str(step.cwd), "submodule", "foreach", "--quiet", "--recursive",
             "git clean -xdffq"], env=env, log_path=log_path)
    except CommandFailed as exc:
        msg = f"could not clean the build tree {step.cwd}: {' | '.join(exc.digest[-3:])}"
        raise BuildStepError(msg, fix=f"delete {step.cwd} (torchbuild checks it out again from "
                             f"the mirror cache) and re-run the same command; log: {log_path}"
                             ) from None


def _skip(step: Step, record: StepRecord, status: StampStatus, state: RunState,
          result: BuildResult) -> bool:
    """Skip a finished step whose inputs are unchanged (and whose wheel is still there)."""
    if status.state != "done":
        return False
    if step.kind == "build":
        outputs = (state.stamps.recorded(step.id) or {}).get("outputs", [])
        if not outputs or not Path(outputs[0]).is_file():
            return False
        result.wheels[step.component] = Path(outputs[0])
    # The manifest keeps how long the run that built it took, not this run's 0 s (#17).
    built = state.stamps.recorded(step.id) or {}
    record.status, record.note = "skipped", status.reason
    record.duration_s = float(built.get("duration_s") or 0.0)
    log.info(f"skipped: {status.reason}")
    result.records.append(record)
    log.step_end(ok=True, note="unchanged")
    return True


def rotate_log(log_path: Path) -> None:
    """Each run of a step starts a fresh log; the previous run's is kept as ``<log>.1``.

    (Appending across runs buried the failure being diagnosed under the last run's output.)
    """
    if log_path.is_file():
        log_path.replace(log_path.with_name(log_path.name + ".1"))


def _prepare_tree(step: Step, status: StampStatus, env: Mapping[str, str],
                  log_path: Path, record: StepRecord) -> None:
    if status.state == "interrupted":
        log.info(status.reason)
    elif status.state == "stale" and step.kind == "build":
        log.info(f"inputs changed ({status.reason}): cleaning the build tree {step.cwd}")
        clean_tree(step, env, log_path)
    elif status.state == "stale" and step.kind == "configure" and step.outputs \
            and step.outputs[0].is_file():
        # setup.py re-runs CMake with new -D options only without a cache: a kept cache would
        # keep the old USE_* values, and the audit would judge those (seen on v2.6.0).
        log.info(f"inputs changed ({status.reason}): configuring afresh ({step.outputs[0]} "
                 "removed)")
        step.outputs[0].unlink()
    elif status.state == "stale":
        log.info(f"inputs changed ({status.reason})")
    record.note = status.reason


def _cache_env(step: Step, env: dict[str, str], state: RunState) -> dict[str, str]:
    if step.kind != "build":
        return env
    if state.cache is None:
        return {**env, **compiler_cache.disabled_env()}
    return {**env, **state.cache.env(env)}


def _run_step(step: Step, argv: tuple[str, ...], env: Mapping[str, str], log_path: Path,
              plan: Plan) -> None:
    progress = ProgressLine.for_stream(step.id, log.out, verbosity=log.verbosity,
                                       environ=env)
    progress.start_heartbeat()
    # The step's process group is on disk while it runs: if torchbuild is killed with -9, the next
    # run finds the compilers still running instead of building under them (orphans.py).
    def spawned(pid: int) -> None:
        orphans.record(plan.work_dir, step.id, pid, argv)

    try:
        run(argv, env=env, cwd=step.cwd, log_path=log_path, on_line=progress.feed,
            on_spawn=spawned)
    except CommandFailed as exc:
        progress.finish()
        # An extra runs its own MAX_JOBS: the OOM advice must halve that one.
        jobs = int(step.env.get("MAX_JOBS", plan.jobs))
        raise step_failed(step, exc, log_path, jobs) from None
    finally:
        progress.finish()   # stops the heartbeat on every way out (Ctrl-C too)
        orphans.forget(plan.work_dir, step.id)


def execute_step(step: Step, index: int, plan: Plan, build_env: BuildEnv,
                 result: BuildResult, state: RunState | None = None) -> StepRecord:
    state = state or RunState(Stamps(plan.work_dir / "stamps"))
    log_path = plan.logs_dir / f"{index:02d}-{step.id}.log"
    argv = resolve_argv(step, result.wheels)
    env = {**build_env.env, **step.env}
    inputs = _inputs(step, argv, env, build_env, state)
    state.last[step.component] = inputs.digest()
    record = StepRecord(step.id, argv, dict(step.env), str(step.cwd), log=str(log_path))
    log.step(f"[{index}/{len(plan.steps)}] {step.description}")
    status = state.stamps.check(step.id, inputs)
    if _skip(step, record, status, state, result):
        # The cache is still there: audit it again (cheap), so a later --allow-missing or a
        # changed request is judged by the same table before anything compiles.
        record.audit = state.audit_step(step, plan, log_path)
        return record
    rotate_log(log_path)
    log.info(f"log: {log_path}")
    _prepare_tree(step, status, env, log_path, record)
    tmp = plan.wheels_dir / f".tmp-{step.component}"
    if step.kind == "build":
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    env = _cache_env(step, env, state)
    before = _cache_stats(step, state, env)
    state.stamps.mark_started(step.id, inputs)
    started = time.monotonic()
    try:
        _run_step(step, argv, env, log_path, plan)
    except BuildStepError:
        record.status, record.duration_s = "failed", time.monotonic() - started
        result.records.append(record)
        raise
    outputs: list[str] = []
    if step.kind == "build":
        result.wheels[step.component] = collect_wheel(step, tmp, step.outputs[0])
        if step.relabel:
            result.wheels[step.component] = relabel_wheel(
                result.wheels[step.component], step.relabel.get("local", ""),
                step.relabel.get("torch", ""))
        outputs = [str(result.wheels[step.component])]
        log.info(f"wheel: {result.wheels[step.component].name}")
    record.duration_s = time.monotonic() - started
    try:
        record.audit = state.audit_step(step, plan, log_path)
    except ConfigureAuditError:
        # Not stamped done: after the fix (or --allow-missing) the configure runs again.
        record.status = "audit-failed"
        result.records.append(record)
        raise
    record.status = "ok"
    record.cache_hit_rate = _report_cache(state, env, before)
    state.stamps.mark_done(step.id, inputs, duration_s=record.duration_s, outputs=outputs)
    result.records.append(record)
    log.step_end(ok=True)
    return record


def _cache_stats(step: Step, state: RunState, env: Mapping[str, str]) -> CacheStats | None:
    if step.kind != "build" or state.cache is None:
        return None
    return compiler_cache.stats(state.cache, env)


def _report_cache(state: RunState, env: Mapping[str, str],
                  before: CacheStats | None) -> float | None:
    if before is None or state.cache is None:
        return None
    delta = compiler_cache.stats(state.cache, env) - before
    if delta.hit_rate is not None:
        log.info(f"{state.cache.kind}: {delta.hits}/{delta.hits + delta.misses} compiles from "
                 f"the cache ({100 * delta.hit_rate:.0f}%)")
    return delta.hit_rate


def _select_cache(plan: Plan, build_env: BuildEnv) -> CompilerCache | None:
    choice = plan.compiler_cache
    # The work dirs' parent: a fresh clone in a sibling work dir hashes to the same entries.
    cache = compiler_cache.select(choice, plan.cache_dir, build_env.env,
                                  base_dir=plan.work_dir.parent)
    if cache is None or plan.cuda is None:
        return cache
    nvcc = shutil.which("nvcc", path=build_env.env.get("PATH", ""))
    if nvcc and compiler_cache.probe_cuda(cache, nvcc, build_env.env,
                                          plan.work_dir / "cache-probe"):
        return dataclasses.replace(cache, cuda=True)
    log.warn(f"{cache.kind} cannot run nvcc here: CUDA files are compiled without the cache")
    return cache


def start_over(plan: Plan, build_env: BuildEnv, stamps: Stamps) -> None:
    """--clean: forget every stamp and clean every build tree."""
    log.info("--clean: discarding previous build state")
    for index, step in enumerate(plan.steps, 1):
        stamps.forget(step.id)
        if step.kind == "build":
            clean_tree(step, build_env.env, plan.logs_dir / f"{index:02d}-{step.id}.log")


def _run_all(plan: Plan, build_env: BuildEnv, state: RunState) -> BuildResult:
    result = BuildResult()
    for index, step in enumerate(plan.steps, 1):
        execute_step(step, index, plan, build_env, result, state)
    if result.records and all(r.status == "skipped" for r in result.records):
        log.info(f"nothing to do: all {len(result.records)} steps are unchanged since the last "
                 f"run; the wheels are in {plan.wheels_dir}")
    return result


def execute(plan: Plan, build_env: BuildEnv, *, audit: Auditor | None = None) -> BuildResult:
    """Run the plan's steps; ``audit`` runs after every configure step (the pipeline passes the
    CMake cache audit), before anything compiles."""
    plan.logs_dir.mkdir(parents=True, exist_ok=True)
    state = RunState(Stamps(plan.work_dir / "stamps"), audit=audit)
    # Kept until the process exits: the sources stage claimed the same lock (a no-op then).
    locks.claim(locks.work_dir_lock_path(plan.work_dir), purpose=f"work dir {plan.work_dir}",
                timeout=WORK_DIR_LOCK_TIMEOUT_S)
    if plan.clean:
        start_over(plan, build_env, state.stamps)
    state.cache = _select_cache(plan, build_env)
    started = compiler_cache.start_server(state.cache, build_env.env) if state.cache else False
    try:
        return _run_all(plan, build_env, state)
    finally:
        if started and state.cache is not None:
            compiler_cache.stop_server(state.cache, build_env.env)
