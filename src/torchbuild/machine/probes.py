"""Machine probes: nvidia-smi, nvcc, host_config.h, gcc, meminfo, disk, WSL, git, cmake.

Every probe is split in two: a pure ``parse_*`` function over the tool's text output (unit-tested
against recorded real outputs in tests/fixtures/gpu-probes/) and a thin runner that calls
``command.probe``. Runners return ``None`` (or an empty result) when the tool is missing; they never
raise for a missing tool -- deciding whether that is an error is preflight's job.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchbuild import command

# On WSL2 the driver (and its nvidia-smi) is injected from Windows here, often not on PATH.
WSL_LIB = Path("/usr/lib/wsl/lib")
_NO_DRIVER = re.compile(r"couldn't communicate with the NVIDIA driver|NVIDIA-SMI has failed",
                        re.IGNORECASE)
_QUERY = "index,name,compute_cap,driver_version,memory.total,uuid"


# ------------------------------------------------------------------------------------ nvidia-smi


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    compute_cap: str
    driver_version: str
    memory_mib: int | None
    uuid: str

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "compute_cap": self.compute_cap,
                "driver_version": self.driver_version, "memory_mib": self.memory_mib,
                "uuid": self.uuid}


@dataclass(frozen=True)
class SmiReport:
    """What nvidia-smi told us. ``status``: ok | absent | no-driver | failed."""

    status: str
    path: str | None
    gpus: tuple[GpuInfo, ...] = ()
    driver_version: str | None = None
    driver_cuda: str | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "path": self.path, "driver_version": self.driver_version,
                "driver_cuda": self.driver_cuda, "gpus": [g.to_json() for g in self.gpus],
                "detail": self.detail}


def _csv_cells(line: str) -> list[str]:
    return [c.strip() for c in line.split(",")]


def parse_query_gpu(text: str) -> tuple[GpuInfo, ...]:
    """``--query-gpu=index,name,compute_cap,driver_version,memory.total,uuid --format=csv`` (header
    optional, ``nounits`` optional)."""
    gpus: list[GpuInfo] = []
    for line in text.splitlines():
        cells = _csv_cells(line)
        if len(cells) < 6 or not cells[0].isdigit():
            continue  # header, blank or an error line
        mem = re.match(r"\d+", cells[4])
        gpus.append(GpuInfo(int(cells[0]), cells[1], cells[2], cells[3],
                            int(mem.group()) if mem else None, cells[5]))
    return tuple(gpus)


def parse_cc_noheader(text: str) -> tuple[str, ...]:
    """``--query-gpu=index,compute_cap --format=csv,noheader`` -> ``("9.0", "9.0")``, by index."""
    out: list[str] = []
    for line in text.splitlines():
        cells = _csv_cells(line)
        if len(cells) >= 2 and re.fullmatch(r"\d+\.\d+", cells[1]):
            out.append(cells[1])
    return tuple(out)


def parse_smi_header(text: str) -> tuple[str | None, str | None]:
    """Driver version and the highest CUDA the driver supports, from plain ``nvidia-smi`` or
    ``nvidia-smi -q`` output."""
    drv = re.search(r"Driver Version\s*:?\s*([0-9][0-9.]*)", text)
    cuda = re.search(r"CUDA Version\s*:?\s*([0-9]+\.[0-9]+)", text)
    return (drv.group(1) if drv else None, cuda.group(1) if cuda else None)


def nvidia_smi_path(environ: Mapping[str, str], wsl_lib: Path = WSL_LIB) -> str | None:
    """nvidia-smi on PATH, else WSL2's /usr/lib/wsl/lib/nvidia-smi."""
    found = shutil.which("nvidia-smi", path=environ.get("PATH", os.defpath))
    if found:
        return found
    wsl = wsl_lib / "nvidia-smi"
    return str(wsl) if wsl.is_file() else None


def smi_report(path: str | None, query: tuple[int, str, str] | None,
               header: tuple[int, str, str] | None) -> SmiReport:
    """Combine the raw results of the query and the plain header call into a report (pure)."""
    if path is None:
        return SmiReport("absent", None)
    if query is None:
        return SmiReport("failed", path, detail="nvidia-smi did not run (timeout or exec error)")
    rc, out, err = query
    if rc != 0 or _NO_DRIVER.search(out + err):
        status = "no-driver" if _NO_DRIVER.search(out + err) else "failed"
        return SmiReport(status, path, detail=(out + err).strip()[:500])
    gpus = parse_query_gpu(out)
    drv, cuda = parse_smi_header(header[1]) if header and header[0] == 0 else (None, None)
    drv = drv or (gpus[0].driver_version if gpus else None)
    return SmiReport("ok", path, gpus, drv, cuda)


