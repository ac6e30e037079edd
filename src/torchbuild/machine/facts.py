"""Machine facts: gathered once, by the probes in ``probes.py``, and handed to plan, preflight and
doctor (one meminfo parse, one nvcc search, one nvcc version regex, the affinity mask for cores).

Two rounds, because the second needs the plan's work dir: :func:`gather` (cheap: what the planner
needs) before planning, :func:`gather_host` (git, compilers, driver, disk, WSL) after it, filling in
the same ``Facts``. The plan itself stays a pure function of (recipes, options, facts).
"""

from __future__ import annotations

import json
import platform
import re
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torchbuild.command import probe
from torchbuild.machine import probes
from torchbuild.machine.probes import MemInfo, SmiReport, Toolkit

_PY_VERSION = re.compile(r"^\d+\.\d+$")


@dataclass(frozen=True)
class Facts:
    """What this machine has. The host-check fields keep their 'unknown' defaults until
    :func:`gather_host` ran (``host_checked``)."""

    cores: int = 1
    mem: MemInfo = field(default_factory=lambda: MemInfo(0.0, 0.0, 0.0, 0.0))
    machine: str = ""
    toolkit: Toolkit | None = None          # the system CUDA toolkit, if any
    host_python: str = ""
    host_python_version: str = ""
    env_python: str | None = None           # interpreter of --env existing / venv --python PATH
    env_python_version: str | None = None
    env_torch_version: str | None = None    # torch already installed there (--torch-from-env)
    env_packages: Mapping[str, str] = field(default_factory=dict)   # distributions installed there
    env_torch_cmake_needs_cuda: bool = False   # that torch's CMake config demands a CUDA toolkit
    # --- host checks (gather_host) ---
    host_checked: bool = False
    wsl: bool = False
    wsl_libcuda: tuple[str, ...] = ()
    work_dir_free_gb: float = 0.0
    tmp_dir: Path = Path("/tmp")
    tmp_free_gb: float = 0.0
    smi: SmiReport = field(default_factory=lambda: SmiReport("absent", None))
    git: str | None = None
    cmake: str | None = None
    host_cxx: str = "g++"
    host_cxx_version: str | None = None
    host_cxx_is_clang: bool = False

    @property
    def mem_available_gb(self) -> float:
        return round(self.mem.available_gb, 1)

    @property
    def swap_free_gb(self) -> float:
        return round(self.mem.swap_free_gb, 1)

    @property
    def cuda_home(self) -> str | None:
        return str(self.toolkit.root) if self.toolkit else None

    @property
    def cuda_version(self) -> str | None:
        return self.toolkit.version if self.toolkit else None

    def to_json(self) -> dict[str, Any]:
        return {"cores": self.cores, "mem": self.mem.to_json(), "machine": self.machine,
                "toolkit": self.toolkit.to_json() if self.toolkit else None,
                "host_python": self.host_python, "host_python_version": self.host_python_version,
                "env_python": self.env_python, "env_python_version": self.env_python_version,
                "env_torch_version": self.env_torch_version,
                "env_packages": dict(self.env_packages),
                "env_torch_cmake_needs_cuda": self.env_torch_cmake_needs_cuda}


# Runs in the build interpreter: its version, where torch is (without importing it: a broken or
# CUDA torch must not make planning slow or fail) and every installed distribution.
_PY_PROBE = """\
import importlib.metadata as md, importlib.util as u, json, re, sys
spec = u.find_spec("torch")
where = list(spec.submodule_search_locations or []) if spec else []
packages = {}
for dist in md.distributions():
    name = dist.metadata["Name"]
    if name:
        packages.setdefault(re.sub(r"[-_.]+", "-", name).lower(), dist.version)
print(json.dumps({"python": "%d.%d" % sys.version_info[:2],
                  "torch_dir": where[0] if where else None, "packages": packages}))
"""
# torch's installed CMake config says whether CMake needs a CUDA toolkit to use it: a CUDA build
# configures cmake/Caffe2Config.cmake.in's `set(CAFFE2_USE_CUDA @USE_CUDA@)` to 1/ON and then
# fails with "Your installed Caffe2 version uses CUDA but I cannot find the CUDA libraries".
_CAFFE2_USES_CUDA = re.compile(r"^\s*set\(CAFFE2_USE_CUDA\s+(1|ON|TRUE|YES)\s*\)",
                               re.MULTILINE | re.IGNORECASE)
