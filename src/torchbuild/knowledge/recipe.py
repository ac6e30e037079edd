"""Recipes: the version table (``releases.toml``) and the per-era build rules (``components.toml``).

Both are data files with a ``schema_version``; every table is validated on load and an unknown key
is an error that names the file, the table and the closest known key ("did you mean ...").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from torchbuild.errors import RecipeError
from torchbuild.knowledge.conda_specs import RECIPE_FILE, load_conda_recipe
from torchbuild.knowledge.datafile import check_keys, did_you_mean, load_toml

COMPONENTS = ("torch", "vision", "audio", "text")

_RELEASE_KEYS = {
    "tag": str, "vision": str, "vision_tag": str, "vision_pin": str, "audio": str,
    "audio_tag": str, "audio_pin": str, "text": str, "text_tag": str, "python_min": str,
    "python_max": str, "cuda": list, "default_cuda": str, "cxx_std": int, "min_gcc": str,
    "min_cmake": str, "max_cmake_exclusive": str, "arch_syntax": str,
}
_COMPONENT_KEYS = {"repo": str, "dist": str, "deps": list, "build": list, "env": list,
                   "backend": list,
                   "audit": bool, "requires": list, "disk_gb": dict}
_DISK_KEYS = {"cuda": (int, float), "cpu": (int, float)}
_RULE_KEYS = {"when": dict, "argv": list, "values": dict}
_WHEN_KEYS = {"torch": str, "cuda": bool, "machine": str}
_VENV_RULE_KEYS = {"when": dict, "packages": list}
_BACKEND_KEYS = {"when": dict, "name": str, "requires": list, "configure": list,
                 "configure_env": dict, "cmake_cache": str, "flags": str, "version_env": str,
                 "source": str}
_FLAG_WAYS = ("env", "cmake-define")


def default_recipe_dir() -> Path:
    """``torchbuild/recipes`` inside an installed wheel, else the repository's ``recipes/``."""
    package = Path(__file__).resolve().parents[1]   # src/torchbuild, or site-packages/torchbuild
    for candidate in (package / "recipes", package.parents[1] / "recipes"):
        if (candidate / "releases.toml").is_file():
            return candidate
    msg = "the built-in recipes are missing from this installation"
    raise RecipeError(msg, fix="reinstall torchbuild, or pass --recipe-dir DIR")


@dataclass(frozen=True)
class Release:
    """One torch release and what goes with it."""

    version: str
    tag: str
    vision: str = ""
    vision_tag: str = ""
    vision_pin: str = "exact"
    audio: str = ""
    audio_tag: str = ""
    audio_pin: str = "exact"
    text: str = ""
    text_tag: str = ""
    python_min: str = "3.10"
    python_max: str = "3.14"
    cuda: tuple[str, ...] = ()
    default_cuda: str = ""
    cxx_std: int = 17
    min_gcc: str = ""
    min_cmake: str = ""
    max_cmake_exclusive: str = ""
    arch_syntax: str = ""

    def companion(self, name: str) -> tuple[str, str]:
        """(version, tag) of a companion; ("", "") when the release has none."""
        if name == "torch":
            return self.version, self.tag
        return getattr(self, name), getattr(self, f"{name}_tag")


@dataclass(frozen=True)
class Rule:
    torch: SpecifierSet | None = None
    cuda: bool | None = None
    argv: tuple[str, ...] = ()
    values: Mapping[str, str] = field(default_factory=dict)
    machine: str | None = None
    packages: tuple[str, ...] = ()

    def applies(self, torch_version: str, cuda: bool, machine: str | None = None) -> bool:
        if self.cuda is not None and self.cuda != cuda:
            return False
        if self.machine is not None and machine is not None and self.machine != machine:
            return False
        return self.torch is None or Version(torch_version) in self.torch


