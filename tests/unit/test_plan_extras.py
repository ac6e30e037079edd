"""Plans with --extra: the env each extra's steps get, MAX_JOBS under several RAM sizes, refusals.

The extras are resolved the way the pipeline resolves them, minus the index request: the versions
are the current releases whose setup.py the recipes were read from.
"""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import pytest

from torchbuild.__main__ import build_parser
from torchbuild.build.extras import choose_sdist
from torchbuild.build.relabel import relabel_wheel
from torchbuild.errors import CompatibilityError, UsageError
from torchbuild.knowledge.extensions import ResolvedExtra, load_extensions, parse_extra
from torchbuild.knowledge.recipe import default_recipe_dir, load_recipes
from torchbuild.machine.facts import Facts
from torchbuild.machine.probes import MemInfo, Toolkit
from torchbuild.options import resolve
from torchbuild.plan import make_plan, render

BOOK = load_extensions(default_recipe_dir())
CURRENT = {"flash-attn": "2.8.3", "xformers": "0.0.35", "causal-conv1d": "1.7.0",
           "mamba-ssm": "2.3.2.post1", "torch-scatter": "2.1.2"}
TOOLKIT = Toolkit("/usr/local/cuda/bin/nvcc", "12.8", Path("/usr/local/cuda"), (), None, None)
FACTS = Facts(cores=16, mem=MemInfo(64.0, 60.0, 0.0, 0.0), machine="x86_64", toolkit=TOOLKIT,
              host_python="/usr/bin/python3", host_python_version="3.11")


def with_mem(gb: float, cores: int = 16) -> Facts:
    return dataclasses.replace(FACTS, mem=MemInfo(gb, gb, 0.0, 0.0), cores=cores)


def resolved(name: str) -> ResolvedExtra:
    version = CURRENT[name]
    recipe, note = BOOK.recipe_for(name, version)
    return ResolvedExtra(parse_extra(f"{name}=={version}", BOOK), name, version,
                         f"https://files.example/{name}-{version}.tar.gz",
                         tag=f"{name}-{version}.tar.gz", sha256="ab" * 32, recipe=recipe,
                         note=note)


def plan_for(*argv: str, extras: tuple[str, ...], facts: Facts = FACTS):
    opts = resolve(vars(build_parser().parse_args(list(argv))), {"HOME": "/home/u"})
    return make_plan(load_recipes(), opts, facts, tuple(resolved(n) for n in extras))


def step(plan, sid):
    return next(s for s in plan.steps if s.id == sid)


def test_extras_come_after_torch_and_the_companions():
    p = plan_for("--cc", "8.6", "--torch", "2.9.1", extras=("flash-attn", "causal-conv1d"))
    ids = [s.id for s in p.steps]
    assert ids[-4:] == ["build-flash-attn", "install-flash-attn", "build-causal-conv1d",
                        "install-causal-conv1d"]
    assert ids.index("install-audio") < ids.index("build-flash-attn")
    extra = [c for c in p.components if c.kind == "extra"]
    assert [(c.name, c.label) for c in extra] == [("flash-attn", "2.8.3+cu128.sm86"),
                                                  ("causal-conv1d", "1.7.0+cu128.sm86")]
    src = next(s for s in p.sources if s.name == "flash-attn")
    assert (src.kind, src.sha256, src.path.name) == ("sdist", "ab" * 32, "flash-attn")
    assert "extra flash-attn 2.8.3 -> 2.8.3+cu128.sm86  kernels 8.0" in render(p)


