"""Version knowledge as rules over data: archs x CUDA x torch, gcc, python, cmake, companions.

Pure: every function takes the facts it needs (``Knowledge`` is loaded once from ``recipes/``) and
returns ``Finding`` values; nothing here probes the machine. ``preflight.py`` feeds these rules with
what ``probes.py`` measured, and ``plan`` validation calls :func:`check_companion`.

The data files and where each fact comes from: ``recipes/releases.toml`` (per torch release),
``recipes/cuda.toml`` (per CUDA toolkit), ``recipes/archsyntax.toml`` (the two arch-list parsers).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol

from torchbuild.errors import CompatibilityError, PreflightError, RecipeError, TorchbuildError
from torchbuild.knowledge.datafile import check_keys, load_toml
from torchbuild.knowledge.recipe import Release, default_recipe_dir, load_releases

Level = Literal["ok", "warning", "error"]


@dataclass(frozen=True)
class Finding:
    """One check's verdict. ``forceable`` errors become warnings under ``--force``."""

    check: str
    level: Level
    message: str
    fix: str = ""
    error_class: type[TorchbuildError] | None = None
    forceable: bool = True

    def forced(self) -> Finding:
        """The same finding downgraded to a warning (only for forceable errors)."""
        if self.level != "error" or not self.forceable:
            return self
        return Finding(self.check, "warning", f"{self.message} (ignored: --force)", self.fix,
                       self.error_class, self.forceable)

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "level": self.level, "message": self.message,
                "fix": self.fix, "forceable": self.forceable,
                "error": self.error_class.__name__ if self.error_class else None}


def ok(check: str, message: str) -> Finding:
    return Finding(check, "ok", message)


def warning(check: str, message: str, fix: str = "") -> Finding:
    return Finding(check, "warning", message, fix)


def error(check: str, message: str, fix: str, cls: type[TorchbuildError], *,
          forceable: bool = True) -> Finding:
    return Finding(check, "error", message, fix, cls, forceable)


class ArchLike(Protocol):
    """What the rules need of ``cc.Arch`` (kept structural so tests and callers stay decoupled)."""

    @property
    def major(self) -> int: ...
    @property
    def minor(self) -> int: ...
    @property
    def suffix(self) -> str: ...
    @property
    def ptx(self) -> bool: ...


def arch_item(arch: ArchLike) -> str:
    """The TORCH_CUDA_ARCH_LIST spelling without ``+PTX``: ``8.6``, ``9.0a``, ``10.0f``."""
    return f"{arch.major}.{arch.minor}{arch.suffix}"


def vtuple(version: str) -> tuple[int, ...]:
    """``"11.3.0"`` -> ``(11, 3, 0)``; stops at the first non-numeric part (``13.0.88`` is fine)."""
    parts: list[int] = []
    for piece in version.strip().split("."):
        m = re.match(r"\d+", piece)
        if m is None:
            break
        parts.append(int(m.group()))
    return tuple(parts)


def minor_of(version: str) -> str:
    """``"2.13.0"`` -> ``"2.13"``."""
    return ".".join(str(p) for p in vtuple(version)[:2])


# --------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class CudaFacts:
    version: str
    max_gcc: int
    clang_lt: int | None
    sm: tuple[str, ...]
    sm_a: tuple[str, ...]
    sm_f: tuple[str, ...]
    min_driver: str | None
    verified: bool

    def targets(self, suffix: str) -> tuple[str, ...]:
        return {"": self.sm, "a": self.sm_a, "f": self.sm_f}.get(suffix, ())


@dataclass(frozen=True)
class CppExtFacts:
    """``torch.utils.cpp_extension`` of one torch minor: names and accepted arch strings."""

    minor: str
    named: tuple[tuple[str, str], ...]
    supported: tuple[str, ...]


class ReleaseLike(Protocol):
    """What the rules read of a release (``recipe.Release`` or a stand-in in tests)."""

    @property
    def version(self) -> str: ...
    @property
    def python_min(self) -> str: ...
    @property
    def python_max(self) -> str: ...
    @property
    def cuda(self) -> tuple[str, ...]: ...
    @property
    def default_cuda(self) -> str: ...
    @property
    def cxx_std(self) -> int: ...
    @property
    def min_gcc(self) -> str: ...
    @property
    def min_cmake(self) -> str: ...
    @property
    def max_cmake_exclusive(self) -> str: ...
    @property
    def arch_syntax(self) -> str: ...
    def companion(self, name: str) -> tuple[str, str]: ...