CAFFE2_CONFIG = Path("share") / "cmake" / "Caffe2" / "Caffe2Config.cmake"


@dataclass(frozen=True)
class EnvPython:
    """What an existing interpreter holds (``--env existing``, ``--python PATH``)."""

    version: str | None = None
    torch: str | None = None
    torch_dir: str | None = None
    packages: Mapping[str, str] = field(default_factory=dict)   # canonical name -> version
    torch_cmake_needs_cuda: bool = False


def cmake_config_needs_cuda(text: str) -> bool:
    """Whether a torch's Caffe2Config.cmake demands a CUDA toolkit of every CMake user."""
    return _CAFFE2_USES_CUDA.search(text) is not None


def python_facts(python: str, environ: Mapping[str, str]) -> EnvPython:
    """What ``python`` has installed, without importing torch."""
    out = probe([python, "-c", _PY_PROBE], env=dict(environ))
    if not out or out[0] != 0:
        return EnvPython()
    try:
        data = json.loads(out[1].strip().splitlines()[-1])
    except (ValueError, IndexError):
        return EnvPython()
    packages = {str(k): str(v) for k, v in dict(data.get("packages") or {}).items()}
    torch_dir = data.get("torch_dir")
    needs_cuda = False
    if torch_dir:
        try:
            needs_cuda = cmake_config_needs_cuda((Path(torch_dir) / CAFFE2_CONFIG).read_text(
                errors="replace"))
        except OSError:
            needs_cuda = False   # no CMake config shipped: nothing of CMake's to satisfy
    return EnvPython(data.get("python"), packages.get("torch"), torch_dir, packages, needs_cuda)


def system_toolkit(environ: Mapping[str, str]) -> Toolkit | None:
    """The toolkit a venv/existing build uses: ``probes.find_nvcc``'s search order."""
    nvcc = probes.find_nvcc(environ)
    return probes.probe_toolkit(nvcc, environ) if nvcc else None


def gather(environ: Mapping[str, str], *, env_python: str | None = None) -> Facts:
    """What the planner needs: cores, memory, the system toolkit, the interpreters."""
    env = python_facts(env_python, environ) if env_python else EnvPython()
    return Facts(
        cores=probes.cpu_count(),
        mem=probes.read_meminfo(),
        machine=platform.machine(),
        toolkit=system_toolkit(environ),
        host_python=sys.executable,
        host_python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        env_python=env_python,
        env_python_version=env.version,
        env_torch_version=env.torch,
        env_packages=env.packages,
        env_torch_cmake_needs_cuda=env.torch_cmake_needs_cuda,
    )


def gather_host(facts: Facts, environ: Mapping[str, str], *, work_dir: Path,
                cpu: bool, tool_environ: Mapping[str, str] | None = None) -> Facts:
    """The same facts plus what preflight checks (all these probes together take well under 1 s).

    ``tool_environ``: the environment the build steps run tools with (an existing env's bin dir
    first on PATH); the cmake checked is the one they will run (#12 §5).
    """
    tmp = Path(environ.get("TMPDIR") or tempfile.gettempdir())
    cxx = probes.host_compiler(environ)
    return replace(
        facts,
        host_checked=True,
        wsl=probes.is_wsl(probes.read_proc_version()),
        wsl_libcuda=probes.wsl_libcuda(),
        work_dir_free_gb=probes.disk_free_gb(work_dir),
        tmp_dir=tmp,
        tmp_free_gb=probes.disk_free_gb(tmp),
        smi=probes.run_nvidia_smi(environ) if not cpu else SmiReport("absent", None),
        git=probes.tool_version(["git", "--version"], environ),
        cmake=probes.tool_version(["cmake", "--version"], tool_environ or environ),
        host_cxx=cxx,
        host_cxx_version=probes.gcc_version(cxx, environ),
        host_cxx_is_clang=probes.is_clang(cxx, environ),
    )


def is_version(text: str | None) -> bool:
    return bool(text) and bool(_PY_VERSION.match(str(text)))
