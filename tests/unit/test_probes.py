"""Probe parsers against recorded real outputs (tests/fixtures/gpu-probes/h200x2, a 2x H200 machine)
and, for WSL2 and a machine without a driver, fixtures made from documentation (see the README
there: no such machine was available to record them)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from torchbuild.cc import parse_cc
from torchbuild.commands.doctor import utilization_verdict
from torchbuild.errors import GPUDetectionError
from torchbuild.knowledge.rules import load_knowledge
from torchbuild.machine import probes
from torchbuild.machine.gpu import ccs_from_report
from torchbuild.machine.preflight import (
    MachineFacts,
    PreflightRequest,
    cmake_findings,
    resource_findings,
    wsl_findings,
)

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "gpu-probes"
H200 = FIX / "h200x2"
RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def read(rel: str) -> str:
    return (FIX / rel).read_text()


# ------------------------------------------------------------------------------- nvidia-smi


def test_query_gpu_two_h200() -> None:
    gpus = probes.parse_query_gpu(read("h200x2/query-gpu.csv"))
    assert [g.index for g in gpus] == [0, 1]
    assert {g.name for g in gpus} == {"NVIDIA H200"}
    assert {g.compute_cap for g in gpus} == {"9.0"}
    assert gpus[0].driver_version == "580.159.04"
    assert gpus[0].memory_mib == 143771


def test_query_gpu_single_and_wsl() -> None:
    (single,) = probes.parse_query_gpu(read("single/query-gpu.csv"))
    assert single.compute_cap == "9.0"
    (wsl,) = probes.parse_query_gpu(read("wsl2/query-gpu.csv"))
    assert (wsl.compute_cap, wsl.driver_version) == ("8.6", "566.36")


def test_cc_noheader() -> None:
    assert probes.parse_cc_noheader(read("h200x2/query-cc-noheader.csv")) == ("9.0", "9.0")


@pytest.mark.parametrize(("rel", "driver", "cuda"), [
    ("h200x2/nvidia-smi.txt", "580.159.04", "13.0"),
    ("h200x2/nvidia-smi-q.txt", "580.159.04", "13.0"),
    ("wsl2/nvidia-smi.txt", "566.36", "12.7"),  # the Windows driver's version, not the shim's
])
def test_smi_header(rel: str, driver: str, cuda: str) -> None:
    assert probes.parse_smi_header(read(rel)) == (driver, cuda)


def test_smi_report_ok_and_ccs() -> None:
    query = (0, read("h200x2/query-gpu.csv"), "")
    header = (0, read("h200x2/nvidia-smi.txt"), "")
    report = probes.smi_report("/usr/bin/nvidia-smi", query, header)
    assert report.status == "ok"
    assert (report.driver_version, report.driver_cuda) == ("580.159.04", "13.0")
    assert ccs_from_report(report, wsl=False) == ("9.0",)


def test_smi_report_no_driver_gives_wsl_hint_only_on_wsl() -> None:
    text = read("no-driver/nvidia-smi.txt")
    report = probes.smi_report("/usr/bin/nvidia-smi", (9, text, ""), None)
    assert report.status == "no-driver"
    with pytest.raises(GPUDetectionError) as plain:
        ccs_from_report(report, wsl=False)
    assert "WSL" not in (plain.value.fix or "")
    with pytest.raises(GPUDetectionError) as wsl:
        ccs_from_report(report, wsl=True)
    assert "Windows" in (wsl.value.fix or "")
    assert wsl.value.exit_code == 6


def test_smi_absent() -> None:
    report = probes.smi_report(None, None, None)
    assert report.status == "absent"
    with pytest.raises(GPUDetectionError, match="not installed"):
        ccs_from_report(report, wsl=False)


def test_mixed_gpus_give_sorted_distinct_ccs() -> None:
    text = (read("h200x2/query-gpu.csv") + read("wsl2/query-gpu.csv").replace("0,", "2,", 1))
    report = probes.smi_report("/x/nvidia-smi", (0, text, ""), None)
    assert ccs_from_report(report, wsl=False) == ("8.6", "9.0")
    assert report.driver_version == "580.159.04"  # from the first GPU when no header ran


def test_wsl_nvidia_smi_found_in_wsl_lib(tmp_path: Path) -> None:
    assert probes.nvidia_smi_path({"PATH": str(tmp_path / "empty")}, tmp_path) is None
    (tmp_path / "nvidia-smi").write_text("")
    assert probes.nvidia_smi_path({"PATH": str(tmp_path / "empty")}, tmp_path) == \
        str(tmp_path / "nvidia-smi")


def test_utilization_idle_gpus_are_called_idle() -> None:
    samples = probes.parse_utilization(read("h200x2/utilization-sampling.csv"))
    assert len(samples) == 16
    usage = utilization_verdict(samples)
    assert [u.index for u in usage] == [0, 1]
    assert all(u.samples == 8 and u.verdict.startswith("idle") for u in usage)


def test_utilization_starved_and_busy() -> None:
    # A training loop that waits on its DataLoader: short bursts between idle gaps.
    starved = "\n".join(f"t{i}, 0, {95 if i % 4 == 0 else 2}, 10, 30000" for i in range(20))
    busy = "\n".join(f"t{i}, 1, {90 + i % 5}, 60, 70000" for i in range(20))
    usage = {u.index: u for u in utilization_verdict(probes.parse_utilization(
        starved + "\n" + busy))}
    assert usage[0].verdict.startswith("STARVED")
    assert usage[0].idle_fraction == pytest.approx(0.75)
    assert usage[1].verdict.startswith("busy")


# ------------------------------------------------------------------------------------- nvcc


def test_list_gpu_arch_matches_recipes_for_13_0() -> None:
    archs = probes.parse_list_gpu_arch(read("h200x2/nvcc-list-gpu-arch.txt"))
    assert "8.8" in archs and "11.0" in archs and "6.1" not in archs
    assert set(archs) == set(probes.parse_list_gpu_arch(read("h200x2/nvcc-list-gpu-code.txt")))
    # The recorded toolkit and recipes/cuda.toml agree on what CUDA 13.0 can compile.
    assert set(archs) == set(load_knowledge(RECIPES).cuda["13.0"].sm)


def test_host_config_limits() -> None:
    assert probes.parse_host_config(read("h200x2/host_config-excerpt.txt")) == (15, 21)
    assert probes.parse_host_config("#if __GNUC__ > 12\n#error") == (12, None)
    assert probes.parse_host_config("nothing here") == (None, None)


def test_nvcc_version_and_location() -> None:
    text = "Cuda compilation tools, release 13.0, V13.0.88\n"
    assert probes.parse_nvcc_version(text) == "13.0"
    dry = "#$ _NVVM_BRANCH_=nvvm\n#$ _HERE_=/usr/local/cuda-13.0/bin\n#$ _THERE_=/x\n"
    assert probes.parse_nvcc_here(dry) == Path("/usr/local/cuda-13.0/bin")
    assert probes.parse_nvcc_here("") is None


@pytest.mark.parametrize(("script", "target"), [
    # /usr/local/bin/nvcc on this project's machines, verbatim
    ('#!/bin/sh\nexec /usr/local/cuda-13.0/bin/nvcc "$@"\n', "/usr/local/cuda-13.0/bin/nvcc"),
    ("#!/bin/bash\nset -e\n'/opt/cuda 12/bin/nvcc' \"$@\"\n", None),   # not an absolute word
    ('#!/bin/sh\nNVCC_APPEND_FLAGS=-g exec "/opt/nvidia/cuda/bin/nvcc" "$@"\n',
     "/opt/nvidia/cuda/bin/nvcc"),
    ("\x7fELF\x02\x01 binary /usr/local/cuda/bin/nvcc", None),   # a real binary is no wrapper
    ("#!/bin/sh\necho nvcc\n", None),
])
def test_wrapper_script_target(script: str, target: str | None) -> None:
    found = probes.parse_wrapper_target(script)
    assert (str(found) if found else None) == target


def test_compile_argv_uses_gencode_and_host_compiler() -> None:
    argv = probes.compile_argv("nvcc", Path("k.cu"), Path("k.o"), "compute_90a", "sm_90a",
                               "g++-12")
    assert "-gencode=arch=compute_90a,code=sm_90a" in argv
    assert argv[-2:] == ["-ccbin", "g++-12"]


# ---------------------------------------------------------------------------- host and system


def test_meminfo() -> None:
    text = ("MemTotal:       16303048 kB\nMemFree:         1000000 kB\n"
            "MemAvailable:   12582912 kB\nSwapTotal:       4194304 kB\n"
            "SwapFree:        2097152 kB\n")
    mem = probes.parse_meminfo(text)
    assert mem.available_gb == pytest.approx(12.0)
    assert mem.swap_free_gb == pytest.approx(2.0)
    assert mem.total_gb == pytest.approx(15.55, abs=0.01)


def test_wsl_detection_and_windows_mounts() -> None:
    assert probes.is_wsl(read("wsl2/proc-version.txt"))
    assert not probes.is_wsl("Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org)")
    assert probes.on_windows_mount(Path("/mnt/c/Users/me/build"))
    assert probes.on_windows_mount(Path("/mnt/d"))
    assert not probes.on_windows_mount(Path("/mnt/data/build"))
    assert not probes.on_windows_mount(Path("/home/me/build"))


@pytest.mark.parametrize(("text", "version"), [
    ("git version 2.39.5", "2.39.5"),
    ("cmake version 3.25.1\n\nCMake suite maintained", "3.25.1"),
    ("1.11.1", "1.11.1"),
    ("conda 24.11.3", "24.11.3"),
    ("no digits", None),
])
def test_tool_versions(text: str, version: str | None) -> None:
    assert probes.parse_tool_version(text) == version


def test_dumpversion() -> None:
    assert probes.parse_dumpversion("12.2.0\n") == "12.2.0"
    assert probes.parse_dumpversion("15\n") == "15"


def test_host_compiler_precedence() -> None:
    assert probes.host_compiler({}) == "g++"
    assert probes.host_compiler({"CXX": "g++-13"}) == "g++-13"
    assert probes.host_compiler({"CXX": "g++-13", "CUDAHOSTCXX": "g++-12"}) == "g++-12"


def test_existing_parent(tmp_path: Path) -> None:
    assert probes.existing_parent(tmp_path / "a" / "b") == tmp_path


# ------------------------------------------- what preflight makes of WSL2 / low-memory probes


def _facts(**over: object) -> MachineFacts:
    base: dict[str, object] = {
        "mem": probes.parse_meminfo("MemTotal: 16303048 kB\nMemAvailable: 14680064 kB\n"),
        "cores": 16, "wsl": True, "wsl_libcuda": (), "work_dir_free_gb": 500.0,
        "tmp_dir": Path("/tmp"), "tmp_free_gb": 500.0, "smi": probes.SmiReport("absent", None),
        "git": "2.39.5", "cmake": None, "toolkit": None, "host_cxx": "g++",
        "host_cxx_version": "12.2.0", "host_cxx_is_clang": False}
    base.update(over)
    return MachineFacts(**base)  # type: ignore[arg-type]


def _req(work_dir: str, cpu: bool = False) -> PreflightRequest:
    return PreflightRequest(torch_version="2.13.0", cuda=None if cpu else "13.0",
                            archs=parse_cc("8.6"), python_version="3.11", work_dir=Path(work_dir),
                            cpu=cpu)


def test_wsl2_findings() -> None:
    found = {f.check: f for f in wsl_findings(_req("/mnt/c/Users/me/tb"), _facts())}
    assert found["wsl-memory"].level == "warning" and ".wslconfig" in found["wsl-memory"].fix
    assert found["wsl-mount"].level == "error" and found["wsl-mount"].forceable
    assert found["wsl-libcuda"].level == "error" and "Windows" in found["wsl-libcuda"].fix
    calm = wsl_findings(_req("/home/me/tb"), _facts(wsl_libcuda=("libcuda.so.1",),
                                                   mem=probes.MemInfo(64.0, 60.0, 16.0, 16.0)))
    assert [f.level for f in calm] == ["ok"]
    assert wsl_findings(_req("/mnt/c/x"), _facts(wsl=False)) == []


def test_memory_floor_and_jobs_reasoning() -> None:
    low = _facts(wsl=False, mem=probes.MemInfo(16.0, 10.0, 0.0, 0.0))
    found = {f.check: f for f in resource_findings(_req("/home/me/tb"), low)}
    assert found["memory"].level == "error" and found["memory"].forceable
    assert "MAX_JOBS=1" in found["jobs"].message
    cpu = {f.check: f for f in resource_findings(_req("/home/me/tb", cpu=True), low)}
    assert "memory" not in cpu  # 10 GB is enough for a CPU build
    # Torch from the env: no torch compile, so its 16 GB floor does not apply; one companion
    # CUDA job (2.5 GB) and the 4 GB reserve do.
    companions = dataclasses.replace(_req("/home/me/tb"), torch_from_env=True)
    assert "memory" not in {f.check for f in resource_findings(companions, low)}
    tiny = _facts(wsl=False, mem=probes.MemInfo(8.0, 5.0, 0.0, 0.0))
    refused = {f.check: f for f in resource_findings(companions, tiny)}["memory"]
    assert "a CUDA build of the companions needs about 6.5 GB" in refused.message


def test_find_toolkits_does_not_probe_the_known_toolkit_again(monkeypatch) -> None:
    known = probes.Toolkit("/opt/cuda-x/bin/nvcc", "12.6", Path("/opt/cuda-x"), (), 13, None)
    probed: list[str] = []
    monkeypatch.setattr(probes, "find_nvcc", lambda _env: probed.append("find_nvcc"))
    monkeypatch.setattr(probes, "probe_toolkit", lambda nvcc, _env: probed.append(nvcc))
    found = probes.find_toolkits({}, known=known)
    assert found[0] is known
    assert "find_nvcc" not in probed and known.nvcc not in probed


def test_cmake_minimum_applies_only_when_torch_is_built() -> None:
    """--torch-from-env --env existing builds extensions/companions: torch 2.13's cmake >= 3.27
    is not theirs (a host cmake 3.25 must not stop a torch-scatter build)."""
    kn = load_knowledge()
    old = _facts(wsl=False, cmake="3.25.1")
    req = _req("/home/me/tb", cpu=True)
    existing = dataclasses.replace(req, env_backend="existing")
    assert [f.level for f in cmake_findings(existing, old, kn)] == ["error"]
    assert cmake_findings(dataclasses.replace(existing, torch_from_env=True), old, kn) == []
