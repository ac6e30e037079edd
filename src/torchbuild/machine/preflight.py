"""Preflight: check the request and the machine in seconds, before anything is cloned or compiled.

Three stages, cheapest first, and a stage only runs when the one before found no error:

1. the request against the version knowledge (pure: python range, CUDA, archs, companions);
2. the machine (file reads and ``--version`` probes: WSL2, git, toolkit, gcc, driver, RAM, disk);
3. one tiny kernel compiled per requested arch with the real nvcc, all archs in parallel.

Each check returns a :class:`Finding`. Errors raise the finding's error class; ``--force`` turns the
forceable ones (``Finding.forceable``) into warnings. Fatal ones -- an arch the toolkit cannot
compile, a gcc nvcc rejects -- fail the build anyway, so they are never forced.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from torchbuild import command
from torchbuild.errors import (
    CompatibilityError,
    MissingToolError,
    PreflightError,
    TorchbuildError,
)
from torchbuild.knowledge.jobs import RESERVE_GB, JobsDecision, build_jobs
from torchbuild.knowledge.rules import (
    ArchLike,
    Finding,
    Knowledge,
    ReleaseLike,
    arch_item,
    check_archs,
    check_companion,
    cmake_ok,
    companions_use_cpp_extension,
    cuda_ok,
    driver_ok,
    error,
    gcc_ok,
    load_knowledge,
    minor_of,
    ok,
    python_ok,
    vtuple,
    warning,
)
from torchbuild.logger import log
from torchbuild.machine import codecs, probes
from torchbuild.machine.facts import Facts, gather, gather_host

if TYPE_CHECKING:
    from torchbuild.options import Options
    from torchbuild.plan import Component, Plan

__all__ = ["Finding", "MachineFacts", "PreflightRequest", "gather_facts", "run_preflight"]

# The git commands sources.py runs (-C, config --blob, fsck --connectivity-only, submodule update)
# are old features; CI runs git 2.39, and below Debian 10's 2.20 we warn instead of guessing.
MIN_GIT = "2.20"
# FM-01: below about 16 GB free a CUDA torch build is OOM-killed even at MAX_JOBS=1..2.
MIN_FREE_GB_CUDA = 16.0
MIN_FREE_GB_CPU = 8.0
# FM-27: nvcc writes its intermediates to TMPDIR, independently of the build dir.
MIN_TMP_GB = 10.0
# FM-03: the WSL2 VM gets half the host RAM by default; below this, print the .wslconfig fix.
WSL_MIN_TOTAL_GB = 32.0


@dataclass(frozen=True)
class PreflightRequest:
    """What the plan asks of the machine. ``companions``: name -> version (None = recipe default,
    "none" = skipped). ``environ`` is the environment the build will see (PATH, CUDA_HOME, CXX,
    TMPDIR, USE_FLASH_ATTENTION ...)."""

    torch_version: str
    cuda: str | None
    archs: tuple[ArchLike, ...]
    python_version: str
    work_dir: Path
    companions: Mapping[str, str | None] = field(default_factory=dict)
    cpu: bool = False
    env_backend: str = "conda"
    needs_system_toolkit: bool = False
    estimated_disk_gb: float = 40.0
    environ: Mapping[str, str] = field(default_factory=dict)
    jobs: int | None = None
    # The plan's MAX_JOBS decision: preflight reports it rather than deriving its own.
    jobs_decision: JobsDecision | None = None
    recipe_dir: Path | None = None
    compile_kernels: bool = True
    # The release row to check against (the plan's ``recipe.Release``); None: look the version up
    # in the knowledge's releases.toml.
    release: ReleaseLike | None = None
    # Directories the build steps put first on PATH (an existing env's bin dir): the tools
    # preflight checks must be the ones the steps will run (#12 §5).
    tool_dirs: tuple[Path, ...] = ()
    # CMAKE_POLICY_VERSION_MINIMUM as the torch steps set it (lets CMake >= 4 configure old tags).
    cmake_policy_minimum: str | None = None

    def tool_environ(self) -> dict[str, str]:
        """``environ`` with ``tool_dirs`` first on PATH, as the build steps will see it."""
        env = dict(self.environ)
        env["PATH"] = os.pathsep.join([*map(str, self.tool_dirs), env.get("PATH", "")]).rstrip(
            os.pathsep)
        return env
    # --allow-missing: features (and torchvision codecs) the user accepts without.
    allow_missing: tuple[str, ...] = ()
    torch_from_env: bool = False     # companions against the torch already in the env

    @property
    def uses_host_compiler(self) -> bool:
        """conda envs bring their own gcc; venv/existing builds use the machine's."""
        return self.needs_system_toolkit or self.env_backend in {"venv", "existing"}


