"""Third-party CUDA extensions (``--extra SPEC``): the recipe data and the pure decisions on it.

``recipes/extensions.toml`` holds, per package, the switch that forces a source build, its own
arch-selection variable, the archs its setup.py hard-codes, its nvcc threads and memory per compile
job, its local-version variable, and what verify imports -- each fact cited from the package's own
setup.py. A package the file does not know gets ``[defaults]``: what every
``torch.utils.cpp_extension`` build understands (TORCH_CUDA_ARCH_LIST, MAX_JOBS, FORCE_CUDA).

Everything below the loader is pure: which archs an extra will really carry, what its build
variables are, and what makes a request impossible (flash-attn 2 below sm_80).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from torchbuild.cc import Arch
from torchbuild.errors import RecipeError, UsageError
from torchbuild.knowledge.datafile import check_keys, did_you_mean, load_toml
from torchbuild.knowledge.jobs import extension_jobs

RECIPE_FILE = "extensions.toml"
ARCH_STYLES = ("digits", "dotted")

_PACKAGE_KEYS: dict[str, type] = {
    "versions": str, "repos": list, "source": str, "env": dict, "cuda_env": dict,
    "cpu_env": dict, "cuda_only": bool, "arch_env": str, "arch_style": str, "arch_targets": list,
    "a_archs": list, "fixed_archs": list, "target_cuda": list, "min_arch": str, "min_cuda": str,
    "min_torch": str, "build_requires": list,
    "nvcc_threads": int, "nvcc_threads_env": str, "jobs_env": str, "serial": bool, "job_gb": float,
    "local_version_env": str, "version_env": str, "imports": list, "smoke": str,
    "cmake_args_env": str, "cuda_defines": dict, "cpu_defines": dict, "arch_define": str,
    "no_pypi_sdist": str, "git_tag": str,
}
_FIXED_KEYS: dict[str, type] = {"cuda": str, "archs": list}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class FixedArchs:
    """Archs a setup.py hard-codes with -gencode, for the nvcc versions in ``cuda``."""

    archs: tuple[str, ...]
    cuda: SpecifierSet | None = None


@dataclass(frozen=True)
class ExtensionRecipe:
    name: str                 # canonical PyPI name; "" for the generic defaults
    known: bool = False
    versions: SpecifierSet | None = None
    repos: tuple[str, ...] = ()
    source: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    cuda_env: Mapping[str, str] = field(default_factory=dict)
    cpu_env: Mapping[str, str] = field(default_factory=dict)
    cuda_only: bool = False
    arch_env: str = ""
    arch_style: str = ""
    arch_targets: tuple[str, ...] = ()
    a_archs: tuple[str, ...] = ()     # compiled as arch-specific sm_XXa
    fixed_archs: tuple[FixedArchs, ...] = ()
    target_cuda: tuple[FixedArchs, ...] = ()   # arch_targets that need a newer nvcc
    min_arch: str = ""
    min_cuda: str = ""
    min_torch: str = ""
    nvcc_threads: int = 1
    nvcc_threads_env: str = ""
    jobs_env: str = ""
    serial: bool = False
    job_gb: float | None = None
    local_version_env: str = ""
    version_env: str = ""
    imports: tuple[str, ...] = ()
    smoke: str = ""
    build_requires: tuple[str, ...] = ()   # what `pip wheel --no-build-isolation` needs in the env
    # A CMake-driven build (scikit-build-core): -D defines go into the variable its driver splits
    # into CMake arguments; arch_define is the package's own arch cache variable, if any.
    cmake_args_env: str = ""
    cuda_defines: Mapping[str, str] = field(default_factory=dict)
    cpu_defines: Mapping[str, str] = field(default_factory=dict)
    arch_define: str = ""
    no_pypi_sdist: str = ""   # why a PyPI requirement cannot build it (refused, git+URL instead)
    git_tag: str = ""         # the release tag the facts were read at (the refusal's fix)

    @property
    def arch_key(self) -> str:
        """The package's own arch selection: an environment variable or a CMake define."""
        return self.arch_env or self.arch_define

    def covers(self, version: str | None) -> bool:
        """Were the facts read for this version? (Unknown version: assume so.)"""
        if self.versions is None or not version:
            return True
        try:
            return Version(version) in self.versions
        except InvalidVersion:
            return False


