"""The conda build env's specs, from ``recipes/conda.toml``: which packages (compilers, CUDA pieces,
MKL, MAGMA, ...) a torch release x CUDA x Python needs, and from which channels.

Knowledge only: the solve and install live in ``env/conda.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from torchbuild.errors import CompatibilityError, RecipeError
from torchbuild.knowledge.datafile import load_toml

__all__ = ["MAGMA_PACKAGES", "RECIPE_FILE", "conda_specs_for", "cuda_switches",
           "load_conda_recipe", "spec_name", "specs_from"]

RECIPE_FILE = "conda.toml"
# conda-forge's MAGMA development packages, newest name first (libmagma-feedstock renamed
# libmagma-dev to libmagma-devel; magma is the legacy single-output feedstock).
MAGMA_PACKAGES = frozenset({"libmagma-devel", "libmagma-dev", "magma"})


def load_conda_recipe(recipe_dir: Path) -> dict[str, Any]:
    return load_toml(recipe_dir / RECIPE_FILE,
                     missing_fix="restore recipes/conda.toml from torchbuild's sources")


def _torch_entry(recipe: Mapping[str, Any], torch_version: str) -> Mapping[str, Any]:
    try:
        version = Version(torch_version)
        for entry in recipe.get("torch", ()):
            if SpecifierSet(entry["versions"]).contains(version, prereleases=True):
                return dict(entry)
    except (InvalidVersion, InvalidSpecifier, KeyError) as exc:
        msg = f"recipes/conda.toml: bad torch entry or version {torch_version!r}: {exc}"
        raise RecipeError(msg, fix="fix the [[torch]] tables in recipes/conda.toml") from None
    msg = f"recipes/conda.toml has no conda environment for torch {torch_version}"
    raise RecipeError(msg, fix="pick a torch release listed there, or use --env venv")


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _check_python(recipe: Mapping[str, Any], torch_version: str, python_version: str) -> None:
    window = recipe.get("python", {}).get(_minor(torch_version))
    if window is None:
        return
    low, high = (Version(v) for v in window)
    if not low <= Version(_minor(python_version)) <= high:
        msg = (f"torch {torch_version} supports Python {window[0]}..{window[1]}, not "
               f"{python_version}")
        raise CompatibilityError(msg, fix=f"pass --python {window[1]} (or another in that range)")


def _gcc_major(entry: Mapping[str, Any], cuda_table: Mapping[str, Any] | None,
               torch_version: str, cuda: str | None) -> int:
    top = int(entry["gcc_max"])
    if cuda_table is not None:
        top = min(top, int(cuda_table["max_gcc"]))
    if top < int(entry["gcc_min"]):
        msg = (f"torch {torch_version} needs GCC >= {entry['gcc_min']} but CUDA {cuda} accepts "
               f"at most GCC {top} (crt/host_config.h)")
        raise CompatibilityError(msg, fix="pick a newer --cuda for this torch release")
    return top


def spec_name(spec: str) -> str:
    return spec.split()[0].split("[")[0] if spec.strip() else ""


def _dedupe(specs: Iterable[str]) -> tuple[str, ...]:
    """One spec per package; a later, more specific entry replaces a generic earlier one."""
    by_name: dict[str, str] = {}
    for spec in specs:
        by_name[spec_name(spec)] = spec
    return tuple(by_name.values())


def _in_range(entry: Mapping[str, Any], torch_version: str) -> bool:
    try:
        return SpecifierSet(entry["versions"]).contains(Version(torch_version), prereleases=True)
    except (InvalidVersion, InvalidSpecifier, KeyError) as exc:
        msg = f"recipes/conda.toml: bad [[cuda_libs]] entry {dict(entry)!r}: {exc}"
        raise RecipeError(msg, fix="give each [[cuda_libs]] table a `versions` specifier") from None


def _cuda_libs(recipe: Mapping[str, Any], torch_version: str) -> list[Mapping[str, Any]]:
    return [e for e in recipe.get("cuda_libs", ()) if _in_range(e, torch_version)]


def cuda_switches(recipe: Mapping[str, Any], torch_version: str) -> tuple[str, ...]:
    """The torch CMake switches (USE_CUSPARSELT, ...) whose libraries the conda env brings."""
    return tuple(sw for e in _cuda_libs(recipe, torch_version) for sw in e.get("switches", ()))


def _cuda_specs(recipe: Mapping[str, Any], cuda: str, table: Mapping[str, Any],
                torch_version: str) -> list[str]:
    pieces = recipe["cuda_packages"]
    specs = [f"cuda-version {cuda}.*", *pieces["packages"], pieces["cudnn"]]
    for entry in _cuda_libs(recipe, torch_version):
        specs += entry.get("packages", ())
    magma = str(table.get("magma") or "")
    if magma:
        specs.append(magma)
    return specs


def _vision_specs(recipe: Mapping[str, Any], cuda: str | None) -> list[str]:
    codecs = recipe.get("vision", {})
    return [*codecs.get("packages", ()), *(codecs.get("cuda_packages", ()) if cuda else ())]


def _cuda_table(recipe: Mapping[str, Any], cuda: str) -> Mapping[str, Any]:
    table = recipe.get("cuda", {}).get(cuda)
    if table is None:
        known = ", ".join(sorted(recipe.get("cuda", {}), key=Version))
        msg = f"conda-forge has no CUDA {cuda} toolkit in recipes/conda.toml (have: {known})"
        raise CompatibilityError(msg, fix="pick one of those with --cuda, or use --env venv with a "
                                 f"system CUDA {cuda} toolkit")
    return dict(table)


def conda_specs_for(torch_version: str, cuda: str | None, python_version: str, *,
                    recipe_dir: Path, vision: bool = False,
                    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(MatchSpecs, channels) of the build env, read from ``recipe_dir/conda.toml``."""
    return specs_from(load_conda_recipe(recipe_dir), torch_version, cuda, python_version,
                      vision=vision)


def specs_from(recipe: Mapping[str, Any], torch_version: str, cuda: str | None,
               python_version: str, *, vision: bool = False,
               ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(MatchSpecs, channels) of the build env for this torch release, CUDA (None = CPU) and
    Python, from the loaded ``conda.toml`` (pure). ``vision``: torchvision is built too, so the
    env gets its image codecs."""
    entry = _torch_entry(recipe, torch_version)
    _check_python(recipe, torch_version, python_version)
    table = _cuda_table(recipe, cuda) if cuda else None
    gcc = _gcc_major(entry, table, torch_version, cuda)
    comp = recipe["compilers"]
    sysroot = table["sysroot"] if table else "2.17"
    py = python_version if python_version.count(".") >= 2 else f"{python_version}.*"
    specs = [f"python {py}", *recipe.get("common", {}).get("packages", ()), entry["cmake"],
             f"{comp['c']} {gcc}.*", f"{comp['cxx']} {gcc}.*", f"{comp['sysroot']} >={sysroot}",
             entry["mkl"], *entry["packages"]]
    if cuda and table is not None:
        specs += _cuda_specs(recipe, cuda, table, torch_version)
    if vision:
        specs += _vision_specs(recipe, cuda)
    return _dedupe(specs), tuple(recipe["channels"])
