"""The CUDA toolkit probe follows nvcc through symlinks and wrapper scripts to the real root (#17).

``/usr/local/bin/nvcc`` on this project's machines is a two-line script that execs
``/usr/local/cuda-13.0/bin/nvcc``; its parent's parent (``/usr/local``) is no CUDA_HOME, and torch's
own helper guessed exactly that. A stand-in toolkit (nvcc answering ``--version``, the header, the
runtime library) makes the same layout anywhere; the real toolkit is checked where there is one.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from torchbuild.machine import facts, probes
from torchbuild.machine.preflight import PreflightRequest, gather_facts, toolkit_findings

pytestmark = pytest.mark.integration

_FAKE_NVCC = """#!/bin/sh
# stand-in nvcc: only what the probes ask
case "$1" in
  --version) echo "Cuda compilation tools, release 12.8, V12.8.93" ;;
  --list-gpu-arch) echo compute_75; echo compute_86; echo compute_90 ;;
  *) exit 1 ;;
esac
"""


def _executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def fake_toolkit(root: Path, *, complete: bool = True) -> Path:
    _executable(root / "bin" / "nvcc", _FAKE_NVCC)
    if complete:
        (root / "include").mkdir(parents=True)
        (root / "include" / "cuda_runtime.h").write_text("/* stand-in */\n")
        (root / "lib64").mkdir()
        (root / "lib64" / "libcudart.so.12").write_text("")
    return root


def wrapper(bin_dir: Path, real_nvcc: Path) -> Path:
    return _executable(bin_dir / "nvcc", f'#!/bin/sh\nexec {real_nvcc} "$@"\n')


def _env(*dirs: Path) -> dict[str, str]:
    return {"PATH": os.pathsep.join([*map(str, dirs), "/usr/bin", "/bin"])}


def test_wrapper_script_on_path_resolves_to_the_toolkit_root(tmp_path: Path) -> None:
    root = fake_toolkit(tmp_path / "opt" / "cuda-12.8")
    wrapper(tmp_path / "usr-local" / "bin", root / "bin" / "nvcc")
    env = _env(tmp_path / "usr-local" / "bin")
    tk = facts.system_toolkit(env)
    assert tk is not None and (tk.root, tk.version) == (root, "12.8")
    assert probes.toolkit_root(str(tmp_path / "usr-local" / "bin" / "nvcc"), env) == root
    assert tk.complete


def test_symlink_to_a_wrapper_to_a_symlinked_toolkit(tmp_path: Path) -> None:
    real = fake_toolkit(tmp_path / "opt" / "cuda-12.8")
    (tmp_path / "opt" / "cuda").symlink_to(real)                # /usr/local/cuda -> cuda-12.8
    script = wrapper(tmp_path / "wrappers", tmp_path / "opt" / "cuda" / "bin" / "nvcc")
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "nvcc").symlink_to(script)
    env = _env(tmp_path / "links")
    tk = facts.system_toolkit(env)
    assert tk is not None and tk.root.resolve() == real and tk.version == "12.8"


def test_cuda_home_wins(tmp_path: Path) -> None:
    root = fake_toolkit(tmp_path / "cuda-12.8")
    other = fake_toolkit(tmp_path / "elsewhere" / "cuda-12.8")
    wrapper(tmp_path / "bin", other / "bin" / "nvcc")
    env = {**_env(tmp_path / "bin"), "CUDA_HOME": str(root)}
    tk = facts.system_toolkit(env)
    assert tk is not None and tk.root == root


def test_a_wrapper_to_nothing_like_a_toolkit_is_refused_by_preflight(tmp_path: Path) -> None:
    bare = fake_toolkit(tmp_path / "bare", complete=False)   # nvcc runs, no headers/libraries
    wrapper(tmp_path / "bin", bare / "bin" / "nvcc")
    env = _env(tmp_path / "bin")
    request = PreflightRequest(torch_version="2.9.1", cuda="12.8", archs=(), python_version="3.11",
                               work_dir=tmp_path / "work", env_backend="venv",
                               needs_system_toolkit=True, environ=env, compile_kernels=False)
    found = toolkit_findings(request, gather_facts(request))
    assert [f.level for f in found] == ["error"]
    assert "no toolkit root" in found[0].message and "CUDA_HOME" in found[0].fix


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc on this machine")
def test_the_real_nvcc_behind_a_wrapper(tmp_path: Path) -> None:
    real = Path(str(shutil.which("nvcc"))).resolve()
    wrapper(tmp_path / "bin", real)
    env = {**_env(tmp_path / "bin"), "HOME": str(tmp_path)}
    tk = facts.system_toolkit(env)
    assert tk is not None and tk.complete and probes.is_toolkit_root(tk.root)
    assert tk.root.resolve() != Path("/usr/local")
    assert (tk.root / "bin" / "nvcc").is_file() and tk.version
