"""Configure-only audit: CMake's verdict before the two-hour compile (pain.md FM-07, §3 item 8).

PyTorch's CMake turns a missing optional dependency into a warning and switches the feature off
(``Could NOT find CUDNN ... Turning the option off``). The build then "succeeds" without cuDNN. So
the torch step runs CMake alone first, and this module compares ``CMakeCache.txt`` (the authority
for the ``USE_*`` options, which PyTorch rewrites with ``FORCE`` when it downgrades them) and the
configure log (the Summary block, the ``Added CUDA NVCC flags for:`` line and the warnings that say
*why*) with what the user asked for.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchbuild.cc import Arch
from torchbuild.errors import ConfigureAuditError, UsageError
from torchbuild.logger import log
from torchbuild.plan import Plan, Step

FEATURES = ("cuda", "cudnn", "magma", "mkl", "nccl", "distributed", "numpy", "arch",
            "cusparselt", "cudss", "cufile", "mkldnn")
# Features of the CUDA math libraries: checked only when the step asks for them with USE_X=1
# (releases before 2.1/2.5 have no such option). PyTorch's cmake/public/cuda.cmake turns cuDSS off
# with a plain set(USE_CUDSS OFF) that leaves the cache at ON, so the Summary line decides.
# oneDNN (USE_MKLDNN) too: checked when the step sets USE_MKLDNN=1. Without third_party/ideep,
# v2.6.0's cmake/Dependencies.cmake says "MKLDNN could not be found." and
# caffe2_update_option(USE_MKLDNN OFF): the build would go on without it (#12 §4).
OPT_IN = ("cusparselt", "cudss", "cufile", "mkldnn")
# torchvision's image codecs: not CMake features, but --allow-missing takes them too (the vision
# step then builds without that codec, see plan.CODEC_SWITCH).
CODECS = ("jpeg", "png", "webp", "nvjpeg")

_TRUE = {"1", "on", "yes", "true", "y"}
_CACHE_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_.+-]*):([A-Z_]+)=(.*)$")
_GENCODE = re.compile(r"arch=compute_(\d+[af]?),code=\[?([a-z_0-9,]+)\]?")
_SUMMARY_LINE = re.compile(r"^--\s+(\S[^:]*?)\s*:\s*(.*)$")

# Lines of the configure log that explain a feature's state, per feature.
_TOPIC = {
    "cuda": re.compile(r"\bCUDA\b|nvcc|USE_CUDA", re.IGNORECASE),
    "cudnn": re.compile(r"cudnn", re.IGNORECASE),
    "magma": re.compile(r"magma", re.IGNORECASE),
    "mkl": re.compile(r"\bMKL|BLAS", re.IGNORECASE),
    "nccl": re.compile(r"nccl", re.IGNORECASE),
    "distributed": re.compile(r"distributed|gloo|tensorpipe", re.IGNORECASE),
    "numpy": re.compile(r"numpy", re.IGNORECASE),
    "arch": re.compile(r"NVCC flags|CUDA arch|TORCH_CUDA_ARCH_LIST|gencode", re.IGNORECASE),
    "cusparselt": re.compile(r"cusparselt", re.IGNORECASE),
    "cudss": re.compile(r"cudss", re.IGNORECASE),
    "cufile": re.compile(r"cufile", re.IGNORECASE),
    "mkldnn": re.compile(r"mkldnn|onednn|ideep", re.IGNORECASE),
}
_TROUBLE = re.compile(
    r"not found|could not|NOT find|turning the option off|not using|defaulting|missing|disabl"
    r"|cannot|is set to 0|warning|without|\bOFF\b",
    re.IGNORECASE,
)

_FIXES = {
    "cuda": "put the CUDA toolkit's nvcc on PATH and set CUDA_HOME (CUDA_PATH for conda CUDA)",
    "cudnn": "install cuDNN into the build env, or set CUDNN_INCLUDE_DIR / CUDNN_LIB_DIR",
    "magma": "install MAGMA for this exact CUDA version into the env (on CMAKE_PREFIX_PATH)",
    "mkl": "pip install mkl-static mkl-include into the build env (and drop -Wl,--as-needed from "
           "LDFLAGS)",
    "nccl": "install NCCL headers and libs into the env (conda: nccl) and point NCCL_ROOT_DIR at "
            "them, or use the bundled copy with --set USE_SYSTEM_NCCL=0",
    "distributed": "check the gloo/tensorpipe submodules are checked out",
    "numpy": "install numpy into the build interpreter",
    "arch": "set TORCH_CUDA_ARCH_LIST explicitly (torchbuild does, from --cc) and configure from a "
            "clean build dir",
    "cusparselt": "install cuSPARSELt into the env (conda: cusparselt) or set CUSPARSELT_ROOT",
    "cudss": "install cuDSS into the env (conda: libcudss-dev) or set CUDSS_ROOT_DIR",
    "cufile": "install cuFile into the env (conda: libcufile-dev) next to the CUDA toolkit",
    "mkldnn": "check out the oneDNN submodule third_party/ideep (with its mkl-dnn) "
              "(git submodule update --init --recursive third_party/ideep), or --set USE_MKLDNN=0",
}


@dataclass(frozen=True)
class RequestedFeatures:
    """What the configured torch must have. ``archs`` are checked only when ``cuda`` is set."""

    cuda: bool
    cudnn: bool
    magma: bool
    mkl: bool
    nccl: bool
    distributed: bool
    numpy: bool = True
    archs: tuple[Arch, ...] = ()
    system_nccl: bool = False
    cusparselt: bool = False
    cudss: bool = False
    cufile: bool = False
    mkldnn: bool = False

    @classmethod
    def from_step_env(
        cls, env: Mapping[str, str], *, cpu: bool, archs: Sequence[Arch], machine: str,
    ) -> RequestedFeatures:
        """Derive the request from the torch step's env: a feature is wanted unless USE_X=0."""
        def wanted(name: str, default: bool = True) -> bool:
            value = env.get(name)
            return default if value is None else value.strip().lower() in _TRUE

        cuda = not cpu and wanted("USE_CUDA")
        blas = env.get("BLAS", "MKL").strip().upper()
        nccl = cuda and wanted("USE_DISTRIBUTED") and wanted("USE_NCCL")
        return cls(
            cuda=cuda,
            cudnn=cuda and wanted("USE_CUDNN"),
            magma=cuda and wanted("USE_MAGMA"),
            # MKL is the BLAS of official x86_64 wheels; elsewhere it does not exist.
            mkl=machine.lower() in {"x86_64", "amd64"} and blas == "MKL",
            nccl=nccl,
            distributed=wanted("USE_DISTRIBUTED"),
            numpy=wanted("USE_NUMPY"),
            archs=tuple(archs) if cuda else (),
            system_nccl=nccl and wanted("USE_SYSTEM_NCCL", default=False),
            cusparselt=cuda and wanted("USE_CUSPARSELT", default=False),
            cudss=cuda and wanted("USE_CUDSS", default=False),
            cufile=cuda and wanted("USE_CUFILE", default=False),
            mkldnn=wanted("USE_MKLDNN", default=False),
        )

    def wanted(self) -> list[str]:
        flags = {"cuda": self.cuda, "cudnn": self.cudnn, "magma": self.magma, "mkl": self.mkl,
                 "nccl": self.nccl, "distributed": self.distributed, "numpy": self.numpy,
                 "arch": self.cuda and bool(self.archs), "cusparselt": self.cusparselt,
                 "cudss": self.cudss, "cufile": self.cufile, "mkldnn": self.mkldnn}
        return [name for name in FEATURES if flags[name]]