# One type of machine facts (facts.py); the old name stays for callers and tests.
MachineFacts = Facts


def gather_facts(request: PreflightRequest, base: Facts | None = None) -> Facts:
    """``base`` (the planner's facts) plus the host checks; nothing is probed twice."""
    env = request.environ
    return gather_host(base or gather(env), env, work_dir=request.work_dir, cpu=request.cpu,
                       tool_environ=request.tool_environ())


# ------------------------------------------------------------------------ stage 1: the request


def _release(req: PreflightRequest, kn: Knowledge) -> ReleaseLike:
    return req.release if req.release is not None else kn.release(req.torch_version)


def request_findings(req: PreflightRequest, kn: Knowledge) -> list[Finding]:
    release = _release(req, kn)
    found = [python_ok(req.python_version, release)]
    if not req.cpu and req.cuda:
        found.append(cuda_ok(req.cuda, release, kn))
        extensions = companions_use_cpp_extension(_chosen_companions(req, release))
        found += check_archs(req.archs, req.cuda, req.torch_version, knowledge=kn,
                             extensions=extensions, release=release)
    elif not req.cpu:
        found.append(error("cuda", "a CUDA build needs a CUDA version", "pass --cuda X.Y, or --cpu",
                           CompatibilityError, forceable=False))
    found += check_companion(req.companions, release, knowledge=kn)
    return found


def _chosen_companions(req: PreflightRequest, release: ReleaseLike) -> dict[str, str]:
    """name -> the version that will actually be built ('' when skipped)."""
    out: dict[str, str] = {}
    for name in ("vision", "audio", "text"):
        wanted = req.companions.get(name)
        out[name] = "" if wanted == "none" else (wanted or release.companion(name)[0])
    return out


# ------------------------------------------------------------------------ stage 2: the machine


def wsl_findings(req: PreflightRequest, facts: MachineFacts) -> list[Finding]:
    if not facts.wsl:
        return []
    found = [ok("wsl", "running on WSL2")]
    if facts.mem.total_gb < WSL_MIN_TOTAL_GB:
        found.append(warning(
            "wsl-memory", f"the WSL2 VM has {facts.mem.total_gb:.0f} GB RAM (WSL gives it half "
            "of the host's by default); big builds get OOM-killed or the VM quits",
            "in %UserProfile%\\.wslconfig put '[wsl2]' 'memory=48GB' 'swap=32GB' (sized to the "
            "host), run `wsl --shutdown` in Windows, wait 8 s, reopen"))
    if probes.on_windows_mount(req.work_dir):
        found.append(error(
            "wsl-mount", f"the work dir {req.work_dir} is on a Windows drive (/mnt/*): clone and "
            "compile run many times slower there", "use a Linux path, e.g. --work-dir "
            "~/.cache/torchbuild/work", PreflightError))
    if not req.cpu and not facts.wsl_libcuda:
        found.append(error(
            "wsl-libcuda", "no libcuda.so* in /usr/lib/wsl/lib: the Windows NVIDIA driver is "
            "missing or WSL was started without GPU support", "install/update the NVIDIA driver "
            "on Windows (not inside WSL), then `wsl --shutdown`", PreflightError))
    return found


