"""The plan: a pure function from (recipes, options, machine facts) to every concrete step.

Nothing here touches the machine: no file reads, no environment reads (HOME and the process
environment come in through ``Options``; tests/unit/test_plan.py checks it). ``--dry-run``
prints the plan; ``--dry-run --json`` dumps it; the build stage is a loop over ``Plan.steps``.
Anything a user may ask ("what will it run, with which variables, where?") is answered here.
"""

from __future__ import annotations

import json
import re
import shlex
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from torchbuild import __version__
from torchbuild.cc import Arch, arch_list_env
from torchbuild.errors import CompatibilityError, UsageError
from torchbuild.knowledge import wheelhouse as build_deps
from torchbuild.knowledge.conda_specs import MAGMA_PACKAGES, cuda_switches, spec_name, specs_from
from torchbuild.knowledge.configure import configure_only_argv
from torchbuild.knowledge.extensions import ResolvedExtra, decide_extra, remaining_cc
from torchbuild.knowledge.jobs import JobsDecision, build_jobs, compiler_env
from torchbuild.knowledge.labels import companion_version, cuda_tag, version_label
from torchbuild.knowledge.recipe import Backend, RecipeBook, Release
from torchbuild.machine.facts import Facts, is_version
from torchbuild.machine.preflight import estimate_disk_gb
from torchbuild.options import SET_COMPONENTS, Options, set_for

PLAN_SCHEMA = 1
# A pip constraint file that pins torch (corporate setups, CI images) would refuse the wheel we
# are building and installing; the build/install steps of our own wheels ignore constraints.
_PIP_OWN_WHEELS = {"PIP_CONSTRAINT": "/dev/null"}
# torchvision's setup.py switch per image codec (pytorch/vision setup.py: TORCHVISION_USE_PNG,
# _JPEG, _WEBP, _NVJPEG, each default "1").
CODEC_SWITCH = {"jpeg": "TORCHVISION_USE_JPEG", "png": "TORCHVISION_USE_PNG",
                "webp": "TORCHVISION_USE_WEBP", "nvjpeg": "TORCHVISION_USE_NVJPEG"}


@dataclass(frozen=True)
class SourceSpec:
    name: str
    url: str             # upstream URL from the recipe
    fetch_url: str       # after --git-mirror redirection
    tag: str
    path: Path           # checkout directory
    commit: str | None = None   # pinned commit (replay), verified after checkout
    kind: str = "git"           # git | sdist (url = the file, tag = its name) | path (--extra)
    sha256: str = ""            # sdist: the hash the index lists, checked after download


@dataclass(frozen=True)
class EnvSpec:
    backend: str            # conda | conda-exe | venv | existing
    prefix: Path
    python: Path
    python_version: str
    pip_requirements: tuple[str, ...] = ()
    conda_specs: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    lock: Path | None = None
    cuda: str | None = None
    base_python: str | None = None   # interpreter that creates a venv
    # --env existing: the build requirements missing from it, installed before the build (#17)
    pip_install: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    id: str                  # "build-torch"
    kind: str                # deps | build | install
    component: str
    argv: tuple[str, ...]    # may contain "{wheel:<component>}", resolved at run time
    cwd: Path
    env: Mapping[str, str]   # only what this step sets; merged over BuildEnv.env at run time
    description: str
    outputs: tuple[Path, ...] = ()
    # --extra builds: the wheel is re-labelled after the build ({"local": "cu128.sm86",
    # "torch": "<torch label>"}: version gets the label, its torch requirement the exact pin).
    relabel: Mapping[str, str] = field(default_factory=dict)

    def command_line(self) -> str:
        return shlex.join(self.argv)


@dataclass(frozen=True)
class Component:
    name: str
    dist: str
    version: str
    label: str               # version with local label, e.g. 2.9.1+cu128.sm86
    tag: str
    kind: str = "core"       # core (torch and companions) | extra (--extra SPEC)
    # Extras only: the SASS/PTX verify must find, what it imports, its smoke test, its jobs.
    expected_archs: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()
    smoke: str = ""
    jobs: int = 0
    jobs_reason: str = ""
    notes: tuple[str, ...] = ()
    disk_gb: float = 2.0     # what its build takes in the work dir (recipe data; preflight)