def pin_of(release: ReleaseLike, name: str) -> str:
    """'exact' (wheel pins torch==X.Y.Z), 'min' (torch>=...) or 'none'."""
    return str(getattr(release, f"{name}_pin", "exact"))


@dataclass(frozen=True)
class Knowledge:
    cuda: Mapping[str, CudaFacts]
    cmake_regex: Mapping[str, str]
    cpp_extension: Mapping[str, CppExtFacts]
    releases: Mapping[str, Release] = field(default_factory=dict)

    def release(self, torch_version: str) -> Release:
        try:
            return self.releases[torch_version]
        except KeyError:
            known = ", ".join(sorted(self.releases, key=vtuple)[-5:])
            msg = f"torch {torch_version} is not in recipes/releases.toml"
            raise RecipeError(msg, fix=f"pick a known release (newest: {known})") from None

    def cuda_facts(self, cuda: str) -> CudaFacts | None:
        return self.cuda.get(minor_of(cuda))

    def cpp_ext(self, torch_version: str) -> CppExtFacts | None:
        return self.cpp_extension.get(minor_of(torch_version))


_CUDA_ROW = {"max_gcc": int, "clang_lt": int, "min_sm": str, "max_sm": str, "sm": list,
             "sm_a": list, "sm_f": list, "min_driver": str, "verified": bool}
_SYNTAX_KEYS = {"schema_version": int, "cmake_arch_regex": dict, "cpp_extension": dict}
_REGEX_ROW = {"regex": str, "torch": str}
_CPP_EXT_ROW = {"named": list, "nn_from_arch": str, "supported": list}


def _read_cuda(path: Path) -> dict[str, Any]:
    data = load_toml(path, missing_fix="reinstall torchbuild or pass --recipe-dir")
    check_keys(data, {"schema_version": int, "cuda": dict}, str(path), required=("cuda",))
    for version, row in data["cuda"].items():
        check_keys(row, _CUDA_ROW, f"{path}: cuda.{version}", required=("max_gcc", "sm"))
    cuda: dict[str, Any] = data["cuda"]
    return cuda


def _read_syntax(path: Path) -> dict[str, Any]:
    data = load_toml(path, missing_fix="reinstall torchbuild or pass --recipe-dir")
    check_keys(data, _SYNTAX_KEYS, str(path), required=("cmake_arch_regex", "cpp_extension"))
    for name, row in data["cmake_arch_regex"].items():
        check_keys(row, _REGEX_ROW, f"{path}: cmake_arch_regex.{name}", required=("regex",))
    for name, row in data["cpp_extension"].items():
        check_keys(row, _CPP_EXT_ROW, f"{path}: cpp_extension.{name}",
                   required=("named", "supported"))
    return data


def _cuda_facts(version: str, row: Mapping[str, Any]) -> CudaFacts:
    return CudaFacts(version, int(row["max_gcc"]), row.get("clang_lt"), tuple(row["sm"]),
                     tuple(row["sm_a"]), tuple(row["sm_f"]), row.get("min_driver"),
                     bool(row.get("verified", False)))


@cache
def load_knowledge(recipe_dir: Path | None = None) -> Knowledge:
    """Read cuda.toml, archsyntax.toml and releases.toml (cached per directory)."""
    base = recipe_dir or default_recipe_dir()
    cuda = _read_cuda(base / "cuda.toml")
    syntax = _read_syntax(base / "archsyntax.toml")
    # The same validated Release objects the planner uses (recipe.py owns releases.toml).
    releases = load_releases(base)[1] if (base / "releases.toml").exists() else {}
    return Knowledge(
        cuda={v: _cuda_facts(v, row) for v, row in cuda.items()},
        cmake_regex={k: v["regex"] for k, v in syntax["cmake_arch_regex"].items()},
        cpp_extension={m: CppExtFacts(m, tuple((a, b) for a, b in t["named"]),
                                      tuple(t["supported"]))
                       for m, t in syntax["cpp_extension"].items()},
        releases=releases,
    )