@dataclass(frozen=True)
class FeatureCheck:
    name: str
    ok: bool
    allowed: bool  # missing, but the user accepted it with --allow-missing
    found: str  # what CMake says, e.g. "USE_CUDNN=OFF" or "BLAS=Eigen"
    quotes: tuple[str, ...] = ()
    asked: str = "on"  # what the request said, e.g. "USE_CUDNN=1" or "on (default)"

    @property
    def evidence(self) -> str:
        """The configure log's line that explains the state, else the cache entry itself."""
        return self.quotes[0].strip() if self.quotes else f"CMakeCache.txt: {self.found}"

    def to_json(self) -> dict[str, Any]:
        return {"feature": self.name, "ok": self.ok, "allowed_missing": self.allowed,
                "asked": self.asked, "found": self.found, "evidence": self.evidence,
                "cmake_lines": list(self.quotes)}


@dataclass(frozen=True)
class AuditReport:
    cache_path: Path
    checks: tuple[FeatureCheck, ...]
    cache: Mapping[str, str] = field(repr=False, default_factory=dict)

    @property
    def failures(self) -> list[FeatureCheck]:
        return [c for c in self.checks if not c.ok and not c.allowed]

    @property
    def downgrades(self) -> list[FeatureCheck]:
        return [c for c in self.checks if not c.ok and c.allowed]

    def rows(self) -> list[list[str]]:
        """feature | asked | CMake says | evidence (the table the configure step prints)."""
        def state(c: FeatureCheck) -> str:
            return "" if c.ok else (" (allowed missing)" if c.allowed else " MISSING")
        return [[c.name, c.asked, c.found + state(c), c.evidence[:100]] for c in self.checks]

    def to_json(self) -> dict[str, Any]:
        return {"cache": str(self.cache_path), "ok": not self.failures,
                "checks": [c.to_json() for c in self.checks]}