@dataclass(frozen=True)
class Plan:
    tool_version: str
    torch_version: str
    torch_label: str
    cuda: str | None
    archs: tuple[Arch, ...]
    arch_list: str
    python_version: str
    jobs: int
    jobs_reason: str
    components: tuple[Component, ...]
    sources: tuple[SourceSpec, ...]
    environment: EnvSpec
    steps: tuple[Step, ...]
    work_dir: Path
    dist: Path
    cache_dir: Path
    release: Release
    torch_from_env: bool
    offline: bool
    warnings: tuple[str, ...] = ()
    jobs_memory_limited: bool = False
    # What the execution stages need of the options, typed (they never see Options).
    clean: bool = False                       # --clean: forget stamps, clean the build trees
    compiler_cache: str = "auto"              # --compiler-cache
    allow_missing: tuple[str, ...] = ()       # --allow-missing (cmake audit, verify)
    git_mirror: str | None = None             # --git-mirror
    machine: str = ""                         # the CPU architecture the wheels are for
    choice: str = ""                          # why this torch/CUDA/Python (the resolver)

    @property
    def jobs_decision(self) -> JobsDecision:
        """The MAX_JOBS decision every later stage reports (preflight) and uses (build steps)."""
        return JobsDecision(self.jobs, self.jobs_reason, memory_limited=self.jobs_memory_limited)

    @property
    def logs_dir(self) -> Path:
        return self.work_dir / "logs"

    @property
    def wheels_dir(self) -> Path:
        return self.work_dir / "wheels"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["schema_version"] = PLAN_SCHEMA
        data["archs"] = [str(a) for a in self.archs]
        out: dict[str, Any] = json.loads(json.dumps(data, default=str))
        return out


# --------------------------------------------------------------------------------------------
# Small pure helpers


def plain_http_warnings(channels: Sequence[str], git_mirror: str | None) -> list[str]:
    """Unencrypted sources: anyone on the path can substitute packages or commits (the lock's
    hashes and the pinned commits still catch a change, a first solve or clone does not)."""
    out = [f"conda channel {c} is plain http://: a package can be swapped in transit; use "
           "https://" for c in channels if c.startswith("http://")]
    if git_mirror and git_mirror.startswith(("http://", "git://")):
        out.append(f"--git-mirror {git_mirror} is unencrypted: a repository can be swapped in "
                   "transit; use https://, ssh:// or file://")
    return out


def redirect_url(url: str, mirror: str | None) -> str:
    """``https://github.com/pytorch/vision.git`` + ``file:///m`` -> ``file:///m/pytorch/vision.git``.

    The host part of the upstream URL is replaced by the mirror prefix; the path is kept, so one
    prefix serves every repository and submodule.
    """
    if not mirror:
        return url
    if "://" in url:
        path = url.split("://", 1)[1].split("/", 1)[1] if "/" in url.split("://", 1)[1] else ""
    elif ":" in url and not url.startswith("/"):
        path = url.split(":", 1)[1]   # git@host:org/repo.git
    else:
        return url                    # a local path is not redirected
    return mirror.rstrip("/") + "/" + path.lstrip("/")


def decide_jobs(facts: Facts, options: Options, cuda: str | None) -> JobsDecision:
    """MAX_JOBS (jobs.build_jobs) over what the compilers will see: the process environment with
    ``--set`` on top. ``--set MAX_JOBS=N`` is what reaches the compiler, so it counts as asked."""
    env = compiler_env(options.environ, tuple(set_for(options.set, None).items()))
    asked = set_for(options.set, None).get("MAX_JOBS", "")
    requested = int(asked) if asked.isdigit() and int(asked) > 0 else options.jobs
    return build_jobs(facts.mem_available_gb, facts.swap_free_gb, facts.cores,
                      arch_majors=[a.major for a in options.archs], cpu=cuda is None,
                      compiler_env=env, requested=requested,
                      builds_torch=not options.torch_from_env)


def _fill(template: str, values: Mapping[str, str]) -> str:
    out = template
    for key, value in values.items():
        out = out.replace("{" + key + "}", value)
    return out


# --------------------------------------------------------------------------------------------
# Version choices


def _choose_cuda(release: Release, options: Options, facts: Facts) -> str | None:
    if options.cpu:
        return None
    if options.cuda:
        return options.cuda
    if options.env in {"venv", "existing"}:
        if facts.cuda_version is None:
            msg = "no CUDA toolkit found (looked at $CUDA_HOME, nvcc on PATH, /usr/local/cuda)"
            raise UsageError(msg, fix="install the CUDA toolkit or set CUDA_HOME; use --env conda "
                             "to get the toolkit from conda-forge; or --cpu")
        return facts.cuda_version
    return release.default_cuda or None


def _choose_python(release: Release, options: Options, facts: Facts) -> str:
    if is_version(options.python):
        return str(options.python)
    if options.python or options.env == "existing":
        if facts.env_python_version is None:
            msg = f"cannot run the interpreter {options.python or '(none given)'}"
            raise UsageError(msg, fix="pass --python /path/to/python (an existing interpreter)")
        return facts.env_python_version
    host = facts.host_python_version
    if options.env == "venv":
        return host
    lo, hi = Version(release.python_min), Version(release.python_max)
    return host if lo <= Version(host) <= hi else release.python_max