@dataclass(frozen=True)
class Backend:
    """A tag's build backend, as recipe data (#12): what it needs installed, how to configure
    without compiling, where CMake's cache lands, how flags and the version label get in."""

    name: str                              # setuptools | scikit-build-core
    configure: tuple[str, ...]             # configure-only argv ({python} filled by the plan)
    cmake_cache: str = "build/CMakeCache.txt"   # relative to the checkout
    configure_env: Mapping[str, str] = field(default_factory=dict)
    requires: tuple[str, ...] = ()         # pip requirements of the backend itself
    flags: str = "env"                     # env: USE_*/BUILD_* variables reach CMake
    version_env: str = "PYTORCH_BUILD_VERSION"   # the variable the version label travels in
    source: str = ""                       # where each fact was read
    torch: SpecifierSet | None = None

    def applies(self, torch_version: str) -> bool:
        return self.torch is None or Version(torch_version) in self.torch


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    repo: str
    dist: str
    deps: tuple[Rule, ...] = ()
    build: tuple[Rule, ...] = ()
    env: tuple[Rule, ...] = ()
    audit: bool = False   # configure-only step + CMake cache audit before the compile
    backends: tuple[Backend, ...] = ()
    # Disk a build of this component takes (source + build tree + wheel), GB, for a CUDA and a
    # CPU build: what preflight checks the work dir's free space against.
    disk_gb: tuple[float, float] = (2.0, 2.0)

    def disk_for(self, *, cuda: bool) -> float:
        return self.disk_gb[0] if cuda else self.disk_gb[1]

    def backend(self, torch_version: str) -> Backend | None:
        """The one backend rule of this tag's era (None: the recipe names none)."""
        rules = [b for b in self.backends if b.applies(torch_version)]
        if len(rules) > 1:
            msg = (f"component {self.name!r}: {len(rules)} backend rules match torch "
                   f"{torch_version} (at most one may)")
            raise RecipeError(msg, fix="make the `when` ranges of its [[backend]] rules disjoint")
        return rules[0] if rules else None
    # pip requirements its build needs in an env torchbuild did not make (--env existing)
    requires: tuple[Rule, ...] = ()

    def build_requirements(self, torch_version: str, cuda: bool) -> tuple[str, ...]:
        out: list[str] = []
        for rule in self.requires:
            if rule.applies(torch_version, cuda):
                out += [p for p in rule.packages if p not in out]
        return tuple(out)

    def build_argv(self, torch_version: str, cuda: bool) -> tuple[str, ...]:
        rules = [r for r in self.build if r.applies(torch_version, cuda)]
        if len(rules) != 1:
            msg = (f"component {self.name!r}: {len(rules)} build rules match torch "
                   f"{torch_version} (exactly one must)")
            raise RecipeError(msg, fix="make the `when` ranges of its [[build]] rules disjoint")
        return rules[0].argv

    def deps_argv(self, torch_version: str, cuda: bool) -> tuple[str, ...] | None:
        rules = [r for r in self.deps if r.applies(torch_version, cuda)]
        return rules[0].argv if rules else None

    def env_values(self, torch_version: str, cuda: bool) -> dict[str, str]:
        out: dict[str, str] = {}
        for rule in self.env:
            if rule.applies(torch_version, cuda):
                out.update(rule.values)
        return out


@dataclass(frozen=True)
class RecipeBook:
    path: Path
    newest: str
    releases: Mapping[str, Release]
    order: tuple[str, ...]
    components: Mapping[str, ComponentSpec]
    venv_requirements: tuple[Rule, ...] = ()
    conda: Mapping[str, Any] | None = None   # recipes/conda.toml, when the dir has one

    def conda_recipe(self) -> Mapping[str, Any]:
        if self.conda is None:
            msg = f"{self.path} has no {RECIPE_FILE}: the conda backend has nothing to solve"
            raise RecipeError(msg, fix="restore recipes/conda.toml from torchbuild's sources, "
                              "or use --env venv")
        return self.conda

    def venv_packages(self, torch_version: str, cuda: bool, machine: str) -> tuple[str, ...]:
        out: list[str] = []
        for rule in self.venv_requirements:
            if rule.applies(torch_version, cuda, machine):
                out += [p for p in rule.packages if p not in out]
        return tuple(out)

    def release(self, version: str | None) -> Release:
        version = version or self.newest
        if version in self.releases:
            return self.releases[version]
        known = sorted(self.releases, key=Version)
        msg = (f"torch {version} is not in the recipes{did_you_mean(version, known)}; "
               f"supported: {', '.join(known)}")
        raise RecipeError(msg, fix="pick a supported --torch version, or add the release to "
                          f"{self.path / 'releases.toml'}")


def _parse_disk(raw: Any, where: str) -> tuple[float, float]:
    """``disk_gb = { cuda = 40, cpu = 15 }``; a component without one is companion-sized."""
    if raw is None:
        return (2.0, 2.0)
    check_keys(raw, _DISK_KEYS, where, required=("cuda", "cpu"))
    cuda, cpu = float(raw["cuda"]), float(raw["cpu"])
    if cuda < 0 or cpu < 0:
        msg = f"{where}: sizes must not be negative"
        raise RecipeError(msg, fix="give the GB a build of this component takes")
    return (cuda, cpu)


def _parse_rule(raw: Any, where: str, keys: Mapping[str, type] = _RULE_KEYS) -> Rule:
    if not isinstance(raw, dict):
        msg = f"{where}: each rule must be a table"
        raise RecipeError(msg, fix="use [[...]] tables")
    check_keys(raw, keys, where)
    when = raw.get("when", {})
    check_keys(when, _WHEN_KEYS, f"{where}.when")
    spec = None
    if "torch" in when:
        try:
            spec = SpecifierSet(when["torch"])
        except InvalidSpecifier:
            msg = f"{where}.when.torch: {when['torch']!r} is not a version specifier"
            raise RecipeError(msg, fix='write e.g. ">=2.6" or "<2.5"') from None
    values = raw.get("values", {})
    for key, value in values.items():
        if not isinstance(value, str):
            msg = f"{where}.values.{key} must be a string"
            raise RecipeError(msg, fix='quote the value, e.g. USE_CUDA = "1"')
    return Rule(spec, when.get("cuda"), tuple(str(a) for a in raw.get("argv", ())), values,
                when.get("machine"), tuple(str(p) for p in raw.get("packages", ())))