def test_flash_attn_step_env():
    b = step(plan_for("--cc", "8.6", "--torch", "2.9.1", extras=("flash-attn",)),
             "build-flash-attn")
    assert b.argv[1:8] == ("-m", "pip", "wheel", ".", "--no-build-isolation", "--no-deps", "-v")
    assert {k: b.env[k] for k in ("FLASH_ATTENTION_FORCE_BUILD", "FLASH_ATTN_CUDA_ARCHS",
                                  "NVCC_THREADS", "FLASH_ATTN_LOCAL_VERSION",
                                  "TORCH_CUDA_ARCH_LIST", "PIP_CONSTRAINT")} == {
        "FLASH_ATTENTION_FORCE_BUILD": "TRUE", "FLASH_ATTN_CUDA_ARCHS": "80",
        "NVCC_THREADS": "1", "FLASH_ATTN_LOCAL_VERSION": "cu128.sm86",
        "TORCH_CUDA_ARCH_LIST": "8.6", "PIP_CONSTRAINT": "/dev/null"}
    assert b.relabel == {"local": "cu128.sm86", "torch": "2.9.1+cu128.sm86"}


def test_xformers_causal_conv1d_mamba_step_env():
    p = plan_for("--cc", "9.0", "--torch", "2.13.0", "--cuda", "13.0",
                 extras=("xformers", "causal-conv1d", "mamba-ssm"))
    x = step(p, "build-xformers").env
    assert (x["XFORMERS_BUILD_TYPE"], x["FORCE_CUDA"], x["TORCH_CUDA_ARCH_LIST"]) == \
        ("Release", "1", "9.0")
    c = step(p, "build-causal-conv1d").env
    assert c["CAUSAL_CONV1D_FORCE_BUILD"] == "TRUE" and "NVCC_THREADS" not in c
    m = step(p, "build-mamba-ssm").env
    assert m["MAMBA_FORCE_BUILD"] == "TRUE" and m["MAMBA_LOCAL_VERSION"] == "cu130.sm90"
    comps = {c.name: c for c in p.components}
    assert comps["causal-conv1d"].expected_archs == ("9.0",)
    assert any("sm_121" in n for n in comps["mamba-ssm"].notes)


@pytest.mark.parametrize(("mem", "cores", "flash", "conv"), [
    # causal-conv1d: 6 hard-coded archs at nvcc 12.8, --threads 4 x 2.5 GB = 10 GB a job, 4 cores
    # a job; flash-attn: 4 targets x 2.25 GB (its 9 GB at 4 threads), NVCC_THREADS 4.
    (16.0, 4, 1, 1), (32.0, 8, 2, 2), (64.0, 16, 4, 4), (128.0, 32, 8, 8), (512.0, 128, 32, 32),
    (40.0, 64, 4, 3)])
def test_max_jobs_per_extra_by_ram(mem, cores, flash, conv):
    facts = with_mem(mem, cores)
    p = plan_for("--cc", "8.0 9.0 10.0 12.0", "--torch", "2.9.1", facts=facts,
                 extras=("flash-attn", "causal-conv1d"))
    f, c = step(p, "build-flash-attn").env, step(p, "build-causal-conv1d").env
    assert (int(f["MAX_JOBS"]), int(c["MAX_JOBS"])) == (flash, conv), (f, c)
    assert int(f["MAX_JOBS"]) * int(f["NVCC_THREADS"]) <= cores


def test_jobs_option_is_honoured_with_a_warning():
    p = plan_for("--cc", "8.0 9.0", "--torch", "2.9.1", "--jobs", "12",
                 facts=with_mem(16.0),
                 extras=("flash-attn",))
    comp = next(c for c in p.components if c.name == "flash-attn")
    assert comp.jobs == 12 and "OOM risk" in comp.jobs_reason


def test_flash_attn_2_below_sm80_is_refused_with_a_fix_that_works():
    with pytest.raises(CompatibilityError) as exc:
        plan_for("--cc", "7.5 8.6", "--torch", "2.9.1", extras=("flash-attn",))
    assert "below 8.0" in exc.value.message and "--cc 8.6" in (exc.value.fix or "")
    plan_for("--cc", "8.6", "--torch", "2.9.1", extras=("flash-attn",))   # the fix is accepted


def test_cpu_build_of_a_cuda_only_extra_is_refused():
    with pytest.raises(CompatibilityError, match="CUDA kernels only"):
        plan_for("--cpu", "--torch", "2.9.1", extras=("mamba-ssm",))