def _companions(book: RecipeBook, release: Release, options: Options) -> list[tuple[str, str, str]]:
    """[(name, version, tag)] in build order; torch first unless --torch-from-env."""
    chosen = []
    for name in book.order:
        if name == "torch":
            if not options.torch_from_env:
                chosen.append(("torch", release.version, release.tag))
            continue
        default_version, default_tag = release.companion(name)
        wanted: str | None = getattr(options, name)
        if wanted == "none":
            continue
        if wanted is None:
            if default_version:
                chosen.append((name, default_version, default_tag))
            continue
        if not default_version:
            msg = (f"--{name} {wanted}: torch {release.version} has no matching {name} "
                   "(torchtext ended with 0.18.0 for torch 2.3)" if name == "text" else
                   f"--{name} {wanted}: torch {release.version} has no matching {name}")
            raise CompatibilityError(msg, fix=f"drop --{name}, or use --{name} none")
        if wanted != default_version and not options.force:
            msg = (f"--{name} {wanted} does not match torch {release.version}: its {name} is "
                   f"{default_version} (tag {default_tag})")
            raise CompatibilityError(msg, fix=f"use --{name} {default_version}, or --force to "
                                     "build the mismatched pair anyway")
        chosen.append((name, wanted, default_tag if wanted == default_version else f"v{wanted}"))
    return chosen


# --------------------------------------------------------------------------------------------
# The plan


def _env_spec(book: RecipeBook, release: Release, options: Options, facts: Facts,
              work_dir: Path, python_version: str, cuda: str | None, *,
              vision: bool = False, extra_reqs: tuple[str, ...] = ()) -> EnvSpec:
    if options.env == "existing":
        python = Path(options.python or facts.env_python or facts.host_python)
        return EnvSpec("existing", python.parent.parent, python, python_version, cuda=cuda)
    prefix = work_dir / "env"
    python = prefix / "bin" / "python"
    if options.env == "venv":
        base = options.python if options.python and not is_version(options.python) else None
        if is_version(options.python) and options.python != facts.host_python_version:
            base = f"python{options.python}"
        reqs = _merged(book.venv_packages(release.version, cuda is not None, facts.machine),
                       extra_reqs)
        return EnvSpec("venv", prefix, python, python_version, pip_requirements=reqs, cuda=cuda,
                       base_python=base or facts.host_python)
    channels: tuple[str, ...] = tuple(options.channel)
    specs, recipe_channels = specs_from(book.conda_recipe(), release.version, cuda,
                                        python_version, vision=vision)
    channels = (*channels, *[c for c in recipe_channels if c not in channels])
    return EnvSpec(options.env, prefix, python, python_version, conda_specs=specs,
                   channels=channels, lock=options.lock, cuda=cuda)


def missing_requirements(requirements: tuple[str, ...],
                         installed: Mapping[str, str]) -> list[tuple[str, str]]:
    """[(requirement, why)] of those ``installed`` ({canonical name: version}) does not meet."""
    out = []
    for text in requirements:
        req = Requirement(text)
        have = installed.get(canonicalize_name(req.name))
        if have is None:
            out.append((text, "not installed"))
        elif req.specifier and not req.specifier.contains(have, prereleases=True):
            out.append((text, f"found {have}"))
    return out


def _merged(base: Sequence[str], more: Sequence[str]) -> tuple[str, ...]:
    """``base`` plus the requirements of ``more`` whose project it does not name yet."""
    named = {canonicalize_name(Requirement(r).name) for r in base}
    out = list(base)
    for req in more:
        name = canonicalize_name(Requirement(req).name)
        if name not in named:
            named.add(name)
            out.append(req)
    return tuple(out)


def extra_build_requirements(extras: Sequence[ResolvedExtra]) -> tuple[str, ...]:
    """What the extras' ``pip wheel --no-build-isolation`` needs in the build env (recipes'
    ``build_requires``; the generic set for a package the recipes do not know)."""
    out: tuple[str, ...] = ()
    for extra in extras:
        out = _merged(out, extra.recipe.build_requires)
    return out


def _existing_env_requirements(book: RecipeBook, release: Release, env_spec: EnvSpec,
                               components: tuple[Component, ...], facts: Facts,
                               cuda: str | None, extra_reqs: tuple[str, ...] = ()
                               ) -> tuple[EnvSpec, list[str]]:
    """An interpreter torchbuild did not make gets the companions' build requirements it lacks.

    Installing them (rather than refusing) is what the user would do by hand anyway, and it is
    said in the plan before anything runs; everything else in that env is left alone.
    """
    if env_spec.backend != "existing":
        return env_spec, []
    reqs: list[str] = []
    for comp in components:
        reqs += [r for r in book.components[comp.name].build_requirements(release.version,
                                                                           cuda is not None)
                 if r not in reqs]
    reqs = list(_merged(reqs, extra_reqs))
    missing = missing_requirements(tuple(reqs), facts.env_packages)
    spec = replace(env_spec, pip_requirements=tuple(reqs), pip_install=tuple(r for r, _ in missing))
    if not missing:
        return spec, []
    what = ", ".join(f"{r} ({why})" for r, why in missing)
    note = (f"the build env {env_spec.python} lacks build requirements: {what}; they are "
            "installed into it before the build")
    return spec, [note]


