"""Failure diagnosis: the first real error lines of a failed step, matched against known signatures.

The signature table is data (reference/pain.md §2): a regex applied line by line, the failure-mode
id, a title and the fix to print. A few failure modes need two facts (a FAILED line naming a flash
attention kernel *and* a later kill); those carry a second regex that must match within a window.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Scan at most this many lines after a primary match for a signature's second regex.
_WINDOW = 40


@dataclass(frozen=True)
class Signature:
    fm: str
    title: str
    pattern: re.Pattern[str]
    fix: str  # str.format template: {0}, {1}... are regex groups; {jobs}/{half_jobs} from context
    also: re.Pattern[str] | None = None  # must match within _WINDOW lines around the primary match
    # A warning that never fails a build by itself (a torchvision image backend left out): said as
    # a note when nothing else is known, never as the cause beside a real one.
    benign: bool = False


@dataclass(frozen=True)
class Diagnosis:
    fm: str
    title: str
    fix: str
    line: str
    line_no: int  # 1-based, in the lines handed to diagnose()
    benign: bool = False


def _sig(fm: str, title: str, regex: str, fix: str, also: str | None = None, *,
         benign: bool = False) -> Signature:
    return Signature(fm, title, re.compile(regex), fix, re.compile(also) if also else None,
                     benign)


_OOM_FIX = (
    "the compiler was killed for lack of memory; re-run the same command with a lower job count "
    "(--jobs {half_jobs}) - ninja resumes where it stopped, no clean needed. Also consider adding "
    "swap and building only for your GPU's arch"
)

# The second fact of the kernel-specific OOM signatures: the compiler was killed.
_KILLED = (r"Killed signal terminated program|died due to signal 9|virtual memory exhausted"
           r"|Cannot allocate memory")

# Order matters only for ties on the same line: more specific signatures first.
SIGNATURES: tuple[Signature, ...] = (
    # torch's own fused-attention kernels (CMake objects under aten/src/ATen/native/transformers/
    # cuda/flash_attn and mem_eff_attention): USE_FLASH_ATTENTION=0 is torch's switch for them.
    _sig("FM-02", "flash-attention kernel compile ran out of memory",
         r"FAILED: .*ATen/native/transformers/cuda/(?:flash_attn|mem_eff_attention)/.*\.cu\.o",
         "flash-attention kernels need ~5 GB each; lower --jobs (try {half_jobs}) or set "
         "USE_FLASH_ATTENTION=0 USE_MEM_EFF_ATTENTION=0 if you do not need fused SDPA kernels",
         also=_KILLED),
    # The flash-attn package (--extra flash-attn): torch.utils.cpp_extension's ninja objects are
    # csrc/flash_attn/src/NAME.cuda.o (NAME.o in older torch). torch's switches do not reach it;
    # its setup.py says "each JOB peak memory cost is ~8-9GB when threads = 4" (2.8.3, line 517).
    _sig("FM-39", "flash-attn kernel compile ran out of memory",
         r"FAILED: .*csrc/flash_attn/src/[^/\s]+\.(?:cuda\.)?o\b",
         "flash-attn's kernels need up to ~9 GB per compile job at 4 nvcc threads (its setup.py); "
         "this build ran MAX_JOBS={jobs}. Re-run the same command with --jobs {half_jobs} - ninja "
         "resumes where it stopped (USE_FLASH_ATTENTION is torch's switch, not this package's)",
         also=_KILLED),
    _sig("FM-01", "compiler killed: out of memory",
         r"Killed signal terminated program (cc1plus|cicc|cc1)|internal compiler error: Killed"
         r"|died due to signal 9|virtual memory exhausted|Cannot allocate memory",
         _OOM_FIX),
    _sig("FM-05", "host gcc too new for this CUDA toolkit",
         r"unsupported GNU version! gcc versions later than (\d+)",
         "this nvcc accepts gcc <= {0}; install a supported gcc (e.g. gxx_linux-64 {0}.* in the "
         "env) and point CC, CXX and CUDAHOSTCXX at it. Avoid -allow-unsupported-compiler"),
    _sig("FM-06", "gcc too new for this tag's third-party code",
         r"does not name a type",
         "this gcc no longer includes <cstdint> transitively; build with the gcc major this tag's "
         "CI used (11-13 for 2.x tags) instead of patching the sources",
         also=r"<cstdint>"),
    _sig("FM-07", "a requested feature was switched off at configure time",
         r"Not using CUDA|Could NOT find CUDA|Turning the option off|NumPy could not be found",
         "CMake could not find a dependency and silently disabled it; set CUDA_HOME / CUDNN_ROOT / "
         "CMAKE_PREFIX_PATH to real locations (numpy must import in the build python), then re-run "
         "with --clean"),
    _sig("FM-10", "arch list not understood",
         r"Unknown CUDA Architecture Name (\S+)|Unknown CUDA arch \((.*)\) or GPU not supported"
         r"|Automatic GPU detection failed",
         "pass an explicit --cc with archs this torch and CUDA know (e.g. --cc 8.6); torchbuild "
         "sets TORCH_CUDA_ARCH_LIST from it for every component"),
    _sig("FM-11", "nvcc does not support the requested arch",
         r"Unsupported gpu architecture '(compute_\d+)'",
         "this CUDA toolkit cannot compile {0}: drop it from --cc or pick a --cuda that supports "
         "it (`nvcc --list-gpu-arch` lists what this one can do)"),
    _sig("FM-12", "no kernel image for this GPU",
         r"no kernel image is available for execution on the device"
         r"|is not compatible with the current PyTorch installation",
         "the binary has no SASS/PTX for this GPU; rebuild with --cc set to its compute capability "
         "(--cc auto reads it from nvidia-smi), and rebuild the companions too"),
    _sig("FM-13", "cuDNN not found or mismatched",
         r"Found cuDNN: v\?|PyTorch requires cuDNN|cuDNN version (mismatch|incompatibility)",
         "install exactly one cuDNN into the build env and point CUDNN_ROOT at it; remove other "
         "cuDNN copies from LD_LIBRARY_PATH"),
    _sig("FM-14", "MAGMA not found",
         r"magma_v2\.h.*not found|PackagesNotFoundError.*magma-cuda",
         "install MAGMA for this exact CUDA (the tag's .ci/docker/common/install_magma_conda.sh), "
         "or build with USE_MAGMA=0 and accept slower GPU linear algebra"),
    _sig("FM-15", "MKL not found or mismatched",
         # Not FindMKL's "-- Library mkl_intel_lp64: not found": that is its probing, printed on
         # every configure, BLAS=Eigen too (#12 §5); a missing MKL is the configure audit's call.
         r"undefined reference to .cblas_|Intel MKL FATAL ERROR|iJIT_NotifyEvent",
         "install mkl-static and mkl-include into the build env (pip), and drop -Wl,--as-needed "
         "from LDFLAGS"),
    _sig("FM-16", "libstdc++ older than the compiler that built torch",
         r"version .GLIBCXX_3\.4\.\d+. not found",
         "the libstdc++ found at runtime is older than the build compiler's; install "
         "libstdcxx-ng >= the gcc major into the env (conda-forge), or build with the env's gcc"),
    _sig("FM-17", "submodule missing or incomplete",
         # CMake names the path on its own line under "CMake Error ...:"; name the submodule.
         r"/third_party/([\w.+-]+)",
         "the submodule third_party/{0} is missing or empty in the checkout: its repository or "
         "its .gitmodules entry is not in the mirror (a --git-mirror must carry every submodule "
         "the build needs), or turn off the feature that needs it; then re-run the same command",
         also=r"includes non-existent path|does not contain a CMakeLists\.txt|Could not find any "
              r"of CMakeLists\.txt"),
    _sig("FM-17", "submodule missing or incomplete",
         r"Could not find any of CMakeLists\.txt|does not contain a CMakeLists\.txt file",
         "a submodule checkout is missing; re-run with --clean so torchbuild re-clones with all "
         "submodules (a corrupted mirror is re-cloned automatically)"),
    _sig("FM-18", "companion built against a different torch",
         r"undefined symbol: _ZN.*(torchvision|torchaudio)|(torchvision|torchaudio).*undefined "
         r"symbol: _ZN|operator torchvision::\w+ does not exist",
         "build torch and its companions together in one run and install the wheels together "
         "with --no-deps; never `pip install torchvision` afterwards"),
    _sig("FM-19", "pip downloaded torch from PyPI during a companion build",
         r"Reading https://pypi\.org/simple/torch/|Downloading torch-",
         "companion builds must use --no-build-isolation --no-deps against the torch just built"),
    _sig("FM-20", "torchvision image/video backend not found",
         r"Building torchvision without (\w+) support"
         r"|header files were not found, disabling ffmpeg",
         "a warning, not an error: the wheel works without the {0} decoder. For it, install the "
         "{0} development files (libjpeg-turbo, libpng, libwebp) into the build env",
         benign=True),
    _sig("FM-21", "torchaudio FFmpeg/SoX not found",
         r"FFmpeg libraries are not found|configure: error: cannot find flac",
         "install a supported ffmpeg into the env for this torchaudio tag, or build with "
         "USE_FFMPEG=0 / BUILD_SOX=0 (torchaudio >= 2.9 has no I/O: use torchcodec)"),
    _sig("FM-22", "ninja missing: slow single-threaded build",
         r"could not find ninja|Falling back to using the slow distutils backend",
         "install ninja into the build env and put its bin directory first on PATH"),
    _sig("FM-23", "compiler cache failed",
         r"sccache: (error|caused by)|ccache: error",
         "re-run with --compiler-cache none, or keep the cache off for CUDA: nvcc wrappers are "
         "fragile (never symlink nvcc to a cache)"),
    _sig("FM-24", "stale build tree",
         r"No rule to make target .*\.so",
         "the build tree was configured with other inputs; re-run with --clean"),
    _sig("FM-25", "libcuda.so not found (WSL2?)",
         r"libcuda\.so(\.1)? is not a symbolic link|cannot find -lcuda"
         r"|libcuda\.so: cannot open shared object",
         "add /usr/lib/wsl/lib (WSL2) or $CUDA_HOME/lib64/stubs to LIBRARY_PATH; on WSL2 do not "
         "install a Linux NVIDIA driver"),
    _sig("FM-27", "out of disk space",
         r"No space left on device|Could not write file '/tmp/|\[Errno 28\]|Disk quota exceeded",
         "free disk space on the work dir and TMPDIR (nvcc writes large temporaries there); point "
         "TMPDIR at the work dir, or remove old build trees"),
    _sig("FM-32", "CMake too new for this tag",
         r"Compatibility with CMake < 3\.5 has been removed",
         "pin cmake<4 in the build env for this tag, or set CMAKE_POLICY_VERSION_MINIMUM=3.5"),
    # FM-36 and FM-37 are torchbuild's own ids (issue #17), beyond pain.md's 35.
    _sig("FM-36", "the build env cannot make wheels (no bdist_wheel)",
         r"invalid command 'bdist_wheel'",
         "setuptools < 70.1 needs the `wheel` package for bdist_wheel. torchbuild installs the "
         "companions' build requirements into an --env existing interpreter; otherwise run "
         "`python -m pip install 'setuptools>=70.1' wheel` in the build env and re-run the same "
         "command"),
    # FM-38: setuptools 82.0.0 removed pkg_resources (its changelog; pytorch/vision#9380), and
    # torchvision's setup.py imported it until pytorch/vision#9386 (merged 2026-02-16): 0.21.0's
    # setup.py line 12 `from pkg_resources import DistributionNotFound, get_distribution, ...`.
    _sig("FM-38", "this tag's setup.py needs pkg_resources, gone from setuptools >= 82",
         r"No module named 'pkg_resources'|cannot import name "
         r"'(?:DistributionNotFound|get_distribution|parse_version)' from 'pkg_resources'",
         "setuptools 82 removed pkg_resources, which this tag's setup.py imports (torchvision "
         "tags before pytorch/vision#9386). Run `python -m pip install "
         "'setuptools<82'` in the build env (the --python interpreter for --env venv/existing) "
         "and re-run the same command"),
    _sig("FM-37", "torch in the build env is a CUDA build, and CMake found no CUDA toolkit",
         r"Your installed Caffe2 version uses CUDA but I cannot find the CUDA",
         "torch's CMake config (Caffe2Config.cmake) needs the CUDA toolkit torch was built with, "
         "even for --cpu companions. Install it, or point torchbuild at it with CUDA_HOME=/path "
         "(it passes the toolkit it finds as CUDA_HOME; --set audio:CUDA_HOME=/path for one "
         "component), or build against a CPU torch; then "
         "re-run the same command"),
    _sig("FM-33", "setup.py install is deprecated",
         r"setup\.py install is deprecated",
         "build wheels with `python -m pip wheel --no-build-isolation --no-deps . -w dist`"),
    _sig("FM-30", "NCCL / distributed build error",
         r"nccl\.h: No such file|undefined reference to .nccl"
         r"|gloo::transport::tcp' has not been declared|tensorpipe\.h: No such file",
         "on a single-GPU machine build with USE_NCCL=0, or use USE_SYSTEM_NCCL=1 with NCCL "
         "headers and libraries in the env"),
    _sig("FM-31", "NumPy missing or ABI-mismatched",
         r"compiled without NumPy support|compiled using NumPy 1\.x cannot be run in NumPy 2",
         "install numpy into the build env before building (numpy >= 2 where the tag allows), and "
         "run with the same numpy major"),
)

_DISK_FULL_FMS = frozenset({"FM-27"})

# A line that reports a real error, as opposed to the command lines and warnings around it.
_ERROR = re.compile(
    r"\berror\b|\bError\b|\bERROR\b|fatal|FAILED:|Killed|undefined reference|undefined symbol"
    r"|not found|No such file|Traceback|Cannot allocate|No space left|exit status [1-9]"
    r"|No rule to make target|does not contain a CMakeLists|Could NOT find"
    # A Python exception line ("ModuleNotFoundError: No module named ..."): `\bError\b` misses
    # it, and it is the line that names the cause below setup.py's "Traceback".
    r"|^\s*\w+(Error|Exception): ",
)
# Lines that contain the word "error" but are noise: compiler invocations (-Werror=...), warnings,
# counters ("0 errors") and CMake's own "see also" trailer.
_NOISE = re.compile(
    r"^\s*\S*(c\+\+|g\+\+|gcc|cc|clang\+*|nvcc|ld)\s+-|-W(no-)?error|warning:|\b0 errors?\b"
    r"|See also \".*CMake(Output|Error)\.log\"|^\s*In file included from"
    # FindMKL's probing on every configure (BLAS=Eigen too): not an error (#12 §5).
    r"|^--\s+(Library \w+: not found|MKL library not found|Checking for \[)",
)


# Build-system bookkeeping: ninja's "FAILED: <target>" comes *before* the compiler's message, and
# "build stopped" after it. Useful context, but never the first line we show.
_BOOKKEEPING = re.compile(r"^\s*(FAILED:|ninja: build stopped|make(\[\d+\])?: \*\*\*)")


_CMAKE_ERROR = re.compile(r"^CMake Error\b")
_CMAKE_MESSAGE_LINES = 16


def cmake_message(lines: Sequence[str], index: int) -> str:
    """A ``CMake Error ...:`` line with its whole message: CMake prints the reason on the
    indented lines below it (#12 §5: the digest showed the header and cut the reason off)."""
    parts = [lines[index].rstrip()]
    for line in lines[index + 1:index + 1 + _CMAKE_MESSAGE_LINES]:
        if line.strip() and not line[:1].isspace():
            break
        if line.strip():
            parts.append(line.strip())
    return " ".join(parts)


def is_error_line(line: str) -> bool:
    return bool(_ERROR.search(line)) and not _NOISE.search(line)


def first_errors(lines: Sequence[str], limit: int = 12) -> list[str]:
    """The first lines that report a real error, in order, without repeats.

    The *first* error is usually the cause; the last 50 lines are usually the build system
    unwinding (ninja's "build stopped", setup.py's CalledProcessError traceback).
    """
    found: list[str] = []
    seen: set[str] = set()
    for index, line in enumerate(lines):
        text = line.rstrip()
        if text and text not in seen and is_error_line(text):
            seen.add(text)
            found.append(cmake_message(lines, index) if _CMAKE_ERROR.match(text) else text)
            if len(found) >= 2 * limit:
                break
    # Stable: real diagnostics in log order first, then the bookkeeping lines.
    found.sort(key=lambda text: bool(_BOOKKEEPING.match(text)))
    return found[:limit]


_OOM_FMS = frozenset({"FM-01", "FM-02", "FM-39"})


def _context(jobs: int | None) -> dict[str, str]:
    if jobs is None:
        return {"jobs": "N", "half_jobs": "half the current value"}
    return {"jobs": str(jobs), "half_jobs": str(max(1, jobs // 2))}


def _render_fix(sig: Signature, match: re.Match[str], context: Mapping[str, str]) -> str:
    groups = [g for g in match.groups() if g is not None]
    return sig.fix.format(*groups, **context) if groups else sig.fix.format("?", **context)


def _window_has(sig: Signature, lines: Sequence[str], index: int) -> bool:
    if sig.also is None:
        return True
    lo, hi = max(0, index - _WINDOW), min(len(lines), index + _WINDOW + 1)
    return any(sig.also.search(line) for line in lines[lo:hi])


def _matches(lines: Sequence[str]) -> Iterable[tuple[int, Signature, re.Match[str]]]:
    for index, line in enumerate(lines):
        for sig in SIGNATURES:
            match = sig.pattern.search(line)
            if match is not None and _window_has(sig, lines, index):
                yield index, sig, match


def diagnose(
    lines: Sequence[str], *, returncode: int | None = None, jobs: int | None = None
) -> list[Diagnosis]:
    """Every known failure mode found in ``lines``, once each, in order of first appearance.

    ``returncode`` 137 / -9 without any compiler message is the OOM killer too (FM-01): the
    kernel killed the whole build, or the container, before anything could be printed.
    """
    context = _context(jobs)
    found: dict[str, Diagnosis] = {}
    for index, sig, match in _matches(lines):
        if sig.fm not in found:
            fix = _render_fix(sig, match, context)
            found[sig.fm] = Diagnosis(sig.fm, sig.title, fix, lines[index].strip(), index + 1,
                                      sig.benign)
    if returncode in (137, -9) and not (_OOM_FMS & found.keys()):
        oom = next(s for s in SIGNATURES if s.fm == "FM-01")
        found["FM-01"] = Diagnosis(oom.fm, oom.title, oom.fix.format(**context),
                                   f"exit status {returncode} (killed by signal 9)", 0)
    # FM-02 / FM-39 are specific forms of FM-01: say it once, with the specific advice.
    if (_OOM_FMS - {"FM-01"}) & found.keys():
        found.pop("FM-01", None)
    causes = [d for d in found.values() if not d.benign]
    # A full disk makes every later error a consequence (a truncated object file, a tool that
    # could not write its output): it is named first, whatever appeared before it in the log.
    causes.sort(key=lambda d: d.fm not in _DISK_FULL_FMS)
    return causes or list(found.values())


def render(diagnoses: Sequence[Diagnosis], errors: Sequence[str]) -> str:
    """Text for the terminal: the first error lines, then each diagnosis with its fix."""
    parts: list[str] = []
    if errors:
        parts.append("first errors:")
        parts.extend(f"  {line}" for line in errors)
    for diag in diagnoses:
        kind = "note" if diag.benign else "likely cause"
        parts.append(f"{kind} ({diag.fm}): {diag.title}")
        parts.append(f"  fix: {diag.fix}")
    return "\n".join(parts)


def read_log(path: Path | None, fallback: Sequence[str] = ()) -> list[str]:
    """A step's whole log (the first error may be thousands of lines before the end)."""
    if path is None:
        return list(fallback)
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return [line.rstrip("\n") for line in fh]
    except OSError:
        return list(fallback)


def explain_failure(log_path: Path | None, *, returncode: int, jobs: int | None,
                    fallback: Sequence[str] = ()) -> str:
    """First real errors of a failed step and every known cause with its fix, as display text."""
    lines = read_log(log_path, fallback)
    return render(diagnose(lines, returncode=returncode, jobs=jobs), first_errors(lines))