def test_xformers_needs_a_newer_torch():
    with pytest.raises(CompatibilityError, match="torch >= 2.10"):
        plan_for("--cc", "9.0", "--torch", "2.9.1", extras=("xformers",))


def test_force_turns_refusals_into_warnings():
    p = plan_for("--cc", "7.5 8.6", "--torch", "2.9.1", "--force", extras=("flash-attn",))
    assert any("below 8.0" in w for w in p.warnings)


def test_cpu_extra_gets_the_cpu_switch():
    b = step(plan_for("--cpu", "--torch", "2.9.1", extras=("torch-scatter",)),
             "build-torch-scatter")
    assert b.env["FORCE_ONLY_CPU"] == "1" and "TORCH_CUDA_ARCH_LIST" not in b.env
    assert b.relabel == {"local": "cpu", "torch": "2.9.1+cpu"}


def test_extra_option_parses_and_bad_specs_fail_fast():
    opts = resolve(vars(build_parser().parse_args(["--cc", "8.6", "--extra", "flash-attn==2.8.3",
                                                   "--extra", "causal-conv1d"])), {})
    assert opts.extra == ("flash-attn==2.8.3", "causal-conv1d")
    with pytest.raises(UsageError, match="needs a scheme and a tag"):
        parse_extra("git+https://github.com/facebookresearch/xformers", BOOK)


INDEX = {"files": [
    {"filename": "causal_conv1d-1.6.1.tar.gz", "url": "u1", "hashes": {"sha256": "1" * 64}},
    {"filename": "causal_conv1d-1.7.0.tar.gz", "url": "u2", "hashes": {"sha256": "2" * 64}},
    {"filename": "causal_conv1d-1.8.0.tar.gz", "url": "u3", "hashes": {"sha256": "3" * 64},
     "yanked": "broken"},
    {"filename": "causal_conv1d-1.7.0-cp311-cp311-linux_x86_64.whl", "url": "w",
     "hashes": {"sha256": "4" * 64}},
]}


def test_choose_sdist_newest_matching_not_yanked():
    assert choose_sdist(INDEX, "causal-conv1d", "")[0] == "1.7.0"
    assert choose_sdist(INDEX, "causal-conv1d", "<1.7")[1]["url"] == "u1"
    with pytest.raises(UsageError) as exc:
        choose_sdist(INDEX, "causal-conv1d", "==9.9")
    assert exc.value.fix == "use --extra causal-conv1d==1.8.0" or "1.7.0" in str(exc.value)


def _wheel(path: Path, requires: str) -> Path:
    whl = path / "torch_scatter-2.1.2-cp311-cp311-linux_x86_64.whl"
    info = "torch_scatter-2.1.2.dist-info"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr("torch_scatter/__init__.py", "__version__ = '2.1.2'\n")
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: torch_scatter\n"
                    f"Version: 2.1.2\n{requires}\nlong description\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\n")
        zf.writestr(f"{info}/RECORD", "")
    return whl


@pytest.mark.parametrize("requires", ["", "Requires-Dist: torch>=2.0\n"])
def test_relabel_wheel(tmp_path, requires):
    out = relabel_wheel(_wheel(tmp_path, requires), "cu128.sm86", "2.9.1+cu128.sm86")
    assert out.name == "torch_scatter-2.1.2+cu128.sm86-cp311-cp311-linux_x86_64.whl"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
    with zipfile.ZipFile(out) as zf:
        info = "torch_scatter-2.1.2+cu128.sm86.dist-info"
        meta = zf.read(f"{info}/METADATA").decode()
        record = zf.read(f"{info}/RECORD").decode()
    assert "Version: 2.1.2+cu128.sm86" in meta and "long description" in meta
    assert meta.count("Requires-Dist: torch==2.9.1+cu128.sm86") == 1
    assert f"{info}/METADATA,sha256=" in record and "torch_scatter/__init__.py,sha256=" in record


# --------------------------------------------------------------------------------------------
# The extras' build requirements in an env torchbuild did not make (--env existing) or makes
# (venv): `pip wheel --no-build-isolation` imports them from the build env.