def cuda_home_view(env_prefix: Path) -> Path:
    """The classic-layout view of a conda env's CUDA (env/create.make_cuda_home_view)."""
    return env_prefix.parent / "cuda-home"


# torch.utils.cpp_extension puts the first ccache/sccache on PATH in front of the compiler only
# in newer releases: absent from v2.6.0's torch/utils/cpp_extension.py (shared/real-sources),
# present in the 2.13.0 wheel's (_wrap_compiler, TORCH_NO_COMPILER_WRAPPER); a downstream
# project's build notes date it to 2.10.
_CPP_EXTENSION_WRAPS_SINCE = Version("2.10")


def _compiler_cache_note(options: Options, facts: Facts, release: Release,
                         components: tuple[Component, ...]) -> list[str]:
    """Say it when the compiler cache cannot reach torchvision's cpp_extension compiles (#17)."""
    torch = facts.env_torch_version if options.torch_from_env else release.version
    if options.compiler_cache == "none" or not torch or not any(c.name == "vision"
                                                                  for c in components):
        return []
    if Version(torch).release >= _CPP_EXTENSION_WRAPS_SINCE.release:
        return []
    note = (f"compiler cache: torch {torch}'s cpp_extension does not put ccache/sccache in front "
            "of the compiler (from torch 2.10 it does), so torchvision compiles without the "
            "cache; the CMake builds (torch, torchaudio) use it")
    return [note]


def magma_available(env_spec: EnvSpec) -> bool:
    """Only the conda env can bring MAGMA (conda-forge's libmagma-devel or legacy ``magma``)."""
    return any(spec_name(s) in MAGMA_PACKAGES for s in env_spec.conda_specs)


def packaged_switches(book: RecipeBook, release: Release, env_spec: EnvSpec,
                      cuda: str | None) -> dict[str, str]:
    """The torch switches for what the conda env brings: MAGMA, the env's NCCL, the math
    libraries (conda.toml [[cuda_libs]]). Said out loud, so the audit can hold CMake to them."""
    if cuda is None or not env_spec.conda_specs:
        return {}
    names = {spec_name(s) for s in env_spec.conda_specs}
    env = {"USE_MAGMA": "1" if names & MAGMA_PACKAGES else "0"}
    if "nccl" in names:
        # Link the env's libnccl instead of compiling third_party/nccl for every arch
        # (pytorch-cpu-feedstock build.sh: USE_SYSTEM_NCCL=1 USE_STATIC_NCCL=0).
        env.update(USE_SYSTEM_NCCL="1", USE_STATIC_NCCL="0")
    env.update({switch: "1" for switch in cuda_switches(book.conda_recipe(), release.version)})
    return env


def codec_switches(allow_missing: tuple[str, ...]) -> dict[str, str]:
    """``--allow-missing jpeg`` etc.: build torchvision without that codec, knowingly."""
    return {CODEC_SWITCH[c]: "0" for c in allow_missing if c in CODEC_SWITCH}


def _step_env(book: RecipeBook, comp: Component, release: Release, values: Mapping[str, str],
              options: Options, cuda: str | None, facts: Facts,
              packaged: Mapping[str, str]) -> dict[str, str]:
    spec = book.components[comp.name]
    env = {k: _fill(v, values) for k, v in spec.env_values(release.version, cuda is not None)
           .items()}
    if comp.name == "torch" and cuda is not None and values.get("magma") == "0":
        # Said out loud instead of CMake quietly turning it off (and the audit then failing).
        env["USE_MAGMA"] = "0"
    if comp.name == "torch":
        env.update(packaged)
    if comp.name == "vision":
        env.update(codec_switches(options.allow_missing))
        if cuda is not None and options.env in {"conda", "conda-exe"}:
            # torchvision finds nvjpeg only at $CUDA_HOME/include/nvjpeg.h; conda-forge keeps it
            # under targets/x86_64-linux (torchvision-feedstock patches setup.py for this).
            env["CUDA_HOME"] = str(cuda_home_view(Path(values["prefix"])))
    if cuda is not None and options.env in {"venv", "existing"} and facts.cuda_home:
        env["CUDA_HOME"] = facts.cuda_home
    elif cuda is None and options.torch_from_env and facts.env_torch_cmake_needs_cuda \
            and facts.cuda_home:
        # A CUDA torch's CMake config needs a toolkit even for CPU companions; left alone,
        # torch's helper guesses CUDA_HOME from nvcc's location (/usr/local for a wrapper, #17).
        env["CUDA_HOME"] = facts.cuda_home
    if options.env in {"conda", "conda-exe"}:
        # The env's activation sets CMAKE_PREFIX_PATH with conda-forge's targets/<arch> CUDA
        # layout in it; the recipe's plain {prefix} would hide those headers and libraries.
        env.pop("CMAKE_PREFIX_PATH", None)
    if release.max_cmake_exclusive:
        # Lets CMake >= 4 configure tags whose vendored deps ask for cmake < 3.5 (pytorch#154096).
        env["CMAKE_POLICY_VERSION_MINIMUM"] = "3.5"
    env.update(_PIP_OWN_WHEELS)
    env.update(set_for(options.set, comp.name))
    return env


