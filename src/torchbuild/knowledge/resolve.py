"""Resolve what the user left open: the torch release, its CUDA and the Python to build with.

``--cc 6.1`` alone must give a plan that builds: the newest torch whose *official* CUDA builds can
compile every requested arch (2.15.0 ships only CUDA 13.2, which dropped Pascal, so 2.14.1 with its
CUDA 12.6). A value the user pinned is never changed. When the pins cannot work together, the
refusal names a combination that passes every check, found by relaxing the fewest pins; or it says
plainly that none exists in the recipes.

Pure: every fact comes in as data (``Knowledge``, the recipe book's releases, ``conda.toml``). A
candidate passes when the same rules the planner and preflight's request stage apply find no
error (:func:`candidate_errors`); ``tests/unit/test_resolve.py`` checks every hint against the
real planner.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import Any

from torchbuild.errors import CompatibilityError, TorchbuildError
from torchbuild.knowledge.conda_specs import specs_from
from torchbuild.knowledge.recipe import Release
from torchbuild.knowledge.rules import (
    ArchLike,
    Finding,
    Knowledge,
    arch_item,
    check_archs,
    check_companion,
    companions_use_cpp_extension,
    cuda_ok,
    cuda_versions_for,
    error,
    minor_of,
    python_ok,
    vtuple,
)
from torchbuild.options import Options

CONDA_BACKENDS = frozenset({"conda", "conda-exe"})
COMPANIONS = ("vision", "audio", "text")


@dataclass(frozen=True)
class Request:
    """What was asked. ``None`` means "not pinned: resolve it". For venv/existing envs the CUDA
    (system toolkit) and Python (the interpreter) are facts of the machine, passed in pinned."""

    archs: tuple[ArchLike, ...]
    torch: str | None = None
    cuda: str | None = None
    python: str | None = None
    backend: str = "conda"
    cpu: bool = False
    companions: Mapping[str, str | None] = field(default_factory=dict)
    host_python: str = "3.11"
    force: bool = False
    # Pins the machine imposes (venv/existing): never relaxed in a hint, named differently.
    fixed: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Choice:
    torch: str
    cuda: str | None
    python: str
    companions: Mapping[str, str | None]
    reason: str = ""


@dataclass(frozen=True)
class Tables:
    """The facts the resolver reads: version knowledge, the book's releases, conda.toml. The
    memo keeps each rule's verdict: a hint search asks the same questions many times."""

    kn: Knowledge
    releases: Mapping[str, Release]
    conda: Mapping[str, Any] | None
    memo: dict[tuple[Any, ...], Any] = field(default_factory=dict, compare=False, repr=False)

    def newest_first(self) -> list[Release]:
        if ("newest",) not in self.memo:
            self.memo["newest",] = sorted(self.releases.values(), key=lambda r: vtuple(r.version),
                                         reverse=True)
        return list(self.memo["newest",])

    def able(self, arch: ArchLike) -> tuple[str, ...]:
        """The CUDA versions that can compile ``arch`` (cached ``cuda_versions_for``)."""
        item = arch_item(arch)
        if ("able", item) not in self.memo:
            self.memo["able", item] = cuda_versions_for(item, self.kn)
        found: tuple[str, ...] = self.memo["able", item]
        return found


_LAST: list[Tables] = []


def tables_for(kn: Knowledge, releases: Mapping[str, Release],
               conda: Mapping[str, Any] | None) -> Tables:
    """The same ``Tables`` (and memo) while the same loaded recipes are asked again."""
    if _LAST and _LAST[0].kn is kn and _LAST[0].releases is releases and _LAST[0].conda is conda:
        return _LAST[0]
    _LAST[:] = [Tables(kn, releases, conda)]
    return _LAST[0]


# ------------------------------------------------------------------------------ one candidate