# --------------------------------------------------------------------------------------- archs


def cuda_versions_for(item: str, kn: Knowledge) -> tuple[str, ...]:
    """Every CUDA in the table that can compile ``item`` (``8.6``, ``9.0a``, ``10.0f``)."""
    m = re.match(r"^(\d+\.\d)([af]?)$", item)
    if m is None:
        return ()
    base, suffix = m.groups()
    return tuple(v for v, f in sorted(kn.cuda.items(), key=lambda kv: vtuple(kv[0]))
                 if base in f.targets(suffix))


def _span(versions: Sequence[str]) -> str:
    if not versions:
        return "no CUDA version in recipes/cuda.toml"
    return versions[0] if len(versions) == 1 else f"CUDA {versions[0]} .. {versions[-1]}"


def arch_vs_cuda(arch: ArchLike, cuda: str, kn: Knowledge) -> Finding:
    item = arch_item(arch)
    facts = kn.cuda_facts(cuda)
    if facts is None:
        return warning("arch-cuda", f"CUDA {cuda} is not in recipes/cuda.toml; {item} unchecked",
                       "use a CUDA version listed in recipes/cuda.toml")
    if arch_item_base(arch) in facts.targets(arch.suffix):
        return ok("arch-cuda", f"CUDA {cuda} can compile sm_{item.replace('.', '')}")
    able = cuda_versions_for(item, kn)
    msg = f"CUDA {cuda} cannot compile compute capability {item} (supported by {_span(able)})"
    fix = f"use --cuda {able[-1]}, or drop {item} from --cc" if able else f"drop {item} from --cc"
    return error("arch-cuda", msg, fix, CompatibilityError, forceable=False)


def arch_item_base(arch: ArchLike) -> str:
    return f"{arch.major}.{arch.minor}"


def cmake_accepts(item: str, syntax: str, kn: Knowledge) -> bool:
    """Does torch's CMake (select_compute_arch.cmake) of this syntax era parse ``item``?"""
    regex = kn.cmake_regex.get(syntax)
    return regex is not None and re.match(regex, item) is not None


def arch_vs_cmake(arch: ArchLike, release: ReleaseLike, kn: Knowledge) -> Finding:
    item = arch_item(arch)
    if release.arch_syntax not in kn.cmake_regex:
        return warning("arch-syntax", f"unknown arch_syntax {release.arch_syntax!r} for torch "
                       f"{release.version}; {item} unchecked", "set arch_syntax in releases.toml")
    if cmake_accepts(item, release.arch_syntax, kn):
        return ok("arch-syntax", f"torch {release.version}'s CMake accepts {item}")
    newer = [v for v, r in sorted(kn.releases.items(), key=lambda kv: vtuple(kv[0]))
             if cmake_accepts(item, r.arch_syntax, kn)]
    since = f"torch >= {newer[0]}" if newer else "no torch release"
    msg = (f"torch {release.version}'s CMake cannot parse TORCH_CUDA_ARCH_LIST item {item!r} "
           f"(syntax '{release.arch_syntax}'; {since} accepts it)")
    plain = arch_item_base(arch)
    alt = f"use {plain} instead of {item}" if arch.suffix else f"use --torch {newer[0]} or newer"
    if not newer and not arch.suffix:
        alt = f"drop {item} from --cc"
    return error("arch-syntax", msg, alt, CompatibilityError, forceable=False)


def cpp_extension_accepts(arch: ArchLike, facts: CppExtFacts) -> bool:
    """cpp_extension's check: the item (with +PTX if set) must be in valid_arch_strings."""
    return arch_item(arch) in facts.supported


def arch_vs_cpp_extension(arch: ArchLike, torch_version: str, kn: Knowledge) -> Finding:
    item = arch_item(arch)
    facts = kn.cpp_ext(torch_version)
    if facts is None:
        return warning("arch-extension", f"no cpp_extension table for torch {torch_version}",
                       "add it to recipes/archsyntax.toml")
    if cpp_extension_accepts(arch, facts):
        return ok("arch-extension", f"torch {torch_version} extensions accept {item}")
    msg = (f"torch {minor_of(torch_version)}'s cpp_extension rejects {item!r} (companion builds "
           f"fail with 'Unknown CUDA arch ({item}) or GPU not supported')")
    fix = f"use {arch_item_base(arch)}" if arch.suffix else f"drop {item} from --cc"
    return error("arch-extension", f"{msg}", fix + ", or skip the companions (--vision none "
                 "--audio none)", CompatibilityError, forceable=False)


