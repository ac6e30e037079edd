"""Typed errors: one class, and one exit code, per failure class.

Only ``__main__.main`` turns these into an exit. Every message says what was wrong and what to do
next; ``fix`` carries the next action separately so the CLI can print it as a hint.

Exit codes are part of the CLI contract (README "Exit codes"): never renumber, only add.
"""

from __future__ import annotations

import errno
import re
import signal
from collections.abc import Sequence
from pathlib import Path


class TorchbuildError(Exception):
    """Base class. ``exit_code`` is what the process exits with."""

    exit_code = 1
    title = "error"

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def render(self) -> str:
        text = f"torchbuild: {self.title}: {self.message}"
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text


class UsageError(TorchbuildError):
    """A CLI option, TORCHBUILD_* variable or config value is malformed."""

    exit_code = 2
    title = "bad option"


class RecipeError(TorchbuildError):
    """Unknown torch version, or a recipe file that does not validate."""

    exit_code = 3
    title = "recipe"


class CompatibilityError(TorchbuildError):
    """The request contradicts the version knowledge (arch x CUDA, companion x torch, python)."""

    exit_code = 4
    title = "incompatible request"


class PreflightError(TorchbuildError):
    """The machine cannot run this plan (gcc too new, disk, driver, memory, ...)."""

    exit_code = 5
    title = "preflight"


class GPUDetectionError(TorchbuildError):
    """``--cc auto`` found no GPU to read compute capabilities from."""

    exit_code = 6
    title = "no GPU"


class MissingToolError(TorchbuildError):
    """A program the plan needs (git, nvcc, docker, ...) is not installed or not on PATH."""

    exit_code = 7
    title = "missing tool"


class EnvironmentSetupError(TorchbuildError):
    """Creating or reusing the build environment failed."""

    exit_code = 8
    title = "build environment"


class SolverError(EnvironmentSetupError):
    """The conda specs cannot be satisfied."""

    exit_code = 9
    title = "conda solve"


class IntegrityError(TorchbuildError):
    """A download, package or artefact does not match its recorded hash."""

    exit_code = 10
    title = "integrity"


class SourceError(TorchbuildError):
    """Cloning, fetching or checking out a repository failed (missing tag, commit mismatch, ...)."""

    exit_code = 11
    title = "sources"


class BuildStepError(TorchbuildError):
    """A build step's command failed."""

    exit_code = 12
    title = "build failed"


class ConfigureAuditError(TorchbuildError):
    """CMake configured a requested feature off (CUDA, cuDNN, MAGMA, MKL, ...)."""

    exit_code = 13
    title = "configure audit"


class VerificationError(TorchbuildError):
    """A built wheel does not meet an invariant (subclasses use codes 20-29)."""

    exit_code = 14
    title = "verification"


class ArtifactError(TorchbuildError):
    """The output directory cannot be written, or an artefact is missing."""

    exit_code = 15
    title = "artifacts"


class OfflineError(TorchbuildError):
    """``--offline`` was given but something is missing from the caches."""

    exit_code = 16
    title = "offline"


class LockTimeoutError(TorchbuildError):
    """Another torchbuild process holds a lock on the same cache or work dir."""

    exit_code = 17
    title = "busy"


class DockerError(TorchbuildError):
    """The container wrapper cannot run (no engine, failed docker command)."""

    exit_code = 18
    title = "docker"


class BenchError(TorchbuildError):
    """The benchmark could not run."""

    exit_code = 19
    title = "bench"


# --------------------------------------------------- verification of the built wheels: 20-29


class WheelInstallError(VerificationError):
    """The wheels could not be installed into the throwaway environment."""

    exit_code = 20
    title = "verify: install"


class TorchImportError(VerificationError):
    """torch (or the wheel under test) does not import from a clean directory."""

    exit_code = 21
    title = "verify: import"


class VersionMismatchError(VerificationError):
    """torch's version is not the tag's, or a companion pins another torch."""

    exit_code = 22
    title = "verify: version"


class CudaMismatchError(VerificationError):
    """torch.version.cuda differs from the request (or a CPU build where CUDA was asked for)."""

    exit_code = 23
    title = "verify: CUDA"


class ArchListError(VerificationError):
    """torch's compiled arch list lacks a requested arch."""

    exit_code = 24
    title = "verify: arch list"


class FeatureMissingError(VerificationError):
    """cuDNN, MAGMA or MKL is not in the build torch reports."""

    exit_code = 25
    title = "verify: feature missing"


class CompanionError(VerificationError):
    """A companion does not import, or its native ops did not load."""

    exit_code = 26
    title = "verify: companion"


