"""``--cc auto``: the compute capabilities of the GPUs on this machine, from nvidia-smi."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torchbuild.cc import Arch, parse_cc
from torchbuild.errors import GPUDetectionError
from torchbuild.knowledge.rules import vtuple
from torchbuild.machine import probes

_WSL_HINT = ("on WSL2 the GPU comes from the Windows driver: install or update the NVIDIA "
             "driver on Windows (not inside WSL), check that /usr/lib/wsl/lib/nvidia-smi runs, "
             "then `wsl --shutdown` and reopen the shell")
_GENERIC_FIX = ("run on the machine with the GPU, or name the capability instead, e.g. --cc 8.6 "
                "(https://developer.nvidia.com/cuda-gpus)")


def ccs_from_report(report: probes.SmiReport, *, wsl: bool) -> tuple[str, ...]:
    """Distinct compute capabilities, ascending; GPUDetectionError (with a WSL2 hint there)."""
    fix = f"{_WSL_HINT}; or {_GENERIC_FIX}" if wsl else _GENERIC_FIX
    if report.status == "absent":
        where = "on PATH or in /usr/lib/wsl/lib" if wsl else "on PATH"
        msg = f"--cc auto: nvidia-smi is not installed ({where}), so no GPU is visible"
        raise GPUDetectionError(msg, fix=fix)
    if report.status != "ok":
        msg = f"--cc auto: nvidia-smi failed ({report.status}): {report.detail or 'no output'}"
        raise GPUDetectionError(msg, fix=fix)
    ccs = {g.compute_cap for g in report.gpus if vtuple(g.compute_cap)}
    if not ccs:
        msg = "--cc auto: nvidia-smi lists no GPU with a compute capability"
        raise GPUDetectionError(msg, fix=fix)
    return tuple(sorted(ccs, key=vtuple))


def detect_cc(environ: Mapping[str, str], *, wsl_lib: Path = probes.WSL_LIB) -> tuple[str, ...]:
    """``("8.6",)`` / ``("8.6", "9.0")`` for the visible GPUs; raises GPUDetectionError."""
    report = probes.run_nvidia_smi(environ, wsl_lib)
    return ccs_from_report(report, wsl=probes.is_wsl(probes.read_proc_version()))


def detect_archs(environ: Mapping[str, str]) -> tuple[Arch, ...]:
    """``--cc auto`` as ``Arch`` values (what ``Options.archs`` holds)."""
    return parse_cc(" ".join(detect_cc(environ)))
