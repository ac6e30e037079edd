"""The fix-hint property's helpers (tests/unit/test_resolve.py, integration/test_fix_hints.py).

The property test (#14 "hints that lead somewhere"): for every refused combination of arch, CUDA,
torch and Python over the knowledge tables, apply the refusal's suggested fix and assert that the
new request passes the same checks: ``pipeline.plan_for`` (resolver + planner, what every run and
dry-run calls) and preflight's request stage (``request_problems``). A fix that says no
combination exists is checked by trying every release x official CUDA x backend.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from pathlib import Path

from packaging.version import Version

from torchbuild.errors import TorchbuildError
from torchbuild.knowledge.recipe import RecipeBook, load_recipes
from torchbuild.knowledge.rules import Knowledge, cmake_accepts, cuda_versions_for, load_knowledge
from torchbuild.machine.facts import Facts
from torchbuild.machine.preflight import request_problems
from torchbuild.machine.probes import MemInfo, Toolkit
from torchbuild.options import resolve
from torchbuild.pipeline import plan_for
from torchbuild.plan import Plan

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
# The planner's machine facts: a 16-core box, Python 3.11 (Debian 12's), a system CUDA 12.8
# toolkit for the venv fixes (a venv build uses the system toolkit unless --cuda says which).
FACTS = Facts(cores=16, mem=MemInfo(64.0, 60.0, 0.0, 0.0), machine="x86_64",
              toolkit=Toolkit("/usr/local/cuda/bin/nvcc", "12.8", Path("/usr/local/cuda"),
                              ("7.5", "8.6", "9.0"), 14, None),
              host_python="/usr/bin/python3", host_python_version="3.11")
ENVIRON = {"HOME": "/nonexistent-home"}


@cache
def book() -> RecipeBook:
    return load_recipes(RECIPES)


@cache
def kn() -> Knowledge:
    return load_knowledge(RECIPES)


def run(cli: Mapping[str, object]) -> tuple[Plan | None, str | None]:
    """(plan, None) when the request passes every request-level check, else (None, fix text)."""
    try:
        options = resolve({**cli, "dry_run": True}, ENVIRON)
        plan, options = plan_for(book(), options, FACTS)
    except TorchbuildError as exc:
        return None, exc.fix or ""
    errors = [f for f in request_problems(plan, options) if f.level == "error"]
    return (None, errors[0].fix) if errors else (plan, None)


def apply_fix(cli: Mapping[str, str], fix: str) -> dict[str, str]:
    """The flags after "use " (up to a parenthesis), applied over the request."""
    m = re.match(r"use (.*?)(?: \(|$)", fix)
    assert m, f"the fix is not a request: {fix!r}"
    words = shlex.split(m.group(1))
    out = dict(cli)
    for flag, value in zip(words[::2], words[1::2], strict=True):
        assert flag.startswith("--"), fix
        out[flag[2:].replace("-", "_")] = value
    return out


# --------------------------------------------------------------------------- the property


def arch_classes() -> list[str]:
    """One arch per class of identical behaviour under the tables: the CUDAs that compile it, the
    CMake syntaxes that parse it, the cpp_extension tables that accept it."""
    k = kn()
    items = {a for f in k.cuda.values() for a in f.sm}
    items |= {a + "a" for f in k.cuda.values() for a in f.sm_a}
    items |= {a + "f" for f in k.cuda.values() for a in f.sm_f}
    seen: dict[tuple[object, ...], str] = {}
    for item in sorted(items, key=lambda i: (float(i.rstrip("af")), i)):
        key = (cuda_versions_for(item, k),
               tuple(cmake_accepts(item, s, k) for s in sorted(k.cmake_regex)),
               tuple(item in t.supported for _, t in sorted(k.cpp_extension.items())))
        seen.setdefault(key, item)
    return sorted(seen.values(), key=lambda i: (float(i.rstrip("af")), i))


def release_classes() -> list[str]:
    """One release per class: patch releases whose rows agree on everything the rules read
    (CUDA list, default, Python range, C++ standard, arch syntax, cpp_extension table, which
    companions exist) behave the same."""
    seen: dict[tuple[object, ...], str] = {}
    for version, r in sorted(book().releases.items(), key=lambda kv: Version(kv[0])):
        key = (r.cuda, r.default_cuda, r.python_min, r.python_max, r.cxx_std, r.arch_syntax,
               version.rsplit(".", 1)[0], bool(r.vision), bool(r.audio), bool(r.text))
        seen.setdefault(key, version)
    return list(seen.values())


def cuda_classes() -> list[str]:
    """One CUDA per class: same toolkit facts, same conda.toml row, official for the same
    releases (and the same major, which cuda_ok compares)."""
    k, releases = kn(), book().releases
    conda = (book().conda or {}).get("cuda", {})
    seen: dict[tuple[object, ...], str] = {}
    for version, f in sorted(k.cuda.items(), key=lambda kv: Version(kv[0])):
        key = (f.max_gcc, f.sm, f.sm_a, f.sm_f, str(conda.get(version)), version.split(".")[0],
               tuple(v for v, r in sorted(releases.items()) if version in r.cuda),
               tuple(v for v, r in sorted(releases.items()) if version == r.default_cuda))
        seen.setdefault(key, version)
    return list(seen.values())


CCS = [*arch_classes(), "3.5 12.0", "6.1 12.0", "7.0 10.0"]


def requests(cc: str) -> Iterator[dict[str, str]]:
    for torch in [None, *release_classes()]:
        for cuda in [None, *cuda_classes()]:
            for python in [None, "3.8", "3.11", "3.14"]:
                cli = {"cc": cc, "torch": torch, "cuda": cuda, "python": python}
                yield {n: v for n, v in cli.items() if v is not None}


def nothing_builds(cc: str) -> bool:
    """Every release x official CUDA x backend x companions skipped or not: all refused."""
    for version, release in book().releases.items():
        for cuda in release.cuda:
            for env in ("conda", "venv"):
                for skip in ({}, {"vision": "none", "audio": "none", "text": "none"}):
                    cli = {"cc": cc, "torch": version, "cuda": cuda, "env": env,
                           "python": release.python_max, **skip}
                    if run(cli)[0] is not None:
                        return False
    return True


def check_fixes(clis: Iterable[dict[str, str]]) -> tuple[int, list[object], set[str]]:
    """(refused, fixes that were refused again, archs whose fix says none exists)."""
    refused, failures, none_exists = 0, [], set()
    for cli in clis:
        plan, fix = run(cli)
        if plan is not None:
            continue
        refused += 1
        assert fix, f"refusal without a fix: {cli}"
        if fix.startswith("none exists"):
            none_exists.add(cli["cc"])
            continue
        fixed, again = run(apply_fix(cli, fix))
        if fixed is None:
            failures.append((cli, fix, again))
    return refused, failures, none_exists


def every_request() -> Iterator[dict[str, str]]:
    for cc in CCS:
        yield from requests(cc)


