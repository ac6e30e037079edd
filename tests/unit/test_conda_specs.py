"""recipes/conda.toml -> conda specs, checked against the version knowledge, for every supported
torch release x CUDA (and CPU): real conda-forge package names, compilers within nvcc's
host_config.h limit and the release's GCC floor, CMake/Python windows of the release.

Facts come from docs/data/compat.toml (the researched source, copied into the repository),
with recipes/releases.toml and recipes/cuda.toml (made from it) as the fallback.
Also the conda-lock.yml v1 writer/reader (pure: file I/O only).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from rattler import MatchSpec, Version, VersionSpec

from torchbuild.env import conda_lock
from torchbuild.env.conda_lock import CondaLock, LockedPackage
from torchbuild.errors import CompatibilityError, EnvironmentSetupError, RecipeError
from torchbuild.knowledge.conda_specs import conda_specs_for

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"
COMPAT = ROOT / "docs" / "data" / "compat.toml"

# conda-forge package names, each seen in a feedstock recipe (see the header of recipes/conda.toml
# and the source table in docs/conda.md): pytorch-cpu-feedstock recipe/meta.yaml and recipe.yaml
# (build/host requirements: cusparselt, libcudss-dev, libcufile-dev, libmagma-devel, nccl),
# cuda-feedstock's naming guide, cuda-cupti-feedstock README (cuda-cupti-dev), magma-feedstock
# (magma), libmagma-feedstock (libmagma-devel), torchvision-feedstock recipe.yaml (libjpeg-turbo,
# libpng, libwebp, libnvjpeg-dev), and the plain Python packages under their PyPI names.
CONDA_FORGE = {
    "python", "pip", "ninja", "pkg-config", "make", "git", "patch", "cmake",
    "gcc_linux-64", "gxx_linux-64", "sysroot_linux-64", "mkl-devel",
    "cuda-version", "cuda-nvcc", "cuda-cudart-dev", "cuda-driver-dev", "cuda-nvrtc-dev",
    "cuda-nvtx-dev", "cuda-nvml-dev", "cuda-cupti-dev", "cuda-profiler-api", "libcublas-dev",
    "libcufft-dev", "libcurand-dev", "libcusolver-dev", "libcusparse-dev", "cudnn", "nccl",
    "magma", "libmagma-devel", "cusparselt", "libcudss-dev", "libcufile-dev",
    "libjpeg-turbo", "libpng", "libwebp", "libnvjpeg-dev",
    "numpy", "pyyaml", "typing_extensions", "setuptools", "requests", "six", "future", "cffi",
    "astunparse", "dataclasses", "filelock", "sympy", "networkx", "jinja2", "fsspec",
    "expecttest", "wheel", "packaging",
}
CUDA_PIECES = {"cuda-nvcc", "cuda-cudart-dev", "libcublas-dev", "libcufft-dev", "libcurand-dev",
               "libcusolver-dev", "libcusparse-dev", "cuda-nvrtc-dev", "cuda-nvtx-dev",
               "cuda-cupti-dev", "cudnn", "nccl", "cuda-version"}


def _toml(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def _facts() -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    if COMPAT.is_file():
        compat = _toml(COMPAT)
        return compat["torch"], compat["cuda"]
    return _toml(RECIPES / "releases.toml")["releases"], _toml(RECIPES / "cuda.toml")["cuda"]


RELEASES, CUDA = _facts()
CONDA = _toml(RECIPES / "conda.toml")
CASES = [(t, c) for t, rel in RELEASES.items() for c in [None, *rel["cuda"]]]


def _by_name(specs: tuple[str, ...]) -> dict[str, MatchSpec]:
    parsed = [MatchSpec(s) for s in specs]
    assert len({m.name.normalized for m in parsed}) == len(parsed), "one spec per package"
    return {m.name.normalized: m for m in parsed}


def _allows(spec: MatchSpec, version: str) -> bool:
    return spec.version is None or VersionSpec(str(spec.version)).matches(Version(version))


def _gcc_major(spec: MatchSpec) -> int:
    text = str(spec.version)
    assert text.endswith(".*"), f"compilers are pinned to one major: {spec}"
    return int(text[:-2])


def _check_cuda(by_name: dict[str, MatchSpec], cuda: str, gcc: int) -> None:
    assert gcc <= int(CUDA[cuda]["max_gcc"]), "never newer than crt/host_config.h allows"
    assert set(by_name) >= CUDA_PIECES
    assert _allows(by_name["cuda-version"], cuda)
    other = f"{cuda.split('.')[0]}.{int(cuda.split('.')[1]) + 1}"
    assert not _allows(by_name["cuda-version"], other)
    assert _allows(by_name["cudnn"], "9.10.2")
    assert not _allows(by_name["cudnn"], "8.9.7")


def _check_cmake(spec: MatchSpec, release: dict[str, Any]) -> None:
    low = Version(release["min_cmake"])
    below = f"{low.segments()[0][0]}.{low.segments()[1][0] - 1}" if low.segments()[1][0] else "2.8"
    assert not _allows(spec, below), f"{spec} admits CMake {below} < {release['min_cmake']}"
    assert _allows(spec, "3.31.6")
    if release.get("max_cmake_exclusive") == "4" or Version(release.get("tag", "v0")[1:] or "0") \
            < Version("2.8"):
        assert not _allows(spec, "4.0.2"), "CMake 4 breaks this tag (pytorch/pytorch#154096)"


@pytest.mark.parametrize(("torch", "cuda"), CASES)
def test_specs_per_release_and_cuda(torch: str, cuda: str | None) -> None:
    release = RELEASES[torch]
    python = release["python_max"]
    if cuda is not None and cuda not in CONDA["cuda"]:
        # conda-forge has no split toolkit for it: a clear error, never a half env.
        with pytest.raises(CompatibilityError, match=f"no CUDA {cuda} toolkit"):
            conda_specs_for(torch, cuda, python, recipe_dir=RECIPES)
        assert Version(cuda) < Version("12.0")
        return
    specs, channels = conda_specs_for(torch, cuda, python, recipe_dir=RECIPES)
    assert channels == ("conda-forge",)
    by_name = _by_name(specs)
    unknown = set(by_name) - CONDA_FORGE
    assert not unknown, f"not conda-forge package names: {unknown}"
    assert str(by_name["python"].version) == f"{python}.*"
    gcc = _gcc_major(by_name["gxx_linux-64"])
    assert _gcc_major(by_name["gcc_linux-64"]) == gcc
    assert gcc >= int(release["min_gcc"].split(".")[0]), "at least the release's GCC floor"
    assert by_name["sysroot_linux-64"].version is not None
    _check_cmake(by_name["cmake"], release)
    assert {"ninja", "numpy", "pyyaml", "typing_extensions", "mkl-devel"} <= set(by_name)
    if cuda is None:
        assert not CUDA_PIECES & set(by_name), "CPU builds leave the CUDA pieces out"
    else:
        _check_cuda(by_name, cuda, gcc)


@pytest.mark.parametrize("torch", sorted(RELEASES, key=Version))
def test_python_window_matches_the_release(torch: str) -> None:
    release = RELEASES[torch]
    for python in (release["python_min"], release["python_max"]):
        specs, _ = conda_specs_for(torch, None, python, recipe_dir=RECIPES)
        assert f"python {python}.*" in specs
    low = Version(release["python_min"])
    too_old = f"3.{low.segments()[1][0] - 1}"
    with pytest.raises(CompatibilityError, match="supports Python"):
        conda_specs_for(torch, None, too_old, recipe_dir=RECIPES)


def test_old_releases_pin_what_broke_them() -> None:
    """MKL 2024.1 moved iJIT_NotifyEvent (FM-15); numpy 2 changed the C ABI torch < 2.4 builds."""
    by_name = _by_name(conda_specs_for("2.1.2", "12.1", "3.11", recipe_dir=RECIPES)[0])
    assert not _allows(by_name["mkl-devel"], "2024.1.0")
    assert _allows(by_name["mkl-devel"], "2023.2.0")
    assert not _allows(by_name["numpy"], "2.0.0")
    assert _gcc_major(by_name["gxx_linux-64"]) == 12  # CUDA 12.1's limit, inside 2.1's range


def test_newest_release_default() -> None:
    """What `python -m torchbuild --cc 8.6` solves by default (newest torch, its PyPI CUDA)."""
    newest = max(RELEASES, key=Version)
    cuda = RELEASES[newest].get("pypi_cuda") or RELEASES[newest].get("default_cuda")
    specs, _ = conda_specs_for(newest, cuda, RELEASES[newest]["python_max"], recipe_dir=RECIPES)
    by_name = _by_name(specs)
    assert _gcc_major(by_name["gxx_linux-64"]) == min(14, int(CUDA[cuda]["max_gcc"]))
    assert _allows(by_name["pip"], "25.1")
    assert not _allows(by_name["pip"], "24.0")  # `pip install --group dev` needs pip >= 25.1


def test_gcc_floor_above_cuda_limit_is_refused(tmp_path: Path) -> None:
    recipe = (RECIPES / "conda.toml").read_text(encoding="utf-8")
    (tmp_path / "conda.toml").write_text(recipe.replace("gcc_min = 11", "gcc_min = 13"))
    with pytest.raises(CompatibilityError, match="accepts at most GCC 12"):
        conda_specs_for("2.13.0", "12.1", "3.12", recipe_dir=tmp_path)


def test_unknown_release_and_missing_recipe(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="no conda environment for torch 1.2.0"):
        conda_specs_for("1.2.0", None, "3.8", recipe_dir=RECIPES)
    with pytest.raises(RecipeError, match="conda.toml does not exist"):
        conda_specs_for("2.13.0", None, "3.12", recipe_dir=tmp_path)
    shutil.copy(RECIPES / "conda.toml", tmp_path / "conda.toml")
    text = (tmp_path / "conda.toml").read_text()
    (tmp_path / "conda.toml").write_text(text.replace("schema_version = 1", "schema_version = 7"))
    with pytest.raises(RecipeError, match="schema_version"):
        conda_specs_for("2.13.0", None, "3.12", recipe_dir=tmp_path)


def test_cuda_tables_agree_with_the_knowledge() -> None:
    for cuda, table in CONDA["cuda"].items():
        assert table["max_gcc"] == CUDA[cuda]["max_gcc"], cuda


# --------------------------------------------------------------------------------------------
# conda-lock.yml v1


def _lock() -> CondaLock:
    pkgs = (
        LockedPackage(name="cmake", version="3.30", build="h0_0", platform="linux-64",
                      url="https://conda.anaconda.org/conda-forge/linux-64/cmake-3.30-h0_0.conda",
                      md5="0" * 32, sha256="a" * 64, dependencies={"libuv": ">=1.48"}),
        LockedPackage(name="ninja", version="1.12.1", build="0", platform="linux-64",
                      url="file:///srv/chan/noarch/ninja-1.12.1-0.tar.bz2", md5="1" * 32,
                      sha256=None),
    )
    return CondaLock(packages=pkgs, channels=("conda-forge",), platforms=("linux-64",),
                     content_hash={"linux-64": "f" * 64}, sources=("recipes/conda.toml",),
                     custom={"torchbuild_cuda": "12.8"})


def test_lock_round_trip_keeps_versions_as_strings(tmp_path: Path) -> None:
    path = tmp_path / "conda-lock.yml"
    digest = conda_lock.write(_lock(), path)
    assert digest == conda_lock.file_sha256(path)
    back = conda_lock.read(path)
    assert back.packages == tuple(sorted(_lock().packages, key=lambda p: p.name))
    assert back.packages[0].version == "3.30"  # not the float 3.3
    assert back.custom == {"torchbuild_cuda": "12.8"}
    assert back.packages[1].local_path() == Path("/srv/chan/noarch/ninja-1.12.1-0.tar.bz2")
    assert back.packages[0].local_path() is None
    conda_lock.write(back, tmp_path / "again.yml")  # deterministic: same content, same bytes
    assert (tmp_path / "again.yml").read_bytes() == path.read_bytes()


def test_render_explicit_uses_md5_fragments() -> None:
    text = conda_lock.render_explicit(_lock(), "linux-64")
    lines = text.splitlines()
    assert lines[2] == "@EXPLICIT"
    assert f"https://conda.anaconda.org/conda-forge/linux-64/cmake-3.30-h0_0.conda#{'0' * 32}" \
        in lines


@pytest.mark.parametrize(("text", "match"), [
    ("version: 2\nmetadata: {}\npackage: []\n", "expected `version: 1`"),
    ("version: 1\npackage: []\n", "missing `metadata`"),
    (("version: 1\nmetadata: {}\npackage:\n- {name: x, version: '1', manager: conda, "
     "platform: linux-64, url: 'file:///x.conda', hash: {sha256: abc}}\n"), "no md5"),
    (("version: 1\nmetadata: {}\npackage:\n- {name: x, version: 1.10, manager: conda, "
     "platform: linux-64, url: 'file:///x.conda', hash: {md5: abc}}\n"), "has no 'version'"),
    (": : :\n", "not a usable conda-lock.yml"),
])
def test_bad_lock_files_are_explained(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "conda-lock.yml"
    path.write_text(text)
    with pytest.raises(EnvironmentSetupError, match=match):
        conda_lock.read(path)
