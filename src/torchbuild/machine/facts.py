"""Machine facts the planner needs (cores, memory, the CUDA toolkit, the interpreter to build with).

Gathered once, by cheap probes, before planning; the plan itself stays a pure function of
(recipes, options, facts). ``doctor``/``preflight`` look much deeper (probes.py).
"""

from __future__ import annotations

import os
import platform
import re
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from torchbuild.command import probe

_PY_VERSION = re.compile(r"^\d+\.\d+$")


@dataclass(frozen=True)
class Facts:
    cores: int
    mem_available_gb: float
    swap_free_gb: float
    machine: str
    cuda_home: str | None
    cuda_version: str | None
    host_python: str
    host_python_version: str
    env_python: str | None = None           # interpreter of --env existing / venv --python PATH
    env_python_version: str | None = None
    env_torch_version: str | None = None    # torch already installed there (--torch-from-env)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def meminfo_gb(text: str) -> tuple[float, float]:
    """(MemAvailable, SwapFree) in GiB from /proc/meminfo text."""
    fields = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[key.strip()] = int(parts[0]) / (1024 * 1024)
    return fields.get("MemAvailable", 0.0), fields.get("SwapFree", 0.0)


def nvcc_version(text: str) -> str | None:
    """``release 13.0, V13.0.88`` -> ``13.0``."""
    m = re.search(r"release (\d+\.\d+)", text)
    return m.group(1) if m else None


def find_cuda(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(CUDA_HOME, version) of the system toolkit: $CUDA_HOME, nvcc on PATH, /usr/local/cuda."""
    candidates = []
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if environ.get(var):
            candidates.append(Path(environ[var]) / "bin" / "nvcc")
    for entry in environ.get("PATH", "").split(os.pathsep):
        if entry:
            candidates.append(Path(entry) / "nvcc")
    candidates.append(Path("/usr/local/cuda/bin/nvcc"))
    for nvcc in candidates:
        if nvcc.is_file():
            out = probe([str(nvcc), "--version"], env=dict(environ))
            if out and out[0] == 0:
                return str(nvcc.resolve().parent.parent), nvcc_version(out[1])
    return None, None


_PY_PROBE = ("import sys, importlib.util as u; v=sys.version_info; "
             "t=None\n"
             "if u.find_spec('torch'):\n"
             "    from importlib.metadata import version; t=version('torch')\n"
             "print(f'{v.major}.{v.minor}', t or '')")


def python_facts(python: str, environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(X.Y, installed torch version or None) of an interpreter, without importing torch."""
    out = probe([python, "-c", _PY_PROBE], env=dict(environ))
    if not out or out[0] != 0:
        return None, None
    parts = out[1].split()
    return (parts[0] if parts else None), (parts[1] if len(parts) > 1 else None)


def gather(environ: Mapping[str, str], *, env_python: str | None = None) -> Facts:
    try:
        mem, swap = meminfo_gb(Path("/proc/meminfo").read_text())
    except OSError:
        mem, swap = 0.0, 0.0
    cuda_home, cuda_version = find_cuda(environ)
    env_py_version = env_torch = None
    if env_python:
        env_py_version, env_torch = python_facts(env_python, environ)
    return Facts(
        cores=os.cpu_count() or 1,
        mem_available_gb=round(mem, 1),
        swap_free_gb=round(swap, 1),
        machine=platform.machine(),
        cuda_home=cuda_home,
        cuda_version=cuda_version,
        host_python=sys.executable,
        host_python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        env_python=env_python,
        env_python_version=env_py_version,
        env_torch_version=env_torch,
    )


def is_version(text: str | None) -> bool:
    return bool(text) and bool(_PY_VERSION.match(str(text)))