IMAGE_ENV = dataclasses.replace(
    FACTS, env_python="/opt/venv/bin/python", env_python_version="3.11",
    env_torch_version="2.9.1", env_packages={"torch": "2.9.1", "setuptools": "80.9.0",
                                              "pip": "25.0", "wheel": "0.45.1"})


def test_an_existing_env_gets_the_extras_build_requirements_it_lacks():
    p = plan_for("--cc", "9.0", "--torch", "2.9.1", "--torch-from-env", "--env", "existing",
                 "--python", "/opt/venv/bin/python", "--vision", "none", "--audio", "none",
                 extras=("flash-attn", "causal-conv1d"), facts=IMAGE_ENV)
    env = p.environment
    # flash-attn's setup.py imports packaging and wheel; BuildExtension wants ninja.
    assert env.pip_requirements == ("setuptools", "wheel", "packaging", "ninja")
    assert env.pip_install == ("packaging", "ninja")
    assert any("lacks build requirements: packaging (not installed), ninja (not installed)" in w
               for w in p.warnings)
    assert "installed into it first (missing): packaging ninja" in render(p)


def test_an_existing_env_that_has_them_is_left_alone():
    complete = dataclasses.replace(IMAGE_ENV, env_packages={
        **IMAGE_ENV.env_packages, "packaging": "25.0", "ninja": "1.13.0"})
    p = plan_for("--cc", "9.0", "--torch", "2.9.1", "--torch-from-env", "--env", "existing",
                 "--python", "/opt/venv/bin/python", "--vision", "none", "--audio", "none",
                 extras=("causal-conv1d",), facts=complete)
    assert p.environment.pip_install == ()
    assert not any("lacks build requirements" in w for w in p.warnings)


def test_a_version_floor_the_env_misses_is_installed_too():
    old = dataclasses.replace(IMAGE_ENV, env_packages={
        **IMAGE_ENV.env_packages, "setuptools": "59.5.0", "packaging": "25.0", "ninja": "1.13"})
    p = plan_for("--cc", "9.0", "--torch", "2.9.1", "--torch-from-env", "--env", "existing",
                 "--python", "/opt/venv/bin/python", "--vision", "none", "--audio", "none",
                 extras=("mamba-ssm",), facts=old)
    assert p.environment.pip_install == ("setuptools>=61.0.0",)
    assert any("setuptools>=61.0.0 (found 59.5.0)" in w for w in p.warnings)


def test_a_venv_gets_them_with_its_own_packages():
    p = plan_for("--cc", "8.6", "--torch", "2.9.1", "--env", "venv", extras=("flash-attn",))
    reqs = p.environment.pip_requirements
    assert {"packaging", "ninja", "wheel"} <= {r.split(">")[0].split("<")[0].split("=")[0]
                                               for r in reqs}
    assert len({r.split(">")[0].split("<")[0].split("=")[0] for r in reqs}) == len(reqs)


def test_an_unknown_package_gets_the_generic_build_requirements():
    generic = BOOK.defaults
    extra = ResolvedExtra(parse_extra("./my-kernels", BOOK), "my-kernels", "", "/src/my-kernels",
                          recipe=generic, note="not in extensions.toml")
    opts = resolve(vars(build_parser().parse_args(
        ["--cc", "9.0", "--torch", "2.9.1", "--torch-from-env", "--env", "existing", "--python",
         "/opt/venv/bin/python", "--vision", "none", "--audio", "none"])), {"HOME": "/home/u"})
    p = make_plan(load_recipes(), opts, IMAGE_ENV, (extra,))
    assert p.environment.pip_requirements == ("setuptools", "wheel", "ninja")
    assert p.environment.pip_install == ("ninja",)


def resolved_git(spec: str) -> ResolvedExtra:
    """A git extra as resolve_git pins it (bitsandbytes has no current sdist on PyPI)."""
    req = parse_extra(spec, BOOK)
    recipe, note = BOOK.recipe_for(req.name, req.ref)
    return ResolvedExtra(req, req.name, req.ref, req.url, tag=req.ref, recipe=recipe, note=note)


