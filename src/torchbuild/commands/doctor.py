"""``torchbuild doctor``: what this machine has and what it can build, without building anything.

    python -m torchbuild doctor                    # readable report
    python -m torchbuild doctor --json             # the same as JSON
    python -m torchbuild doctor --gpu-utilization 30   # sample GPU use while your training runs
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchbuild import command
from torchbuild.errors import GPUDetectionError, UsageError
from torchbuild.knowledge.jobs import build_jobs
from torchbuild.knowledge.rules import buildable_matrix, load_knowledge
from torchbuild.machine import facts, probes
from torchbuild.options import HelpFormatter

_UTIL_QUERY = "timestamp,index,utilization.gpu,utilization.memory,memory.used"
# Below this mean utilisation the GPU waits on the input pipeline more than it computes.
STARVED_PCT = 50
IDLE_PCT = 10

DESCRIPTION = """\
What this machine has and what it can build, without building anything: GPUs and their compute
capabilities, driver, toolkits, compilers, RAM and the MAX_JOBS it implies, disk, WSL2.

  torchbuild doctor                        # readable report
  torchbuild doctor --json                 # the same as JSON
  torchbuild doctor --gpu-utilization 30   # sample GPU use while your training runs"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("doctor", help="report GPUs, toolkits, compilers, RAM/MAX_JOBS and "
                              "what this machine can build", description=DESCRIPTION,
                              formatter_class=HelpFormatter)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="where builds would run (disk space is measured there; default: cwd)")
    p.add_argument("--recipe-dir", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--gpu-utilization", type=float, metavar="SECONDS", default=None,
                   help="sample GPU utilisation for SECONDS and say whether the GPU is starved")
    p.set_defaults(func=main)


def main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    if getattr(args, "gpu_utilization", None) is not None:
        return utilization_main(float(args.gpu_utilization), environ, as_json=bool(args.json))
    data = collect(environ, work_dir=args.work_dir or Path.cwd(),
                   recipe_dir=getattr(args, "recipe_dir", None))
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(render(data))
    return 0


# ------------------------------------------------------------------------------------ collect


def _tools(environ: Mapping[str, str]) -> dict[str, dict[str, str | None]]:
    out: dict[str, dict[str, str | None]] = {}
    for name in ("git", "cmake", "ninja", "conda", "mamba", "micromamba", "ccache", "sccache"):
        path = probes.which(name, environ)
        version = probes.tool_version([path, "--version"], environ) if path else None
        out[name] = {"path": path, "version": version}
    return out