def git_findings(req: PreflightRequest, facts: MachineFacts) -> list[Finding]:
    if facts.git is None:
        # Same wording as command.resolve_program, so the message is the same wherever it trips.
        path = req.environ.get("PATH", "")
        return [error("git", f"`git` was not found on PATH ({path})",
                      "install git (apt-get install git) or put it on PATH",
                      MissingToolError, forceable=False)]
    if vtuple(facts.git) < vtuple(MIN_GIT):
        return [warning("git", f"git {facts.git} is older than {MIN_GIT}: untested",
                        "install a newer git if cloning or submodules fail")]
    return [ok("git", f"git {facts.git}")]


def cmake_findings(req: PreflightRequest, facts: MachineFacts, kn: Knowledge) -> list[Finding]:
    """Only an `existing` env builds with the cmake on PATH; other backends install their own."""
    # --torch-from-env: torch's own minimum cmake does not apply to what is built against it.
    if req.env_backend != "existing" or req.torch_from_env:
        return []
    if facts.cmake is None:
        return [error("cmake", "cmake is not on PATH of the existing env",
                      "pip install 'cmake<4' ninja into it", MissingToolError, forceable=False)]
    return [cmake_ok(facts.cmake, _release(req, kn), policy_minimum=req.cmake_policy_minimum)]


def toolkit_findings(req: PreflightRequest, facts: MachineFacts) -> list[Finding]:
    if req.cpu or not req.needs_system_toolkit:
        return []
    tk = facts.toolkit
    if tk is None:
        return [error("nvcc", "no CUDA toolkit found ($CUDA_HOME, nvcc on PATH, /usr/local/cuda)",
                      "install the CUDA toolkit and set CUDA_HOME, or use --env conda",
                      MissingToolError, forceable=False)]
    if not tk.complete:
        return [error("nvcc", f"nvcc {tk.version} at {tk.nvcc} runs, but {tk.root} is no toolkit "
                      "root (no include/cuda_runtime.h and lib64/libcudart*): CMake would not "
                      "find CUDA", "set CUDA_HOME to the toolkit directory (the one holding "
                      "bin/nvcc, include/ and lib64/)", MissingToolError, forceable=False)]
    found = [ok("nvcc", f"nvcc {tk.version} at {tk.nvcc} (toolkit {tk.root})")]
    if req.cuda and minor_of(req.cuda) != minor_of(tk.version):
        found.append(error("nvcc-version", f"the toolkit at {tk.root} is CUDA {tk.version}, "
                           f"not the requested {req.cuda}", f"set CUDA_HOME to a CUDA {req.cuda} "
                           f"toolkit, or use --cuda {tk.version}", CompatibilityError))
    if tk.gpu_archs:
        missing = [a for a in req.archs if arch_item(a).rstrip("af") not in tk.gpu_archs]
        if missing:
            names = ", ".join(arch_item(a) for a in missing)
            found.append(error("nvcc-archs", f"`{tk.nvcc} --list-gpu-arch` lacks {names} "
                               f"(it has {' '.join(tk.gpu_archs)})", f"drop {names} from --cc, "
                               "or use a toolkit that supports it", CompatibilityError,
                               forceable=False))
        else:
            found.append(ok("nvcc-archs", "nvcc --list-gpu-arch includes every requested arch"))
    return found


def compiler_findings(req: PreflightRequest, facts: MachineFacts, kn: Knowledge) -> list[Finding]:
    if not req.uses_host_compiler:
        return []
    if facts.host_cxx_version is None:
        return [error("gcc", f"the host C++ compiler `{facts.host_cxx}` does not run",
                      "install g++ (apt-get install g++) or set CXX", MissingToolError,
                      forceable=False)]
    if facts.host_cxx_is_clang:
        return [ok("gcc", f"{facts.host_cxx} is clang {facts.host_cxx_version}; not range-checked")]
    cuda = None if req.cpu else req.cuda
    tk = facts.toolkit if req.needs_system_toolkit else None
    return [gcc_ok(facts.host_cxx_version, cuda, release=_release(req, kn),
                   max_gcc=tk.max_gcc if tk else None, knowledge=kn, compiler=facts.host_cxx)]