def _configure_step(comp: Component, src: SourceSpec, release: Release, values: dict[str, str],
                    env: Mapping[str, str], backend: Backend | None) -> Step:
    """Configure only, then audit CMakeCache.txt before the hours-long compile (#5, #12); the
    command and the cache location are the backend's (recipe data)."""
    if backend is None:
        cmd = configure_only_argv(release.version, values["python"])
        argv, extra, cache = cmd.argv, dict(cmd.env), "build/CMakeCache.txt"
    else:
        argv = tuple(_fill(a, values) for a in backend.configure)
        extra, cache = dict(backend.configure_env), backend.cmake_cache
    return Step(f"configure-{comp.name}", "configure", comp.name, argv, src.path,
                {**env, **extra}, f"configure {comp.dist} and audit the CMake cache",
                (src.path / cache,))


def _deps_argv(argv: tuple[str, ...], comp: Component, work_dir: Path) -> tuple[str, ...]:
    """The tag's own deps command, with pip's installation report written for the manifest
    (``--offline`` and replay swap in a hash-pinned install: build/deps.py, pin_deps)."""
    return (*argv, "--report", str(build_deps.report_file(work_dir, comp.name)))


def _component_steps(book: RecipeBook, comp: Component, src: SourceSpec, release: Release,
                     values: dict[str, str], options: Options, cuda: str | None,
                     facts: Facts, wheels_dir: Path, packaged: Mapping[str, str]) -> list[Step]:
    spec = book.components[comp.name]
    tmp = wheels_dir / f".tmp-{comp.name}"
    values = {**values, "version": comp.label, "wheel_dir": str(tmp)}
    env = _step_env(book, comp, release, values, options, cuda, facts, packaged)
    steps = []
    deps = spec.deps_argv(release.version, cuda is not None)
    if deps:
        argv = _deps_argv(tuple(_fill(a, values) for a in deps), comp, wheels_dir.parent)
        steps.append(Step(f"deps-{comp.name}", "deps", comp.name, argv, src.path, {},
                          f"install {comp.name} {comp.version}'s build requirements"))
    argv = tuple(_fill(a, values) for a in spec.build_argv(release.version, cuda is not None))
    backend = spec.backend(release.version)
    if backend is not None:
        env[backend.version_env] = comp.label
        if backend.requires:
            # `--no-build-isolation` installs no PEP 517 backend (ROCm/TheRock#6537).
            steps.append(Step(f"backend-{comp.name}", "deps", comp.name,
                              (values["python"], "-m", "pip", "install", *backend.requires),
                              src.path, {}, f"install {comp.name}'s build backend "
                              f"{backend.name} ({' '.join(backend.requires)})"))
    if spec.audit:
        steps.append(_configure_step(comp, src, release, values, env, backend))
    steps.append(Step(f"build-{comp.name}", "build", comp.name, argv, src.path, env,
                      f"build {comp.dist} {comp.label} wheel", (wheels_dir / comp.name,)))
    steps.append(Step(f"install-{comp.name}", "install", comp.name,
                      (values["python"], "-m", "pip", "install", "--no-deps", "--force-reinstall",
                       "--no-index", f"{{wheel:{comp.name}}}"), src.path, dict(_PIP_OWN_WHEELS),
                      f"install the {comp.dist} wheel into the build env"))
    return steps


# --------------------------------------------------------------------------------------------
# --extra SPEC: third-party extensions, built after torch and the companions


def _extra_local(cuda: str | None, archs: tuple[Arch, ...]) -> str:
    """The label an extra's version gets: what it was compiled for (``cu128.sm86``, ``cpu``)."""
    local = Version(version_label("0", cuda, archs, cpu=cuda is None)).local
    return local or ""


def _user_set(options: Options, extra: ResolvedExtra, env: Mapping[str, str]) -> dict[str, str]:
    """``--set KEY=V`` and ``--set NAME:KEY=V`` for an extra. The variable its CMake defines
    travel in (CMAKE_ARGS) gets the user's value after the recipe's, not instead of it: the
    recipe's -DCOMPUTE_BACKEND=cuda must survive a user's extra define (CMake keeps the last -D of
    a name, so the user can still override any of them)."""
    user = set_for(options.set, extra.name)
    key = extra.recipe.cmake_args_env
    if key and user.get(key) and env.get(key):
        user[key] = f"{env[key]} {user[key]}"
    return user


