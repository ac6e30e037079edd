"""Memory-aware MAX_JOBS: as many compile jobs as RAM allows, never more than the cores.

ninja starts one job per CPU by default, and compiler processes, not CPUs, are what run out
(pain.md FM-01/02): a plain C++ translation unit of torch needs 1-2 GB, the flash-attention /
mem-efficient-attention CUDA kernels 4.5-5.3 GB each. The budgets below are the pain.md heuristic
(an inference from pytorch/pytorch#124018: MAX_JOBS=5 is about the limit for 32 GB with those
kernels).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# GB per concurrent compile job.
BUDGET_HEAVY_CUDA_GB = 5.5  # torch CUDA build with flash / mem-efficient attention kernels
BUDGET_CUDA_GB = 2.5  # CUDA build with both attention features off, and companion CUDA code
BUDGET_CPU_GB = 2.0  # plain C++ (CPU-only torch, companions without CUDA)
# Left for the OS, the desktop and the linker that runs next to the compilers.
RESERVE_GB = 4.0
# Swap is slow but keeps the OOM killer away from short peaks: count half of it.
SWAP_WEIGHT = 0.5


@dataclass(frozen=True)
class JobsDecision:
    jobs: int
    reasoning: str
    budget_gb: float = 0.0
    memory_limited: bool = False


def job_budget_gb(heavy_cuda: bool, *, cuda: bool = True) -> float:
    if heavy_cuda:
        return BUDGET_HEAVY_CUDA_GB
    return BUDGET_CUDA_GB if cuda else BUDGET_CPU_GB


def max_jobs(mem_available_gb: float, swap_free_gb: float, cores: int, heavy_cuda: bool, *,
             cuda: bool = True, requested: int | None = None) -> JobsDecision:
    """``floor((MemAvailable + 0.5*SwapFree - 4 GB) / budget)`` clamped to [1, cores];
    ``requested`` (``--jobs N``) wins but is still explained."""
    budget = job_budget_gb(heavy_cuda, cuda=cuda)
    usable = mem_available_gb + SWAP_WEIGHT * swap_free_gb - RESERVE_GB
    by_mem = max(1, math.floor(usable / budget))
    jobs = max(1, min(cores, by_mem))
    kind = ("CUDA with flash/mem-efficient attention kernels" if heavy_cuda
            else "CUDA" if cuda else "C++ only")
    why = (f"{mem_available_gb:.1f} GB available + {SWAP_WEIGHT:g} x {swap_free_gb:.1f} GB swap "
           f"- {RESERVE_GB:g} GB reserve = {usable:.1f} GB / {budget:g} GB per job ({kind}) "
           f"-> {by_mem}; {cores} cores -> MAX_JOBS={jobs}")
    if requested is not None:
        note = "" if requested <= by_mem else f" (memory suggests at most {by_mem}: OOM risk)"
        return JobsDecision(requested, f"--jobs {requested}{note}; computed: {why}", budget,
                            requested > by_mem)
    return JobsDecision(jobs, why, budget, by_mem < cores)


def heavy_cuda_kernels(arch_majors: Sequence[int], cpu: bool,
                       build_env: Mapping[str, str]) -> bool:
    """Flash / mem-efficient attention kernels are compiled for sm_80+ unless switched off."""
    if cpu or not any(m >= 8 for m in arch_majors):
        return False
    off = {"0", "OFF", "off", "false", "FALSE"}
    return not (build_env.get("USE_FLASH_ATTENTION") in off
                and build_env.get("USE_MEM_EFF_ATTENTION") in off)


@dataclass(frozen=True)
class ExtensionJobs:
    """MAX_JOBS and nvcc --threads for one ``--extra`` build."""

    jobs: int
    nvcc_threads: int
    reasoning: str


def extension_jobs(mem_available_gb: float, swap_free_gb: float, cores: int, *,
                   job_gb: float | None, recipe_threads: int, threads_settable: bool,
                   arch_count: int, cuda: bool = True,
                   requested: int | None = None) -> ExtensionJobs:
    """Compile jobs x nvcc threads that fit in RAM and cores, for one extension.

    nvcc ``--threads N`` compiles the -gencode targets of one file in parallel, so a job really runs
    ``min(N, archs)`` device compilers, and memory scales with that: a package's per-job number
    (``job_gb``, measured at its own ``recipe_threads``) is split per thread. Without a number the
    companions' CUDA budget (2.5 GB) counts per thread. Threads the package lets us set
    (``NVCC_THREADS``) are lowered before jobs are, so one job still fits.
    """
    usable = mem_available_gb + SWAP_WEIGHT * swap_free_gb - RESERVE_GB
    if not cuda:
        decision = max_jobs(mem_available_gb, swap_free_gb, cores, False, cuda=False,
                            requested=requested)
        return ExtensionJobs(decision.jobs, 1, decision.reasoning)
    per_thread = (job_gb / max(1, recipe_threads)) if job_gb else BUDGET_CUDA_GB
    threads = max(1, min(recipe_threads, arch_count))
    why = [f"{arch_count} arch target(s) -> nvcc runs {threads} thread(s) per job"]
    if threads_settable and threads > 1:
        fit = max(1, min(threads, cores, math.floor(usable / per_thread)))
        if fit != threads:
            why.append(f"NVCC_THREADS lowered to {fit} to fit cores and memory")
            threads = fit
    # The host half of a job (cudafe++, the C++ compile) does not split per thread: floor it.
    per_job = max(per_thread * threads, BUDGET_CUDA_GB)
    by_mem = max(1, math.floor(usable / per_job))
    by_cpu = max(1, cores // threads)
    jobs = min(by_mem, by_cpu)
    source = (f"{job_gb:g} GB per job at {recipe_threads} threads" if job_gb
              else f"{BUDGET_CUDA_GB:g} GB per nvcc thread (no package figure)")
    why.append(f"{source} -> {per_job:.1f} GB per job")
    why.append(f"{mem_available_gb:.1f} GB available + {SWAP_WEIGHT:g} x {swap_free_gb:.1f} GB "
               f"swap - {RESERVE_GB:g} GB reserve = {usable:.1f} GB -> {by_mem} job(s); "
               f"{cores} cores / {threads} thread(s) -> {by_cpu}")
    if requested is not None:
        risk = f" (memory allows {by_mem}: OOM risk)" if requested > by_mem else ""
        return ExtensionJobs(requested, threads, f"--jobs {requested}{risk}; computed: "
                             + "; ".join(why) + f" -> MAX_JOBS={jobs}")
    return ExtensionJobs(jobs, threads, "; ".join(why) + f" -> MAX_JOBS={jobs}")
def build_jobs(mem_available_gb: float, swap_free_gb: float, cores: int, *,
               arch_majors: Sequence[int], cpu: bool, compiler_env: Mapping[str, str],
               requested: int | None = None, builds_torch: bool = True) -> JobsDecision:
    """THE MAX_JOBS of a build (the one derivation plan, preflight, doctor and the build step
    use). ``compiler_env``: the variables the compilers will see -- the process environment with
    ``--set`` on top -- since USE_FLASH_ATTENTION=0 from either place changes the budget.
    ``builds_torch``: False when torch comes from the env (--torch-from-env): the attention
    kernels that need the heavy budget are torch's own, not the companions'."""
    heavy = builds_torch and heavy_cuda_kernels(arch_majors, cpu, compiler_env)
    return max_jobs(mem_available_gb, swap_free_gb, cores, heavy, cuda=not cpu,
                    requested=requested)


def compiler_env(environ: Mapping[str, str], set_pairs: Sequence[tuple[str, str]]
                 ) -> dict[str, str]:
    """What a build step's processes see of these variables: ``--set`` wins over the process
    environment (plan.py puts ``--set`` last into every step's env)."""
    return {**environ, **dict(set_pairs)}