def driver_findings(req: PreflightRequest, facts: MachineFacts) -> list[Finding]:
    if req.cpu or not req.cuda:
        return []
    smi = facts.smi
    if smi.status == "absent":
        return [warning("driver", "no NVIDIA driver/GPU visible: building only; the wheels "
                        "cannot be tested on this machine")]
    if smi.status != "ok" or smi.driver_cuda is None:
        return [warning("driver", f"nvidia-smi {smi.status}: {smi.detail[:200]}",
                        "install or fix the NVIDIA driver to test the wheels here")]
    return [driver_ok(smi.driver_cuda, req.cuda)]


def decide_jobs(req: PreflightRequest, facts: MachineFacts) -> JobsDecision:
    """The plan's decision when there is a plan; otherwise the same derivation (jobs.py) over
    the request's environment (which then is the compiler's)."""
    if req.jobs_decision is not None:
        return req.jobs_decision
    return build_jobs(facts.mem_available_gb, facts.swap_free_gb, facts.cores,
                   arch_majors=[a.major for a in req.archs], cpu=req.cpu,
                   compiler_env=req.environ, requested=req.jobs,
                   builds_torch=not req.torch_from_env)


def _memory_floor(req: PreflightRequest, decision: JobsDecision) -> tuple[float, str]:
    """The least RAM+swap a build gets through with: torch's own floors (FM-01), or, with torch
    from the env, one compile job of the companions plus the reserve left for the OS."""
    kind = "CPU" if req.cpu else "CUDA"
    if req.torch_from_env:
        return RESERVE_GB + decision.budget_gb, f"a {kind} build of the companions"
    return (MIN_FREE_GB_CPU if req.cpu else MIN_FREE_GB_CUDA), f"a {kind} torch build"


def resource_findings(req: PreflightRequest, facts: MachineFacts) -> list[Finding]:
    decision = decide_jobs(req, facts)
    found = [ok("jobs", decision.reasoning)]
    floor, what = _memory_floor(req, decision)
    free = facts.mem.available_gb + facts.mem.swap_free_gb
    if free < floor:
        found.append(error("memory", f"{free:.1f} GB RAM+swap free; {what} needs "
                           f"about {floor:g} GB even at MAX_JOBS=1",
                           "close other programs, add swap, or --force and expect a slow build",
                           PreflightError))
    if decision.memory_limited and req.jobs is not None:
        found.append(warning("jobs", f"--jobs {req.jobs} exceeds what RAM allows",
                             "lower --jobs if compilers get killed"))
    if facts.work_dir_free_gb < req.estimated_disk_gb:
        found.append(error("disk", f"{facts.work_dir_free_gb:.0f} GB free at {req.work_dir}; this "
                           f"plan needs about {req.estimated_disk_gb:.0f} GB",
                           "free space, or --work-dir on a larger disk", PreflightError))
    else:
        found.append(ok("disk", f"{facts.work_dir_free_gb:.0f} GB free at {req.work_dir} "
                        f"(need ~{req.estimated_disk_gb:.0f})"))
    if facts.tmp_free_gb < MIN_TMP_GB:
        found.append(warning("tmp", f"{facts.tmp_free_gb:.1f} GB free in {facts.tmp_dir}; nvcc "
                             "writes large intermediates there", "set TMPDIR to a larger disk"))
    return found


# torchvision 0.20 added WEBP decoding (TORCHVISION_USE_WEBP): older tags have nothing to find.
WEBP_SINCE = "0.20"


def wanted_codecs(req: PreflightRequest) -> list[str]:
    vision = req.companions.get("vision")
    if vision == "none" or req.env_backend not in {"venv", "existing"}:
        return []   # the conda backends bring the codecs as packages (recipes/conda.toml)
    names = ["jpeg", "png"]
    if vision is None or vtuple(vision) >= vtuple(WEBP_SINCE):
        names.append("webp")
    if not req.cpu:
        names.append("nvjpeg")
    return [n for n in names if n not in req.allow_missing]