def check_archs(archs: Sequence[ArchLike], cuda: str, torch_version: str, *,
                knowledge: Knowledge | None = None, extensions: bool = True,
                release: ReleaseLike | None = None) -> list[Finding]:
    """Every arch against the CUDA toolkit, torch's CMake regex and (if companions are built) the
    cpp_extension table. Non-ok findings only, plus one summary ok when all pass. ``release``
    defaults to the row of ``torch_version`` in the knowledge's releases.toml."""
    kn = knowledge or load_knowledge()
    release = release or kn.release(torch_version)
    found: list[Finding] = []
    for arch in archs:
        found.append(arch_vs_cuda(arch, cuda, kn))
        found.append(arch_vs_cmake(arch, release, kn))
        if extensions:
            found.append(arch_vs_cpp_extension(arch, torch_version, kn))
    bad = [f for f in found if f.level != "ok"]
    if bad:
        return bad
    listed = ";".join(arch_item(a) + ("+PTX" if a.ptx else "") for a in archs)
    return [ok("archs", f"{listed} valid for CUDA {cuda} and torch {torch_version}")]


# ------------------------------------------------------------------------------ toolchain rules


def gcc_ok(gcc_version: str, cuda: str | None, *, release: ReleaseLike | None = None,
           max_gcc: int | None = None, knowledge: Knowledge | None = None,
           compiler: str = "gcc") -> Finding:
    """Host gcc within [release.min_gcc, max gcc of the CUDA toolkit].

    ``max_gcc`` is the limit read from the real ``crt/host_config.h`` when there is one: the
    toolkit's own header beats the table.
    """
    kn = knowledge or load_knowledge()
    have = vtuple(gcc_version)
    if release is not None and have < vtuple(release.min_gcc):
        msg = (f"{compiler} {gcc_version} is older than torch {release.version} needs "
               f"(gcc >= {release.min_gcc}, C++{release.cxx_std})")
        return error("gcc", msg, f"install gcc >= {release.min_gcc} and point CC/CXX at it "
                     "(or use the conda env backend, which brings its own)", PreflightError,
                     forceable=False)
    if cuda is not None:
        facts = kn.cuda_facts(cuda)
        limit = max_gcc if max_gcc is not None else (facts.max_gcc if facts else None)
        if limit is not None and have and have[0] > limit:
            msg = (f"{compiler} {gcc_version} is newer than CUDA {cuda}'s nvcc accepts "
                   f"(gcc <= {limit})")
            fix = (f"install gcc-{limit} (or older, >= {release.min_gcc if release else '?'}) and "
                   f"set CC, CXX and CUDAHOSTCXX to it; do not use -allow-unsupported-compiler")
            return error("gcc", msg, fix, PreflightError, forceable=False)
        upper = f", <= {limit} for CUDA {cuda}" if limit is not None else ""
        return ok("gcc", f"{compiler} {gcc_version} within range{upper}")
    return ok("gcc", f"{compiler} {gcc_version} new enough")


def python_ok(py: str, release: ReleaseLike) -> Finding:
    have = vtuple(py)[:2]
    lo, hi = vtuple(release.python_min)[:2], vtuple(release.python_max)[:2]
    if lo <= have <= hi:
        return ok("python", f"Python {py} supported by torch {release.version}")
    msg = (f"Python {py} is outside torch {release.version}'s range "
           f"{release.python_min} .. {release.python_max}")
    return error("python", msg, f"use --python {release.python_max} (or any in range)",
                 CompatibilityError)