@dataclass(frozen=True)
class ExtensionBook:
    path: Path
    defaults: ExtensionRecipe
    packages: Mapping[str, ExtensionRecipe]

    def recipe_for(self, name: str, version: str | None) -> tuple[ExtensionRecipe, str]:
        """(recipe, note): the package's own facts, or the generic ones with the reason why."""
        known = self.packages.get(canonicalize_name(name))
        if known is None:
            near = did_you_mean(canonicalize_name(name), self.packages)
            return (self.defaults, (f"{name} is not in {self.path.name}{near}: generic settings "
                    "(TORCH_CUDA_ARCH_LIST, MAX_JOBS, FORCE_CUDA=1)"))
        if not known.covers(version):
            return (self.defaults, (f"{name} {version} is outside the versions {known.versions} "
                    f"whose setup.py {self.path.name} was read from: generic settings"))
        return known, ""

    def name_for_repo(self, url: str) -> str | None:
        """The package a git URL holds, from the recipes' ``repos`` (host/path, no .git)."""
        key = repo_key(url)
        return next((n for n, r in self.packages.items() if key in r.repos), None)


def repo_key(url: str) -> str:
    """``https://github.com/Dao-AILab/flash-attention.git`` -> ``github.com/dao-ailab/...``."""
    body = re.sub(r"^[a-z+]+://", "", url.strip())
    body = re.sub(r"^[^/@]+@", "", body)   # user@ of ssh URLs
    body = body.replace(":", "/").strip("/")
    return re.sub(r"\.git$", "", body).lower()


# --------------------------------------------------------------------------------------------
# Loading


def _env_table(raw: Any, where: str) -> dict[str, str]:
    if not isinstance(raw, dict):
        msg = f"{where} must be a table of NAME = \"value\""
        raise RecipeError(msg, fix='write e.g. env = { FORCE_CUDA = "1" }')
    for key, value in raw.items():
        if not _ENV_NAME.match(key) or not isinstance(value, str):
            msg = f"{where}.{key}: variables need an environment name and a string value"
            raise RecipeError(msg, fix='quote the value, e.g. FORCE_CUDA = "1"')
    return dict(raw)


def _spec(text: str, where: str) -> SpecifierSet:
    try:
        return SpecifierSet(text)
    except InvalidSpecifier:
        msg = f"{where}: {text!r} is not a version specifier"
        raise RecipeError(msg, fix='write e.g. ">=2.6,<3"') from None


def _archs(values: Sequence[Any], where: str) -> tuple[str, ...]:
    for v in values:
        if not isinstance(v, str) or not re.fullmatch(r"\d{1,2}\.\d", v):
            msg = f"{where}: {v!r} is not a compute capability like \"8.0\""
            raise RecipeError(msg, fix="write archs as quoted MAJOR.MINOR strings")
    return tuple(str(v) for v in values)


def _requirements(values: Sequence[Any], where: str) -> tuple[str, ...]:
    for v in values:
        try:
            Requirement(str(v))
        except InvalidRequirement:
            msg = f"{where}: {v!r} is not a requirement"
            raise RecipeError(msg, fix='write PEP 508 requirements, e.g. "setuptools>=64"') \
                from None
    return tuple(str(v) for v in values)


def _fixed(raw: Any, where: str) -> FixedArchs:
    if not isinstance(raw, dict):
        msg = f"{where} must be a table"
        raise RecipeError(msg, fix="use [[packages.NAME.fixed_archs]] tables")
    check_keys(raw, _FIXED_KEYS, where, required=("archs",))
    cuda = _spec(raw["cuda"], f"{where}.cuda") if "cuda" in raw else None
    return FixedArchs(_archs(raw["archs"], f"{where}.archs"), cuda)