def run_nvidia_smi(environ: Mapping[str, str], wsl_lib: Path = WSL_LIB) -> SmiReport:
    path = nvidia_smi_path(environ, wsl_lib)
    if path is None:
        return SmiReport("absent", None)
    env = dict(environ)
    query = command.probe([path, f"--query-gpu={_QUERY}", "--format=csv,noheader"], env=env)
    header = command.probe([path], env=env) if query and query[0] == 0 else None
    return smi_report(path, query, header)


@dataclass(frozen=True)
class UtilSample:
    timestamp: str
    index: int
    gpu_pct: int
    mem_pct: int
    mem_used_mib: int


def parse_utilization(text: str) -> tuple[UtilSample, ...]:
    """``--query-gpu=timestamp,index,utilization.gpu,utilization.memory,memory.used
    --format=csv,noheader,nounits`` lines."""
    out: list[UtilSample] = []
    for line in text.splitlines():
        cells = _csv_cells(line)
        if len(cells) != 5 or not all(c.isdigit() for c in cells[1:]):
            continue
        out.append(UtilSample(cells[0], *(int(c) for c in cells[1:])))
    return tuple(out)


# ----------------------------------------------------------------------------------------- nvcc


@dataclass(frozen=True)
class Toolkit:
    nvcc: str
    version: str
    root: Path
    gpu_archs: tuple[str, ...]  # "7.5", "9.0", "10.0", ... from --list-gpu-arch
    max_gcc: int | None
    clang_lt: int | None
    complete: bool = True   # root has include/cuda_runtime.h and the runtime library

    def to_json(self) -> dict[str, Any]:
        return {"nvcc": self.nvcc, "version": self.version, "root": str(self.root),
                "gpu_archs": list(self.gpu_archs), "max_gcc": self.max_gcc,
                "clang_lt": self.clang_lt, "complete": self.complete}


def parse_nvcc_version(text: str) -> str | None:
    """``release 13.0, V13.0.88`` -> ``"13.0"``."""
    m = re.search(r"release (\d+\.\d+)", text)
    return m.group(1) if m else None


def parse_list_gpu_arch(text: str) -> tuple[str, ...]:
    """``compute_75 ... compute_121`` (or ``sm_XX``) -> ``("7.5", ..., "12.1")``; keeps suffixes."""
    out: list[str] = []
    for m in re.finditer(r"(?:compute|sm)_(\d+)(\d)([af]?)\b", text):
        item = f"{m.group(1)}.{m.group(2)}{m.group(3)}"
        if item not in out:
            out.append(item)
    return tuple(out)


def parse_host_config(text: str) -> tuple[int | None, int | None]:
    """(max gcc major, clang major must be <) from ``crt/host_config.h``."""
    gcc = re.search(r"#if\s+__GNUC__\s*>\s*(\d+)", text)
    clang = re.search(r"HOS clang version.*?less than (\d+)|\(__clang_major__\s*>=\s*(\d+)\)", text)
    clang_lt = None
    if clang:
        clang_lt = int(clang.group(1) or clang.group(2))
    return (int(gcc.group(1)) if gcc else None, clang_lt)


# Where a toolkit lives when neither $CUDA_HOME nor PATH says (a module constant: tests point it
# elsewhere to play a machine without one).
DEFAULT_CUDA_ROOTS: tuple[Path, ...] = (Path("/usr/local/cuda"),)


def find_nvcc(environ: Mapping[str, str]) -> str | None:
    """$CUDA_HOME/bin/nvcc, $CUDA_PATH/bin/nvcc, nvcc on PATH, /usr/local/cuda/bin/nvcc."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        root = environ.get(var)
        if root and (Path(root) / "bin" / "nvcc").is_file():
            return str(Path(root) / "bin" / "nvcc")
    found = shutil.which("nvcc", path=environ.get("PATH", os.defpath))
    if found:
        return found
    defaults = [root / "bin" / "nvcc" for root in DEFAULT_CUDA_ROOTS]
    return next((str(p) for p in defaults if p.is_file()), None)


def parse_nvcc_here(text: str) -> Path | None:
    """``#$ _HERE_=/usr/local/cuda-13.0/bin`` from ``nvcc --dryrun``: where the real nvcc lives."""
    m = re.search(r"^#\$ _HERE_=(.+)$", text, re.MULTILINE)
    return Path(m.group(1).strip()) if m else None


_WRAPPED_NVCC = re.compile(r"""(?<![\w/.-])["']?(/[^\s"';|&]*/nvcc)["']?(?=[\s;|&]|$)""",
                           re.MULTILINE)


