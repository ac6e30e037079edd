"""MAX_JOBS from RAM: the data points are the ones pain.md FM-01/02 cites from real builds."""

from __future__ import annotations

import pytest

from torchbuild.knowledge.jobs import heavy_cuda_kernels, max_jobs


@pytest.mark.parametrize(("mem", "swap", "cores", "heavy", "jobs"), [
    (32.0, 0.0, 16, True, 5),    # pytorch#124018: MAX_JOBS=5 is about the limit for 32 GB
    (16.0, 0.0, 16, True, 2),    # PyTorch CI needed MAX_JOBS=2 in a 16 GB container
    (64.0, 0.0, 8, True, 8),     # never more than the cores
    (4.0, 0.0, 8, True, 1),      # never fewer than one
    (32.0, 0.0, 32, False, 11),  # attention kernels off: 2.5 GB per job
    (16.0, 8.0, 16, True, 2),    # swap counts half: (16 + 4 - 4) / 5.5
    (23.0, 0.0, 2, True, 2),     # this CI machine: the 2 cores are the limit
])
def test_jobs_from_memory(mem: float, swap: float, cores: int, heavy: bool, jobs: int) -> None:
    decision = max_jobs(mem, swap, cores, heavy)
    assert decision.jobs == jobs
    assert f"MAX_JOBS={jobs}" in decision.reasoning
    assert f"{cores} cores" in decision.reasoning


def test_cpu_builds_budget_less_per_job() -> None:
    cuda = max_jobs(24.0, 0.0, 64, False)
    cpu = max_jobs(24.0, 0.0, 64, False, cuda=False)
    assert cpu.jobs > cuda.jobs
    assert "C++ only" in cpu.reasoning


def test_requested_jobs_win_but_are_explained() -> None:
    decision = max_jobs(16.0, 0.0, 16, True, requested=8)
    assert decision.jobs == 8
    assert decision.memory_limited
    assert "OOM risk" in decision.reasoning and "--jobs 8" in decision.reasoning
    modest = max_jobs(64.0, 0.0, 16, True, requested=2)
    assert modest.jobs == 2 and not modest.memory_limited


@pytest.mark.parametrize(("majors", "cpu", "env", "heavy"), [
    ([8], False, {}, True),
    ([7], False, {}, False),   # flash attention needs sm_80+
    ([7, 9], False, {}, True),
    ([8], True, {}, False),
    ([9], False, {"USE_FLASH_ATTENTION": "0", "USE_MEM_EFF_ATTENTION": "0"}, False),
    ([9], False, {"USE_FLASH_ATTENTION": "0"}, True),  # mem-efficient kernels are heavy too
])
def test_heavy_kernels(majors: list[int], cpu: bool, env: dict[str, str], heavy: bool) -> None:
    assert heavy_cuda_kernels(majors, cpu, env) is heavy