def _parse_backend(raw: Any, where: str) -> Backend:
    if not isinstance(raw, dict):
        msg = f"{where}: each backend rule must be a table"
        raise RecipeError(msg, fix="use [[components.NAME.backend]] tables")
    check_keys(raw, _BACKEND_KEYS, where, required=("name", "configure"))
    rule = _parse_rule({"when": raw.get("when", {}), "values": raw.get("configure_env", {})},
                       where)
    flags = raw.get("flags", "env")
    if flags not in _FLAG_WAYS:
        msg = f"{where}.flags: {flags!r} is not one of {', '.join(_FLAG_WAYS)}"
        raise RecipeError(msg, fix='use flags = "env"')
    return Backend(name=raw["name"], configure=tuple(str(a) for a in raw["configure"]),
                   cmake_cache=raw.get("cmake_cache", "build/CMakeCache.txt"),
                   configure_env=rule.values,
                   requires=tuple(str(r) for r in raw.get("requires", ())), flags=flags,
                   version_env=raw.get("version_env", "PYTORCH_BUILD_VERSION"),
                   source=raw.get("source", ""), torch=rule.torch)


def _parse_release(version: str, raw: Any, where: str) -> Release:
    if not isinstance(raw, dict):
        msg = f"{where} must be a table"
        raise RecipeError(msg, fix="use [releases.\"X.Y.Z\"] tables")
    check_keys(raw, _RELEASE_KEYS, where, required=("tag",))
    try:
        Version(version)
    except InvalidVersion:
        msg = f"{where}: {version!r} is not a version number"
        raise RecipeError(msg, fix="name releases like \"2.9.1\"") from None
    fields = dict(raw)
    fields["cuda"] = tuple(str(c) for c in raw.get("cuda", ()))
    return Release(version=version, **fields)


def load_releases(recipe_dir: Path) -> tuple[str, dict[str, Release]]:
    """(newest, {version: Release}) from ``releases.toml`` alone, validated."""
    rel_path = recipe_dir / "releases.toml"
    rel = load_toml(rel_path)
    check_keys(rel, {"schema_version": int, "newest": str, "releases": dict}, str(rel_path),
                required=("newest", "releases"))
    releases = {v: _parse_release(v, r, f"{rel_path}: releases.{v!r}")
                for v, r in rel["releases"].items()}
    if rel["newest"] not in releases:
        msg = f"{rel_path}: newest = {rel['newest']!r} has no [releases] entry"
        raise RecipeError(msg, fix="add the release or correct `newest`")
    return rel["newest"], releases


def load_recipes(recipe_dir: Path | None = None) -> RecipeBook:
    base = recipe_dir or default_recipe_dir()
    comp_path = base / "components.toml"
    newest, releases = load_releases(base)
    comp = load_toml(comp_path)
    check_keys(comp, {"schema_version": int, "order": list, "components": dict},
                str(comp_path), required=("order", "components"))
    components: dict[str, ComponentSpec] = {}
    for name, raw in comp["components"].items():
        where = f"{comp_path}: components.{name}"
        if name not in COMPONENTS:
            msg = f"{where}: unknown component{did_you_mean(name, COMPONENTS)}"
            raise RecipeError(msg, fix=f"components are {', '.join(COMPONENTS)}")
        check_keys(raw, _COMPONENT_KEYS, where, required=("repo", "dist", "build"))
        components[name] = ComponentSpec(
            name=name, repo=raw["repo"], dist=raw["dist"],
            deps=tuple(_parse_rule(r, f"{where}.deps") for r in raw.get("deps", [])),
            build=tuple(_parse_rule(r, f"{where}.build") for r in raw["build"]),
            env=tuple(_parse_rule(r, f"{where}.env") for r in raw.get("env", [])),
            audit=raw.get("audit", False),
            disk_gb=_parse_disk(raw.get("disk_gb"), f"{where}.disk_gb"),
            backends=tuple(_parse_backend(r, f"{where}.backend") for r in raw.get("backend", [])),
            requires=tuple(_parse_rule(r, f"{where}.requires", _VENV_RULE_KEYS)
                           for r in raw.get("requires", [])),
        )
    order = tuple(str(n) for n in comp["order"])
    missing = [n for n in order if n not in components]
    if missing or order[:1] != ("torch",):
        msg = f"{comp_path}: order must start with torch and name defined components ({missing})"
        raise RecipeError(msg, fix="fix `order`")
    venv: tuple[Rule, ...] = ()
    if (base / "venv.toml").is_file():
        raw_venv = load_toml(base / "venv.toml")
        check_keys(raw_venv, {"schema_version": int, "requirements": list},
                    str(base / "venv.toml"))
        venv = tuple(_parse_rule(r, f"{base / 'venv.toml'}: requirements", _VENV_RULE_KEYS)
                     for r in raw_venv.get("requirements", []))
    conda = load_conda_recipe(base) if (base / RECIPE_FILE).is_file() else None
    return RecipeBook(base, newest, releases, order, components, venv, conda)