def _parse_package(name: str, raw: Any, where: str, *, known: bool) -> ExtensionRecipe:
    if not isinstance(raw, dict):
        msg = f"{where} must be a table"
        raise RecipeError(msg, fix="use [packages.NAME] tables")
    raw = {k: float(v) if k == "job_gb" and isinstance(v, int) else v for k, v in raw.items()}
    check_keys(raw, _PACKAGE_KEYS, where)
    style = raw.get("arch_style", "")
    if raw.get("arch_define") and not raw.get("cmake_args_env"):
        msg = f"{where}: arch_define needs cmake_args_env (the variable the defines travel in)"
        raise RecipeError(msg, fix='add cmake_args_env = "CMAKE_ARGS" (scikit-build-core)')
    if (raw.get("arch_env") or raw.get("arch_define")) and style not in ARCH_STYLES:
        msg = f"{where}: arch_style must be one of {', '.join(ARCH_STYLES)}, not {style!r}"
        raise RecipeError(msg, fix='set arch_style = "digits" or "dotted"')
    fields: dict[str, Any] = {k: v for k, v in raw.items()
                              if k in {"source", "cuda_only", "arch_env", "arch_style",
                                       "min_arch", "min_cuda", "min_torch", "nvcc_threads",
                                       "nvcc_threads_env", "jobs_env", "serial", "job_gb",
                                       "local_version_env", "version_env", "smoke",
                                       "cmake_args_env", "arch_define", "no_pypi_sdist",
                                       "git_tag"}}
    for key in ("env", "cuda_env", "cpu_env", "cuda_defines", "cpu_defines"):
        if key in raw:
            fields[key] = _env_table(raw[key], f"{where}.{key}")
    for key in ("arch_targets", "a_archs"):
        if key in raw:
            fields[key] = _archs(raw[key], f"{where}.{key}")
    if "versions" in raw:
        fields["versions"] = _spec(raw["versions"], f"{where}.versions")
    fields["repos"] = tuple(repo_key(str(r)) for r in raw.get("repos", ()))
    fields["imports"] = tuple(str(m) for m in raw.get("imports", ()))
    fields["build_requires"] = _requirements(raw.get("build_requires", ()),
                                             f"{where}.build_requires")
    fields["fixed_archs"] = tuple(_fixed(f, f"{where}.fixed_archs")
                                  for f in raw.get("fixed_archs", ()))
    fields["target_cuda"] = tuple(_fixed(f, f"{where}.target_cuda")
                                  for f in raw.get("target_cuda", ()))
    return ExtensionRecipe(name=name, known=known, **fields)


def load_extensions(recipe_dir: Path) -> ExtensionBook:
    path = recipe_dir / RECIPE_FILE
    data = load_toml(path)
    check_keys(data, {"schema_version": int, "defaults": dict, "packages": dict}, str(path),
                required=("defaults",))
    defaults = _parse_package("", data["defaults"], f"{path}: defaults", known=False)
    packages = {}
    for name, raw in data.get("packages", {}).items():
        canon = canonicalize_name(name)
        if canon != name:
            msg = f"{path}: packages.{name}: write the PyPI name normalised, as {canon!r}"
            raise RecipeError(msg, fix=f"rename the table to [packages.{canon}]")
        packages[name] = _parse_package(name, raw, f"{path}: packages.{name}", known=True)
    return ExtensionBook(path, defaults, packages)


# --------------------------------------------------------------------------------------------
# Archs: what an extra will really carry, and what it cannot