def cuda_ok(cuda: str, release: ReleaseLike, kn: Knowledge | None = None) -> Finding:
    """The release's official CUDA list, and C++20 releases need nvcc >= 12.0."""
    kn = kn or load_knowledge()
    if release.cxx_std >= 20 and vtuple(cuda) < (12, 0):
        msg = f"torch {release.version} is C++20; CUDA {cuda}'s nvcc has no -std=c++20"
        return error("cuda", msg, f"use --cuda {release.default_cuda}", CompatibilityError,
                     forceable=False)
    if minor_of(cuda) in release.cuda:
        return ok("cuda", f"CUDA {cuda} is an official build of torch {release.version}")
    if kn.cuda_facts(cuda) is None:
        msg = f"CUDA {cuda} is not in recipes/cuda.toml"
        return error("cuda", msg, f"use one of {', '.join(release.cuda)}", CompatibilityError)
    official = ", ".join(release.cuda)
    if vtuple(cuda)[:1] in {vtuple(c)[:1] for c in release.cuda}:
        # Same major as an official build: the usual case of a newer/older toolkit on a machine.
        return warning("cuda", f"CUDA {cuda} is not one of torch {release.version}'s official "
                       f"builds ({official}); same major, expected to work",
                       f"--cuda {release.default_cuda} is the tested combination")
    msg = f"torch {release.version} was released for CUDA {official}, not {cuda}"
    return error("cuda", msg, f"use --cuda {release.default_cuda}", CompatibilityError)


def cmake_ok(cmake_version: str, release: ReleaseLike, *,
             policy_minimum: str | None = None) -> Finding:
    """``policy_minimum``: CMAKE_POLICY_VERSION_MINIMUM as the build steps set it. With it CMake 4
    configures the vendored ``cmake_minimum_required(<3.5)`` of old tags: the real v2.6.0 tree
    configured and built with cmake 4.4.3 and 3.5 set (benchmarks/results/gpu-real-torch-2.6.0.md),
    so it clears the refusal instead of being ignored (#12 §5)."""
    have = vtuple(cmake_version)
    if have < vtuple(release.min_cmake):
        msg = (f"cmake {cmake_version} is older than torch {release.version} needs "
               f"({release.min_cmake})")
        return error("cmake", msg, f"install cmake>={release.min_cmake}", PreflightError)
    top = release.max_cmake_exclusive
    if top and have >= vtuple(top) and policy_minimum and vtuple(policy_minimum) >= (3, 5):
        return ok("cmake", f"cmake {cmake_version} configures torch {release.version} with "
                  f"CMAKE_POLICY_VERSION_MINIMUM={policy_minimum}")
    if top and have >= vtuple(top):
        msg = (f"cmake {cmake_version} cannot configure torch {release.version}: CMake {top} "
               "removed compatibility with cmake_minimum_required(<3.5) used by its submodules")
        return error("cmake", msg, f"install cmake<{top}, or set CMAKE_POLICY_VERSION_MINIMUM=3.5",
                     PreflightError)
    return ok("cmake", f"cmake {cmake_version} fits torch {release.version}")


def driver_ok(driver_cuda: str, toolkit_cuda: str) -> Finding:
    """The driver's max CUDA (nvidia-smi header) against the toolkit being built with."""
    have, want = vtuple(driver_cuda)[:2], vtuple(toolkit_cuda)[:2]
    if have >= want:
        return ok("driver", f"driver supports CUDA {driver_cuda} >= {toolkit_cuda}")
    if have[:1] == want[:1]:
        msg = (f"driver supports CUDA {driver_cuda} < {toolkit_cuda}: runs only through CUDA "
               "minor-version compatibility (no PTX JIT of newer code)")
        return warning("driver", msg, "update the NVIDIA driver (on WSL2: the Windows driver)")
    msg = (f"driver supports only CUDA {driver_cuda}; wheels built with CUDA {toolkit_cuda} "
           "will not run on this machine")
    return error("driver", msg, f"update the NVIDIA driver (on WSL2: the Windows driver), or use "
                 f"--cuda {driver_cuda}", PreflightError)


# ------------------------------------------------------------------------------------ companions

# torchaudio >= 2.9 builds its CUDA code through cpp_extension; earlier releases translate the
# list into CMAKE_CUDA_ARCHITECTURES themselves (pytorch-build.md 3.2), torchtext has no CUDA code.
def companions_use_cpp_extension(companions: Mapping[str, str]) -> bool:
    if companions.get("vision"):
        return True
    audio = companions.get("audio", "")
    return bool(audio) and vtuple(audio) >= (2, 9)


def _min_pinned_since(name: str, version: str, kn: Knowledge) -> str | None:
    """Oldest torch whose row pairs ``version`` with a 'min' pin (``torch>=...`` companions)."""
    rows = [r for r in kn.releases.values()
            if r.companion(name)[0] == version and pin_of(r, name) == "min"]
    return min((r.version for r in rows), key=vtuple, default=None)


