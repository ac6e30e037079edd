"""The isolated conda build environment, without a conda binary: py-rattler in-process.

    specs (recipes/conda.toml) -> solve (rattler) -> conda-lock.yml (v1) -> hash checks
      -> install into <cache>/envs/.<key>.partial-<pid> -> rename to <cache>/envs/<key> -> activate

* The env prefix is keyed by the sha256 of the lock file's bytes, so the same lock always lands in
  the same prefix and a second run only checks a marker file (well under a second).
* Creation is atomic: rattler installs into a temporary prefix while patching files for the final
  path (``alternative_target_prefix``), then one ``rename`` publishes it. A killed install leaves
  only a ``.partial-*`` folder that the next run deletes and never trusts.
* Integrity: rattler verifies sha256 of what it downloads over http(s) but not of local ``file://``
  packages (reference/conda-offline.md 1(g)), so those are hashed here first.
* Activation runs the env's ``activate.d`` scripts (conda-forge compilers set CC/CXX/LDFLAGS there)
  in a child bash and returns the resulting environment as data, with the CUDA toolkit layout of
  conda-forge (headers under ``targets/x86_64-linux``) spelled out for CMake and setuptools.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final, Protocol

from torchbuild import command
from torchbuild.env import conda_lock
from torchbuild.env.buildenv import BuildEnv
from torchbuild.env.conda_lock import CondaLock, LockedPackage
from torchbuild.errors import (
    CommandFailed,
    EnvironmentSetupError,
    IntegrityError,
    OfflineError,
    SolverError,
    TorchbuildError,
)
from torchbuild.knowledge.conda_specs import spec_name
from torchbuild.locks import hold
from torchbuild.logger import log

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover - 3.10
    pass

if TYPE_CHECKING:
    from rattler import RepoDataRecord

PLATFORM: Final = "linux-64"
TARGETS = "targets/x86_64-linux"  # where conda-forge's CUDA >= 12 puts headers and libraries
MARKER = "conda-meta/torchbuild-env.json"
ENV_LOCK_TIMEOUT_S = 3600.0  # a real CUDA env can take many minutes to download; wait, don't fail
_SENTINEL = "__torchbuild_env_end__"


class CondaEnvRequest(Protocol):
    """The fields of the plan's ``EnvSpec`` this module reads (structural, so it does not care
    which module defines EnvSpec)."""

    @property
    def backend(self) -> str: ...
    @property
    def prefix(self) -> Path: ...
    @property
    def python(self) -> Path: ...
    @property
    def python_version(self) -> str: ...
    @property
    def conda_specs(self) -> tuple[str, ...]: ...
    @property
    def channels(self) -> tuple[str, ...]: ...
    @property
    def lock(self) -> Path | None: ...
    @property
    def cuda(self) -> str | None: ...


# --------------------------------------------------------------------------------------------
# py-rattler helpers

_guard_registered = False


def _exit_guard() -> None:
    """py-rattler's tokio threads can touch Python objects during interpreter finalisation and
    crash a process whose work already succeeded (pyo3-async-runtimes#40); 5-33 % of short runs
    that solved exited with SIGSEGV/SIGABRT. A short sleep at exit took that to 0/400."""
    global _guard_registered
    if not _guard_registered:
        atexit.register(time.sleep, 0.05)
        _guard_registered = True


def _channel_url(channel: str) -> str:
    if channel.startswith("/"):
        return Path(channel).as_uri()  # rattler wants URLs for local channels
    return channel


def _virtual_packages(cuda: str | None) -> list[Any]:
    from rattler import Override, VirtualPackage, VirtualPackageOverrides

    # A build host needs no GPU: claim the toolkit's CUDA so cuda-version's `__cuda` is satisfied.
    overrides = VirtualPackageOverrides(cuda=Override.string(cuda) if cuda else None)
    return list(VirtualPackage.detect(overrides))


def _vp_name(vp: Any) -> str:
    generic = vp.into_generic()
    return f"{generic.name.normalized}={generic.version}={generic.build_string}"


def _split_dep(dep: str) -> tuple[str, str]:
    name, _, rest = dep.strip().partition(" ")
    return name, rest.strip() or "*"


def _dependencies(depends: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for dep in depends:
        name, spec = _split_dep(dep)
        out[name] = spec if name not in out else f"{out[name]},{spec}"
    return out


def _locked(record: RepoDataRecord) -> LockedPackage:
    if record.md5 is None:
        msg = f"{record.file_name} has no md5 in its channel's repodata"
        raise EnvironmentSetupError(msg, fix="re-index the channel (conda-lock needs md5 hashes)")
    return LockedPackage(
        name=record.name.normalized, version=str(record.version), build=str(record.build),
        url=str(record.url), md5=record.md5.hex(),
        sha256=record.sha256.hex() if record.sha256 else None, platform=PLATFORM,
        dependencies=_dependencies(record.depends),
    )


def _mentions(text: str, name: str) -> bool:
    """``name`` as a whole package name (``make`` is not in ``cmake``)."""
    return re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", text) is not None


def _solver_error(exc: Exception, specs: Sequence[str], channels: Sequence[str],
                  vpkgs: Sequence[str]) -> SolverError:
    text = str(exc).strip()
    named = [s for s in specs if spec_name(s) and _mentions(text, spec_name(s))]
    conflict = "; ".join(named) if named else "; ".join(specs)
    msg = (f"cannot solve the build environment for {PLATFORM} from {', '.join(channels)} "
           f"(virtual packages: {', '.join(vpkgs) or 'none'}). Specs involved: {conflict}.\n"
           f"{text}")
    return SolverError(msg, fix="try another --cuda or --python for this torch release, or add "
                       "the channel that has the missing package with --channel")


def _unreachable(exc: Exception, channels: Sequence[str], offline: bool) -> Exception:
    if offline:
        msg = f"--offline and no cached repodata for {', '.join(channels)}: {exc}"
        return OfflineError(msg, fix="run once online, or pass --lock FILE with local packages")
    msg = f"cannot read channel repodata from {', '.join(channels)}: {exc}"
    return SolverError(msg, fix="check the network / proxy, or the channel URL given to "
                       "--channel; or pass --lock FILE to skip the solve")


# --------------------------------------------------------------------------------------------
# The backend


@dataclass(frozen=True)
class RattlerBackend:
    """Solve, lock, verify, install, activate. ``cache_dir`` holds repodata, packages, locks and
    envs; nothing outside it (and the ``--dist`` copy of the lock) is written."""

    cache_dir: Path
    offline: bool = False

    @property
    def envs_dir(self) -> Path:
        return self.cache_dir / "envs"

    def solve(self, specs: Sequence[str], channels: Sequence[str],
              cuda: str | None) -> CondaLock:
        _exit_guard()
        if not specs:
            msg = "no conda specs to solve (recipes/conda.toml produced none)"
            raise EnvironmentSetupError(msg, fix="check recipes/conda.toml, or pass --lock FILE")
        urls = [_channel_url(c) for c in channels]
        vpkgs = _virtual_packages(cuda)
        vnames = [_vp_name(v) for v in vpkgs]
        records = asyncio.run(self._solve(specs, urls, vpkgs, vnames))
        return CondaLock(
            packages=tuple(_locked(r) for r in records), channels=tuple(urls),
            platforms=(PLATFORM,),
            content_hash={PLATFORM: conda_lock.content_hash(specs, urls, PLATFORM, vnames)},
            sources=("torchbuild:recipes/conda.toml",),
            custom={"torchbuild_specs": "; ".join(specs), "torchbuild_cuda": cuda or "none",
                    "torchbuild_virtual_packages": ", ".join(vnames)},
        )

    async def _solve(self, specs: Sequence[str], urls: Sequence[str], vpkgs: Sequence[Any],
                     vnames: Sequence[str]) -> list[RepoDataRecord]:
        from rattler import Channel, Gateway, SourceConfig, solve
        from rattler.exceptions import GatewayError, InvalidMatchSpecError
        from rattler.exceptions import SolverError as RattlerSolverError

        # A fresh Gateway per solve: one keeps repodata in memory and misses re-indexed channels.
        config = SourceConfig(
            cache_action="force-cache-only" if self.offline else "cache-or-fetch")
        gateway = Gateway(cache_dir=self.cache_dir / "repodata", default_config=config)
        try:
            return await solve(sources=[Channel(u) for u in urls], specs=list(specs),
                               gateway=gateway, platforms=[PLATFORM, "noarch"],
                               virtual_packages=list(vpkgs))
        except (RattlerSolverError, InvalidMatchSpecError) as exc:
            raise _solver_error(exc, specs, urls, vnames) from None
        except GatewayError as exc:
            raise _unreachable(exc, urls, self.offline) from None
        except Exception as exc:  # rattler's fetch errors share no base class
            if "fetch" in type(exc).__name__.lower() or "repodata" in str(exc).lower():
                raise _unreachable(exc, urls, self.offline) from None
            raise

    def install(self, lock_path: Path, lock: CondaLock, lock_sha: str) -> Path:
        """Install ``lock`` into its hash-keyed prefix unless a complete one exists; return it."""
        final = self.envs_dir / lock_sha[:20]
        with hold(self.envs_dir / f"{final.name}.lock", purpose=f"conda env {final.name}",
                  timeout=ENV_LOCK_TIMEOUT_S):
            if is_complete(final, lock_sha):
                log.info(f"reusing conda env {final}")
                return final
            refuse_pip_entries(lock, lock_path)
            verify_local_packages(lock)
            _clear_leftovers(final)
            self._install_atomic(lock_path, lock, lock_sha, final)
        return final

    def _install_atomic(self, lock_path: Path, lock: CondaLock, lock_sha: str,
                        final: Path) -> None:
        _exit_guard()
        partial = final.with_name(f".{final.name}.partial-{os.getpid()}")
        started = time.monotonic()
        try:
            records = _lock_records(lock_path)
            try:
                asyncio.run(self._install(records, partial, final))
            except TorchbuildError:
                refuse_escaping_paths(self.cache_dir / "pkgs", lock)   # the real cause first
                raise
            refuse_escaping_paths(self.cache_dir / "pkgs", lock)
            write_marker(partial, lock_sha, lock)
            partial.rename(final)
        except BaseException:
            _remove_settled(partial)
            raise
        log.info(f"installed {len(lock.packages)} conda packages into {final} "
                 f"in {time.monotonic() - started:.1f}s")

    async def _install(self, records: list[RepoDataRecord], partial: Path, final: Path) -> None:
        from rattler import install
        from rattler.exceptions import InstallerError

        try:
            await install(records, target_prefix=partial, alternative_target_prefix=final,
                          cache_dir=self.cache_dir / "pkgs", show_progress=False,
                          execute_link_scripts=False)
        except InstallerError as exc:
            raise _install_error(exc, self.offline) from None


def _remove_settled(partial: Path, *, settle_s: float = 0.2, limit_s: float = 10.0) -> None:
    """Delete a failed install's prefix and keep deleting until it stays gone.

    When one download fails (a hash mismatch), rattler raises while its other tasks may still be
    linking files into the prefix for a moment, so a single rmtree can leave a fresh
    ``.partial-*`` behind (seen under load in CI)."""
    deadline = time.monotonic() + limit_s
    while True:
        shutil.rmtree(partial, ignore_errors=True)
        time.sleep(settle_s)
        if not partial.exists() or time.monotonic() > deadline:
            return


def _install_error(exc: Exception, offline: bool) -> Exception:
    text = " | ".join(str(exc).split("\n"))
    if "hash mismatch" in text or "sha256" in text.lower():
        msg = f"a downloaded package does not match the lock's hash: {text}"
        return IntegrityError(msg, fix="the package on the channel changed or was tampered with; "
                              "re-solve without --lock only if you trust the new one")
    if offline:
        msg = f"--offline and a package is not in the package cache: {text}"
        return OfflineError(msg, fix="run once online to fill the cache")
    msg = f"installing the conda environment failed: {text}"
    return EnvironmentSetupError(msg, fix="check the network and disk space, then re-run")


def _lock_records(lock_path: Path) -> list[RepoDataRecord]:
    """rattler reads conda-lock.yml v1 itself; its records carry the lock's URLs and hashes."""
    from rattler import LockFile
    from rattler.exceptions import ParseCondaLockError

    try:
        environment = LockFile.from_path(lock_path).default_environment()
    except ParseCondaLockError as exc:
        msg = f"rattler cannot read {lock_path}: {exc}"
        raise EnvironmentSetupError(msg, fix="pass a conda-lock.yml of format version 1") from None
    platforms = [p for p in environment.platforms() if p.name == PLATFORM] if environment else []
    records = None
    if environment is not None and platforms:
        records = environment.conda_repodata_records_for_platform(platforms[0])
    if not records:
        msg = f"{lock_path} locks no conda packages for {PLATFORM}"
        raise EnvironmentSetupError(msg, fix=f"lock for {PLATFORM} (conda-lock -p {PLATFORM})")
    return records


# --------------------------------------------------------------------------------------------
# Integrity, markers, leftovers


def _file_hash(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_local_packages(lock: CondaLock) -> int:
    """Hash every local (file://) package against the lock; return how many were checked."""
    checked = 0
    for pkg in lock.for_platform(PLATFORM):
        path = pkg.local_path()
        if path is None or pkg.manager != "conda":
            continue  # http(s): rattler checks sha256 while downloading
        if not path.is_file():
            msg = f"{pkg.name} {pkg.version}: {path} does not exist"
            raise EnvironmentSetupError(msg, fix="restore the local channel the lock points at, "
                                        "or re-solve without --lock")
        algorithm, want = ("sha256", pkg.sha256) if pkg.sha256 else ("md5", pkg.md5)
        got = _file_hash(path, algorithm)
        if got != want:
            msg = (f"{pkg.filename} does not match the lock: {algorithm} is {got}, the lock "
                   f"says {want} ({path})")
            raise IntegrityError(msg, fix="the package file changed since the lock was made; "
                                 "restore it, or re-solve without --lock if you trust it")
        checked += 1
    return checked


def escaping_paths(pkgs_dir: Path, lock: CondaLock) -> list[str]:
    """Entries of the extracted packages' info/paths.json that point outside the prefix
    (absolute, or with a `..` part): a package must never write anywhere but its env."""
    found = []
    for pkg in lock.for_platform(PLATFORM):
        if pkg.manager != "conda":
            continue
        stem = pkg.filename.removesuffix(".conda").removesuffix(".tar.bz2")
        try:
            data = json.loads((pkgs_dir / stem / "info" / "paths.json").read_text("utf-8"))
        except (OSError, ValueError):
            continue     # not extracted (the install failed before it): nothing was linked
        for entry in data.get("paths", []) if isinstance(data, dict) else []:
            rel = str(entry.get("_path", "")) if isinstance(entry, dict) else ""
            if rel.startswith("/") or ".." in PurePosixPath(rel).parts:
                found.append(f"{pkg.filename}: {rel}")
    return found


def refuse_escaping_paths(pkgs_dir: Path, lock: CondaLock) -> None:
    bad = escaping_paths(pkgs_dir, lock)
    if bad:
        msg = ("a conda package lists files outside the environment's prefix, refused: "
               + "; ".join(bad[:5]))
        raise IntegrityError(msg, fix="remove that package from the specs or the channel (it "
                             "is malformed or malicious), then re-run; nothing was installed")


def refuse_pip_entries(lock: CondaLock, lock_path: Path) -> None:
    pip = [p.name for p in lock.for_platform(PLATFORM) if p.manager != "conda"]
    if pip:
        msg = f"{lock_path} has pip entries ({', '.join(pip)}); torchbuild installs conda only"
        raise EnvironmentSetupError(msg, fix="lock without pip dependencies")


def is_complete(prefix: Path, lock_sha: str) -> bool:
    try:
        marker = json.loads((prefix / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("lock_sha256") == lock_sha


def write_marker(prefix: Path, lock_sha: str, lock: CondaLock) -> None:
    packages = {p.name: p.version for p in lock.for_platform(PLATFORM)}
    data = {"lock_sha256": lock_sha, "platform": PLATFORM, "packages": packages,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (prefix / MARKER).write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")


def _clear_leftovers(final: Path) -> None:
    """Called under the env's lock: no live run can own a partial, so every one is debris of an
    interrupted install; a final dir without a valid marker is not trusted either."""
    for stale in final.parent.glob(f".{final.name}.partial-*"):
        log.info(f"removing an interrupted install: {stale}")
        shutil.rmtree(stale, ignore_errors=True)
    if final.exists() or final.is_symlink():
        log.warn(f"{final} exists but is incomplete; recreating it")
        trash = final.with_name(f".{final.name}.trash-{os.getpid()}")
        final.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)


# The names environment.tool_versions() reports for venvs, so manifests read the same.
_TOOL_ALIASES = {"gcc": ("gcc_impl_linux-64", "gcc_linux-64"), "nvcc": ("cuda-nvcc",)}


def tools_of(prefix: Path) -> dict[str, str]:
    """Every package of the env with its version, plus ``gcc``/``nvcc`` aliases."""
    try:
        marker = json.loads((prefix / MARKER).read_text(encoding="utf-8"))
        tools = {str(k): str(v) for k, v in marker.get("packages", {}).items()}
    except (OSError, ValueError, AttributeError):
        return {}
    for alias, names in _TOOL_ALIASES.items():
        found = next((tools[n] for n in names if n in tools), None)
        if found is not None:
            tools.setdefault(alias, found)
    return tools


# --------------------------------------------------------------------------------------------
# Activation (as data)


def _prepend(value: str, existing: str | None) -> str:
    parts = [value, *[p for p in (existing or "").split(os.pathsep) if p and p != value]]
    return os.pathsep.join(parts)


# The activation, as fixed text: the prefix arrives as "$1", never inside the script (a `$(...)`
# in --cache-dir, where the envs live, would run). rattler's generated script interpolates paths,
# so it is not used; this does what it does on linux-64: CONDA_* variables, PATH, the env's
# etc/conda/env_vars.d (set as data before) and activate.d scripts (gcc's, cuda-nvcc's ...).
_ACTIVATE = """
export CONDA_PREFIX="$1" CONDA_DEFAULT_ENV="$1" CONDA_SHLVL=1
export PATH="$1/bin${PATH:+:$PATH}"
for script in "$1"/etc/conda/activate.d/*.sh; do
  if [ -f "$script" ]; then . "$script"; fi
done
env -0
printf '%s' "$2"
"""


def _env_vars(prefix: Path) -> dict[str, str]:
    """What packages and the env state set: etc/conda/env_vars.d/*.json, conda-meta/state."""
    out: dict[str, str] = {}
    files = sorted((prefix / "etc" / "conda" / "env_vars.d").glob("*.json"))
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        out.update({str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {})
    try:
        state = json.loads((prefix / "conda-meta" / "state").read_text(encoding="utf-8"))
        out.update({str(k): str(v) for k, v in state.get("env_vars", {}).items()})
    except (OSError, ValueError, AttributeError):
        pass
    return out


def _run_activation(prefix: Path, base_env: Mapping[str, str]) -> dict[str, str]:
    # BASH_ENV/ENV would source user files into what should be a clean activation.
    child = {k: v for k, v in base_env.items() if k not in ("BASH_ENV", "ENV")}
    child.update(_env_vars(prefix))
    try:
        out = command.capture(["bash", "--noprofile", "--norc", "-c", _ACTIVATE, "bash",
                               str(prefix), _SENTINEL], env=child)
    except CommandFailed as exc:
        msg = f"activating {prefix} failed: {'; '.join(exc.digest)}"
        raise EnvironmentSetupError(msg, fix="an etc/conda/activate.d script of the env failed; "
                                    "re-create the env (delete it) and re-run") from None
    body = out.rsplit(_SENTINEL, 1)[0]
    env = dict(item.split("=", 1) for item in body.split("\0") if "=" in item)
    for noise in ("_", "SHLVL", "PWD", "OLDPWD"):  # bash's own, not the activation's
        if noise not in base_env:
            env.pop(noise, None)
    entries = env.get("PATH", "").split(os.pathsep)
    env["PATH"] = os.pathsep.join(dict.fromkeys(p for p in entries if p))
    return env


def _cuda_vars(prefix: Path, env: dict[str, str]) -> None:
    """conda-forge's CUDA >= 12 is "splayed": nvcc in bin/, headers and libs under targets/."""
    targets = prefix / TARGETS
    for var in ("CUDA_HOME", "CUDA_PATH", "CUDA_TOOLKIT_ROOT_DIR", "CUDAToolkit_ROOT"):
        env[var] = str(prefix)
    env["CUDACXX"] = str(prefix / "bin" / "nvcc")
    if targets.is_dir():
        # torch.utils.cpp_extension looks in $CUDA_HOME/include only; gcc needs the targets dir.
        env["CPATH"] = _prepend(str(targets / "include"), env.get("CPATH"))
        env["LIBRARY_PATH"] = _prepend(str(targets / "lib"), env.get("LIBRARY_PATH"))
        env["CMAKE_PREFIX_PATH"] = _prepend(str(targets), env.get("CMAKE_PREFIX_PATH"))


def _library_vars(prefix: Path, env: dict[str, str]) -> None:
    include, lib = prefix / "include", str(prefix / "lib")
    if (include / "cudnn.h").is_file() or (include / "cudnn_version.h").is_file():
        env.update(CUDNN_ROOT=str(prefix), CUDNN_INCLUDE_DIR=str(include), CUDNN_LIB_DIR=lib)
    if (include / "nccl.h").is_file():
        env.update(NCCL_ROOT_DIR=str(prefix), NCCL_INCLUDE_DIR=str(include), NCCL_LIB_DIR=lib)
    if (include / "magma.h").is_file():
        env["MAGMA_HOME"] = str(prefix)
    if (include / "mkl.h").is_file():
        env["MKLROOT"] = str(prefix)


def _compiler_vars(env: dict[str, str]) -> None:
    # One toolchain for host code and nvcc's host compiler (FM-05/FM-34).
    if env.get("CXX"):
        env["CUDAHOSTCXX"] = env["CXX"]
    # conda's --as-needed defeats torch's --no-as-needed around MKL (FM-15); the
    # pytorch-cpu-feedstock build script strips it the same way.
    if "LDFLAGS" in env:
        env["LDFLAGS"] = " ".join(f for f in env["LDFLAGS"].split() if f != "-Wl,--as-needed")


def activation_env(prefix: Path, base_env: Mapping[str, str]) -> dict[str, str]:
    """The complete child environment of build steps inside ``prefix``."""
    env = _run_activation(prefix, base_env)
    env["CONDA_PREFIX"] = str(prefix)
    env["CMAKE_PREFIX_PATH"] = _prepend(str(prefix), base_env.get("CMAKE_PREFIX_PATH"))
    if (prefix / "bin" / "nvcc").is_file():
        _cuda_vars(prefix, env)
    _library_vars(prefix, env)
    _compiler_vars(env)
    return env


# --------------------------------------------------------------------------------------------
# Public entry points


def link_prefix(stable: Path, target: Path) -> None:
    """Point the plan's stable prefix (<work>/env) at the hash-keyed one, atomically."""
    if stable.resolve() == target.resolve():
        return
    if stable.exists() and not stable.is_symlink():
        if stable.is_dir() and not any(stable.iterdir()):
            stable.rmdir()
        else:
            msg = f"{stable} is a directory, not torchbuild's link to a conda env"
            raise EnvironmentSetupError(msg, fix="remove it (or run with --clean), or use "
                                        "another --work-dir")
    stable.parent.mkdir(parents=True, exist_ok=True)
    tmp = stable.with_name(f".{stable.name}.link-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target, target_is_directory=True)
    tmp.replace(stable)


def copy_lock(lock_path: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.copyfile(lock_path, tmp)
    tmp.replace(dest)


def obtain_lock(spec: CondaEnvRequest, backend: RattlerBackend, *, refresh: bool = False) -> Path:
    """``--lock FILE`` as given; otherwise the solve for these inputs, cached by their hash so a
    second run neither solves nor touches the network (``refresh`` forces a new solve)."""
    if spec.lock is not None:
        if not spec.lock.is_file():
            msg = f"--lock {spec.lock} does not exist"
            raise EnvironmentSetupError(msg, fix="pass the conda-lock.yml a previous build wrote "
                                        "into --dist")
        return spec.lock
    urls = [_channel_url(c) for c in spec.channels]
    key = conda_lock.content_hash(spec.conda_specs, urls, PLATFORM, [f"cuda={spec.cuda}"])
    cached = backend.cache_dir / "locks" / f"{key[:20]}.conda-lock.yml"
    if cached.is_file() and not refresh:
        log.info(f"reusing the solve in {cached}")
        return cached
    started = time.monotonic()
    lock = backend.solve(spec.conda_specs, spec.channels, spec.cuda)
    conda_lock.write(lock, cached)
    log.info(f"solved {len(lock.packages)} packages in {time.monotonic() - started:.1f}s")
    return cached


def create_conda_env(spec: CondaEnvRequest, base_env: Mapping[str, str], *, cache_dir: Path,
                     offline: bool, dist_lock_copy: Path | None = None,
                     refresh: bool = False) -> BuildEnv:
    """Solve (unless ``spec.lock``), write the lock, verify, install atomically, activate; reuse
    the hash-keyed prefix when it is already complete."""
    backend = RattlerBackend(cache_dir=cache_dir, offline=offline)
    lock_path = obtain_lock(spec, backend, refresh=refresh)
    lock = conda_lock.read(lock_path)
    lock_sha = conda_lock.file_sha256(lock_path)
    prefix = backend.install(lock_path, lock, lock_sha)
    link_prefix(spec.prefix, prefix)
    if dist_lock_copy is not None:
        copy_lock(lock_path, dist_lock_copy)
    return BuildEnv(backend="conda", prefix=spec.prefix, python=spec.python,
                    env=activation_env(prefix, base_env), lock_path=lock_path,
                    lock_sha256=lock_sha, tools=tools_of(prefix))


# --------------------------------------------------------------------------------------------
# --install-into


def _envs_dirs(base_env: Mapping[str, str]) -> list[Path]:
    """Where conda, mamba and micromamba keep named envs, from the caller's environment."""
    dirs: list[Path] = []
    for var in ("CONDA_ENVS_PATH", "CONDA_ENVS_DIRS"):
        dirs += [Path(p) for p in base_env.get(var, "").split(os.pathsep) if p]
    roots = [base_env.get("MAMBA_ROOT_PREFIX"), base_env.get("CONDA_ROOT")]
    if base_env.get("CONDA_EXE"):
        roots.append(str(Path(base_env["CONDA_EXE"]).parent.parent))
    home = Path(base_env.get("HOME", "~")).expanduser()
    roots += [str(home / d) for d in ("miniforge3", "mambaforge", "miniconda3", "anaconda3",
                                      "micromamba", ".local/share/mamba")]
    dirs += [Path(r) / "envs" for r in roots if r]
    dirs.append(home / ".conda" / "envs")
    return dirs


def resolve_conda_env(target: str, base_env: Mapping[str, str]) -> Path:
    """An env given by path, or by name as conda resolves it."""
    if os.sep in target or target.startswith((".", "~")):
        prefix = Path(target).expanduser().resolve()
        if not (prefix / "conda-meta").is_dir():
            msg = f"{prefix} is not a conda environment (no conda-meta/)"
            raise EnvironmentSetupError(msg, fix="pass an env name or the path of a conda env")
        return prefix
    for envs in _envs_dirs(base_env):
        if (envs / target / "conda-meta").is_dir():
            return envs / target
    msg = f"no conda environment named {target!r}"
    raise EnvironmentSetupError(msg, fix="create it first (conda create -n NAME python=X.Y) or "
                                "pass its path; searched CONDA_ENVS_PATH, MAMBA_ROOT_PREFIX, "
                                "CONDA_EXE's root and ~/.conda/envs")


def _dist_name(wheel: Path) -> str:
    return wheel.name.split("-", 1)[0]


def install_into_conda(wheels: Sequence[Path], target: str,
                       base_env: Mapping[str, str]) -> list[str]:
    """``pip install --no-deps`` the wheels into a conda env (name or prefix) with that env's own
    python; return the installed distribution names, as read back from the env."""
    prefix = resolve_conda_env(target, base_env)
    python = prefix / "bin" / "python"
    if not python.is_file():
        msg = f"cannot install into {prefix}: it has no bin/python"
        raise EnvironmentSetupError(msg, fix=f"conda install -p {prefix} python")
    bad = [str(w) for w in wheels if not w.is_file() or w.suffix != ".whl"]
    if bad or not wheels:
        msg = f"nothing to install into {prefix}: not wheel files: {bad or 'none given'}"
        raise EnvironmentSetupError(msg, fix="check --dist for the built wheels")
    env = {k: v for k, v in base_env.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    argv = [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--force-reinstall",
            *[str(w) for w in wheels]]
    try:
        command.run(argv, env=env, echo=log.detail)
    except CommandFailed as exc:
        msg = f"pip could not install the wheels into {prefix}: {'; '.join(exc.digest)}"
        raise EnvironmentSetupError(msg, fix="see the pip output above") from None
    return _installed(python, [_dist_name(w) for w in wheels], env)


def _installed(python: Path, names: Sequence[str], env: Mapping[str, str]) -> list[str]:
    code = ("import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            "for n in sys.argv[1:]:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")
    try:
        found: dict[str, str] = json.loads(command.capture([str(python), "-c", code, *names],
                                                           env=env))
    except CommandFailed as exc:
        msg = f"{python} installed the wheels but cannot list them: {' | '.join(exc.digest)}"
        raise EnvironmentSetupError(msg, fix=f"check that {python} runs (`{python} -c pass`), "
                                    "then re-run the same command") from None
    for name in names:
        if name in found:
            log.info(f"installed {name} {found[name]} into {python.parent.parent}")
    return [n for n in names if n in found]