def read_cmake_cache(path: Path) -> dict[str, str]:
    """``NAME:TYPE=VALUE`` lines of a CMakeCache.txt; comments and INTERNAL bookkeeping included."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _CACHE_LINE.match(line.strip())
        if m is not None:
            values[m.group(1)] = m.group(3)
    return values


def read_summary(log_lines: Sequence[str]) -> dict[str, str]:
    """``--   USE_CUDA              : ON`` lines after ``******** Summary ********``."""
    summary: dict[str, str] = {}
    inside = False
    for line in log_lines:
        if "******** Summary ********" in line:
            inside = True
            continue
        if inside:
            m = _SUMMARY_LINE.match(line.strip())
            if m is None:
                if line.startswith("-- Configuring") or not line.startswith("--"):
                    inside = False
                continue
            summary.setdefault(m.group(1).strip(), m.group(2).strip())
    return summary


def gencode_targets(text: str) -> tuple[set[str], set[str]]:
    """(SASS targets like ``sm_86``, PTX targets like ``compute_90``) named in nvcc flags."""
    sass: set[str] = set()
    ptx: set[str] = set()
    for m in _GENCODE.finditer(text.replace(" ", "")):
        for code in m.group(2).split(","):
            (sass if code.startswith("sm_") else ptx).add(code)
    return sass, ptx


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() in _TRUE


def _quotes(name: str, lines: Sequence[str], limit: int = 6) -> tuple[str, ...]:
    topical = [ln.rstrip() for ln in lines if _TOPIC[name].search(ln)]
    troubled = [ln for ln in topical if _TROUBLE.search(ln)]
    chosen = troubled or topical
    return tuple(chosen[:limit])


def _check_option(var: str, cache: Mapping[str, str],
                  summary: Mapping[str, str]) -> tuple[bool, str]:
    value = cache.get(var, summary.get(var))
    if value is None:
        return False, f"{var} not in CMakeCache.txt"
    return _truthy(value), f"{var}={value}"


def _check_mkl(cache: Mapping[str, str], summary: Mapping[str, str],
               lines: Sequence[str]) -> tuple[bool, str]:
    blas = cache.get("BLAS", "")
    info = summary.get("BLAS") or cache.get("BLAS_INFO", "")
    # PyTorch keeps BLAS=MKL in the cache even when it falls back to Eigen; the warning and the
    # Summary's BLAS line (from BLAS_INFO) tell the truth.
    fell_back = any("MKL could not be found" in ln for ln in lines)
    ok = blas.upper() == "MKL" and not fell_back and (not info or info.lower() == "mkl")
    found = f"BLAS={blas or '?'}" + (f", BLAS_INFO={info}" if info else "")
    return ok, found + (", MKL could not be found" if fell_back else "")


def _check_archs(archs: Sequence[Arch], cache: Mapping[str, str],
                 lines: Sequence[str]) -> tuple[bool, str]:
    flag_text = " ".join(ln for ln in lines if "NVCC flags" in ln)
    for var in ("NVCC_FLAGS_EXTRA", "TORCH_NVCC_FLAGS", "CUDA_NVCC_FLAGS", "CMAKE_CUDA_FLAGS"):
        flag_text += " " + cache.get(var, "")
    sass, ptx = gencode_targets(flag_text)
    if not sass and not ptx:
        listed = cache.get("TORCH_CUDA_ARCH_LIST")
        return False, f"no -gencode flags found (TORCH_CUDA_ARCH_LIST={listed or 'unset'})"
    missing = [a.sm for a in archs if a.sm not in sass]
    missing += [a.compute for a in archs if a.ptx and a.compute not in ptx]
    found = "flags for " + " ".join(sorted(sass | ptx))
    return not missing, found + (f"; missing {' '.join(missing)}" if missing else "")


def _check_nccl(requested: RequestedFeatures, cache: Mapping[str, str],
                summary: Mapping[str, str]) -> tuple[bool, str]:
    ok, found = _check_option("USE_NCCL", cache, summary)
    if not requested.system_nccl:
        return ok, found
    system = _truthy(cache.get("USE_SYSTEM_NCCL"))
    return ok and system, f"{found}, USE_SYSTEM_NCCL={cache.get('USE_SYSTEM_NCCL', 'unset')}"


def _check_opt_in(var: str, cache: Mapping[str, str], summary: Mapping[str, str],
                  lines: Sequence[str]) -> tuple[bool, str]:
    value = summary.get(var, cache.get(var))
    if value is None:
        return False, f"{var} not in the configure Summary or CMakeCache.txt"
    turned_off = any("Turning the option off" in ln and var[4:].lower() in ln.lower()
                     for ln in lines)
    ok = _truthy(value) and not turned_off
    return ok, f"{var}={value}" + (" (CMake: turning the option off)" if turned_off else "")


def _check(name: str, requested: RequestedFeatures, cache: Mapping[str, str],
           summary: Mapping[str, str], lines: Sequence[str]) -> tuple[bool, str]:
    if name == "mkl":
        return _check_mkl(cache, summary, lines)
    if name == "arch":
        return _check_archs(requested.archs, cache, lines)
    if name == "nccl":
        return _check_nccl(requested, cache, summary)
    if name in OPT_IN:
        return _check_opt_in(f"USE_{name.upper()}", cache, summary, lines)
    return _check_option(f"USE_{name.upper()}", cache, summary)


def _normalise_allowed(allow_missing: Collection[str]) -> set[str]:
    allowed = {a.strip().lower() for a in allow_missing}
    unknown = sorted(allowed - set(FEATURES) - set(CODECS))
    if unknown:
        msg = f"--allow-missing {', '.join(unknown)}: not a feature torchbuild checks"
        raise UsageError(msg, fix=f"use one of: {', '.join((*FEATURES, *CODECS))}")
    return allowed


def _asked(name: str, env: Mapping[str, str]) -> str:
    if name == "mkl":
        return f"BLAS={env.get('BLAS', 'MKL')}" + ("" if "BLAS" in env else " (default)")
    if name == "arch":
        return f"TORCH_CUDA_ARCH_LIST={env.get('TORCH_CUDA_ARCH_LIST', '?')}"
    var = f"USE_{name.upper()}"
    return f"{var}={env[var]}" if var in env else "on (default)"


def audit_cmake_cache(
    build_dir: Path,
    requested: RequestedFeatures,
    allow_missing: Collection[str],
    *,
    configure_log: Path | None = None,
    step_env: Mapping[str, str] | None = None,
    raise_on_failure: bool = True,
) -> AuditReport:
    """Compare the configured build with the request; raise ConfigureAuditError on a downgrade
    (``raise_on_failure=False``: return the report, see :func:`audit_error`)."""
    allowed = _normalise_allowed(allow_missing)
    cache_path = build_dir / "CMakeCache.txt"
    if not cache_path.is_file():
        msg = f"{cache_path} does not exist: the configure step did not run CMake to the end"
        raise ConfigureAuditError(msg, fix="read the configure step's log for the CMake error")
    cache = read_cmake_cache(cache_path)
    lines: list[str] = []
    if configure_log is not None and configure_log.is_file():
        lines = configure_log.read_text(encoding="utf-8", errors="replace").splitlines()
    summary = read_summary(lines)
    checks = []
    for name in requested.wanted():
        ok, found = _check(name, requested, cache, summary, lines)
        quotes = () if ok else _quotes(name, lines)
        checks.append(FeatureCheck(name, ok, (not ok) and name in allowed, found, quotes,
                                   _asked(name, step_env or {})))
    report = AuditReport(cache_path, tuple(checks), cache)
    if report.failures and raise_on_failure:
        raise audit_error(report, configure_log)
    return report


def audit_error(report: AuditReport, configure_log: Path | None) -> ConfigureAuditError:
    parts = []
    for check in report.failures:
        text = f"{check.name} was requested but CMake configured {check.found}"
        if check.quotes:
            text += "; CMake said:\n" + "\n".join(f"    | {q}" for q in check.quotes)
        parts.append(text)
    where = f" (cache {report.cache_path}" + (f", log {configure_log})" if configure_log else ")")
    msg = "configure turned off what you asked for" + where + ":\n  " + "\n  ".join(parts)
    names = [c.name for c in report.failures]
    fixes = "; ".join(f"{n}: {_FIXES[n]}" for n in names)
    accept = " ".join(f"--allow-missing {n}" for n in names)
    return ConfigureAuditError(msg, fix=f"{fixes}. Or accept the downgrade with {accept}")


def audit_torch_configure(
    source_dir: Path,
    step_env: Mapping[str, str],
    *,
    cpu: bool,
    archs: Sequence[Arch],
    machine: str,
    allow_missing: Collection[str],
    configure_log: Path | None,
    cache_path: Path | None = None,
) -> AuditReport:
    """The build stage's call after every configure-only step: audit ``cache_path`` (the
    backend's CMake cache; default ``<source_dir>/build/CMakeCache.txt``), print the table,
    warn about accepted downgrades; then raise ConfigureAuditError (exit 13) on a failure."""
    requested = RequestedFeatures.from_step_env(step_env, cpu=cpu, archs=archs, machine=machine)
    build_dir = cache_path.parent if cache_path is not None else source_dir / "build"
    report = audit_cmake_cache(build_dir, requested, allow_missing, configure_log=configure_log,
                               step_env=step_env, raise_on_failure=False)
    log.table(report.rows(), ["feature", "asked", "CMake says", "evidence"])
    for check in report.downgrades:
        log.warn(f"{check.name} is off ({check.found}); accepted with --allow-missing")
    if report.failures:
        raise audit_error(report, configure_log)
    return report


def audit_configure_step(step: Step, plan: Plan, log_path: Path) -> dict[str, Any] | None:
    """The pipeline's auditor (build/steps.py runs it after every configure step, in every era):
    the backend's CMake cache (``step.outputs[0]``, recipe data) against the step's request."""
    if step.kind != "configure" or not step.outputs:
        return None
    report = audit_torch_configure(step.cwd, step.env, cpu=plan.cuda is None, archs=plan.archs,
                                   machine=plan.machine or platform.machine(),
                                   allow_missing=plan.allow_missing, configure_log=log_path,
                                   cache_path=step.outputs[0])
    return report.to_json()