class KernelImageError(VerificationError):
    """A CUDA binary carries no SASS (or PTX) for a requested arch: 'no kernel image' at runtime."""

    exit_code = 27
    title = "verify: kernels"


class GpuSmokeError(VerificationError):
    """A GPU smoke test (matmul, convolution, nms) failed on the GPU present."""

    exit_code = 28
    title = "verify: GPU smoke"


class DependencyCheckError(VerificationError):
    """``pip check`` reports broken requirements in the verified environment."""

    exit_code = 29
    title = "verify: pip check"


class Interrupted(TorchbuildError):
    """Ctrl-C / SIGTERM / SIGHUP: the running step was stopped cleanly. Exits 128 + the signal:
    130 (SIGINT), 143 (SIGTERM), 129 (SIGHUP, a closed terminal)."""

    exit_code = 130
    title = "interrupted"

    def __init__(self, message: str, *, fix: str | None = None,
                 signum: int = signal.SIGINT) -> None:
        super().__init__(message, fix=fix)
        self.signum = int(signum)
        self.exit_code = 128 + self.signum


class Signalled(KeyboardInterrupt):
    """What __main__'s SIGTERM/SIGHUP handler raises: a KeyboardInterrupt, so every place that
    already stops its child on Ctrl-C does the same for these, carrying which signal it was."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


RERUN_FIX = "re-run the same command to continue: finished steps are skipped"


def interrupted(exc: BaseException, what: str) -> Interrupted:
    """The Interrupted error for a KeyboardInterrupt (Ctrl-C) or a Signalled (SIGTERM/SIGHUP)."""
    signum = exc.signum if isinstance(exc, Signalled) else signal.SIGINT
    how = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    return Interrupted(f"{what} ({how})", fix=RERUN_FIX, signum=signum)


class DiskError(TorchbuildError):
    """A file torchbuild writes could not be written: a full disk, a read-only mount, a path that
    is a file. Raised for an OSError no stage turned into its own error (the stages report a
    full --dist, venv or clone with their own codes)."""

    exit_code = 31
    title = "disk"


# How "no space left" reads in the output of git, pip, compilers and Python (errno 28, ENOSPC).
DISK_FULL = re.compile(r"No space left on device|\[Errno 28\]|ENOSPC|Disk quota exceeded")


def disk_error(exc: OSError) -> DiskError:
    """The typed, one-paragraph form of an OSError on a file torchbuild writes."""
    where = exc.filename or "a file"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskError(f"no space left on the disk holding {where}",
                         fix="free space there (or pass --work-dir / --dist / --cache-dir on a "
                         "larger disk), then re-run the same command: finished steps are kept")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return DiskError(f"cannot write {where}: {exc.strerror}",
                         fix="pass --work-dir / --dist / --cache-dir on a writable disk, or fix "
                         "the permissions")
    return DiskError(f"{where}: {exc.strerror or exc}",
                     fix="check that path (a file where a directory should be? a full or "
                     "read-only disk?), then re-run the same command")


class CommandFailed(TorchbuildError):
    """A subprocess exited non-zero. Stages translate this into their own error class (with a
    fix); ``__main__`` reports one that slipped through as a bug, with exit code 1."""

    exit_code = 1
    title = "command failed"

    def __init__(
        self,
        argv: Sequence[str],
        returncode: int,
        *,
        log_path: Path | None = None,
        digest: Sequence[str] = (),
        cwd: Path | None = None,
    ) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.log_path = log_path
        self.digest = tuple(digest)
        self.cwd = cwd
        # The command's output said the disk is full: stages say so first, whatever else failed.
        self.disk_full = any(DISK_FULL.search(line) for line in self.digest)
        where = f"; full log: {log_path}" if log_path else ""
        super().__init__(f"`{' '.join(self.argv)}` exited with {returncode}{where}")


def _all_classes() -> list[type[TorchbuildError]]:
    out: list[type[TorchbuildError]] = []
    todo: list[type[TorchbuildError]] = [TorchbuildError]
    while todo:
        cls = todo.pop(0)
        out.append(cls)
        todo += cls.__subclasses__()
    return out


# The one table of exit codes (README "Exit codes" lists the same; tests/unit/test_errors.py).
# 1 is TorchbuildError itself and CommandFailed: an error no stage translated, i.e. a bug.
EXIT_CODES: dict[int, type[TorchbuildError]] = {
    cls.exit_code: cls for cls in _all_classes()
    if cls.__module__ == __name__ and cls not in (TorchbuildError, CommandFailed)}