def parse_wrapper_target(text: str) -> Path | None:
    """The nvcc a wrapper script runs: ``exec /usr/local/cuda-13.0/bin/nvcc "$@"`` -> that path.

    Only a script (``#!``) counts; the first absolute path ending in ``/nvcc`` is the target.
    """
    if not text.startswith("#!"):
        return None
    body = text.split("\n", 1)[1] if "\n" in text else ""
    m = _WRAPPED_NVCC.search(body)
    return Path(m.group(1)) if m else None


def is_toolkit_root(root: Path) -> bool:
    """A real toolkit root: ``include/cuda_runtime.h`` and the CUDA runtime library in ``lib64``
    (or ``lib``, or conda-forge's ``targets/<arch>``). ``/usr/local`` -- what a wrapper script in
    ``/usr/local/bin`` resolves to -- has neither (torch's own helper guesses it anyway, #17)."""
    headers = [root / "include", *root.glob("targets/*/include")]
    libs = [root / "lib64", root / "lib", *root.glob("targets/*/lib")]
    return any((h / "cuda_runtime.h").is_file() for h in headers) and \
        any(next(d.glob("libcudart*"), None) is not None for d in libs if d.is_dir())


def _script_text(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return ""


def _root_candidates(nvcc: str) -> list[Path]:
    """Roots by following symlinks, then wrapper scripts (a few levels), cheapest first."""
    out: list[Path] = []
    path = Path(nvcc)
    for _ in range(4):
        real = path.resolve()
        out.append(real.parent.parent)
        target = parse_wrapper_target(_script_text(real))
        if target is None or target.resolve() == real:
            break
        path = target
    return out


def toolkit_root(nvcc: str, environ: Mapping[str, str] | None = None) -> Path:
    """The toolkit directory. nvcc on PATH may be a symlink or a wrapper script
    (``exec /usr/local/cuda-13.0/bin/nvcc "$@"``): follow both, and if that does not reach a
    directory with the headers and libraries, ask nvcc itself (``--dryrun`` prints ``_HERE_``)."""
    candidates = _root_candidates(nvcc)
    for root in candidates:
        if is_toolkit_root(root):
            return root
    res = command.probe([nvcc, "--dryrun", "-x", "cu", "-c", "/dev/null", "-o", "/dev/null"],
                        env=dict(environ) if environ is not None else None)
    here = parse_nvcc_here(res[1] + res[2]) if res else None
    if here is not None and is_toolkit_root(here.parent):
        return here.parent
    # Nothing looks like a toolkit: report the deepest guess; preflight says what is missing.
    return here.parent if here is not None else candidates[-1]


def host_config_path(root: Path) -> Path:
    for candidate in (root / "include" / "crt" / "host_config.h",
                      root / "targets" / "x86_64-linux" / "include" / "crt" / "host_config.h"):
        if candidate.is_file():
            return candidate
    return root / "include" / "crt" / "host_config.h"


def probe_toolkit(nvcc: str, environ: Mapping[str, str]) -> Toolkit | None:
    env = dict(environ)
    ver = command.probe([nvcc, "--version"], env=env)
    if ver is None or ver[0] != 0:
        return None
    version = parse_nvcc_version(ver[1]) or "?"
    archs = command.probe([nvcc, "--list-gpu-arch"], env=env)
    root = toolkit_root(nvcc, environ)
    hc = host_config_path(root)
    max_gcc, clang_lt = parse_host_config(hc.read_text(errors="replace")) if hc.is_file() \
        else (None, None)
    gpu = parse_list_gpu_arch(archs[1]) if archs and archs[0] == 0 else ()
    return Toolkit(nvcc, version, root, gpu, max_gcc, clang_lt, is_toolkit_root(root))


def find_toolkits(environ: Mapping[str, str], known: Toolkit | None = None
                  ) -> tuple[Toolkit, ...]:
    """Every distinct toolkit we can see: the preferred nvcc and /usr/local/cuda-*. ``known``:
    the preferred one, already probed (facts.gather), so it is not probed again."""
    candidates: list[str] = []
    first = None if known else find_nvcc(environ)
    if first:
        candidates.append(first)
    candidates += sorted(str(p) for p in Path("/usr/local").glob("cuda-*/bin/nvcc") if p.is_file())
    seen: set[Path] = {known.root.resolve()} if known else set()
    out: list[Toolkit] = [known] if known else []
    for nvcc in candidates:
        if known and Path(nvcc).resolve() == Path(known.nvcc).resolve():
            continue
        tk = probe_toolkit(nvcc, environ)
        if tk is None or tk.root.resolve() in seen:
            continue
        seen.add(tk.root.resolve())
        out.append(tk)
    return tuple(out)


def kernel_source() -> str:
    """One trivial kernel: enough for nvcc to run cicc + ptxas for a target."""
    return "__global__ void torchbuild_probe(float* x) { x[threadIdx.x] *= 2.0f; }\n"


def compile_argv(nvcc: str, source: Path, out: Path, compute: str, sm: str,
                 host_cxx: str | None) -> list[str]:
    argv = [nvcc, "-c", str(source), "-o", str(out), f"-gencode=arch={compute},code={sm}"]
    if host_cxx:
        argv += ["-ccbin", host_cxx]
    return argv


# -------------------------------------------------------------------------------- host compilers


def parse_dumpversion(text: str) -> str | None:
    m = re.match(r"\s*(\d+(?:\.\d+)*)", text)
    return m.group(1) if m else None


def host_compiler(environ: Mapping[str, str]) -> str:
    """The compiler nvcc will use: CUDAHOSTCXX, else CXX, else g++ (FM-05)."""
    return environ.get("CUDAHOSTCXX") or environ.get("CXX") or "g++"


def gcc_version(compiler: str, environ: Mapping[str, str]) -> str | None:
    res = command.probe([compiler, "-dumpfullversion", "-dumpversion"], env=dict(environ))
    if res is None or res[0] != 0:
        return None
    return parse_dumpversion(res[1])


def is_clang(compiler: str, environ: Mapping[str, str]) -> bool:
    res = command.probe([compiler, "--version"], env=dict(environ))
    return res is not None and "clang" in res[1].lower()


# ------------------------------------------------------------------------------ memory and disk


@dataclass(frozen=True)
class MemInfo:
    total_gb: float
    available_gb: float
    swap_total_gb: float
    swap_free_gb: float

    def to_json(self) -> dict[str, float]:
        return {"total_gb": round(self.total_gb, 1), "available_gb": round(self.available_gb, 1),
                "swap_total_gb": round(self.swap_total_gb, 1),
                "swap_free_gb": round(self.swap_free_gb, 1)}


def parse_meminfo(text: str) -> MemInfo:
    kib: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"(\w+):\s+(\d+)", line)
        if m:
            kib[m.group(1)] = int(m.group(2))
    gb = 1024 * 1024
    avail = kib.get("MemAvailable", kib.get("MemFree", 0))
    return MemInfo(kib.get("MemTotal", 0) / gb, avail / gb, kib.get("SwapTotal", 0) / gb,
                   kib.get("SwapFree", 0) / gb)


