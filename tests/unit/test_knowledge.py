"""Every knowledge rule, table-driven, against the data in recipes/.

The expected verdicts are the facts of shared/reference (pytorch-build.md sections 3-5,
compat.toml), written out case by case, so a wrong rule *or* a wrong row in recipes/*.toml fails
here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from torchbuild.cc import Arch, parse_cc
from torchbuild.errors import CompatibilityError, PreflightError
from torchbuild.knowledge.rules import (
    Finding,
    Knowledge,
    arch_vs_cmake,
    arch_vs_cpp_extension,
    arch_vs_cuda,
    buildable_matrix,
    check_archs,
    check_companion,
    cmake_ok,
    companion_ok,
    companions_use_cpp_extension,
    cuda_ok,
    cuda_versions_for,
    driver_ok,
    gcc_ok,
    load_knowledge,
    python_ok,
    vtuple,
)

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.fixture(scope="module")
def kn() -> Knowledge:
    return load_knowledge(RECIPES)


def one(text: str) -> Arch:
    (arch,) = parse_cc(text)
    return arch


# ------------------------------------------------------------------------------- arch x CUDA

ARCH_CUDA = [
    ("8.6", "13.0", "ok"),
    ("6.1", "13.0", "error"),   # 13.0 dropped Maxwell/Pascal/Volta
    ("6.1", "12.9", "ok"),
    ("7.0", "13.2", "error"),
    ("7.5", "13.0", "ok"),      # 7.5 is the floor of 13.x
    ("3.5", "11.8", "ok"),
    ("3.5", "12.0", "error"),   # 12.0 dropped Kepler
    ("8.9", "11.7", "error"),   # 8.9/9.0 arrived in 11.8
    ("8.9", "11.8", "ok"),
    ("9.0a", "11.8", "error"),
    ("9.0a", "12.0", "ok"),
    ("10.0", "12.6", "error"),  # Blackwell needs 12.8
    ("10.0", "12.8", "ok"),
    ("12.0", "12.8", "ok"),
    ("12.1", "12.8", "error"),  # 12.1 arrived in 12.9
    ("10.0f", "12.8", "error"),  # family targets arrived in 12.9
    ("10.0f", "12.9", "ok"),
    ("10.1", "12.9", "ok"),
    ("10.1", "13.0", "error"),  # Thor renamed 10.1 -> 11.0 in 13.0
    ("11.0", "13.0", "ok"),
    ("8.8", "12.9", "error"),
    ("8.8", "13.0", "ok"),
    ("10.7", "13.2", "error"),  # Rubin needs 13.4
    ("10.7", "13.4", "ok"),
    ("8.6+PTX", "11.1", "ok"),
    ("8.6", "11.0", "error"),
]


@pytest.mark.parametrize(("cc", "cuda", "level"), ARCH_CUDA)
def test_arch_against_cuda(kn: Knowledge, cc: str, cuda: str, level: str) -> None:
    found = arch_vs_cuda(one(cc), cuda, kn)
    assert found.level == level, found.message
    if level == "error":
        assert found.error_class is CompatibilityError
        assert not found.forceable  # nvcc would fail anyway
        assert cc.split("+")[0] in found.fix


def test_arch_error_names_the_toolkits_that_can(kn: Knowledge) -> None:
    found = arch_vs_cuda(one("6.1"), "13.0", kn)
    assert "12.9" in found.message and "--cuda 12.9" in found.fix
    assert cuda_versions_for("6.1", kn)[-1] == "12.9"
    assert cuda_versions_for("10.7", kn)[0] == "13.4"


def test_unknown_cuda_is_a_warning_not_a_guess(kn: Knowledge) -> None:
    assert arch_vs_cuda(one("8.6"), "99.0", kn).level == "warning"


# ------------------------------------------------------------------ syntax x torch (CMake regex)

CMAKE_SYNTAX = [
    ("8.6", "1.9.0", "ok"),
    ("9.0a", "2.3.1", "error"),  # single digit, no suffix before 2.4
    ("9.0a", "2.4.0", "ok"),
    ("10.0", "2.5.1", "error"),  # two-digit majors from 2.6
    ("10.0", "2.6.0", "ok"),
    ("12.0a", "2.6.0", "ok"),
    ("10.0f", "2.8.0", "error"),  # 'f' from 2.9
    ("10.0f", "2.9.0", "ok"),
    ("12.1f", "2.15.0", "ok"),
]


@pytest.mark.parametrize(("cc", "torch", "level"), CMAKE_SYNTAX)
def test_arch_against_torch_cmake(kn: Knowledge, cc: str, torch: str, level: str) -> None:
    found = arch_vs_cmake(one(cc), kn.release(torch), kn)
    assert found.level == level, found.message
    if level == "error":
        assert not found.forceable


def test_cmake_syntax_error_suggests_plain_or_newer(kn: Knowledge) -> None:
    assert "use 9.0 instead of 9.0a" in arch_vs_cmake(one("9.0a"), kn.release("2.3.1"), kn).fix
    assert "2.6.0" in arch_vs_cmake(one("10.0"), kn.release("2.5.1"), kn).fix


# --------------------------------------------------------------- syntax x torch (cpp_extension)

CPP_EXTENSION = [
    ("8.6", "1.9.0", "ok"),
    ("9.0", "1.13.1", "error"),  # Hopper arrived in 2.0
    ("9.0", "2.0.0", "ok"),
    ("9.0a", "2.1.0", "error"),
    ("9.0a", "2.2.0", "ok"),
    ("10.0", "2.5.1", "error"),
    ("10.0", "2.6.0", "ok"),
    ("12.0", "2.6.0", "error"),
    ("12.0", "2.7.0", "ok"),
    ("10.1", "2.8.0", "ok"),
    ("10.1", "2.9.0", "error"),  # renamed 11.0 in 2.9
    ("11.0", "2.9.0", "ok"),
    ("10.7", "2.13.0", "error"),
    ("10.7", "2.14.0", "ok"),
    ("10.0f", "2.15.0", "error"),  # cpp_extension never takes 'f'
    ("8.8", "2.15.0", "error"),   # CUDA 13 can, torch's table cannot
    ("12.1a+PTX", "2.8.0", "ok"),
]


@pytest.mark.parametrize(("cc", "torch", "level"), CPP_EXTENSION)
def test_arch_against_cpp_extension(kn: Knowledge, cc: str, torch: str, level: str) -> None:
    found = arch_vs_cpp_extension(one(cc), torch, kn)
    assert found.level == level, found.message
    if level == "error":
        assert "Unknown CUDA arch" in found.message
        assert "--vision none" in found.fix


def test_check_archs_reports_only_problems(kn: Knowledge) -> None:
    good = check_archs(parse_cc("8.6 9.0+PTX"), "13.0", "2.13.0", knowledge=kn)
    assert [f.level for f in good] == ["ok"]
    assert "8.6;9.0+PTX" in good[0].message
    bad = check_archs(parse_cc("6.1 8.6 10.7"), "13.0", "2.13.0", knowledge=kn)
    assert {(f.check, f.level) for f in bad} == {("arch-cuda", "error"),
                                                 ("arch-extension", "error")}
    assert sum(1 for f in bad if "6.1" in f.message) == 1  # 6.1: only CUDA objects
    assert sum(1 for f in bad if "10.7" in f.message) == 2  # 10.7: CUDA 13.0 and torch 2.13


def test_check_archs_skips_extension_table_without_companions(kn: Knowledge) -> None:
    assert check_archs(parse_cc("8.8"), "13.0", "2.15.0", knowledge=kn, extensions=True)[0].level \
        == "error"
    assert check_archs(parse_cc("8.8"), "13.0", "2.15.0", knowledge=kn,
                       extensions=False)[0].level == "ok"


@pytest.mark.parametrize(("companions", "uses"), [
    ({"vision": "0.28.0", "audio": "", "text": ""}, True),
    ({"vision": "", "audio": "2.9.0", "text": ""}, True),   # audio >= 2.9: cpp_extension
    ({"vision": "", "audio": "2.8.0", "text": ""}, False),  # older audio: its own CMake list
    ({"vision": "", "audio": "", "text": "0.18.0"}, False),
])
def test_which_companions_use_cpp_extension(companions: dict[str, str], uses: bool) -> None:
    assert companions_use_cpp_extension(companions) is uses


# -------------------------------------------------------------------------------- gcc x CUDA

GCC_CUDA = [
    ("12.2.0", "13.0", None, "ok"),
    ("15.1.0", "13.0", None, "ok"),
    ("16.1.0", "13.0", None, "error"),
    ("16.1.0", "13.4", None, "ok"),
    ("13.3.0", "12.6", None, "ok"),
    ("14.2.0", "12.6", None, "error"),
    ("14.2.0", "12.8", None, "ok"),
    ("12.3.0", "11.8", None, "error"),
    ("11.4.0", "11.8", None, "ok"),
    ("10.5.0", "12.6", "2.13.0", "error"),  # C++20 torch needs gcc >= 11.3
    ("11.3.0", "12.6", "2.13.0", "ok"),
    ("9.3.0", "11.8", "2.3.0", "ok"),
    ("9.2.0", "11.8", "2.3.0", "error"),
]


@pytest.mark.parametrize(("gcc", "cuda", "torch", "level"), GCC_CUDA)
def test_gcc_against_cuda_and_release(kn: Knowledge, gcc: str, cuda: str, torch: str | None,
                                      level: str) -> None:
    release = kn.release(torch) if torch else None
    found = gcc_ok(gcc, cuda, release=release, knowledge=kn)
    assert found.level == level, found.message
    if level == "error":
        assert found.error_class is PreflightError
        assert "gcc" in found.fix


def test_real_header_limit_beats_the_table(kn: Knowledge) -> None:
    # host_config.h of the actual toolkit says 11: trust it over the table's 15.
    assert gcc_ok("12.2.0", "13.0", max_gcc=11, knowledge=kn).level == "error"
    assert gcc_ok("12.2.0", "13.0", max_gcc=12, knowledge=kn).level == "ok"


# ------------------------------------------------------------------------------ python x torch

PYTHON_TORCH = [
    ("3.6", "1.9.0", "ok"),
    ("3.10", "1.9.0", "error"),
    ("3.9", "2.8.0", "ok"),
    ("3.9", "2.9.0", "error"),
    ("3.12", "2.1.0", "error"),
    ("3.12", "2.2.0", "ok"),
    ("3.14", "2.13.0", "ok"),
    ("3.15", "2.14.0", "error"),
    ("3.10", "2.15.0", "error"),  # 2.15 dropped 3.10
    ("3.11.9", "2.15.0", "ok"),
    ("3.15", "2.15.0", "ok"),
]


@pytest.mark.parametrize(("py", "torch", "level"), PYTHON_TORCH)
def test_python_against_release(kn: Knowledge, py: str, torch: str, level: str) -> None:
    found = python_ok(py, kn.release(torch))
    assert found.level == level, found.message
    if level == "error":
        assert found.forceable and found.error_class is CompatibilityError
        assert f"--python {kn.release(torch).python_max}" in found.fix


# -------------------------------------------------------------------------- companions x torch

COMPANIONS = [
    ("vision", None, "2.13.0", "ok", None),
    ("vision", "0.28.0", "2.13.0", "ok", None),
    ("vision", "0.27.0", "2.13.0", "error", "v0.28.0"),
    ("vision", "0.29.0", "2.15.0", "error", "v0.29.2"),  # 0.29.0 pins torch==2.14.0
    ("vision", "0.29.2", "2.14.1", "ok", None),
    ("vision", "none", "2.13.0", "ok", None),
    ("audio", "2.11.1", "2.15.0", "ok", None),
    ("audio", "2.10.0", "2.13.0", "error", "v2.11.1"),
    ("text", "0.18.0", "2.3.1", "ok", None),
    ("text", "0.17.2", "2.3.0", "error", "v0.18.0"),
    ("text", None, "2.4.0", "ok", None),       # no torchtext for 2.4+: skipped
    ("text", "0.18.0", "2.4.0", "error", None),  # ... and refused when asked for
]


@pytest.mark.parametrize(("name", "version", "torch", "level", "tag"), COMPANIONS)
def test_companion_against_release(kn: Knowledge, name: str, version: str | None, torch: str,
                                   level: str, tag: str | None) -> None:
    found = companion_ok(name, version, kn.release(torch), knowledge=kn)
    assert found.level == level, found.message
    if tag is not None:
        assert tag in found.fix
    if level == "error":
        assert found.error_class is CompatibilityError


def test_torchtext_for_new_torch_cannot_be_forced(kn: Knowledge) -> None:
    found = companion_ok("text", "0.18.0", kn.release("2.5.0"), knowledge=kn)
    assert not found.forceable
    assert "2.3.1" in found.message  # names the newest torch that has one
    mismatch = companion_ok("vision", "0.27.0", kn.release("2.13.0"), knowledge=kn)
    assert mismatch.forceable
    assert mismatch.forced().level == "warning"
    assert found.forced().level == "error"


def test_check_companion_covers_every_name(kn: Knowledge) -> None:
    found = check_companion({"vision": None, "audio": "none", "text": None},
                            kn.release("2.15.0"), knowledge=kn)
    assert [f.check for f in found] == ["companion-vision", "companion-audio", "companion-text"]
    assert all(f.level == "ok" for f in found)


# ------------------------------------------------------------------ CUDA, cmake, driver x release

@pytest.mark.parametrize(("cuda", "torch", "level", "forceable"), [
    ("13.0", "2.13.0", "ok", True),
    ("12.8", "2.13.0", "warning", True),   # not official, but the same major as 12.6
    ("13.0", "2.15.0", "warning", True),   # the default venv build on this machine
    ("12.1", "1.13.1", "error", True),     # another major than 11.6/11.7: forceable
    ("11.8", "2.12.0", "error", False),    # C++20 torch cannot use an nvcc without c++20
    ("12.9", "2.8.0", "ok", True),
    ("13.2", "2.15.0", "ok", True),
])
def test_cuda_against_release(kn: Knowledge, cuda: str, torch: str, level: str,
                              forceable: bool) -> None:
    found = cuda_ok(cuda, kn.release(torch), kn)
    assert found.level == level, found.message
    assert found.forceable is forceable


@pytest.mark.parametrize(("cmake", "torch", "level"), [
    ("4.0.2", "2.7.1", "error"),   # CMake 4 breaks old tags
    ("3.31.6", "2.7.1", "ok"),
    ("4.0.2", "2.8.0", "ok"),
    ("3.17.5", "2.0.0", "error"),
    ("3.18.0", "2.0.0", "ok"),
    ("3.12.0", "1.12.0", "error"),
])
def test_cmake_against_release(kn: Knowledge, cmake: str, torch: str, level: str) -> None:
    found = cmake_ok(cmake, kn.release(torch))
    assert found.level == level, found.message
    if "4.0" in cmake and level == "error":
        assert "CMAKE_POLICY_VERSION_MINIMUM=3.5" in found.fix


def test_cmake4_accepted_for_old_tags_when_the_policy_minimum_is_set(kn: Knowledge) -> None:
    # The plan sets CMAKE_POLICY_VERSION_MINIMUM=3.5 for these tags; the real 2.6.0 tree built
    # with cmake 4.4.3 so (#12 §5): the variable must clear the refusal.
    assert cmake_ok("4.4.3", kn.release("2.6.0"), policy_minimum="3.5").level == "ok"
    assert cmake_ok("4.4.3", kn.release("2.6.0"), policy_minimum="3.4").level == "error"
    assert cmake_ok("4.4.3", kn.release("2.6.0")).level == "error"


@pytest.mark.parametrize(("torch", "minimum"), [("2.8.0", "3.18"), ("2.9.0", "3.27"),
                                                ("2.15.0", "3.27")])
def test_cmake_minimum_per_release(kn: Knowledge, torch: str, minimum: str) -> None:
    # pytorch/pytorch#154783 raised cmake_minimum_required to 3.27 from 2.9 on (#13).
    assert kn.release(torch).min_cmake == minimum
    assert cmake_ok("3.25.1", kn.release(torch)).level == ("ok" if minimum == "3.18" else "error")


@pytest.mark.parametrize(("driver", "toolkit", "level"), [
    ("13.0", "13.0", "ok"),
    ("13.2", "13.0", "ok"),
    ("12.4", "12.8", "warning"),  # minor-version compatibility
    ("12.8", "13.0", "error"),
])
def test_driver_against_toolkit(driver: str, toolkit: str, level: str) -> None:
    assert driver_ok(driver, toolkit).level == level


# ---------------------------------------------------------------------------- buildable matrix


def test_buildable_matrix_on_this_kind_of_machine(kn: Knowledge) -> None:
    rows = buildable_matrix(kn, gcc="12.2.0", toolkits=["13.0"])
    cell = {(r.torch, r.cuda): r for r in rows}
    assert cell[("2.13.0", "13.0")].verdict == "yes"
    assert cell[("2.13.0", "12.6")].verdict == "conda"   # no 12.6 toolkit here
    assert "gcc" in cell[("2.0.0", "11.8")].notes        # gcc 12 > 11.8's limit
    assert len(rows) == sum(len(r.cuda) for r in kn.releases.values())


def test_buildable_matrix_with_an_old_gpu_and_driver(kn: Knowledge) -> None:
    rows = buildable_matrix(kn, gcc="12.2.0", gpu_ccs=["6.1"], driver_cuda="12.8",
                            toolkits=["12.8"])
    cell = {(r.torch, r.cuda): r for r in rows}
    assert cell[("2.13.0", "13.0")].verdict == "no"          # Pascal is gone from CUDA 13
    assert cell[("2.11.0", "12.8")].verdict == "yes"
    assert cell[("2.10.0", "13.0")].verdict == "no"
    rows_h200 = buildable_matrix(kn, gcc="12.2.0", gpu_ccs=["9.0"], driver_cuda="12.8")
    c2 = {(r.torch, r.cuda): r for r in rows_h200}
    assert c2[("2.13.0", "13.0")].verdict == "build-only"   # driver too old to run 13.0


# ------------------------------------------------------------------------------ data integrity


def test_every_release_refers_to_known_tables(kn: Knowledge) -> None:
    for version, release in kn.releases.items():
        assert release.arch_syntax in kn.cmake_regex, version
        assert kn.cpp_ext(version) is not None, version
        for cuda in release.cuda:
            assert kn.cuda_facts(cuda) is not None, (version, cuda)
        assert vtuple(release.python_min) <= vtuple(release.python_max)


def test_cuda_tables_are_consistent(kn: Knowledge) -> None:
    for version, facts in kn.cuda.items():
        assert set(facts.sm_a) <= set(facts.sm), version
        assert set(facts.sm_f) <= set(facts.sm), version
        if vtuple(version) >= (12, 9):
            assert facts.sm_f, version  # family targets exist from 12.9


def test_forced_findings_keep_their_story() -> None:
    f = Finding("disk", "error", "3 GB free", "free space", PreflightError, True)
    g = f.forced()
    assert g.level == "warning" and "--force" in g.message and g.fix == "free space"
    assert Finding("x", "ok", "fine").forced().level == "ok"
