"""recipes/extensions.toml and the pure decisions on it: archs, refusals, jobs, --extra syntax."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchbuild.build.extras import resolve_all
from torchbuild.cc import parse_cc
from torchbuild.errors import RecipeError, UsageError
from torchbuild.knowledge.extensions import (
    ResolvedExtra,
    decide_archs,
    decide_extra,
    load_extensions,
    parse_extra,
    repo_key,
)
from torchbuild.knowledge.jobs import extension_jobs
from torchbuild.knowledge.recipe import default_recipe_dir

BOOK = load_extensions(default_recipe_dir())


def recipe(name: str, version: str | None = None):
    return BOOK.recipe_for(name, version)[0]


def archs_of(name: str, cc: str, cuda: str | None = "12.8"):
    d = decide_archs(recipe(name), parse_cc(cc), cuda, name)
    return dict(d.env), [str(a) for a in d.expected], d.refusals


def test_every_package_cites_its_setup_py():
    assert set(BOOK.packages) >= {"flash-attn", "causal-conv1d", "mamba-ssm", "xformers",
                                  "torch-scatter"}
    for r in BOOK.packages.values():
        # An sdist by its hash, or (no sdist on PyPI: bitsandbytes) the commit it was read at.
        assert ("sha256" in r.source or "commit" in r.source) and "setup.py" in r.source, r.name
        assert r.imports, r.name


def test_flash_attn_maps_archs_onto_its_targets():
    assert archs_of("flash-attn", "8.6") == ({"FLASH_ATTN_CUDA_ARCHS": "80"}, ["8.0"], ())
    assert archs_of("flash-attn", "8.0 8.9 9.0a") == ({"FLASH_ATTN_CUDA_ARCHS": "80;90"},
                                                     ["8.0", "9.0"], ())
    assert archs_of("flash-attn", "12.0")[0] == {"FLASH_ATTN_CUDA_ARCHS": "120"}


def test_flash_attn_2_refuses_below_sm80():
    env, expected, refusals = archs_of("flash-attn", "7.5 8.6")
    assert len(refusals) == 1 and "below 8.0" in refusals[0] and "7.5" in refusals[0]
    assert expected == ["8.0"]


def test_flash_attn_refuses_an_arch_without_a_target():
    refusals = archs_of("flash-attn", "11.0", cuda="13.0")[2]
    assert refusals and "none of them runs on 11.0" in refusals[0]


def test_causal_conv1d_archs_are_hard_coded_per_nvcc():
    assert archs_of("causal-conv1d", "9.0") == ({}, ["9.0"], ())
    assert archs_of("causal-conv1d", "8.6")[1] == ["8.0"]
    d = decide_archs(recipe("causal-conv1d"), parse_cc("9.0"), "13.0", "causal-conv1d")
    assert any("sm_121" in n and "does not narrow" in n for n in d.notes)
    assert "below 7.5" in archs_of("causal-conv1d", "7.0")[2][0]
    assert archs_of("causal-conv1d", "10.0", cuda="12.4")[2]       # sm_100 needs nvcc 12.8


def test_xformers_and_unknown_packages_take_torch_cuda_arch_list():
    assert archs_of("xformers", "8.6+PTX 9.0") == ({}, ["8.6+PTX", "9.0"], ())
    generic, note = BOOK.recipe_for("my-kernels", "1.0")
    assert not generic.known and "generic settings" in note
    assert generic.cuda_env == {"FORCE_CUDA": "1"}


def test_recipe_outside_its_versions_falls_back_to_generic():
    r, note = BOOK.recipe_for("flash-attn", "1.0.9")
    assert not r.known and "outside the versions" in note
    assert BOOK.recipe_for("flash_attn", "2.8.3")[0].name == "flash-attn"


def test_natten_dotted_arch_variable_and_a_variants():
    env, expected, _ = archs_of("natten", "8.6 9.0")
    assert env == {"NATTEN_CUDA_ARCH": "8.6;9.0"} and expected == ["8.6", "9.0a"]


def extra(name: str, version: str) -> ResolvedExtra:
    r, note = BOOK.recipe_for(name, version)
    return ResolvedExtra(parse_extra(f"{name}=={version}", BOOK), name, version, "u",
                         recipe=r, note=note)


def decide(name: str, version: str, cc: str = "8.6", mem: float = 22.9, cores: int = 2,
           cuda: str | None = "12.8", jobs: int | None = None):
    return decide_extra(extra(name, version), archs=parse_cc(cc) if cuda else (), cuda=cuda,
                        torch_version="2.9.1", local="cu128.sm86", mem_available_gb=mem,
                        swap_free_gb=0.0, cores=cores, requested_jobs=jobs)


def test_flash_attn_env_and_jobs():
    d = decide("flash-attn", "2.8.3")
    assert d.env == {"FLASH_ATTENTION_FORCE_BUILD": "TRUE", "FLASH_ATTN_CUDA_ARCHS": "80",
                     "MAX_JOBS": "2", "NVCC_THREADS": "1",
                     "FLASH_ATTN_LOCAL_VERSION": "cu128.sm86"}
    assert "9 GB per job at 4 threads" in d.jobs_reason


@pytest.mark.parametrize(("mem", "cores", "jobs", "threads"), [
    (12.0, 8, 1, 3), (22.9, 2, 1, 2), (60.0, 16, 4, 4), (250.0, 64, 16, 4)])
def test_flash_attn_four_archs_jobs_by_ram(mem, cores, jobs, threads):
    d = decide("flash-attn", "2.8.3", cc="8.0 9.0 10.0 12.0", mem=mem, cores=cores)
    assert (d.jobs, d.nvcc_threads) == (jobs, threads), d.jobs_reason


@pytest.mark.parametrize(("mem", "cores", "jobs"), [(8.0, 16, 1), (24.0, 16, 2), (64.0, 16, 4),
                                                    (128.0, 16, 4), (128.0, 64, 12)])
def test_causal_conv1d_and_mamba_jobs_by_ram(mem, cores, jobs):
    for name, version in (("causal-conv1d", "1.7.0"), ("mamba-ssm", "2.3.2.post1")):
        d = decide(name, version, cc="9.0", mem=mem, cores=cores, cuda="13.0")
        assert d.jobs == jobs and d.nvcc_threads == 4, d.jobs_reason
        assert "NVCC_THREADS" not in d.env     # hard-coded --threads 4: nothing to set


def test_xformers_env():
    d = decide("xformers", "0.0.35", cc="9.0", mem=120.0, cores=16, cuda="13.0")
    assert d.env["XFORMERS_BUILD_TYPE"] == "Release" and d.env["FORCE_CUDA"] == "1"
    # One arch: nvcc's --threads 4 has one target to compile, so a job is one device compiler.
    assert (d.env["MAX_JOBS"], d.nvcc_threads) == ("16", 1)


def test_version_refusals():
    assert any("CUDA kernels only" in r for r in decide("flash-attn", "2.8.3", cuda=None).refusals)
    assert any("torch >= 2.10" in r for r in decide_extra(
        extra("xformers", "0.0.35"), archs=parse_cc("9.0"), cuda="12.8", torch_version="2.9.1",
        local="", mem_available_gb=60, swap_free_gb=0, cores=8, requested_jobs=None).refusals)
    assert any("CUDA >= 12.0" in r for r in decide("natten", "0.21.7", cuda="11.8").refusals)
    cpu = decide("torch-scatter", "2.1.2", cuda=None)
    # setup.py:137 use_ninja=False: serial, so MAX_JOBS=1 and the plan says why.
    assert cpu.env == {"FORCE_ONLY_CPU": "1", "MAX_JOBS": "1"} and not cpu.refusals
    assert "one file at a time" in cpu.jobs_reason


def test_requested_jobs_win_but_warn():
    d = decide("flash-attn", "2.8.3", cc="8.0 9.0 10.0 12.0", mem=12.0, cores=8, jobs=8)
    assert d.jobs == 8 and "OOM risk" in d.jobs_reason


def test_jobs_never_below_one():
    j = extension_jobs(2.0, 0.0, 1, job_gb=9.0, recipe_threads=4, threads_settable=True,
                       arch_count=4)
    assert (j.jobs, j.nvcc_threads) == (1, 1)


@pytest.mark.parametrize(("spec", "kind", "name", "extra"), [
    ("flash-attn==2.8.3", "pypi", "flash-attn", "==2.8.3"),
    ("Causal_Conv1d", "pypi", "causal-conv1d", ""),
    ("git+https://github.com/facebookresearch/xformers@v0.0.35", "git", "xformers", "v0.0.35"),
    ("git+https://github.com/Dao-AILab/flash-attention.git@v2.8.3", "git", "flash-attn",
     "v2.8.3"),
    ("git+file:///srv/mirror/org/my_ext.git@v1", "git", "my-ext", "v1"),
    ("./my-ext", "path", "", ""),
])
def test_parse_extra(spec, kind, name, extra):
    r = parse_extra(spec, BOOK)
    assert (r.kind, r.name) == (kind, name)
    assert extra in (r.specifier, r.ref, "")


@pytest.mark.parametrize("spec", ["", "flash-attn===", "git+https://github.com/x/y",
                                  "https://example.com/x.tar.gz", "flash-attn[dev]==2.8.3",
                                  "git+https://github.com/x/y@bad tag"])
def test_bad_specs_are_refused_with_a_fix(spec):
    with pytest.raises(UsageError) as exc:
        parse_extra(spec, BOOK)
    assert exc.value.fix and "--extra" in str(exc.value)


def test_repo_key():
    assert repo_key("https://github.com/Dao-AILab/flash-attention.git") == \
        "github.com/dao-ailab/flash-attention"
    assert repo_key("git@github.com:Dao-AILab/flash-attention.git") == \
        "github.com/dao-ailab/flash-attention"


def test_unknown_key_says_did_you_mean(tmp_path: Path):
    (tmp_path / "extensions.toml").write_text(
        'schema_version = 1\n[defaults]\n[packages.foo]\nnvcc_thread = 2\n')
    with pytest.raises(RecipeError, match="did you mean 'nvcc_threads'"):
        load_extensions(tmp_path)


def test_bad_arch_value_is_a_recipe_error(tmp_path: Path):
    (tmp_path / "extensions.toml").write_text(
        'schema_version = 1\n[defaults]\n[packages.foo]\narch_targets = ["sm_80"]\n')
    with pytest.raises(RecipeError, match="compute capability"):
        load_extensions(tmp_path)


def test_flash_attn_sm100_sm120_need_nvcc_12_8():
    # setup.py:186-191: with nvcc < 12.8 the 100/120 -gencode flags are dropped silently, so the
    # request is refused with the CUDA it needs, and FLASH_ATTN_CUDA_ARCHS never names them.
    for cc, sm in (("10.0", "sm_100"), ("12.0", "sm_120")):
        env, expected, refusals = archs_of("flash-attn", f"9.0 {cc}", cuda="12.6")
        assert env == {"FLASH_ATTN_CUDA_ARCHS": "90"} and expected == ["9.0"]
        assert len(refusals) == 1
        assert f"compiles {sm} (for {cc}) only with nvcc >=12.8" in refusals[0]
        assert "uses CUDA 12.6" in refusals[0] and "--cuda" in refusals[0]
    assert archs_of("flash-attn", "9.0 10.0 12.0", cuda="12.8") == (
        {"FLASH_ATTN_CUDA_ARCHS": "90;100;120"}, ["9.0", "10.0", "12.0"], ())


def test_flash_attn_sm90_needs_nvcc_11_8():
    env, expected, refusals = archs_of("flash-attn", "8.0 9.0", cuda="11.7")
    assert env == {"FLASH_ATTN_CUDA_ARCHS": "80"} and expected == ["8.0"]
    want = ("flash-attn compiles sm_90 (for 9.0) only with nvcc >=11.8 (its setup.py); this "
            "build uses CUDA 11.7: use a CUDA >=11.8 (--cuda)")
    assert refusals == (want,)


def test_a_target_cuda_table_with_a_bad_spec_is_a_recipe_error(tmp_path: Path):
    (tmp_path / "extensions.toml").write_text(
        'schema_version = 1\n[defaults]\n[packages.x]\narch_targets = ["8.0"]\n'
        '[[packages.x.target_cuda]]\ncuda = "twelve"\narchs = ["8.0"]\n')
    with pytest.raises(RecipeError, match="target_cuda.cuda"):
        load_extensions(tmp_path)


# bitsandbytes: a CMake build through scikit-build-core's setuptools plugin; its archs travel as a
# CMake define in CMAKE_ARGS, not as TORCH_CUDA_ARCH_LIST or an environment variable.

def test_bitsandbytes_archs_are_a_cmake_define():
    d = decide("bitsandbytes", "0.50.2", cc="8.6 9.0", mem=22.9, cores=2, cuda="13.0")
    assert d.env == {"CMAKE_ARGS": "-DCOMPUTE_BACKEND=cuda -DCOMPUTE_CAPABILITY=86;90",
                     "MAX_JOBS": "2", "CMAKE_BUILD_PARALLEL_LEVEL": "2"}   # 2 cores
    assert [str(a) for a in d.expected] == ["8.6", "9.0"] and not d.refusals


def test_bitsandbytes_cpu_build_selects_the_cpu_backend():
    d = decide("bitsandbytes", "0.50.2", cuda=None)
    assert d.env["CMAKE_ARGS"] == "-DCOMPUTE_BACKEND=cpu" and not d.refusals


@pytest.mark.parametrize(("mem", "cores", "jobs"), [(12.0, 16, 3), (64.0, 16, 16)])
def test_bitsandbytes_jobs_by_ram(mem, cores, jobs):
    d = decide("bitsandbytes", "0.50.2", cc="8.6 9.0", mem=mem, cores=cores, cuda="13.0")
    assert d.jobs == jobs and d.nvcc_threads == 1, d.jobs_reason
    assert d.env["CMAKE_BUILD_PARALLEL_LEVEL"] == d.env["MAX_JOBS"] == str(jobs)


def test_bitsandbytes_limits():
    assert any("CUDA >= 11.8" in r for r in decide("bitsandbytes", "0.50.2", cuda="11.7").refusals)
    old_torch = decide_extra(extra("bitsandbytes", "0.50.2"), archs=parse_cc("8.6"), cuda="12.8",
                             torch_version="2.3.1", local="", mem_available_gb=22.9,
                             swap_free_gb=0.0, cores=2, requested_jobs=None)
    assert any("torch >= 2.4" in r for r in old_torch.refusals)


def test_an_arch_define_without_its_carrier_is_a_recipe_error(tmp_path: Path):
    (tmp_path / "extensions.toml").write_text(
        'schema_version = 1\n[defaults]\n[packages.x]\narch_define = "CC"\n'
        'arch_style = "digits"\n')
    with pytest.raises(RecipeError, match="cmake_args_env"):
        load_extensions(tmp_path)


def test_bitsandbytes_from_pypi_is_refused_with_a_git_fix_the_tool_takes(tmp_path: Path):
    """No index is asked (offline=False, no network in unit tests): refused from the recipe."""
    with pytest.raises(UsageError) as caught:
        resolve_all(["bitsandbytes>=0.45"], BOOK, tmp_path, {}, offline=False)
    assert "no sdist on PyPI since 0.43" in caught.value.message
    fix = caught.value.fix
    spec = fix.split("--extra ", 1)[1].strip("'")
    assert spec == "git+https://github.com/bitsandbytes-foundation/bitsandbytes@0.50.2"
    (got,) = resolve_all([spec], BOOK, tmp_path, {}, offline=False)
    assert (got.name, got.version, got.recipe.name) == ("bitsandbytes", "0.50.2", "bitsandbytes")