def codec_findings(req: PreflightRequest, facts: MachineFacts) -> list[Finding]:
    """torchvision only warns about a missing codec and ships a wheel without it: refuse here."""
    wanted = wanted_codecs(req)
    if not wanted:
        return []
    root = str(facts.toolkit.root) if facts.toolkit else req.environ.get("CUDA_HOME")
    status = codecs.probe_codecs(req.environ, wanted, cuda_home=root)
    missing = [s for s in status if s.found is None]
    if not missing:
        return [ok("codecs", ", ".join(f"{s.name}: {s.found}" for s in status))]
    names = [s.name for s in missing]
    why = "; ".join(f"{s.name}: {s.why}" for s in missing)
    what = "/".join(n.upper() for n in names)
    return [error("codecs", f"torchvision would be built without {what} support ({why})",
                  codecs.install_hint(names, req.cuda), PreflightError)]


# Companions whose build configures against torch's installed CMake config (find_package(Torch)
# in torchaudio's and torchtext's CMakeLists.txt); torchvision builds with cpp_extension alone.
TORCH_CMAKE_USERS = ("audio", "text")


def torch_cmake_findings(req: PreflightRequest, facts: MachineFacts) -> list[Finding]:
    """A CUDA torch in the env makes CMake demand a toolkit even for --cpu companions (its
    Caffe2Config.cmake: "uses CUDA but I cannot find the CUDA libraries", #17)."""
    users = [n for n in TORCH_CMAKE_USERS if req.companions.get(n, "none") != "none"]
    if not (req.cpu and req.torch_from_env and facts.env_torch_cmake_needs_cuda and users):
        return []
    where = facts.env_python or "the build env"
    tk = facts.toolkit
    if tk is not None and tk.complete:
        return [ok("torch-cuda", f"the torch in {where} is a CUDA build; its CMake config gets "
                   f"CUDA_HOME={tk.root}")]
    found = (f"nvcc at {tk.nvcc} has no toolkit root with headers and libraries" if tk
             else "no CUDA toolkit was found ($CUDA_HOME, nvcc on PATH, /usr/local/cuda)")
    msg = (f"the torch in {where} is a CUDA build: its CMake config (Caffe2Config.cmake) needs "
           f"the CUDA toolkit to configure {', '.join(users)}, even with --cpu, and {found}")
    fix = ("install the CUDA toolkit that torch was built with and set CUDA_HOME to it "
           "(torchbuild passes it to the build), or put a CPU torch into that env (pip install "
           "torch --index-url https://download.pytorch.org/whl/cpu), or skip them with "
           + " ".join(f"--{n} none" for n in users))
    return [error("torch-cuda", msg, fix, MissingToolError, forceable=False)]


def machine_findings(req: PreflightRequest, facts: MachineFacts, kn: Knowledge) -> list[Finding]:
    return [*wsl_findings(req, facts), *git_findings(req, facts), *cmake_findings(req, facts, kn),
            *toolkit_findings(req, facts), *torch_cmake_findings(req, facts),
            *compiler_findings(req, facts, kn),
            *driver_findings(req, facts), *resource_findings(req, facts),
            *codec_findings(req, facts)]


# -------------------------------------------------------------------- stage 3: kernel compiles


def _gencode(arch: ArchLike) -> str:
    nn = arch_item(arch).replace(".", "")
    return f"-gencode=arch=compute_{nn},code=sm_{nn}"


def _last_line(res: tuple[int, str, str] | None) -> str:
    lines = [] if res is None else (res[2] or res[1]).strip().splitlines()
    return lines[-1] if lines else "nvcc did not run"