def _num(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


def _serving(arch: Arch, targets: Sequence[str]) -> str | None:
    """The target whose SASS runs on ``arch``: same major, the highest minor not above its own."""
    fits = [t for t in targets if _num(t)[0] == arch.major and _num(t)[1] <= arch.minor]
    return max(fits, key=_num) if fits else None


def compiled_archs(recipe: ExtensionRecipe, cuda: str | None) -> tuple[str, ...]:
    """The hard-coded -gencode archs for this nvcc (empty: the package takes what it is told)."""
    out: list[str] = []
    for group in recipe.fixed_archs:
        if group.cuda is None or (cuda and Version(cuda) in group.cuda):
            out += [a for a in group.archs if a not in out]
    return tuple(sorted(out, key=_num))


def _nvcc_gate(recipe: ExtensionRecipe, target: str) -> SpecifierSet | None:
    """The nvcc versions under which ``target`` is compiled at all (None: every version)."""
    return next((g.cuda for g in recipe.target_cuda if target in g.archs), None)


def available_targets(recipe: ExtensionRecipe, cuda: str) -> tuple[str, ...]:
    """``arch_targets`` this nvcc compiles: setup.py drops the others without a word."""
    return tuple(t for t in recipe.arch_targets
                 if (gate := _nvcc_gate(recipe, t)) is None or Version(cuda) in gate)


@dataclass(frozen=True)
class ArchDecision:
    env: Mapping[str, str]          # the package's own arch variable, when it has one
    expected: tuple[Arch, ...]      # SASS (and PTX) verify must find in its .so files
    refusals: tuple[str, ...] = ()  # why this request cannot be built
    notes: tuple[str, ...] = ()     # said in the plan


def _arch_value(recipe: ExtensionRecipe, targets: Sequence[str]) -> str:
    if recipe.arch_style == "digits":
        return ";".join(t.replace(".", "") for t in targets)
    return ";".join(targets)


def decide_archs(recipe: ExtensionRecipe, archs: Sequence[Arch], cuda: str | None,
                 label: str) -> ArchDecision:
    """Map the requested archs onto what ``recipe``'s setup.py can compile."""
    if cuda is None or not archs:
        return ArchDecision({}, ())
    low = [a for a in archs if recipe.min_arch and (a.major, a.minor) < _num(recipe.min_arch)]
    refusals = [(f"{label} has no kernels for compute capability below {recipe.min_arch}; "
                f"--cc asks for {' '.join(str(a) for a in low)}")] if low else []
    fixed = compiled_archs(recipe, cuda)
    targets = fixed or recipe.arch_targets
    if not targets:   # the package compiles exactly TORCH_CUDA_ARCH_LIST (or its own copy of it)
        env = {recipe.arch_key: _arch_value(recipe, [a.base for a in archs])} \
            if recipe.arch_key else {}
        expected = tuple(Arch(a.major, a.minor, "a" if a.base in recipe.a_archs else a.suffix,
                              a.ptx and not recipe.arch_key) for a in archs)
        return ArchDecision(env, expected, tuple(refusals))
    if fixed:
        return _decide_targets(recipe, archs, fixed, True, label, refusals)
    # Targets this nvcc leaves out (flash-attn's sm_100/sm_120 before nvcc 12.8): refused with the
    # nvcc they need, not as "no target" - and never handed to the package's arch variable.
    usable = available_targets(recipe, cuda)
    late = {a: t for a in archs if (t := _serving(a, recipe.arch_targets)) and t not in usable}
    refusals += [f"{label} compiles sm_{t.replace('.', '')} (for {a.base}) only with nvcc "
                 f"{_nvcc_gate(recipe, t)} (its setup.py); this build uses CUDA {cuda}: use a "
                 f"CUDA {_nvcc_gate(recipe, t)} (--cuda)" for a, t in late.items()]
    return _decide_targets(recipe, [a for a in archs if a not in late], usable, False, label,
                           refusals)


def _sm_list(targets: Sequence[str]) -> str:
    return ", ".join(f"sm_{t.replace('.', '')}" for t in targets)


def _decide_targets(recipe: ExtensionRecipe, archs: Sequence[Arch], targets: Sequence[str],
                    fixed: bool, label: str, refusals: list[str]) -> ArchDecision:
    how = "hard-coded -gencode flags" if fixed else recipe.arch_key
    served: dict[Arch, str] = {}
    for arch in archs:
        target = _serving(arch, targets)
        if target is not None:
            served[arch] = target
        elif not recipe.min_arch or (arch.major, arch.minor) >= _num(recipe.min_arch):
            refusals.append(f"{label} compiles only {_sm_list(targets)} ({how}); none of them "
                            f"runs on {arch.base}")
    chosen = sorted(set(served.values()), key=_num)
    notes = [f"{label}: {a} runs its sm_{t.replace('.', '')} kernels"
             for a, t in served.items() if t != a.base]
    if any(a.ptx for a in archs):
        notes.append(f"{label} compiles SASS only: no PTX for "
                     f"{' '.join(str(a) for a in archs if a.ptx)}")
    if fixed:
        notes.append(f"{label} hard-codes {_sm_list(targets)}: TORCH_CUDA_ARCH_LIST does not "
                     "narrow them, all of them are compiled")
    env = {recipe.arch_key: _arch_value(recipe, chosen)} if recipe.arch_key and chosen else {}
    return ArchDecision(env, tuple(Arch(*_num(t)) for t in chosen), tuple(refusals),
                        tuple(notes))


def version_refusals(recipe: ExtensionRecipe, label: str, *, cuda: str | None,
                     torch_version: str) -> list[str]:
    """CPU build of a CUDA-only package, nvcc or torch older than its setup.py accepts."""
    out = []
    if cuda is None and recipe.cuda_only:
        out.append(f"{label} has CUDA kernels only: there is no CPU build of it")
    if cuda and recipe.min_cuda and Version(cuda) < Version(recipe.min_cuda):
        out.append(f"{label} needs CUDA >= {recipe.min_cuda} ({recipe.source}); this build "
                   f"uses {cuda}")
    if recipe.min_torch and Version(Version(torch_version).public) < Version(recipe.min_torch):
        out.append(f"{label} needs torch >= {recipe.min_torch}; this build has {torch_version}")
    return out


def build_env(recipe: ExtensionRecipe, *, cuda: bool) -> dict[str, str]:
    """The recipe's own variables for a CUDA or a CPU build."""
    return {**recipe.env, **(recipe.cuda_env if cuda else recipe.cpu_env)}


def cmake_args(recipe: ExtensionRecipe, arch_env: Mapping[str, str], *,
               cuda: bool) -> dict[str, str]:
    """``{cmake_args_env: "-DK=V ..."}``: the recipe's defines for this build and its arch define
    (the driver splits the value like a shell, so "86;90" stays one argument). Empty when the
    package is not driven by CMake arguments."""
    if not recipe.cmake_args_env:
        return {}
    defines = {**(recipe.cuda_defines if cuda else recipe.cpu_defines)}
    if recipe.arch_define and recipe.arch_define in arch_env:
        defines[recipe.arch_define] = arch_env[recipe.arch_define]
    return {recipe.cmake_args_env: " ".join(f"-D{k}={v}" for k, v in defines.items())}


def remaining_cc(archs: Sequence[Arch], recipe: ExtensionRecipe) -> str:
    """The --cc that would pass ``recipe``'s minimum (for a refusal's fix)."""
    keep = [a for a in archs if not recipe.min_arch or (a.major, a.minor) >= _num(recipe.min_arch)]
    return " ".join(str(a) for a in keep)




# --------------------------------------------------------------------------------------------
# --extra SPEC


@dataclass(frozen=True)
class ExtraRequest:
    """One ``--extra`` value, parsed: a PyPI requirement, ``git+URL@REF`` or a local path."""

    spec: str
    kind: str          # "pypi" | "git" | "path"
    name: str          # canonical project name ("" for a path until its metadata is read)
    specifier: str = ""   # pypi: "==2.8.3", ">=1.6"
    url: str = ""         # git: the repository URL; path: the directory as given
    ref: str = ""         # git: tag (or branch / commit)


@dataclass(frozen=True)
class ResolvedExtra:
    """An extra with its source pinned (sdist URL + sha256, git tag, directory) and its recipe."""

    request: ExtraRequest
    name: str
    version: str          # "" when only the built wheel will say (a local path)
    url: str              # sdist URL | git URL | absolute directory
    tag: str = ""         # git ref; sdist file name
    sha256: str = ""      # sdist, as the index lists it
    recipe: ExtensionRecipe = field(default_factory=lambda: ExtensionRecipe(""))
    note: str = ""        # why the generic settings apply, when they do


_SPEC_FIX = ("write --extra as a PyPI requirement (flash-attn==2.8.3, causal-conv1d), "
             "git+https://host/org/repo@TAG, or a local directory (./my-ext, /src/my-ext)")


def _bad_spec(spec: str, why: str) -> UsageError:
    return UsageError(f"--extra {spec!r}: {why}", fix=_SPEC_FIX)


def _git_request(spec: str, book: ExtensionBook) -> ExtraRequest:
    body = spec[len("git+"):]
    scheme_end = body.find("://")
    at = body.rfind("@")
    if scheme_end < 0 or at <= scheme_end + 3:
        raise _bad_spec(spec, "a git source needs a scheme and a tag: git+https://host/repo@TAG")
    url, ref = body[:at], body[at + 1:]
    if not ref or "#" in ref or not re.fullmatch(r"[A-Za-z0-9._/+-]+", ref):
        raise _bad_spec(spec, f"{ref!r} is not a tag, branch or commit")
    name = book.name_for_repo(url) or canonicalize_name(re.sub(r"\.git$", "",
                                                               url.rstrip("/").split("/")[-1]))
    return ExtraRequest(spec, "git", name, url=url, ref=ref)


def parse_extra(spec: str, book: ExtensionBook) -> ExtraRequest:
    """Syntax only (no I/O): which of the three forms ``spec`` is, or a UsageError saying why."""
    text = spec.strip()
    if not text:
        raise _bad_spec(spec, "it is empty")
    if text.startswith("git+"):
        return _git_request(text, book)
    if "://" in text:
        raise _bad_spec(spec, "a URL must be a git source (git+https://...@TAG); sdist URLs "
                        "are not taken (give the PyPI requirement, its hash is checked)")
    if text.startswith((".", "/", "~")) or "/" in text:
        return ExtraRequest(spec, "path", "", url=text)
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        raise _bad_spec(spec, f"not a requirement ({exc})") from None
    if req.url or req.extras or req.marker:
        raise _bad_spec(spec, "extras [..], markers and @ URLs are not taken here")
    return ExtraRequest(spec, "pypi", canonicalize_name(req.name), specifier=str(req.specifier))


# --------------------------------------------------------------------------------------------
# One extra's build, decided


@dataclass(frozen=True)
class ExtraDecision:
    env: Mapping[str, str]       # what its build step sets (recipe, archs, jobs, local version)
    expected: tuple[Arch, ...]   # SASS/PTX its .so files must carry
    jobs: int
    nvcc_threads: int
    jobs_reason: str
    notes: tuple[str, ...] = ()
    refusals: tuple[str, ...] = ()


def label_of(extra: ResolvedExtra) -> str:
    return f"{extra.name} {extra.version}".strip()


def decide_extra(extra: ResolvedExtra, *, archs: Sequence[Arch], cuda: str | None,
                 torch_version: str, local: str, mem_available_gb: float, swap_free_gb: float,
                 cores: int, requested_jobs: int | None) -> ExtraDecision:
    """Everything the plan needs for one extra: its variables, expected kernels, jobs, refusals."""
    recipe, label = extra.recipe, label_of(extra)
    refusals = version_refusals(recipe, label, cuda=cuda, torch_version=torch_version)
    arch = decide_archs(recipe, archs, cuda, label)
    fixed = compiled_archs(recipe, cuda)
    count = len(fixed) or len(arch.expected) or 1
    jobs = extension_jobs(mem_available_gb, swap_free_gb, cores, job_gb=recipe.job_gb,
                          recipe_threads=recipe.nvcc_threads,
                          threads_settable=bool(recipe.nvcc_threads_env), arch_count=count,
                          cuda=cuda is not None, requested=requested_jobs)
    if recipe.serial:
        jobs = dataclasses.replace(jobs, jobs=1, reasoning=f"{label} compiles one file at a time "
                                   "(its setup.py turns ninja off): MAX_JOBS=1")
    own_archs = {k: v for k, v in arch.env.items() if k != recipe.arch_define}
    env = {**build_env(recipe, cuda=cuda is not None), **own_archs,
           **cmake_args(recipe, arch.env, cuda=cuda is not None), "MAX_JOBS": str(jobs.jobs)}
    if recipe.nvcc_threads_env and cuda is not None:
        env[recipe.nvcc_threads_env] = str(jobs.nvcc_threads)
    if recipe.jobs_env:
        env[recipe.jobs_env] = str(jobs.jobs)
    if recipe.local_version_env and local:
        env[recipe.local_version_env] = local
    if recipe.version_env and extra.version:
        public = Version(extra.version).public
        env[recipe.version_env] = f"{public}+{local}" if local else public
    notes = ((extra.note,) if extra.note else ()) + arch.notes
    return ExtraDecision(env, arch.expected, jobs.jobs, jobs.nvcc_threads, jobs.reasoning,
                         notes, tuple(refusals) + arch.refusals)
