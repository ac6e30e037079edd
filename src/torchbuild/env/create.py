"""Build environments: ``EnvSpec`` (from the plan) -> ``BuildEnv`` (ready to run steps in).

Backends: ``venv`` and ``existing`` live here; ``conda`` (py-rattler, in-process) and
``conda-exe`` (the user's conda/mamba/micromamba) live in ``env/conda.py`` / ``env/conda_exe.py``.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from torchbuild.command import free_mb, run
from torchbuild.env.buildenv import BuildEnv, base_environment, prepend_path, tool_versions
from torchbuild.env.conda import create_conda_env, install_into_conda
from torchbuild.env.conda_exe import create_conda_exe_env
from torchbuild.errors import CommandFailed, EnvironmentSetupError, OfflineError
from torchbuild.logger import log
from torchbuild.plan import EnvSpec, cuda_home_view

__all__ = ["BuildEnv", "EnvSpec", "base_environment", "create", "install_into", "tool_versions"]

_MARKER = ".torchbuild-env.json"
# A venv with pip and setuptools takes ~30 MB; less than this free after a failure is the cause.
VENV_MIN_FREE_MB = 64.0


def _cuda_dirs(env: Mapping[str, str], cuda: str | None) -> list[Path]:
    home = env.get("CUDA_HOME")
    return [Path(home) / "bin"] if cuda and home else []


def _spec_digest(spec: EnvSpec) -> str:
    data = {"python": spec.python_version, "reqs": list(spec.pip_requirements),
            "base": spec.base_python}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _create_venv(spec: EnvSpec, base: dict[str, str], offline: bool,
                 log_path: Path | None, cache_dir: Path) -> None:
    marker = spec.prefix / _MARKER
    digest = _spec_digest(spec)
    if marker.is_file() and json.loads(marker.read_text()).get("digest") == digest:
        log.info(f"reusing venv {spec.prefix}")
        return
    # No marker (or another spec): a half-made or stale env is never trusted.
    shutil.rmtree(spec.prefix, ignore_errors=True)
    try:
        run([spec.base_python or "python3", "-m", "venv", str(spec.prefix)], env=base,
            log_path=log_path, echo=log.detail)
        if spec.pip_requirements:
            # Offline, pip may only use what `torchbuild fetch` downloaded into the cache.
            local = ["--no-index", "--find-links", str(cache_dir / "pip")] if offline else []
            pip = [str(spec.python), "-m", "pip", "install", *local, *spec.pip_requirements]
            run(pip, env=base, log_path=log_path, echo=log.detail)
    except CommandFailed as exc:
        # Measured before the half-made env is removed: `python -m venv` hides ensurepip's
        # ENOSPC behind "returned non-zero exit status 1", so the free space is the evidence.
        free = free_mb(spec.prefix)
        shutil.rmtree(spec.prefix, ignore_errors=True)
        if exc.disk_full or free < VENV_MIN_FREE_MB:
            msg = (f"no space left on the disk holding the venv {spec.prefix} "
                   f"({free:.0f} MB free when it failed)")
            raise EnvironmentSetupError(msg, fix="free space on that disk, or pass --work-dir on "
                                        "a larger one; then re-run the same command (log: "
                                        f"{exc.log_path})") from None
        if offline:
            msg = f"--offline: the venv's requirements are not available locally ({exc.message})"
            raise OfflineError(msg, fix="run once with network, or use --env existing") from None
        msg = f"could not create the venv at {spec.prefix}: {' | '.join(exc.digest[-4:])}"
        raise EnvironmentSetupError(msg, fix=f"see {exc.log_path}") from None
    marker.write_text(json.dumps({"digest": digest, "requirements": list(spec.pip_requirements)}))


def _install_requirements(spec: EnvSpec, base: dict[str, str], offline: bool,
                          log_path: Path | None, cache_dir: Path) -> None:
    """The build requirements an existing interpreter lacks (the plan listed them)."""
    log.info(f"installing the missing build requirements into {spec.python}: "
             f"{' '.join(spec.pip_install)}")
    local = ["--no-index", "--find-links", str(cache_dir / "pip")] if offline else []
    try:
        run([str(spec.python), "-m", "pip", "install", *local, *spec.pip_install], env=base,
            log_path=log_path, echo=log.detail)
    except CommandFailed as exc:
        wanted = " ".join(shlex.quote(r) for r in spec.pip_install)
        if offline:
            msg = (f"--offline: the build requirements {', '.join(spec.pip_install)} are not in "
                   f"{spec.python}'s env nor in the pip cache {cache_dir / 'pip'}")
            raise OfflineError(msg, fix=f"run `{spec.python} -m pip install {wanted}` on a "
                               "connected machine, or `torchbuild fetch` with the same options"
                               ) from None
        msg = (f"could not install the build requirements {', '.join(spec.pip_install)} into "
               f"{spec.python}: {' | '.join(exc.digest[-3:])}")
        raise EnvironmentSetupError(msg, fix=f"install them by hand (`{spec.python} -m pip "
                                    f"install {wanted}`) and re-run; see {exc.log_path}") from None


def _activate(spec: EnvSpec, base: dict[str, str], bin_dir: Path) -> dict[str, str]:
    env = dict(base)
    if spec.backend == "venv":
        env["VIRTUAL_ENV"] = str(spec.prefix)
    prepend_path(env, bin_dir, *_cuda_dirs(env, spec.cuda))
    return env


def create(spec: EnvSpec, environ: Mapping[str, str], *, cache_dir: Path, offline: bool,
           log_path: Path | None = None, cuda_home: str | None = None,
           conda_exe: str | None = None, refresh: bool = False) -> BuildEnv:
    base = base_environment(environ)
    if spec.backend in {"conda", "conda-exe"}:
        return _create_conda(spec, base, cache_dir=cache_dir, offline=offline,
                             conda_exe=conda_exe, refresh=refresh)
    if cuda_home and spec.cuda:
        base["CUDA_HOME"] = cuda_home
    if spec.backend == "venv":
        _create_venv(spec, base, offline, log_path, cache_dir)
    elif not spec.python.exists():
        msg = f"the interpreter {spec.python} does not exist"
        raise EnvironmentSetupError(msg, fix="pass --python /path/to/bin/python")
    elif spec.pip_install:
        _install_requirements(spec, base, offline, log_path, cache_dir)
    env = _activate(spec, base, spec.python.parent)
    return BuildEnv(spec.backend, spec.prefix, spec.python, env, tools=tool_versions(env))


def _create_conda(spec: EnvSpec, base: dict[str, str], *, cache_dir: Path, offline: bool,
                  conda_exe: str | None, refresh: bool) -> BuildEnv:
    # The lock reaches --dist through BuildEnv.lock_path (artifacts.publish), atomically with
    # the wheels, so the backends are not asked to copy it themselves.
    if spec.backend == "conda":
        built = create_conda_env(spec, base, cache_dir=cache_dir, offline=offline,
                                 refresh=refresh)
    else:
        built = create_conda_exe_env(spec, base, cache_dir=cache_dir, conda_exe=conda_exe,
                                     offline=offline)
    if spec.cuda:
        make_cuda_home_view(spec.prefix.resolve(), cuda_home_view(spec.prefix))
    return built


def make_cuda_home_view(real: Path, view: Path) -> None:
    """conda-forge's CUDA is "splayed" (headers and libraries under targets/x86_64-linux); tools
    that look only at $CUDA_HOME/include and $CUDA_HOME/lib64 -- torchvision's nvjpeg check is
    one, which conda-forge patches in its own feedstock -- get a classic-layout view of the env
    made of symlinks. nvcc finds its profile, nvvm and targets/ through the same names."""
    targets = real / "targets" / "x86_64-linux"
    links = {"bin": real / "bin", "include": targets / "include", "lib64": targets / "lib",
             "lib": targets / "lib", "targets": real / "targets", "nvvm": real / "nvvm"}
    shutil.rmtree(view, ignore_errors=True)
    view.mkdir(parents=True)
    for name, target in links.items():
        if target.exists():
            (view / name).symlink_to(target)


def install_into(wheels: Sequence[Path], target: str, environ: Mapping[str, str],
                 log_path: Path | None = None) -> list[str]:
    """Install wheels with --no-deps into another interpreter, or a conda env name/prefix."""
    path = Path(target).expanduser()
    python = path if path.is_file() else path / "bin" / "python" if path.is_dir() else None
    base = base_environment(environ)
    if python is None or not python.exists():
        return install_into_conda(wheels, target, base)
    try:
        run([str(python), "-m", "pip", "install", "--no-deps", "--force-reinstall",
             *map(str, wheels)], env=base, log_path=log_path, echo=log.detail)
    except CommandFailed as exc:
        msg = f"installing into {python} failed: {' | '.join(exc.digest[-3:])}"
        raise EnvironmentSetupError(msg, fix=f"see {exc.log_path}") from None
    return [w.name.split("-")[0] for w in wheels]