def _extra_parts(extra: ResolvedExtra, options: Options, facts: Facts, cuda: str | None,
                 torch_label: str, torch_version: str, values: Mapping[str, str],
                 work_dir: Path) -> tuple[Component, SourceSpec, list[Step], tuple[str, ...]]:
    local = _extra_local(cuda, options.archs)
    d = decide_extra(extra, archs=options.archs, cuda=cuda, torch_version=torch_version,
                     local=local, mem_available_gb=facts.mem_available_gb,
                     swap_free_gb=facts.swap_free_gb, cores=facts.cores,
                     requested_jobs=options.jobs)
    label = f"{Version(extra.version).public}+{local}" if extra.version else ""
    comp = Component(extra.name, extra.name, extra.version, label, extra.tag, kind="extra",
                     expected_archs=tuple(str(a) for a in d.expected),
                     imports=extra.recipe.imports, smoke=extra.recipe.smoke, jobs=d.jobs,
                     jobs_reason=d.jobs_reason, notes=d.notes)
    path = work_dir / "src" / extra.name
    kind = {"pypi": "sdist", "git": "git", "path": "path"}[extra.request.kind]
    fetch = redirect_url(extra.url, options.git_mirror) if kind == "git" else extra.url
    src = SourceSpec(extra.name, extra.url, fetch, extra.tag, path, kind=kind,
                     sha256=extra.sha256)
    env: dict[str, str] = dict(_PIP_OWN_WHEELS)
    if cuda is not None:
        env["TORCH_CUDA_ARCH_LIST"] = values["arch_list"]
        if options.env in {"venv", "existing"} and facts.cuda_home:
            env["CUDA_HOME"] = facts.cuda_home
    env.update(d.env)
    env.update(_user_set(options, extra, env))
    tmp = work_dir / "wheels" / f".tmp-{extra.name}"
    python = values["python"]
    steps = [
        Step(f"build-{extra.name}", "build", extra.name,
             (python, "-m", "pip", "wheel", ".", "--no-build-isolation", "--no-deps", "-v",
              "--wheel-dir", str(tmp)), path, env,
             f"build {extra.name} {label or extra.version or '(version from its metadata)'} "
             "wheel", (work_dir / "wheels" / extra.name,),
             relabel={"local": local, "torch": torch_label}),
        Step(f"install-{extra.name}", "install", extra.name,
             (python, "-m", "pip", "install", "--no-deps", "--force-reinstall", "--no-index",
              f"{{wheel:{extra.name}}}"), path, dict(_PIP_OWN_WHEELS),
             f"install the {extra.name} wheel into the build env"),
    ]
    return comp, src, steps, d.refusals


def _refuse_extras(refusals: Sequence[tuple[ResolvedExtra, str]], options: Options,
                   warnings: list[str]) -> None:
    if not refusals:
        return
    if options.force:
        warnings += [f"--force: {why}" for _, why in refusals]
        return
    names = sorted({e.request.spec for e, _ in refusals})
    # The archs every refused extra can serve: a --cc the tool then accepts (when it differs).
    keep = [a for a in options.archs if all(remaining_cc((a,), e.recipe) for e, _ in refusals)]
    narrower = keep and len(keep) < len(options.archs)
    fix = (f"build for the archs they support (--cc {' '.join(map(str, keep))}), or leave out "
           if narrower else "leave out ")
    fix += " ".join(f"--extra {n}" for n in names) + " (or --force to try anyway)"
    msg = "; ".join(why for _, why in refusals)
    raise CompatibilityError(msg, fix=fix)