def _memo(t: Tables, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    if key not in t.memo:
        t.memo[key] = compute()
    return t.memo[key]


def _key(req: Request) -> tuple[Any, ...]:
    return (req.archs, req.torch, req.cuda, req.python, req.backend, req.cpu,
            tuple(sorted(req.companions.items())), req.host_python)


def _conda_errors(t: Tables, torch: str, cuda: str | None, python: str) -> list[Finding]:
    if t.conda is None:
        return []       # make_plan says there is no conda.toml; nothing to choose between
    try:
        specs_from(t.conda, torch, cuda, python)
    except TorchbuildError as exc:
        return [error("conda", exc.message, exc.fix or "", type(exc), forceable=False)]
    return []


def _arch_errors(t: Tables, req: Request, release: Release, cuda: str | None) -> list[Finding]:
    if cuda is None:
        return [error("cuda", "a CUDA build needs a CUDA version", "pass --cuda X.Y, or --cpu",
                      CompatibilityError, forceable=False)]
    built = {n: ("" if req.companions.get(n) == "none"
                 else req.companions.get(n) or release.companion(n)[0]) for n in COMPANIONS}
    found = [cuda_ok(cuda, release, t.kn)]
    found += check_archs(req.archs, cuda, release.version, knowledge=t.kn, release=release,
                         extensions=companions_use_cpp_extension(built))
    return found


def candidate_errors(t: Tables, req: Request, torch: str, cuda: str | None,
                     python: str) -> list[Finding]:
    """Every error the planner and preflight's request stage would raise for this combination."""
    found: list[Finding] = _memo(t, ("errors", *_key(req), torch, cuda, python),
                                 lambda: _candidate_errors(t, req, torch, cuda, python))
    return found


def _candidate_errors(t: Tables, req: Request, torch: str, cuda: str | None,
                      python: str) -> list[Finding]:
    release = t.releases[torch]
    found = [python_ok(python, release)]
    if req.backend in CONDA_BACKENDS:
        found += _memo(t, ("conda", torch, cuda, python),
                       lambda: _conda_errors(t, torch, cuda, python))
    if not req.cpu:
        comps = tuple(sorted(req.companions.items()))
        found += _memo(t, ("archs", req.archs, comps, torch, cuda),
                       lambda: _arch_errors(t, req, release, cuda))
    found += check_companion(req.companions, release, knowledge=t.kn)
    return [f for f in found if f.level == "error"]


def _blocking(found: Sequence[Finding], force: bool) -> list[Finding]:
    """Errors that stop the run: all of them, or under --force only the unforceable ones."""
    return [f for f in found if not (force and f.forceable)]


# ------------------------------------------------------------------------------------ search


def _cudas(release: Release, req: Request) -> list[str | None]:
    if req.cpu:
        return [None]
    if req.cuda is not None:
        return [req.cuda]
    rest = sorted((c for c in release.cuda if c != release.default_cuda), key=vtuple,
                  reverse=True)
    return [release.default_cuda, *rest] if release.default_cuda else list(rest)


def _pythons(release: Release, req: Request) -> list[str]:
    """A pinned Python; else the host's when the release supports it, then the newest it does."""
    if req.python is not None:
        return [req.python]
    lo, hi = vtuple(release.python_min)[:2], vtuple(release.python_max)[:2]
    if len(lo) < 2 or len(hi) < 2 or lo[0] != hi[0]:
        return [req.host_python]
    minors = [f"{hi[0]}.{m}" for m in range(hi[1], lo[1] - 1, -1)]
    return [req.host_python] + [p for p in minors if p != req.host_python] \
        if req.host_python in minors else minors


def candidates(t: Tables, req: Request) -> Iterator[tuple[Release, str | None, str]]:
    """(release, cuda, python) in order of preference: newest torch, its default CUDA, then its
    other official CUDAs newest first; the host's Python, then the newest the release supports."""
    releases = [t.releases[req.torch]] if req.torch else t.newest_first()
    if req.cuda is not None and req.torch is None:
        # A pinned CUDA goes first with the releases that were built for it (the tested pairs).
        releases.sort(key=lambda r: minor_of(req.cuda or "") not in r.cuda)
    for release in releases:
        for cuda in _cudas(release, req):
            for python in _pythons(release, req):
                yield release, cuda, python


def search(t: Tables, req: Request, *, force: bool = False) -> Choice | None:
    """The first candidate that nothing blocks (under ``force``: nothing unforceable)."""
    found: Choice | None = _memo(t, ("search", *_key(req), force), lambda: _search(t, req, force))
    return found


def _search(t: Tables, req: Request, force: bool) -> Choice | None:
    for release, cuda, python in candidates(t, req):
        if not _blocking(candidate_errors(t, req, release.version, cuda, python), force):
            return Choice(release.version, cuda, python, dict(req.companions))
    return None


# ------------------------------------------------------------------------------------ reasons


def _arch_need(arch: ArchLike, t: Tables) -> str:
    """``sm_61 needs CUDA <= 12.9`` from the toolkit table (empty when any toolkit will do)."""
    able = t.able(arch)
    every = sorted(t.kn.cuda, key=vtuple)
    name = f"sm_{arch_item(arch).replace('.', '')}"
    if not able or list(able) == every:
        return ""
    if able[-1] == every[-1]:
        return f"{name} needs CUDA ≥ {able[0]}"
    if able[0] == every[0]:
        return f"{name} needs CUDA ≤ {able[-1]}"
    return f"{name} needs CUDA {able[0]} .. {able[-1]}"


def _skipped_note(t: Tables, req: Request, chosen: Release) -> str:
    """Why the newest release was not taken (only when it was not)."""
    if req.torch is not None:
        return ""
    newest = t.newest_first()[0]
    if newest.version == chosen.version:
        return ""
    pinned_out = req.cuda is not None and minor_of(req.cuda) not in newest.cuda
    if not req.cpu and (pinned_out or (req.cuda is None and not any(
            c in t.able(a) for a in req.archs for c in newest.cuda))):
        return f" ({newest.version} ships only CUDA {', '.join(newest.cuda)})"
    first = candidate_errors(t, req, newest.version, req.cuda or newest.default_cuda or None,
                             req.python or req.host_python)
    return f" ({newest.version}: {first[0].message})" if first else ""


def reason_for(t: Tables, req: Request, choice: Choice) -> str:
    """One line: what was chosen and why, e.g. ``sm_61 needs CUDA ≤ 12.9: building torch 2.14.1
    with CUDA 12.6 (2.15.0 ships only CUDA 13.2)``."""
    release = t.releases[choice.torch]
    newest = t.newest_first()[0]
    offered = {*release.cuda, *newest.cuda}
    # Only the archs that ruled a CUDA out are worth naming.
    needs = [_arch_need(a, t) for a in req.archs if not req.cpu and
             not offered <= set(t.able(a))]
    needs = [n for n in needs if n]
    what = f"building torch {choice.torch}"
    what += f" with CUDA {choice.cuda}" if choice.cuda else " for CPU"
    what += f", Python {choice.python}"
    if not needs and choice.cuda in (None, release.default_cuda) and req.torch is None \
            and choice.torch == newest.version:
        what += " (the newest release" + (", its default CUDA)" if choice.cuda else ")")
    head = "; ".join(needs) + ": " if needs else ""
    return head + what + _skipped_note(t, req, release)


# ---------------------------------------------------------------------------------- refusals


def _pins(req: Request) -> list[str]:
    """Relaxable pins, in the order a hint prefers to change them (CUDA first, Python last)."""
    names = [n for n in ("cuda", "torch") if getattr(req, n) is not None]
    names += [n for n in COMPANIONS if req.companions.get(n) not in (None, "none")]
    names += ["python"] if req.python is not None else []
    return [n for n in names if n not in req.fixed]


def _without(req: Request, names: Sequence[str]) -> Request:
    comps = {k: v for k, v in req.companions.items() if k not in names}
    changes: dict[str, Any] = {n: None for n in names if n in ("cuda", "torch", "python")}
    return replace(req, companions=comps, **changes)


def _flags(choice: Choice, names: Sequence[str], t: Tables) -> list[str]:
    release = t.releases[choice.torch]
    out = []
    for name in names:
        value = getattr(choice, name) if name in ("torch", "cuda", "python") \
            else release.companion(name)[0] or "none"
        out += [f"--{name}", str(value)]
    return out


def _relaxations(req: Request) -> Iterator[tuple[Request, list[str], list[str]]]:
    """(relaxed request, names whose resolved value the hint gives, flags it adds), cheapest
    first: each changed pin costs 1, so does skipping the companions (their cpp_extension is
    pickier than torch's CMake) and so does a venv with a system toolkit (conda-forge has no CUDA
    below 12.0)."""
    pins = _pins(req)
    skips = [False, True] if not req.cpu else [False]
    venvs = [False, True] if req.backend in CONDA_BACKENDS and not req.cpu else [False]
    options = [(names, skip, venv) for size in range(len(pins) + 1)
               for names in combinations(pins, size) for skip in skips for venv in venvs]
    # Cheapest first; at equal cost a changed pin beats skipping companions or a venv.
    options.sort(key=lambda o: (len(o[0]) + o[1] + o[2], o[1] + o[2]))
    for names, skip, venv in options:
        if not (names or skip or venv):
            continue
        relaxed, extra = _without(req, names), []
        given = list(names)
        if venv:
            relaxed, extra = replace(relaxed, backend="venv"), ["--env", "venv"]
            given += [n for n in ("torch", "cuda", "python") if n not in given]
        if skip:
            relaxed = replace(relaxed, companions={n: "none" for n in COMPANIONS})
            extra += ["--vision", "none", "--audio", "none", "--text", "none"]
        yield relaxed, given, extra


def _first_fix(t: Tables, req: Request) -> tuple[list[str], str] | None:
    """(flags, note) of the cheapest relaxation that passes, if any."""
    for relaxed, names, extra in _relaxations(req):
        found = search(t, relaxed)
        if found is not None:
            note = (f" (needs a system CUDA {found.cuda} toolkit)"
                    if relaxed.backend != req.backend else "")
            return [*extra, *_flags(found, names, t)], note
    return None


def hint(t: Tables, req: Request) -> str:
    """A fix that the tool then accepts, or a plain statement that none exists."""
    fix = _first_fix(t, req)
    if fix is not None:
        return f"use {' '.join(fix[0])}{fix[1]}"
    for size in range(len(req.archs) - 1, 0, -1):
        for keep in combinations(req.archs, size):
            sub = replace(req, archs=keep)
            cc = ["--cc", "'" + " ".join(str(a) for a in keep) + "'"]
            if search(t, sub) is not None:
                return f"use {' '.join(cc)} (no release builds all of them together)"
            fix = _first_fix(t, sub)
            if fix is not None:
                return f"use {' '.join([*cc, *fix[0]])}{fix[1]} (no release builds all of " \
                    "them together)"
    listed = ", ".join(str(a) for a in req.archs)
    return (f"none exists: no torch release in the recipes builds {listed} with any CUDA "
            "(use --cpu, or a GPU the recipes support)")


def resolve(t: Tables, req: Request) -> Choice:
    """The newest combination that passes every check and keeps every pin; else a refusal whose
    fix names one that does (see :func:`hint`)."""
    found = search(t, req)
    if found is None and req.force:
        found = search(t, req, force=True)
    if found is not None:
        return replace(found, reason=reason_for(t, req, found))
    first = next(candidates(t, req))
    errors = candidate_errors(t, req, first[0].version, first[1], first[2])
    what = errors[0].message if errors else "no combination passes the checks"
    pinned = ", ".join(f"--{n} {v}" for n in ("torch", "cuda", "python")
                       if (v := getattr(req, n)) is not None and n not in req.fixed)
    msg = what + (f" (pinned: {pinned})" if pinned else "")
    cls = errors[0].error_class if errors and errors[0].error_class else CompatibilityError
    raise cls(msg, fix=hint(t, req))


# ------------------------------------------------------------------------- options <-> request


def is_version(text: str | None) -> bool:
    return bool(text) and bool(re.match(r"^\d+\.\d+$", str(text)))


def request_from(options: Options, *, host_python: str, system_cuda: str | None,
                 env_python: str | None) -> Request | None:
    """The resolver's view of the options; None when there is nothing to resolve (torch comes
    from the env, or a venv/existing build without a system toolkit: the planner says so)."""
    if options.torch_from_env:
        return None
    backend = options.env
    fixed: set[str] = set()
    cuda, python = options.cuda, options.python if is_version(options.python) else None
    if backend not in CONDA_BACKENDS:
        if not options.cpu and cuda is None:
            if system_cuda is None:
                return None
            cuda = system_cuda
            fixed.add("cuda")
        if python is None:
            python = env_python if (options.python or backend == "existing") else host_python
            fixed.add("python")
        if python is None:
            return None
    companions = {n: getattr(options, n) for n in COMPANIONS if getattr(options, n) is not None}
    return Request(archs=options.archs, torch=options.torch, cuda=None if options.cpu else cuda,
                   python=python, backend=backend, cpu=options.cpu, companions=companions,
                   host_python=host_python, force=options.force,
                   fixed=frozenset(fixed))


def release_of_env_torch(t: Tables, env_torch: str) -> tuple[str | None, str]:
    """The recipe release whose companions match the torch already in the env: its own version
    (a local label such as +cpu or +cu130 dropped), else the newest known patch of its X.Y.
    (None, why) when the recipes know no release of that X.Y (a nightly, a newer torch)."""
    base = re.split(r"[+]", env_torch.strip())[0]
    if base in t.releases:
        return base, f"torch {env_torch} is in the env: building the companions of torch {base}"
    minor = vtuple(base)[:2]
    same = [r.version for r in t.newest_first() if vtuple(r.version)[:2] == minor]
    if same:
        return same[0], (f"torch {env_torch} is in the env, not a release the recipes know: "
                         f"building the companions of torch {same[0]} (same {minor[0]}.{minor[1]})")
    return None, ""


def _from_env_torch(t: Tables, options: Options, env_torch: str | None) -> tuple[Options, str]:
    """--torch-from-env without --torch: the env's torch picks the release (and so the
    companions' versions), not the newest release in the recipes."""
    if options.torch is not None or not env_torch:
        return options, ""
    version, reason = release_of_env_torch(t, env_torch)
    if version is None:
        return options, ""      # the planner plans the newest and its pins say what it builds
    origin = {**options.origin, "torch": "resolved"}
    return replace(options, torch=version, origin=origin), reason


def resolve_options(t: Tables, options: Options, *, host_python: str, system_cuda: str | None,
                    env_python: str | None, env_torch: str | None = None) -> tuple[Options, str]:
    """Options with the resolved torch (and, for conda envs, CUDA and Python) filled in, and the
    one-line reason; unchanged options and "" when nothing was left open. The machine's facts
    come in as values: the host's Python X.Y, the system toolkit's CUDA, the --python/existing
    interpreter's X.Y, and the torch already installed there (--torch-from-env)."""
    if options.torch_from_env:
        return _from_env_torch(t, options, env_torch)
    req = request_from(options, host_python=host_python, system_cuda=system_cuda,
                       env_python=env_python)
    if req is None or (req.torch is not None and req.torch not in t.releases):
        return options, ""      # an unknown --torch: the planner names the known ones
    choice = resolve(t, req)
    values: dict[str, Any] = {"torch": choice.torch}
    if options.env in CONDA_BACKENDS:
        values |= {"cuda": choice.cuda, "python": choice.python}
    changed = {k: v for k, v in values.items() if getattr(options, k) is None and v is not None}
    if not changed:
        return options, ""
    origin = {**options.origin, **{k: "resolved" for k in changed}}
    return replace(options, **changed, origin=origin), choice.reason