def compile_one(nvcc: str, arch: ArchLike, workdir: Path, environ: Mapping[str, str],
                host_cxx: str | None) -> Finding:
    item = arch_item(arch)
    nn = item.replace(".", "")
    source = workdir / "probe.cu"
    argv = probes.compile_argv(nvcc, source, workdir / f"probe_{nn}.o", f"compute_{nn}",
                               f"sm_{nn}", host_cxx)
    res = command.probe(argv, env=dict(environ), timeout=120)
    if res is not None and res[0] == 0:
        return ok("kernel", f"nvcc compiled a kernel for sm_{nn}")
    msg = f"nvcc could not compile a one-line kernel for sm_{nn}: {_last_line(res)}"
    return error("kernel", msg, f"drop {item} from --cc, or fix the toolkit/host compiler "
                 f"(try: {' '.join(argv)})", PreflightError, forceable=False)


def compile_all(nvcc: str, archs: Sequence[ArchLike], workdir: Path,
                environ: Mapping[str, str], host_cxx: str | None) -> bool:
    """One nvcc for every arch, its targets compiled in parallel (``--threads 0``): the host
    side runs once, so this is ~3x faster than one nvcc per arch (benchmarks/bench_preflight.py)."""
    argv = [nvcc, "-c", str(workdir / "probe.cu"), "-o", str(workdir / "probe_all.o"),
            "--threads", "0", *(_gencode(a) for a in archs)]
    if host_cxx:
        argv += ["-ccbin", host_cxx]
    res = command.probe(argv, env=dict(environ), timeout=300)
    return res is not None and res[0] == 0


def compile_each(nvcc: str, archs: Sequence[ArchLike], workdir: Path,
                 environ: Mapping[str, str], host_cxx: str | None) -> list[Finding]:
    """One nvcc per arch, as many at once as there are cores: says which arch fails."""
    with ThreadPoolExecutor(max_workers=max(1, min(len(archs), probes.cpu_count()))) as pool:
        return list(pool.map(lambda a: compile_one(nvcc, a, workdir, environ, host_cxx), archs))


def kernel_findings(req: PreflightRequest, facts: MachineFacts) -> list[Finding]:
    tk = facts.toolkit
    if req.cpu or not req.needs_system_toolkit or not req.compile_kernels or tk is None \
            or not req.archs:
        return []
    host = req.environ.get("CUDAHOSTCXX") or req.environ.get("CXX")
    with tempfile.TemporaryDirectory(prefix="torchbuild-preflight-") as tmp:
        workdir = Path(tmp)
        (workdir / "probe.cu").write_text(probes.kernel_source())
        if compile_all(tk.nvcc, req.archs, workdir, req.environ, host):
            items = " ".join(f"sm_{arch_item(a).replace('.', '')}" for a in req.archs)
            return [ok("kernel", f"nvcc compiled a kernel for {items}")]
        # Something failed: find out which arch, to name it in the error.
        return compile_each(tk.nvcc, req.archs, workdir, req.environ, host)


# ----------------------------------------------------------------------------------- driver


def knowledge_dir(recipe_dir: Path | None) -> Path | None:
    """A --recipe-dir without cuda.toml/archsyntax.toml (a fixture or a trimmed set of releases)
    still gets the built-in toolkit and arch-syntax facts."""
    if recipe_dir is not None and (recipe_dir / "cuda.toml").is_file() \
            and (recipe_dir / "archsyntax.toml").is_file():
        return recipe_dir
    return None


def _settle(found: Sequence[Finding], force: bool) -> list[Finding]:
    return [f.forced() if force else f for f in found]


def _raise_first(found: Sequence[Finding]) -> None:
    errors = [f for f in found if f.level == "error"]
    if not errors:
        return
    first = errors[0]
    others = "".join(f"\n  also: {f.message} (fix: {f.fix})" for f in errors[1:])
    cls: type[TorchbuildError] = first.error_class or PreflightError
    msg = f"{first.message}{others}"
    forceable = all(f.forceable for f in errors)
    fix = first.fix + ("; or pass --force to continue anyway" if forceable else "")
    raise cls(msg, fix=fix)


def report(found: Sequence[Finding]) -> None:
    for f in found:
        if f.level == "ok":
            log.info(f"ok       {f.check}: {f.message}")
        elif f.level == "warning":
            log.warn(f"{f.check}: {f.message}" + (f" (fix: {f.fix})" if f.fix else ""))


