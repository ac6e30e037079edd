"""``--env conda-exe``: the user's own micromamba / mamba / conda installs the same lock.

The lock is the same conda-lock.yml the rattler backend writes (solved by rattler unless ``--lock``
is given). It is rendered to an ``@EXPLICIT`` list, which every one of those tools installs with
``create --file`` without solving again; the md5 fragments make them verify each package.

conda rewrites prefix placeholders for the prefix it installs into, so the env cannot be built in
a temporary folder and renamed like the rattler backend does. Instead it is created directly at the
hash-keyed path, removed again if the tool fails, and trusted only once the completion marker is
written after the tool succeeded.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from torchbuild import command
from torchbuild.env import conda_lock
from torchbuild.env.buildenv import BuildEnv
from torchbuild.env.conda import (
    ENV_LOCK_TIMEOUT_S,
    PLATFORM,
    CondaEnvRequest,
    RattlerBackend,
    activation_env,
    copy_lock,
    is_complete,
    link_prefix,
    obtain_lock,
    refuse_pip_entries,
    tools_of,
    verify_local_packages,
    write_marker,
)
from torchbuild.errors import CommandFailed, EnvironmentSetupError, MissingToolError
from torchbuild.locks import hold
from torchbuild.logger import log

CANDIDATES = ("micromamba", "mamba", "conda")


def find_conda_exe(conda_exe: str | None, base_env: Mapping[str, str]) -> str:
    """``--conda-exe PATH`` if given, else the first of micromamba, mamba, conda on PATH."""
    if conda_exe:
        return command.resolve_program(conda_exe, base_env)
    for name in CANDIDATES:
        try:
            return command.resolve_program(name, base_env)
        except MissingToolError:
            continue
    msg = "--env conda-exe needs micromamba, mamba or conda, and none is on PATH"
    raise MissingToolError(msg, fix="pass --conda-exe PATH, or use the default --env conda "
                           "(no conda binary needed)")


def create_argv(exe: str, prefix: Path, explicit: Path) -> list[str]:
    """conda, mamba and micromamba share this spelling for an explicit-file create."""
    return [exe, "create", "--yes", "--prefix", str(prefix), "--file", str(explicit)]


def _child_env(base_env: Mapping[str, str]) -> dict[str, str]:
    # An activated env of the caller would make conda act on it; the new env is named by --prefix.
    drop = ("CONDA_PREFIX", "CONDA_DEFAULT_ENV", "CONDA_SHLVL")
    return {k: v for k, v in base_env.items() if k not in drop}


def _run_create(exe: str, final: Path, explicit: Path, base_env: Mapping[str, str]) -> None:
    try:
        command.run(create_argv(exe, final, explicit), env=_child_env(base_env), echo=log.detail)
    except CommandFailed as exc:
        shutil.rmtree(final, ignore_errors=True)
        msg = f"`{Path(exe).name} create` failed for {final}: {'; '.join(exc.digest)}"
        raise EnvironmentSetupError(msg, fix="read the tool's output above; the default --env "
                                    "conda backend installs the same lock without it") from None
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)  # interrupted: never leave a half env
        raise


def create_conda_exe_env(spec: CondaEnvRequest, base_env: Mapping[str, str], *, cache_dir: Path,
                         conda_exe: str | None, offline: bool = False,
                         dist_lock_copy: Path | None = None) -> BuildEnv:
    exe = find_conda_exe(conda_exe, base_env)
    log.warn(f"{Path(exe).name} verifies the env's packages by md5 only (an @EXPLICIT list has "
             "no sha256; the manifest records this); the default --env conda checks sha256")
    lock_path = obtain_lock(spec, RattlerBackend(cache_dir=cache_dir, offline=offline))
    lock = conda_lock.read(lock_path)
    lock_sha = conda_lock.file_sha256(lock_path)
    final = cache_dir / "envs" / f"x-{lock_sha[:20]}"
    with hold(final.with_name(f"{final.name}.lock"), purpose=f"conda env {final.name}",
              timeout=ENV_LOCK_TIMEOUT_S):
        if not is_complete(final, lock_sha):
            refuse_pip_entries(lock, lock_path)
            verify_local_packages(lock)
            shutil.rmtree(final, ignore_errors=True)
            explicit = final.with_name(f"{final.name}.explicit.txt")
            explicit.write_text(conda_lock.render_explicit(lock, PLATFORM), encoding="utf-8")
            _run_create(exe, final, explicit, base_env)
            write_marker(final, lock_sha, lock)
        else:
            log.info(f"reusing conda env {final}")
    link_prefix(spec.prefix, final)
    if dist_lock_copy is not None:
        copy_lock(lock_path, dist_lock_copy)
    tools = {**tools_of(final), Path(exe).name: exe_version(exe, base_env)}
    return BuildEnv(backend="conda-exe", prefix=spec.prefix, python=spec.python,
                    env=activation_env(final, base_env), lock_path=lock_path,
                    lock_sha256=lock_sha, tools=tools)


def exe_version(exe: str, base_env: Mapping[str, str]) -> str:
    found = command.probe([exe, "--version"], env=dict(base_env))
    if found is None or found[0] != 0:
        return "unknown"
    lines = (found[1] or found[2]).strip().splitlines()
    return lines[0].split()[-1] if lines else "unknown"