BNB = "git+https://github.com/bitsandbytes-foundation/bitsandbytes@0.50.2"


@pytest.mark.parametrize(("mem", "cores", "jobs"), [(12.0, 16, 3), (64.0, 16, 16)])
def test_bitsandbytes_step_env_carries_its_archs_as_a_cmake_define(mem, cores, jobs):
    opts = resolve(vars(build_parser().parse_args(
        ["--cc", "8.6 9.0", "--torch", "2.13.0", "--cuda", "13.0", "--env", "venv"])),
        {"HOME": "/home/u"})
    p = make_plan(load_recipes(), opts, with_mem(mem, cores), (resolved_git(BNB),))
    b = step(p, "build-bitsandbytes")
    assert b.argv[1:6] == ("-m", "pip", "wheel", ".", "--no-build-isolation")
    assert b.env["CMAKE_ARGS"] == "-DCOMPUTE_BACKEND=cuda -DCOMPUTE_CAPABILITY=86;90"
    # 1 nvcc thread x 2.5 GB a job (no package figure): RAM - 4 GB reserve, then the cores.
    assert b.env["CMAKE_BUILD_PARALLEL_LEVEL"] == b.env["MAX_JOBS"] == str(jobs)
    comp = next(c for c in p.components if c.name == "bitsandbytes")
    assert comp.expected_archs == ("8.6", "9.0") and comp.imports == ("bitsandbytes",)
    # Without scikit-build-core its setup.py only warns and packages no native library.
    # (cmake: the venv's own cmake>=3.27 for torch already covers its 3.22.1.)
    reqs = p.environment.pip_requirements
    assert "scikit-build-core" in reqs and any(r.startswith("cmake") for r in reqs), reqs


def test_a_users_cmake_args_are_added_after_the_recipes_defines():
    """--set bitsandbytes:CMAKE_ARGS=... adds to the recipe's defines (a user's -D comes last
    and so wins); replacing them would silently build the CPU library for a CUDA request."""
    opts = resolve(vars(build_parser().parse_args(
        ["--cc", "8.6", "--torch", "2.13.0", "--cuda", "13.0", "--env", "venv", "--extra", BNB,
         "--set", "bitsandbytes:CMAKE_ARGS=-DCMAKE_VERBOSE_MAKEFILE=ON -DCOMPUTE_CAPABILITY=89"])),
        {"HOME": "/home/u"})
    b = step(make_plan(load_recipes(), opts, with_mem(64.0, 16), (resolved_git(BNB),)),
             "build-bitsandbytes")
    assert b.env["CMAKE_ARGS"] == ("-DCOMPUTE_BACKEND=cuda -DCOMPUTE_CAPABILITY=86 "
                                   "-DCMAKE_VERBOSE_MAKEFILE=ON -DCOMPUTE_CAPABILITY=89")


@pytest.mark.parametrize(("prefix", "hint"), [
    ("torchaudio", "(did you mean 'audio'?)"), ("bitsandbytez", ""),
    ("flash-attn", ""), ("Bitsandbytes", "(did you mean 'bitsandbytes'?)")])
def test_set_for_a_name_that_is_not_in_this_build_is_refused(prefix, hint):
    """--set NAME:KEY=V that names no component and no --extra of this build would set nothing:
    refused, with the name it was probably meant for."""
    opts = resolve(vars(build_parser().parse_args(
        ["--cc", "8.6", "--torch", "2.13.0", "--cuda", "13.0", "--env", "venv", "--extra", BNB,
         "--set", f"{prefix}:DEBUG=1"])), {"HOME": "/home/u"})
    with pytest.raises(UsageError, match="is neither a component nor an --extra") as exc:
        make_plan(load_recipes(), opts, with_mem(64.0, 16), (resolved_git(BNB),))
    assert hint in str(exc.value) and "bitsandbytes" in (exc.value.fix or "")
