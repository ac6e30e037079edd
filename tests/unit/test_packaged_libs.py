"""What a packager's build env brings, across every release x CUDA the recipes offer: MAGMA, the
env's NCCL, the CUDA math libraries each release uses, torchvision's image codecs -- and the torch
switches that hold CMake to them. CPU plans have none of the CUDA pieces; venv/existing plans say
out loud that they bring no MAGMA.

Expected values are the researched facts, not the code's output: MAGMA per CUDA from the
feedstocks' .ci_support variants and nvcc's `cuda-version >=X.Y,<X+1` run-export (see
recipes/conda.toml [cuda.*]); USE_CUSPARSELT from torch 2.1, USE_CUDSS/USE_CUFILE from 2.5
(pytorch CMakeLists.txt); the codec packages from torchvision-feedstock recipe.yaml.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.version import Version

from torchbuild.__main__ import build_parser
from torchbuild.knowledge.conda_specs import spec_name
from torchbuild.knowledge.recipe import load_recipes
from torchbuild.machine.facts import Facts
from torchbuild.machine.probes import MemInfo, Toolkit
from torchbuild.options import resolve
from torchbuild.plan import Plan, make_plan

TOOLKIT = Toolkit("/usr/local/cuda/bin/nvcc", "12.8", Path("/usr/local/cuda"), (), None, None)
FACTS = Facts(cores=8, mem=MemInfo(64.0, 60.0, 0.0, 0.0), machine="x86_64", toolkit=TOOLKIT,
              host_python="/usr/bin/python3", host_python_version="3.11")
BOOK = load_recipes()
CONDA_CUDA = set(BOOK.conda_recipe()["cuda"])
# MAGMA per CUDA, from the research (not from conda.toml): libmagma-devel is built for 12.9 and
# 13.0 (serves 13.x); the legacy magma's 12.0 build serves 12.0 ... 12.9.
MAGMA = {**{f"12.{m}": "magma" for m in range(9)}, "12.9": "libmagma-devel",
         **{f"13.{m}": "libmagma-devel" for m in range(3)}}
CASES = [(t, c) for t, r in BOOK.releases.items() for c in r.cuda if c in CONDA_CUDA]
MATH = {"cusparselt": ("2.1", "USE_CUSPARSELT"), "libcudss-dev": ("2.5", "USE_CUDSS"),
        "libcufile-dev": ("2.5", "USE_CUFILE")}
CUDA_ONLY = {"nccl", "magma", "libmagma-devel", "libnvjpeg-dev", *MATH}


def plan_for(*argv: str) -> Plan:
    opts = resolve(vars(build_parser().parse_args(list(argv))), {"HOME": "/home/u"})
    return make_plan(BOOK, opts, FACTS)


def _names(plan: Plan) -> set[str]:
    return {spec_name(s) for s in plan.environment.conda_specs}


def _torch_env(plan: Plan) -> dict[str, str]:
    return dict(next(s for s in plan.steps if s.id == "build-torch").env)


def test_cases_cover_both_majors_and_old_releases() -> None:
    cudas = {c for _, c in CASES}
    assert {"12.1", "12.6", "12.8", "13.0"} <= cudas
    assert min((Version(t) for t, _ in CASES)) < Version("2.5")


@pytest.mark.parametrize(("torch", "cuda"), CASES)
def test_cuda_plan_brings_magma_nccl_math_libs_codecs(torch: str, cuda: str) -> None:
    p = plan_for("--cc", "8.6", "--torch", torch, "--cuda", cuda)
    names, env = _names(p), _torch_env(p)
    assert MAGMA[cuda] in names and env["USE_MAGMA"] == "1"
    assert not any("MAGMA" in w for w in p.warnings)
    assert "nccl" in names
    assert (env["USE_SYSTEM_NCCL"], env["USE_STATIC_NCCL"]) == ("1", "0")
    for package, (since, switch) in MATH.items():
        used = Version(torch) >= Version(since)
        assert (package in names) == used, (package, torch)
        assert (env.get(switch) == "1") == used, (switch, torch)
    assert {"libjpeg-turbo", "libpng", "libwebp", "libnvjpeg-dev"} <= names
    configure = next(s for s in p.steps if s.id == "configure-torch")
    assert configure.env["USE_MAGMA"] == "1"   # the audit reads the configure step's request
    vision = next(s for s in p.steps if s.id == "build-vision")
    assert vision.env["CUDA_HOME"] == str(p.work_dir / "cuda-home")   # nvjpeg.h's classic place


@pytest.mark.parametrize("torch", sorted({t for t, _ in CASES}, key=Version)[::4])
def test_cpu_plan_has_none_of_them(torch: str) -> None:
    p = plan_for("--cpu", "--torch", torch)
    names, env = _names(p), _torch_env(p)
    assert not names & CUDA_ONLY
    assert not {"USE_MAGMA", "USE_SYSTEM_NCCL", "USE_CUDSS", "USE_CUFILE"} & set(env)
    assert {"libjpeg-turbo", "libpng", "libwebp"} <= names   # torchvision still decodes images


def test_no_vision_no_codecs() -> None:
    names = _names(plan_for("--cc", "8.6", "--vision", "none"))
    assert not {"libjpeg-turbo", "libpng", "libwebp", "libnvjpeg-dev"} & names
    assert "libmagma-devel" in names


def test_venv_says_there_is_no_magma() -> None:
    p = plan_for("--cc", "8.6", "--env", "venv", "--torch", "2.9.1")
    env = _torch_env(p)
    assert env["USE_MAGMA"] == "0" and "USE_SYSTEM_NCCL" not in env
    assert any("no MAGMA for CUDA 12.8" in w and "only --env conda" in w for w in p.warnings)
    p = plan_for("--cc", "8.6", "--env", "venv", "--torch", "2.9.1", "--set", "USE_MAGMA=1")
    assert _torch_env(p)["USE_MAGMA"] == "1" and not any("MAGMA" in w for w in p.warnings)


def test_video_decoding_off_for_old_torchvision_unless_asked() -> None:
    def vision(p: Plan) -> dict[str, str]:
        return dict(next(s for s in p.steps if s.id == "build-vision").env)

    old = vision(plan_for("--cc", "8.6", "--torch", "2.5.1"))      # torchvision 0.20.1
    assert (old["TORCHVISION_USE_FFMPEG"], old["TORCHVISION_USE_VIDEO_CODEC"]) == ("0", "0")
    # torchvision 0.21.0 (torch 2.6) still defaults both to "1" (its setup.py, Debian's
    # pytorch-vision_0.21.0.orig.tar.gz); 0.22 (torch 2.7) is not read here and left alone.
    v021 = vision(plan_for("--cc", "8.6", "--torch", "2.6.0"))
    assert (v021["TORCHVISION_USE_FFMPEG"], v021["TORCHVISION_USE_VIDEO_CODEC"]) == ("0", "0")
    assert "TORCHVISION_USE_FFMPEG" not in vision(plan_for("--cc", "8.6", "--torch", "2.7.0"))
    asked = vision(plan_for("--cc", "8.6", "--torch", "2.5.1",
                            "--set", "TORCHVISION_USE_FFMPEG=1"))
    assert asked["TORCHVISION_USE_FFMPEG"] == "1"


def test_allow_missing_codec_builds_without_it() -> None:
    p = plan_for("--cpu", "--env", "venv", "--allow-missing", "webp", "--allow-missing", "jpeg")
    env = dict(next(s for s in p.steps if s.id == "build-vision").env)
    assert (env["TORCHVISION_USE_WEBP"], env["TORCHVISION_USE_JPEG"]) == ("0", "0")
    assert "TORCHVISION_USE_PNG" not in env