def _compilers(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("gcc", "g++", "clang", "clang++"):
        path = probes.which(name, environ)
        out[name] = {"path": path,
                     "version": probes.gcc_version(name, environ) if path else None}
    out["host_for_nvcc"] = probes.host_compiler(environ)
    return out


# The kinds of build doctor answers for: (key, arch majors, cpu). A build for sm_80+ compiles the
# flash/mem-efficient attention kernels unless this environment switches them off.
_JOB_CASES = (("cuda_sm80_plus", (8,), False), ("cuda_below_sm80", (7,), False),
              ("cpu_only", (), True))


def _jobs(machine: facts.Facts, environ: Mapping[str, str]) -> dict[str, Any]:
    """The MAX_JOBS a build from this shell gets (the plan's derivation, the same facts)."""
    out: dict[str, Any] = {}
    for key, majors, cpu in _JOB_CASES:
        d = build_jobs(machine.mem_available_gb, machine.swap_free_gb, machine.cores,
                       arch_majors=majors, cpu=cpu, compiler_env=environ)
        out[key] = {"jobs": d.jobs, "reasoning": d.reasoning}
    return out


def _wsl(work_dir: Path) -> dict[str, Any]:
    wsl = probes.is_wsl(probes.read_proc_version())
    return {"wsl2": wsl, "libcuda": list(probes.wsl_libcuda()) if wsl else [],
            "work_dir_on_windows_drive": wsl and probes.on_windows_mount(work_dir)}


def _disk(work_dir: Path, environ: Mapping[str, str]) -> dict[str, Any]:
    tmp = Path(environ.get("TMPDIR") or tempfile.gettempdir())
    return {"work_dir": str(work_dir), "work_dir_free_gb": round(probes.disk_free_gb(work_dir), 1),
            "tmp_dir": str(tmp), "tmp_free_gb": round(probes.disk_free_gb(tmp), 1)}


def collect(environ: Mapping[str, str], *, work_dir: Path,
            recipe_dir: Path | None = None) -> dict[str, Any]:
    """Probe everything once; the JSON report (``render`` prints it for humans)."""
    smi = probes.run_nvidia_smi(environ)
    machine = facts.gather(environ)
    mem, cores = machine.mem, machine.cores
    toolkits = probes.find_toolkits(environ, known=machine.toolkit)
    gcc = probes.gcc_version(probes.host_compiler(environ), environ)
    ccs = sorted({g.compute_cap for g in smi.gpus})
    matrix = buildable_matrix(load_knowledge(recipe_dir), gcc=gcc, gpu_ccs=ccs,
                              driver_cuda=smi.driver_cuda,
                              toolkits=[t.version for t in toolkits])
    return {
        "machine": {"platform": platform.platform(), "arch": platform.machine(), "cores": cores,
                    "python": sys.version.split()[0]},
        "nvidia_smi": smi.to_json(),
        "toolkits": [t.to_json() for t in toolkits],
        "compilers": _compilers(environ),
        "memory": {**mem.to_json(), "max_jobs": _jobs(machine, environ)},
        "disk": _disk(work_dir, environ),
        "wsl": _wsl(work_dir),
        "tools": _tools(environ),
        "buildable": [r.to_json() for r in matrix],
    }


# ------------------------------------------------------------------------------------- render


def _line(key: str, value: object) -> str:
    return f"  {key:<22} {value}"


def _gpu_lines(smi: Mapping[str, Any]) -> list[str]:
    if smi["status"] == "absent":
        return [_line("GPUs", "none visible (no nvidia-smi on PATH or in /usr/lib/wsl/lib)")]
    if smi["status"] != "ok":
        return [_line("GPUs", f"nvidia-smi {smi['status']}: {smi['detail'][:120]}")]
    lines = [_line("driver", f"{smi['driver_version']} (supports CUDA <= {smi['driver_cuda']})")]
    for g in smi["gpus"]:
        mem = f", {g['memory_mib']} MiB" if g["memory_mib"] else ""
        lines.append(_line(f"GPU {g['index']}", f"{g['name']}, compute capability "
                           f"{g['compute_cap']}{mem}"))
    return lines


def _toolkit_lines(toolkits: Sequence[Mapping[str, Any]]) -> list[str]:
    if not toolkits:
        return [_line("CUDA toolkits", "none found ($CUDA_HOME, nvcc on PATH, /usr/local/cuda*)")]
    return [_line(f"CUDA {t['version']}", f"{t['nvcc']}; host gcc <= {t['max_gcc']}; archs "
                  f"{' '.join(t['gpu_archs'])}") for t in toolkits]


def _matrix_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per torch release: each official CUDA with its verdict."""
    by_torch: dict[str, list[str]] = {}
    for r in rows:
        note = f" ({'; '.join(r['notes'])})" if r["notes"] else ""
        by_torch.setdefault(r["torch"], []).append(f"{r['cuda']} {r['verdict']}{note}")
    return [_line(f"torch {t}", ", ".join(cells)) for t, cells in by_torch.items()]


_LEGEND = (
    ("buildable  (per CUDA: yes = with this machine's toolkit and gcc; conda = a conda env must "
    "bring the toolkit"),
    ("            (gcc) = and the compiler; build-only = the driver cannot run it; no = cannot "
    "target this machine's GPU)"),
)


def render(data: Mapping[str, Any]) -> str:
    mem, disk, wsl = data["memory"], data["disk"], data["wsl"]
    jobs = mem["max_jobs"]
    lines = ["torchbuild doctor", "", "machine",
             _line("platform", data["machine"]["platform"]),
             _line("cores", data["machine"]["cores"]),
             _line("WSL2", "yes" if wsl["wsl2"] else "no")]
    if wsl["wsl2"]:
        lines.append(_line("libcuda (WSL)", ", ".join(wsl["libcuda"]) or "MISSING"))
        if wsl["work_dir_on_windows_drive"]:
            lines.append(_line("work dir", "on /mnt/* (Windows drive): builds are very slow"))
    lines += ["", "GPU", *_gpu_lines(data["nvidia_smi"]), *_toolkit_lines(data["toolkits"])]
    comp = data["compilers"]
    lines += ["", "compilers"] + [_line(n, c["version"] or "not found")
                                  for n, c in comp.items() if isinstance(c, dict)]
    lines.append(_line("nvcc host compiler", comp["host_for_nvcc"]))
    lines += ["", "memory",
              _line("RAM", f"{mem['total_gb']} GB total, {mem['available_gb']} GB available"),
              _line("swap", f"{mem['swap_free_gb']} GB free of {mem['swap_total_gb']} GB"),
              _line("MAX_JOBS (sm_80+)", jobs["cuda_sm80_plus"]["reasoning"]),
              _line("MAX_JOBS (< sm_80)", jobs["cuda_below_sm80"]["jobs"]),
              _line("MAX_JOBS (CPU)", jobs["cpu_only"]["jobs"]),
              "", "disk",
              _line("work dir", f"{disk['work_dir']}: {disk['work_dir_free_gb']} GB free"),
              _line("TMPDIR", f"{disk['tmp_dir']}: {disk['tmp_free_gb']} GB free"),
              "", "tools"]
    lines += [_line(n, (t["version"] or "present") if t["path"] else "not found")
              for n, t in data["tools"].items()]
    lines += ["", *_LEGEND, *_matrix_lines(data["buildable"])]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- GPU utilisation


@dataclass(frozen=True)
class GpuUsage:
    index: int
    samples: int
    mean_gpu_pct: float
    idle_fraction: float
    max_mem_used_mib: int
    verdict: str


def utilization_verdict(samples: Sequence[probes.UtilSample]) -> list[GpuUsage]:
    """Per GPU: mean utilisation, how often it sat idle, and a plain verdict."""
    out: list[GpuUsage] = []
    for index in sorted({s.index for s in samples}):
        mine = [s for s in samples if s.index == index]
        mean = sum(s.gpu_pct for s in mine) / len(mine)
        idle = sum(1 for s in mine if s.gpu_pct < IDLE_PCT) / len(mine)
        mem = max(s.mem_used_mib for s in mine)
        if mem == 0 and mean < IDLE_PCT:
            verdict = "idle: nothing is running on this GPU"
        elif mean < STARVED_PCT:
            verdict = (f"STARVED: busy only {mean:.0f}% of the time, idle in {idle:.0%} of samples"
                       " -- the GPU waits for input (more DataLoader workers, pin_memory, "
                       "faster storage or preprocessing, larger batches)")
        else:
            verdict = f"busy: {mean:.0f}% mean utilisation"
        out.append(GpuUsage(index, len(mine), mean, idle, mem, verdict))
    return out


def sample_utilization(seconds: float, environ: Mapping[str, str],
                       interval: float = 0.5) -> list[probes.UtilSample]:
    smi = probes.nvidia_smi_path(environ)
    if smi is None:
        msg = "no nvidia-smi: cannot sample GPU utilisation"
        raise GPUDetectionError(msg, fix="run this on the machine with the GPU (and its driver)")
    argv = [smi, f"--query-gpu={_UTIL_QUERY}", "--format=csv,noheader,nounits"]
    samples: list[probes.UtilSample] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        res = command.probe(argv, env=dict(environ))
        if res is None or res[0] != 0:
            msg = f"nvidia-smi failed while sampling: {res[2].strip() if res else 'timeout'}"
            raise GPUDetectionError(msg, fix="check the driver with plain `nvidia-smi`")
        samples += probes.parse_utilization(res[1])
        time.sleep(interval)
    return samples


def utilization_main(seconds: float, environ: Mapping[str, str], *, as_json: bool) -> int:
    if seconds <= 0:
        msg = "--gpu-utilization needs a positive number of seconds"
        raise UsageError(msg, fix="e.g. --gpu-utilization 30 while your training runs")
    usage = utilization_verdict(sample_utilization(seconds, environ))
    if as_json:
        print(json.dumps([u.__dict__ for u in usage], indent=2))
        return 0
    for u in usage:
        print(f"GPU {u.index}: {u.samples} samples, mean {u.mean_gpu_pct:.0f}%, "
              f"max memory {u.max_mem_used_mib} MiB -> {u.verdict}")
    return 0