def run_preflight(request: PreflightRequest, *, force: bool,
                  facts: MachineFacts | None = None,
                  sink: Callable[[Sequence[Finding]], None] = report) -> list[Finding]:
    """Run the three stages; raise the first error's class unless it is forced away.

    ``facts`` may be passed in (tests, doctor); otherwise the machine is probed here.
    """
    kn = load_knowledge(knowledge_dir(request.recipe_dir))
    found = _settle(request_findings(request, kn), force)
    sink(found)
    _raise_first(found)
    facts = facts or gather_facts(request)
    machine = _settle(machine_findings(request, facts, kn), force)
    sink(machine)
    _raise_first(machine)
    kernels = _settle(kernel_findings(request, facts), force)
    sink(kernels)
    _raise_first(kernels)
    return [*found, *machine, *kernels]


# ------------------------------------------------------------------------ the pipeline's entry

# The env a conda build creates, GB; each component's own share is recipe data (its `disk_gb`).
CONDA_ENV_GB = 8.0


def estimate_disk_gb(component_gb: Sequence[float], *, backend: str) -> float:
    total = sum(component_gb)
    if backend in {"conda", "conda-exe"}:
        total += CONDA_ENV_GB
    return total


def request_for_plan(plan: Plan, options: Options) -> PreflightRequest:
    backend = plan.environment.backend
    return PreflightRequest(
        torch_version=plan.torch_version, cuda=plan.cuda, archs=plan.archs,
        python_version=plan.python_version, work_dir=plan.work_dir,
        companions={n: (c.version if (c := _component(plan, n)) else "none")
                    for n in ("vision", "audio", "text")},
        cpu=plan.cuda is None, env_backend=backend,
        needs_system_toolkit=plan.cuda is not None and backend in {"venv", "existing"},
        estimated_disk_gb=estimate_disk_gb([c.disk_gb for c in plan.components],
                                           backend=backend),
        environ=options.environ, jobs=options.jobs, jobs_decision=plan.jobs_decision,
        recipe_dir=options.recipe_dir, release=plan.release,
        allow_missing=tuple(options.allow_missing), tool_dirs=_tool_dirs(plan),
        cmake_policy_minimum=_torch_step_env(plan).get("CMAKE_POLICY_VERSION_MINIMUM"),
        torch_from_env=plan.torch_from_env)


def _tool_dirs(plan: Plan) -> tuple[Path, ...]:
    """An existing env's steps run with its bin dir first on PATH (env/create.py _activate)."""
    env = plan.environment
    return (env.python.parent,) if env.backend == "existing" else ()


def _torch_step_env(plan: Plan) -> Mapping[str, str]:
    return next((s.env for s in plan.steps if s.component == "torch" and s.kind == "build"), {})


def _component(plan: Plan, name: str) -> Component | None:
    return next((c for c in plan.components if c.name == name), None)


def preflight_for_plan(plan: Plan, options: Options, machine: Facts | None = None
                       ) -> list[Finding]:
    """What ``pipeline`` calls after planning, with the planner's facts (the host checks are
    added to them, nothing gathered twice)."""
    log.step("preflight")
    request = request_for_plan(plan, options)
    facts = gather_facts(request, machine) if machine is not None else None
    return run_preflight(request, force=options.force, facts=facts)


def refuse(found: Sequence[Finding], *, force: bool) -> None:
    """Print ``found`` (after --force) and raise the first error, as a real run's stage would."""
    settled = _settle(found, force)
    report(settled)
    _raise_first(settled)


def request_problems(plan: Plan, options: Options) -> list[Finding]:
    """The pure, request-level checks (no probing): what ``--dry-run`` reports beside the plan."""
    request = request_for_plan(plan, options)
    kn = load_knowledge(knowledge_dir(request.recipe_dir))
    return [f for f in request_findings(request, kn) if f.level != "ok"]