def read_meminfo(path: Path = Path("/proc/meminfo")) -> MemInfo:
    try:
        return parse_meminfo(path.read_text())
    except OSError:
        return MemInfo(0.0, 0.0, 0.0, 0.0)


def existing_parent(path: Path) -> Path:
    """The work dir may not exist yet: measure the filesystem it will be created on."""
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def disk_free_gb(path: Path) -> float:
    return shutil.disk_usage(existing_parent(path)).free / 1024**3


def cpu_count() -> int:
    """CPUs this process may use (cgroup/affinity aware where the platform says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# ------------------------------------------------------------------------------------------ WSL


def is_wsl(proc_version: str) -> bool:
    """WSL2 kernels say ``microsoft-standard-WSL2`` (WSL1: ``Microsoft``) in /proc/version."""
    return "microsoft" in proc_version.lower()


def read_proc_version(path: Path = Path("/proc/version")) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def on_windows_mount(path: Path) -> bool:
    """``/mnt/c/...``: a 9P/DrvFs share from Windows, many times slower for builds (FM-26)."""
    return re.match(r"^/mnt/[a-zA-Z](/|$)", str(path.absolute())) is not None


def wsl_libcuda(wsl_lib: Path = WSL_LIB) -> tuple[str, ...]:
    return tuple(sorted(p.name for p in wsl_lib.glob("libcuda.so*"))) if wsl_lib.is_dir() else ()


# ------------------------------------------------------------------------------- git, cmake, ...


def parse_tool_version(text: str) -> str | None:
    """``git version 2.39.5`` / ``cmake version 3.25.1`` / ``1.11.1`` -> the first X.Y[.Z]."""
    m = re.search(r"(\d+\.\d+(?:\.\d+)?)", text)
    return m.group(1) if m else None


def tool_version(argv: Sequence[str], environ: Mapping[str, str]) -> str | None:
    res = command.probe(argv, env=dict(environ))
    if res is None or res[0] != 0:
        return None
    return parse_tool_version(res[1] or res[2])


def which(program: str, environ: Mapping[str, str]) -> str | None:
    return shutil.which(program, path=environ.get("PATH", os.defpath))