def companion_ok(name: str, version: str | None, release: ReleaseLike, *,
                 knowledge: Knowledge | None = None) -> Finding:
    """Is ``--<name> version`` the companion built for this torch? ``None`` = recipe default."""
    kn = knowledge or load_knowledge()
    check = f"companion-{name}"
    expected, expected_tag = release.companion(name)
    tag = expected_tag or f"v{expected}"
    if version == "none":
        return ok(check, f"torch{name} skipped")
    if not expected:
        if version is None:
            return ok(check, f"no torch{name} release for torch {release.version}; skipped")
        msg = f"torch{name} has no release for torch {release.version} (last: see recipes)"
        last = max((r.version for r in kn.releases.values() if r.companion(name)[0]),
                   key=vtuple, default="?")
        return error(check, msg + f"; newest torch with torch{name} is {last}",
                     f"drop --{name}, or use --torch {last}", CompatibilityError, forceable=False)
    if version is None or version == expected:
        return ok(check, f"torch{name} {expected} ({tag}) matches torch {release.version}")
    since = _min_pinned_since(name, version, kn)
    if since is not None and vtuple(release.version) >= vtuple(since):
        msg = (f"torch{name} {version} declares torch>={since}; torch {release.version}'s own "
               f"companion is {expected}")
        return warning(check, msg, f"--{name} {expected}")
    msg = f"torch{name} {version} is not built for torch {release.version}"
    return error(check, msg, f"use --{name} {expected} (tag {tag}), or --force to try anyway",
                 CompatibilityError)


def check_companion(companions: Mapping[str, str | None], release: ReleaseLike, *,
                    knowledge: Knowledge | None = None) -> list[Finding]:
    """All companions of a request; the plan validation entry point."""
    return [companion_ok(n, v, release, knowledge=knowledge) for n, v in companions.items()]


# --------------------------------------------------------------------------- buildable matrix


@dataclass(frozen=True)
class MatrixRow:
    torch: str
    cuda: str
    verdict: Literal["yes", "conda", "build-only", "no"]
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"torch": self.torch, "cuda": self.cuda, "verdict": self.verdict,
                "notes": list(self.notes)}


def _row(release: ReleaseLike, cuda: str, kn: Knowledge, *, gcc: str | None,
         gpu_ccs: Sequence[str], driver_cuda: str | None, toolkits: Sequence[str]) -> MatrixRow:
    facts = kn.cuda_facts(cuda)
    if facts is None:
        return MatrixRow(release.version, cuda, "no", ("CUDA not in recipes/cuda.toml",))
    notes: list[str] = []
    missing = [cc for cc in gpu_ccs if cc not in facts.sm]
    if missing:
        return MatrixRow(release.version, cuda, "no", (f"cannot target GPU {', '.join(missing)}",))
    verdict: Literal["yes", "conda", "build-only", "no"] = "yes"
    if minor_of(cuda) not in {minor_of(t) for t in toolkits}:
        verdict = "conda"
    if gcc is not None and gcc_ok(gcc, cuda, release=release, knowledge=kn).level == "error":
        verdict = "conda"
        notes.append("gcc")
    if driver_cuda is not None and driver_ok(driver_cuda, cuda).level == "error":
        verdict = "build-only"
        notes.append(f"driver supports only CUDA {driver_cuda}")
    return MatrixRow(release.version, cuda, verdict, tuple(notes))


def buildable_matrix(knowledge: Knowledge | None = None, *, gcc: str | None,
                     gpu_ccs: Sequence[str] = (), driver_cuda: str | None = None,
                     toolkits: Sequence[str] = ()) -> list[MatrixRow]:
    """For every release x official CUDA: can this machine build it, and how (newest first)."""
    kn = knowledge or load_knowledge()
    rows: list[MatrixRow] = []
    for version in sorted(kn.releases, key=vtuple, reverse=True):
        release = kn.releases[version]
        rows += [_row(release, c, kn, gcc=gcc, gpu_ccs=gpu_ccs, driver_cuda=driver_cuda,
                      toolkits=toolkits) for c in release.cuda]
    return rows