def _check_set_targets(book: RecipeBook, options: Options,
                       extras: Sequence[ResolvedExtra]) -> None:
    """``--set NAME:KEY=V`` must name a component or one of this build's extras: a misspelt name
    would otherwise set nothing, silently. A distribution name (torchaudio) points at its
    component (audio)."""
    known = [*SET_COMPONENTS, *(e.name for e in extras)]
    dists = {canonicalize_name(c.dist): n for n, c in book.components.items()}
    for key, _value in options.set:
        target, colon, _name = key.rpartition(":")
        if colon and target not in known:
            want = canonicalize_name(target)
            close = [k for k in known if canonicalize_name(k) == want] + \
                ([dists[want]] if want in dists else [])
            msg = (f"--set {key}=...: {target!r} is neither a component nor an --extra of this "
                   f"build" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise UsageError(msg, fix=f"prefix the variable with one of {', '.join(known)}, or "
                             "drop the prefix to set it for every step")


def make_plan(book: RecipeBook, options: Options, facts: Facts,
              extras: Sequence[ResolvedExtra] = ()) -> Plan:
    release = book.release(options.torch)
    if options.torch_from_env and not facts.env_torch_version:
        where = facts.env_python or "the build environment"
        msg = f"--torch-from-env: there is no torch installed in {where}"
        raise UsageError(msg, fix="add --env existing --python /path/to/python (whose env has "
                         "torch), or drop --torch-from-env")
    _check_set_targets(book, options, extras)
    cuda = _choose_cuda(release, options, facts)
    python_version = _choose_python(release, options, facts)
    # What this build is (+cu128.sm86 / +cpu). The companions carry it even against a torch
    # from the env (a PyPI torch has no local label to inherit); their torch pin stays that
    # torch's exact version.
    build_label = version_label(release.version, cuda, options.archs, cpu=cuda is None)
    torch_label = (facts.env_torch_version or release.version) if options.torch_from_env \
        else build_label
    # Option paths arrive expanded (options.py): expanding here would read HOME behind our back.
    work_dir = options.work_dir or options.cache_dir / "work" / \
        f"torch-{release.version}-{cuda_tag(cuda) if cuda else 'cpu'}"
    wheels_dir = work_dir / "wheels"
    decision = decide_jobs(facts, options, cuda)
    jobs = decision.jobs
    chosen = _companions(book, release, options)
    extra_reqs = extra_build_requirements(extras)
    env_spec = _env_spec(book, release, options, facts, work_dir, python_version, cuda,
                         vision=any(name == "vision" for name, _, _ in chosen),
                         extra_reqs=extra_reqs)
    components = tuple(
        Component(name, book.components[name].dist, version,
                  torch_label if name == "torch" else companion_version(version, build_label),
                  ctag, disk_gb=book.components[name].disk_for(cuda=cuda is not None))
        for name, version, ctag in chosen)
    env_spec, warnings = _existing_env_requirements(book, release, env_spec, components, facts,
                                                    cuda, extra_reqs)
    sources = tuple(
        SourceSpec(c.name, book.components[c.name].repo,
                   redirect_url(book.components[c.name].repo, options.git_mirror), c.tag,
                   work_dir / "src" / c.name)
        for c in components)
    values = {"python": str(env_spec.python), "arch_list": arch_list_env(options.archs),
              "jobs": str(jobs), "torch_version": torch_label, "prefix": str(env_spec.prefix),
              "magma": "1" if magma_available(env_spec) else "0"}
    packaged = packaged_switches(book, release, env_spec, cuda)
    steps: list[Step] = []
    for comp, src in zip(components, sources, strict=True):
        steps += _component_steps(book, comp, src, release, values, options, cuda, facts,
                                  wheels_dir, packaged)
    refusals: list[tuple[ResolvedExtra, str]] = []
    torch_public = Version(torch_label).public
    for extra in extras:
        comp, src, extra_steps, why = _extra_parts(extra, options, facts, cuda, torch_label,
                                                   torch_public, values, work_dir)
        components, sources = (*components, comp), (*sources, src)
        steps += extra_steps
        refusals += [(extra, w) for w in why]
    _refuse_extras(refusals, options, warnings)
    own_magma = "USE_MAGMA" in set_for(options.set, "torch")
    if cuda is not None and values["magma"] == "0" and not own_magma \
            and not options.torch_from_env:
        where = ("conda-forge has no MAGMA package for this CUDA" if env_spec.conda_specs else
                 f"the {env_spec.backend} backend brings no MAGMA (only --env conda does)")
        warnings.append(f"no MAGMA for CUDA {cuda} ({where}): building with USE_MAGMA=0 "
                        "(slower GPU linear algebra); --set USE_MAGMA=1 with MAGMA_HOME set to "
                        "your own MAGMA to use it")
    warnings += plain_http_warnings(env_spec.channels if env_spec.conda_specs else (),
                                    options.git_mirror)
    warnings += _compiler_cache_note(options, facts, release, components)
    if not components:
        msg = "nothing to build: torch comes from the env and every companion is 'none'"
        raise UsageError(msg, fix="drop --torch-from-env or ask for a companion")
    return Plan(
        tool_version=__version__, torch_version=release.version, torch_label=torch_label,
        cuda=cuda, archs=options.archs, arch_list=arch_list_env(options.archs),
        python_version=python_version, jobs=jobs, jobs_reason=decision.reasoning,
        jobs_memory_limited=decision.memory_limited,
        components=components, sources=sources, environment=env_spec, steps=tuple(steps),
        work_dir=work_dir, dist=options.dist, cache_dir=options.cache_dir, release=release,
        torch_from_env=options.torch_from_env, offline=options.offline,
        warnings=tuple(warnings), clean=options.clean, compiler_cache=options.compiler_cache,
        allow_missing=options.allow_missing, git_mirror=options.git_mirror,
        machine=facts.machine,
    )


def pin_deps(plan: Plan, recorded: Mapping[str, Sequence[object]]) -> Plan:
    """The same plan with each deps step reinstalling exactly the recorded files (replay):
    ``--require-hashes --no-deps -r <work>/deps/<component>.replay.txt``, which
    ``build_deps.write_replay`` writes from the manifest."""
    steps = []
    for st in plan.steps:
        if st.id == f"deps-{st.component}" and recorded.get(st.component):
            comp = next(c for c in plan.components if c.name == st.component)
            local = (("--no-index", "--find-links",
                      str(build_deps.wheelhouse(plan.cache_dir, comp.name, comp.tag)))
                     if plan.offline else ())
            st = replace(st, argv=(
                st.argv[0], "-m", "pip", "install", *local, "--require-hashes", "--no-deps",
                "-r", str(build_deps.replay_file(plan.work_dir, st.component)),
                "--report", str(build_deps.report_file(plan.work_dir, st.component))))
        steps.append(st)
    return replace(plan, steps=tuple(steps))


def pin_commits(plan: Plan, commits: Mapping[str, str]) -> Plan:
    """The same plan with sources pinned to recorded commits (replay)."""
    return replace(plan, sources=tuple(replace(s, commit=commits.get(s.name, s.commit))
                                       for s in plan.sources))


# Measured: the real torch 2.6.0 CPU build's compile took 14,191 CPU-seconds (sum of its ninja
# edges, benchmarks/results/gpu-real-torch-2.6.0/cold.ninja_log.gz; 911 s on 16 cores, 97 % busy).
CPU_TORCH_COMPILE_CPU_S = 14191.0
def disk_estimate_gb(plan: Plan) -> float:
    """Preflight's estimate, which it checks the free space against."""
    return estimate_disk_gb([c.disk_gb for c in plan.components],
                            backend=plan.environment.backend)


def time_estimate(plan: Plan) -> str:
    if not any(c.name == "torch" for c in plan.components):
        return "minutes (companions only)"
    minutes = CPU_TORCH_COMPILE_CPU_S / max(plan.jobs, 1) / 60
    text = f"~{minutes:.0f} min of torch compile at MAX_JOBS {plan.jobs} for a CPU build"
    if plan.cuda is not None:
        text += "; a CUDA build takes several times longer (not measured here)"
    return text


def _render_extras(plan: Plan) -> list[str]:
    lines = []
    for c in plan.components:
        if c.kind != "extra":
            continue
        kernels = " ".join(c.expected_archs) or "-"
        lines.append(f"extra {c.name} {c.version or '?'} -> {c.label or '?'}  kernels {kernels}"
                     f"  MAX_JOBS {c.jobs}  ({c.jobs_reason})")
        lines += [f"  note: {n}" for n in c.notes]
    return lines


def summary(plan: Plan) -> list[str]:
    """The dry-run's opening: what, for which GPUs, with what, how fast, how big."""
    comps = ", ".join(f"{c.dist} {c.label}" for c in plan.components)
    return [
        f"build     {comps}",
        (f"archs     {plan.arch_list or '- (CPU build)'}   CUDA {plan.cuda or 'none'}   "
         f"Python {plan.python_version}"),
        *([f"why       {plan.choice}"] if plan.choice else []),
        f"env       {plan.environment.backend} at {plan.environment.prefix}",
        f"jobs      MAX_JOBS {plan.jobs} ({plan.jobs_reason})",
        *_render_extras(plan),
        f"disk      about {disk_estimate_gb(plan):.0f} GB under {plan.work_dir}",
        f"time      {time_estimate(plan)}",
        f"dist      {plan.dist}",
    ]


def _wrap(line: str, width: int) -> list[str]:
    """A long plan line wrapped at spaces, continuation lines indented under its start."""
    if len(line) <= width:
        return [line]
    key = re.match(r"^[a-z]+ {2,}", line)      # a summary row: continue under its value
    indent = " " * (key.end() if key else len(line) - len(line.lstrip()) + 4)
    return textwrap.wrap(line, width=width, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False)


def render(plan: Plan, width: int = 100) -> str:
    """The human-readable dry-run: a short summary, then every detail wrapped to ``width``."""
    lines = [*summary(plan), "", f"environment: {plan.environment.backend}"]
    env = plan.environment
    if env.pip_requirements:
        lines.append(f"  pip: {' '.join(env.pip_requirements)}")
    if env.pip_install:
        lines.append(f"  installed into it first (missing): {' '.join(env.pip_install)}")
    if env.conda_specs:
        lines.append(f"  channels: {' '.join(env.channels)}")
        lines.append(f"  conda specs: {'  '.join(env.conda_specs)}")
    if env.lock:
        lines.append(f"  from lock: {env.lock}")
    lines += ["", "sources:"]
    for s in plan.sources:
        pin = f" @ {s.commit}" if s.commit else f" sha256 {s.sha256}" if s.sha256 else ""
        lines.append(f"  {s.name:<6} {s.tag:<10} {s.fetch_url}{pin}  -> {s.path}")
    lines += ["", "steps:"]
    for i, st in enumerate(plan.steps, 1):
        lines.append(f"  {i:>2}. {st.id}: {st.description}")
        lines.append(f"      cwd: {st.cwd}")
        for k in sorted(st.env):
            lines.append(f"      {k}={st.env[k]}")
        lines.append(f"      $ {st.command_line()}")
    for w in plan.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(out for line in lines for out in _wrap(line, width))
