"""The conda backend end to end, with no mocks: a real local channel (tests/conda_channel.py), the
real rattler solver and installer, the real activation scripts, conda-lock's own parser.

Everything stays on this machine: channels are ``file://`` folders or an HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from torchbuild import command
from torchbuild.env import conda_lock
from torchbuild.env.conda import (
    RattlerBackend,
    create_conda_env,
    install_into_conda,
    is_complete,
    verify_local_packages,
)
from torchbuild.env.create import create
from torchbuild.errors import (
    EnvironmentSetupError,
    IntegrityError,
    OfflineError,
    SolverError,
)
from torchbuild.knowledge.conda_specs import conda_specs_for
from torchbuild.plan import cuda_home_view

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import conda_channel

try:
    from torchbuild.env.create import EnvSpec
except ImportError:  # EnvSpec lives in plan.py and is re-exported by environment.py
    from torchbuild.plan import EnvSpec

pytestmark = pytest.mark.integration

SRC = Path(__file__).resolve().parents[2] / "src"
FULL_SPECS = ("cmake-test >=3.30", "ninja-test", "mkl-test", "typing-ext-test", "gxx-test",
              "cuda-nvcc-test", "python 3.11.*")
FULL_NAMES = {s.split()[0] for s in FULL_SPECS}


@pytest.fixture(scope="session")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("conda") / "chan"
    conda_channel.build_channel(root)
    return root


@pytest.fixture
def private_channel(channel: Path, tmp_path: Path) -> Path:
    """A copy this test may tamper with."""
    return conda_channel.copy_channel(channel, tmp_path / "chan")


@pytest.fixture
def http_channel(private_channel: Path) -> Iterator[conda_channel.HttpChannel]:
    with conda_channel.serve(private_channel) as served:
        yield served


def base_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", os.defpath), "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8"}


def make_spec(work: Path, specs: tuple[str, ...], channels: tuple[str, ...], *,
              cuda: str | None = None, lock: Path | None = None) -> EnvSpec:
    prefix = work / "env"
    return EnvSpec(backend="conda", prefix=prefix, python=prefix / "bin" / "python",
                   python_version="3.11", conda_specs=specs, channels=channels, lock=lock,
                   cuda=cuda)


def env_dirs(cache: Path) -> list[str]:
    """What is left in the env store, apart from the lock files."""
    envs = cache / "envs"
    return sorted(p.name for p in envs.iterdir() if not p.name.endswith((".lock", ".owner"))) \
        if envs.is_dir() else []


# --------------------------------------------------------------------------------------------


def test_solve_lock_install_activate(channel: Path, tmp_path: Path) -> None:
    spec = make_spec(tmp_path / "work", FULL_SPECS, (channel.as_uri(),), cuda="12.8")
    dist_lock = tmp_path / "dist" / "conda-lock.yml"
    built = create_conda_env(spec, base_env(), cache_dir=tmp_path / "cache", offline=False,
                             dist_lock_copy=dist_lock)
    real = spec.prefix.resolve()
    assert spec.prefix.is_symlink()
    assert real.parent == tmp_path / "cache" / "envs"
    assert built.lock_path is not None
    assert built.lock_sha256 is not None
    assert dist_lock.read_bytes() == built.lock_path.read_bytes()
    assert conda_lock.file_sha256(dist_lock) == built.lock_sha256
    assert real.name == built.lock_sha256[:20]  # keyed by the lock's content
    # The programs run from PATH of the activated env.
    assert command.capture(["cmake-test"], env=built.env) == "cmake-test 3.30.0"
    assert command.capture(["ninja-test"], env=built.env) == "ninja-test 1.12.1"
    # Placeholders were rewritten for the final prefix, not the temporary install folder.
    assert (real / "lib/libtest.cfg").read_text().splitlines()[0] == f"prefix={real}"
    assert (real / "lib/python3.11/site-packages/typing_ext_test/__init__.py").is_file()
    assert built.tools["cmake-test"] == "3.30.0"
    assert built.tools["libtest"] == "1.1"
    assert not list((tmp_path / "cache" / "envs").glob(".*partial*"))


def test_activation_applies_activate_d_and_cuda_layout(channel: Path, tmp_path: Path) -> None:
    spec = make_spec(tmp_path / "work", FULL_SPECS, (channel.as_uri(),), cuda="12.8")
    base = base_env() | {"CMAKE_PREFIX_PATH": "/opt/other"}
    env = create_conda_env(spec, base, cache_dir=tmp_path / "cache", offline=False).env
    real = spec.prefix.resolve()
    assert env["CONDA_PREFIX"] == str(real)
    assert env["PATH"].split(os.pathsep)[0] == str(real / "bin")
    assert len(env["PATH"].split(os.pathsep)) == len(set(env["PATH"].split(os.pathsep)))
    # The compiler package's activate.d script ran; nvcc's host compiler is the same C++.
    assert env["TEST_GXX_ACTIVATED"] == "1"
    assert env["CXX"] == str(real / "bin/x86_64-test-linux-gnu-c++")
    assert env["CUDAHOSTCXX"] == env["CXX"]
    assert command.capture([env["CXX"]], env=env) == "c++ (test) 13.2.0"
    assert "-Wl,--as-needed" not in env["LDFLAGS"].split()
    assert f"-Wl,-rpath,{real}/lib" in env["LDFLAGS"].split()
    # conda-forge's splayed CUDA layout is spelled out.
    assert env["CUDA_HOME"] == str(real)
    assert env["CPATH"].split(os.pathsep)[0] == str(real / "targets/x86_64-linux/include")
    assert (Path(env["CPATH"].split(os.pathsep)[0]) / "cuda_runtime.h").is_file()
    assert env["CMAKE_PREFIX_PATH"].split(os.pathsep)[-1] == "/opt/other"
    assert command.capture(["nvcc"], env=env).endswith("V12.8.93")


def test_cpu_env_has_no_cuda_variables(channel: Path, tmp_path: Path) -> None:
    spec = make_spec(tmp_path / "work", ("cmake-test", "gxx-test"), (channel.as_uri(),))
    env = create_conda_env(spec, base_env(), cache_dir=tmp_path / "cache", offline=False).env
    assert "CUDA_HOME" not in env
    assert "CPATH" not in env
    assert env["CUDAHOSTCXX"] == env["CXX"]


def test_lock_is_read_by_conda_lock(channel: Path, tmp_path: Path) -> None:
    from conda_lock.lockfile import parse_conda_lock_file

    spec = make_spec(tmp_path / "work", FULL_SPECS, (channel.as_uri(),), cuda="12.8")
    built = create_conda_env(spec, base_env(), cache_dir=tmp_path / "cache", offline=False)
    assert built.lock_path is not None
    parsed = parse_conda_lock_file(built.lock_path)
    by_name = {p.name: p for p in parsed.package}
    ours = conda_lock.read(built.lock_path)
    assert set(by_name) == {p.name for p in ours.packages} == {*FULL_NAMES, "libtest"}
    for name, pkg in by_name.items():
        archive = conda_channel.find_archive(channel, name, pkg.version)
        assert pkg.hash.sha256 == conda_channel.sha256_of(archive), name
        assert pkg.url == archive.as_uri()
        assert pkg.manager == "conda"
        assert pkg.platform == "linux-64"
    assert by_name["cmake-test"].dependencies == {"libtest": ">=1.1"}


def test_conda_lock_render_explicit_accepts_the_lock(channel: Path, tmp_path: Path) -> None:
    exe = shutil.which("conda-lock", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("conda-lock CLI not installed")
    spec = make_spec(tmp_path / "work", ("cmake-test", "ninja-test"), (channel.as_uri(),))
    built = create_conda_env(spec, base_env(), cache_dir=tmp_path / "cache", offline=False)
    assert built.lock_path is not None
    # render only: `conda-lock install/lock` would try to download a conda binary (~63 s).
    subprocess.run([exe, "render", "-k", "explicit", "-p", "linux-64", str(built.lock_path)],
                   cwd=tmp_path, check=True, capture_output=True, timeout=120)
    theirs = (tmp_path / "conda-linux-64.lock").read_text().splitlines()
    ours = conda_lock.render_explicit(conda_lock.read(built.lock_path), "linux-64").splitlines()
    assert sorted(x for x in theirs if "://" in x) == sorted(x for x in ours if "://" in x)


def test_second_run_with_lock_reuses_prefix(channel: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    spec = make_spec(tmp_path / "w1", FULL_SPECS, (channel.as_uri(),), cuda="12.8")
    first = create_conda_env(spec, base_env(), cache_dir=cache, offline=False,
                             dist_lock_copy=tmp_path / "dist" / "conda-lock.yml")
    marker = first.prefix.resolve() / "conda-meta" / "torchbuild-env.json"
    before = marker.stat().st_mtime_ns
    again = make_spec(tmp_path / "w2", (), (), lock=tmp_path / "dist" / "conda-lock.yml")
    started = time.monotonic()
    second = create_conda_env(again, base_env(), cache_dir=cache, offline=True)
    took = time.monotonic() - started
    assert second.prefix.resolve() == first.prefix.resolve()
    assert marker.stat().st_mtime_ns == before  # nothing was reinstalled
    assert second.lock_sha256 == first.lock_sha256
    assert took < 1.0, f"reuse took {took:.2f}s"


def test_install_from_lock_needs_no_repodata(private_channel: Path, tmp_path: Path) -> None:
    spec = make_spec(tmp_path / "w1", FULL_SPECS, (private_channel.as_uri(),), cuda="12.8")
    first = create_conda_env(spec, base_env(), cache_dir=tmp_path / "c1", offline=False)
    for repodata in private_channel.glob("*/repodata.json"):
        repodata.unlink()  # a solve is now impossible: only the lock can drive the install
    assert first.lock_path is not None
    again = make_spec(tmp_path / "w2", (), (), lock=first.lock_path)
    second = create_conda_env(again, base_env(), cache_dir=tmp_path / "c2", offline=True)
    assert second.prefix.resolve() != first.prefix.resolve()  # another cache: a new install
    assert command.capture(["cmake-test"], env=second.env) == "cmake-test 3.30.0"


def test_same_options_reuse_the_cached_solve(private_channel: Path, tmp_path: Path) -> None:
    spec = make_spec(tmp_path / "w", ("cmake-test", "ninja-test"), (private_channel.as_uri(),))
    first = create_conda_env(spec, base_env(), cache_dir=tmp_path / "c", offline=False)
    for repodata in private_channel.glob("*/repodata.json"):
        repodata.unlink()  # a new solve would fail now
    second = create_conda_env(spec, base_env(), cache_dir=tmp_path / "c", offline=False)
    assert second.lock_path == first.lock_path
    assert second.lock_sha256 == first.lock_sha256
    with pytest.raises(SolverError):  # refresh=True really solves again
        create_conda_env(spec, base_env(), cache_dir=tmp_path / "c", offline=False, refresh=True)


def test_http_channel_solve_and_install(http_channel: conda_channel.HttpChannel,
                                        tmp_path: Path) -> None:
    spec = make_spec(tmp_path / "work", ("cmake-test 3.29.*", "ninja-test"), (http_channel.url,))
    built = create_conda_env(spec, base_env(), cache_dir=tmp_path / "cache", offline=False)
    assert command.capture(["cmake-test"], env=built.env) == "cmake-test 3.29.0"
    assert built.tools["libtest"] == "1.0"  # the solver backtracked to the older dependency
    assert any(r.endswith("cmake-test-3.29.0-h0_0.conda") for r in http_channel.requests)
    lock = conda_lock.read(built.lock_path) if built.lock_path else None
    assert lock is not None
    assert all(p.url.startswith(http_channel.url) for p in lock.packages)


def test_tampered_local_package_is_refused(private_channel: Path, tmp_path: Path) -> None:
    spec = make_spec(tmp_path / "w1", ("cmake-test", "ninja-test"), (private_channel.as_uri(),))
    first = create_conda_env(spec, base_env(), cache_dir=tmp_path / "c1", offline=False)
    archive = conda_channel.find_archive(private_channel, "cmake-test", "3.30.0")
    archive.write_bytes(archive.read_bytes() + b"\0")  # still a valid zip, other bytes
    again = make_spec(tmp_path / "w2", (), (), lock=first.lock_path)
    with pytest.raises(IntegrityError) as err:
        create_conda_env(again, base_env(), cache_dir=tmp_path / "c2", offline=False)
    assert archive.name in err.value.message
    assert "sha256" in err.value.message
    assert env_dirs(tmp_path / "c2") == []  # nothing was installed


def test_tampered_http_package_is_refused(http_channel: conda_channel.HttpChannel,
                                          private_channel: Path, tmp_path: Path) -> None:
    spec = make_spec(tmp_path / "w1", ("cmake-test", "ninja-test"), (http_channel.url,))
    first = create_conda_env(spec, base_env(), cache_dir=tmp_path / "c1", offline=False)
    archive = conda_channel.find_archive(private_channel, "cmake-test", "3.30.0")
    archive.write_bytes(archive.read_bytes() + b"\0")
    again = make_spec(tmp_path / "w2", (), (), lock=first.lock_path)
    with pytest.raises(IntegrityError) as err:  # rattler's own download check, translated
        create_conda_env(again, base_env(), cache_dir=tmp_path / "c2", offline=False)
    assert "hash mismatch" in err.value.message
    assert env_dirs(tmp_path / "c2") == []


def test_verify_local_packages_counts_every_local_archive(channel: Path, tmp_path: Path) -> None:
    spec = make_spec(tmp_path / "w", FULL_SPECS, (channel.as_uri(),), cuda="12.8")
    built = create_conda_env(spec, base_env(), cache_dir=tmp_path / "c", offline=False)
    assert built.lock_path is not None
    lock = conda_lock.read(built.lock_path)
    assert verify_local_packages(lock) == len(lock.packages) == len(FULL_SPECS) + 1  # + libtest


CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, {src!r})
from torchbuild.env.conda import create_conda_env
from torchbuild.plan import EnvSpec
prefix = Path({work!r}) / "env"
spec = EnvSpec(backend="conda", prefix=prefix, python=prefix / "bin/python", python_version="3.11",
               lock=Path({lock!r}))
create_conda_env(spec, {{"PATH": "/usr/bin:/bin"}}, cache_dir=Path({cache!r}), offline=False)
"""


def test_interrupted_install_leaves_no_prefix(http_channel: conda_channel.HttpChannel,
                                              tmp_path: Path) -> None:
    spec = make_spec(tmp_path / "w1", ("cmake-test", "ninja-test", "mkl-test"),
                     (http_channel.url,))
    first = create_conda_env(spec, base_env(), cache_dir=tmp_path / "c1", offline=False)
    cache = tmp_path / "c2"  # a cold package cache: the child must download, and hangs
    http_channel.stall.add("mkl-test-2024.2-h0_0.conda")
    script = CHILD.format(src=str(SRC), work=str(tmp_path / "w2"), lock=str(first.lock_path),
                          cache=str(cache))
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not any(r.endswith("mkl-test-2024.2-h0_0.conda") for r in http_channel.requests):
            assert child.poll() is None, "the child finished without reaching the stalled package"
            assert time.monotonic() < deadline, "the child never asked for the stalled package"
            time.sleep(0.02)
        time.sleep(0.2)  # let its other downloads finish: the kill lands mid-install
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    left = env_dirs(cache)
    assert all(".partial-" in name for name in left), left  # at most debris, never a prefix
    assert first.lock_sha256 is not None
    assert not is_complete(
        cache / "envs" / first.lock_sha256[:20], first.lock_sha256)
    # The next run ignores and removes the debris, and completes.
    http_channel.stall.clear()
    http_channel.release.set()
    again = make_spec(tmp_path / "w3", (), (), lock=first.lock_path)
    built = create_conda_env(again, base_env(), cache_dir=cache, offline=False)
    assert env_dirs(cache) == [first.lock_sha256[:20]]
    assert command.capture(["cmake-test"], env=built.env) == "cmake-test 3.30.0"


def test_concurrent_runs_share_one_install(channel: Path, tmp_path: Path) -> None:
    spec = make_spec(tmp_path / "w0", FULL_SPECS, (channel.as_uri(),), cuda="12.8")
    first = create_conda_env(spec, base_env(), cache_dir=tmp_path / "c1", offline=False)
    cache = tmp_path / "c2"
    children = [subprocess.Popen([sys.executable, "-c", CHILD.format(
        src=str(SRC), work=str(tmp_path / f"w{i}"), lock=str(first.lock_path), cache=str(cache))],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in (1, 2)]
    outputs = [child.communicate(timeout=120)[0] for child in children]
    assert [c.returncode for c in children] == [0, 0], outputs
    assert first.lock_sha256 is not None
    assert env_dirs(cache) == [first.lock_sha256[:20]]  # one install, no debris
    assert sum("installed" in out for out in outputs) == 1
    assert sum("reusing conda env" in out for out in outputs) == 1


def test_debris_of_a_killed_install_is_removed(channel: Path, tmp_path: Path) -> None:
    """rattler downloads before it links, so a kill while linking is hard to time; plant what
    such a kill leaves (a half-linked partial prefix) and check the next run discards it."""
    spec = make_spec(tmp_path / "w", ("cmake-test",), (channel.as_uri(),))
    first = create_conda_env(spec, base_env(), cache_dir=tmp_path / "c1", offline=False)
    assert first.lock_sha256 is not None
    key = first.lock_sha256[:20]
    debris = tmp_path / "c2" / "envs" / f".{key}.partial-424242"
    (debris / "bin").mkdir(parents=True)
    (debris / "bin" / "cmake-test").write_text("#!/bin/sh\necho half-installed\n")
    again = make_spec(tmp_path / "w2", (), (), lock=first.lock_path)
    built = create_conda_env(again, base_env(), cache_dir=tmp_path / "c2", offline=False)
    assert env_dirs(tmp_path / "c2") == [key]
    assert command.capture(["cmake-test"], env=built.env) == "cmake-test 3.30.0"


def test_incomplete_prefix_is_not_trusted(channel: Path, tmp_path: Path) -> None:
    spec = make_spec(tmp_path / "w", ("cmake-test",), (channel.as_uri(),))
    first = create_conda_env(spec, base_env(), cache_dir=tmp_path / "c", offline=False)
    real = first.prefix.resolve()
    (real / "conda-meta" / "torchbuild-env.json").unlink()  # as if a copy was cut short
    (real / "bin" / "cmake-test").unlink()
    second = create_conda_env(spec, base_env(), cache_dir=tmp_path / "c", offline=False)
    assert command.capture(["cmake-test"], env=second.env) == "cmake-test 3.30.0"


# --------------------------------------------------------------------------------------------
# Solver errors


def test_conflicting_specs_give_one_readable_error(channel: Path, tmp_path: Path) -> None:
    spec = make_spec(tmp_path / "w", ("cmake-test >=3.30", "libtest <1.1", "ninja-test"),
                     (channel.as_uri(),))
    with pytest.raises(SolverError) as err:
        create_conda_env(spec, base_env(), cache_dir=tmp_path / "c", offline=False)
    text = err.value.render()
    assert "cmake-test >=3.30" in text
    assert "libtest <1.1" in text
    assert "Specs involved: cmake-test >=3.30; libtest <1.1." in text  # ninja-test is innocent
    assert "--cuda" in (err.value.fix or "")
    assert "--channel" in (err.value.fix or "")
    assert env_dirs(tmp_path / "c") == []


def test_unknown_package_and_missing_virtual_package(channel: Path, tmp_path: Path) -> None:
    spec = make_spec(tmp_path / "w", ("does-not-exist-test",), (channel.as_uri(),))
    with pytest.raises(SolverError, match="does-not-exist-test"):
        create_conda_env(spec, base_env(), cache_dir=tmp_path / "c", offline=False)
    gpu = make_spec(tmp_path / "w", ("needs-gpu-test",), (channel.as_uri(),), cuda="12.8")
    with pytest.raises(SolverError, match="__cuda") as err:
        create_conda_env(gpu, base_env(), cache_dir=tmp_path / "c", offline=False)
    assert "__cuda=12.8" in err.value.message  # the override used on GPU-less hosts is shown


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_channel_is_a_solver_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/nothing"
    spec = make_spec(tmp_path / "w", ("cmake-test",), (url,))
    with pytest.raises(SolverError) as err:
        create_conda_env(spec, base_env(), cache_dir=tmp_path / "c", offline=False)
    assert url in err.value.message
    with pytest.raises(OfflineError):
        create_conda_env(spec, base_env(), cache_dir=tmp_path / "c", offline=True)


def test_solver_subprocess_exits_cleanly(channel: Path, tmp_path: Path) -> None:
    """py-rattler can crash at interpreter exit after a solve (5-33 % of runs without the guard);
    torchbuild's atexit guard must make every run exit 0."""
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(SRC)!r})
        from torchbuild.env.conda import RattlerBackend
        lock = RattlerBackend(cache_dir=Path(sys.argv[1])).solve(
            ["cmake-test", "ninja-test"], [{channel.as_uri()!r}], None)
        print(len(lock.packages))
    """)
    codes = []
    for i in range(8):
        proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / f"c{i}")],
                              check=False, capture_output=True, text=True, timeout=60)
        codes.append((proc.returncode, proc.stdout.strip()))
    assert codes == [(0, "3")] * 8


# --------------------------------------------------------------------------------------------
# --install-into


def _tiny_wheel(out: Path) -> Path:
    wheel = out / "tinypkg_test-0.1.0-py3-none-any.whl"
    dist = "tinypkg_test-0.1.0.dist-info"
    files = {
        "tinypkg_test/__init__.py": "VERSION = '0.1.0'\n",
        f"{dist}/METADATA": "Metadata-Version: 2.1\nName: tinypkg-test\nVersion: 0.1.0\n"
                            "Requires-Dist: surely-not-on-any-index-xyz\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
    }
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
        zf.writestr(f"{dist}/RECORD", "".join(f"{n},,\n" for n in files) + f"{dist}/RECORD,,\n")
    return wheel


@pytest.fixture(scope="module")
def conda_like_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real interpreter with pip, laid out as a named conda env (conda-meta/ marks it)."""
    envs = tmp_path_factory.mktemp("envs")
    prefix = envs / "myenv"
    subprocess.run([sys.executable, "-m", "venv", str(prefix)], check=True, timeout=300)
    (prefix / "conda-meta").mkdir()
    (prefix / "conda-meta" / "history").write_text("")
    return prefix


def test_install_into_named_conda_env(conda_like_env: Path, tmp_path: Path) -> None:
    wheel = _tiny_wheel(tmp_path)
    env = base_env() | {"CONDA_ENVS_PATH": str(conda_like_env.parent)}
    # --no-deps: its dependency exists nowhere, and nothing is fetched.
    assert install_into_conda([wheel], "myenv", env) == ["tinypkg_test"]
    out = command.capture([str(conda_like_env / "bin/python"), "-c",
                           "import tinypkg_test; print(tinypkg_test.VERSION)"], env=env)
    assert out == "0.1.0"
    # By path as well, and again (a rebuilt wheel of the same version must replace the old one).
    assert install_into_conda([wheel], str(conda_like_env), base_env()) == ["tinypkg_test"]


def test_install_into_unknown_env_is_a_clear_error(tmp_path: Path) -> None:
    env = base_env() | {"CONDA_ENVS_PATH": str(tmp_path), "HOME": str(tmp_path)}
    with pytest.raises(EnvironmentSetupError, match="no conda environment named 'nope'"):
        install_into_conda([_tiny_wheel(tmp_path)], "nope", env)
    with pytest.raises(EnvironmentSetupError, match="not a conda environment"):
        install_into_conda([_tiny_wheel(tmp_path)], str(tmp_path), env)


# --------------------------------------------------------------------------------------------
# conda-exe backend: needs the user's binary; none exists on CI machines.

CONDA_EXE = next((shutil.which(n) for n in ("micromamba", "mamba", "conda") if shutil.which(n)),
                 None)


@pytest.mark.skipif(CONDA_EXE is None, reason="no micromamba/mamba/conda on PATH")
def test_conda_exe_backend_installs_the_same_lock(channel: Path, tmp_path: Path) -> None:
    from torchbuild.env.conda_exe import create_conda_exe_env

    spec = make_spec(tmp_path / "w1", ("cmake-test", "ninja-test"), (channel.as_uri(),))
    ours = create_conda_env(spec, base_env(), cache_dir=tmp_path / "c", offline=False)
    exe_spec = replace(make_spec(tmp_path / "w2", (), (), lock=ours.lock_path),
                       backend="conda-exe")
    theirs = create_conda_exe_env(exe_spec, base_env(), cache_dir=tmp_path / "c",
                                  conda_exe=CONDA_EXE)
    assert command.capture(["cmake-test"], env=theirs.env) == "cmake-test 3.30.0"
    assert theirs.lock_sha256 == ours.lock_sha256
    assert json.loads((theirs.prefix.resolve() / "conda-meta/torchbuild-env.json").read_text())


def test_conda_exe_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    from torchbuild.env.conda_exe import find_conda_exe
    from torchbuild.errors import MissingToolError

    with pytest.raises(MissingToolError) as err:
        find_conda_exe(None, {"PATH": str(tmp_path)})
    assert "micromamba, mamba or conda" in err.value.message
    assert "--conda-exe" in (err.value.fix or "")
    fake = tmp_path / "bin" / "micromamba"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'micromamba 2.3.0'\n")
    fake.chmod(0o755)
    assert find_conda_exe(None, {"PATH": str(fake.parent)}) == str(fake)


def test_rattler_backend_is_reusable_across_solves(channel: Path, tmp_path: Path) -> None:
    backend = RattlerBackend(cache_dir=tmp_path / "c")
    old = backend.solve(["cmake-test 3.29.*"], [channel.as_uri()], None)
    new = backend.solve(["cmake-test"], [channel.as_uri()], None)
    assert {p.name: p.version for p in old.packages}["libtest"] == "1.0"
    assert {p.name: p.version for p in new.packages}["cmake-test"] == "3.30.0"


def test_cuda_env_with_magma_nccl_and_codecs_solves_installs_activates(tmp_path: Path) -> None:
    """The real conda.toml's CUDA 13.0 specs for torch 2.13.0 (+ torchvision), solved and
    installed from stand-ins laid out like conda-forge's packages: MAGMA, NCCL and the math
    libraries land where torch's CMake looks, and activation points torch at them."""
    recipes = Path(__file__).resolve().parents[2] / "recipes"
    specs, _ = conda_specs_for("2.13.0", "13.0", "3.12", recipe_dir=recipes, vision=True)
    names = {s.split()[0] for s in specs}
    assert {"libmagma-devel", "nccl", "cusparselt", "libcudss-dev", "libnvjpeg-dev"} <= names
    channel = tmp_path / "chan"
    pkgs = [conda_channel.stand_in(n, "13.0" if n == "cuda-version" else "1.0",
                                   ("__cuda >=13",) if n == "cuda-version" else ())
            for n in sorted(names)]
    conda_channel.build_channel(channel, tuple(pkgs))
    relaxed = tuple(s.split()[0] if not s.startswith("cuda-version") else s for s in specs)
    spec = make_spec(tmp_path / "work", relaxed, (channel.as_uri(),), cuda="13.0")
    env = create_conda_env(spec, base_env(), cache_dir=tmp_path / "cache", offline=False).env
    real = spec.prefix.resolve()
    assert env["MAGMA_HOME"] == str(real) and (real / "include" / "magma_v2.h").is_file()
    assert env["NCCL_ROOT_DIR"] == str(real) and (real / "lib" / "libnccl.so").is_file()
    assert env["CUDA_TOOLKIT_ROOT_DIR"] == str(real)  # where FindCUSPARSELT/FindCUDSS look
    assert (real / "include" / "cusparseLt.h").is_file()
    assert (real / "include" / "cudss.h").is_file()
    assert (Path(env["CPATH"].split(os.pathsep)[0]) / "nvjpeg.h").is_file()
    assert command.capture([real / "bin" / "libpng-config", "--I_opts"], env=env) == \
        f"-I{real}/include/libpng16"
    # The build stage's entry (env/create.py) also lays out the classic CUDA_HOME view the
    # vision step gets: torchvision's nvjpeg check looks at $CUDA_HOME/include/nvjpeg.h.
    create(spec, base_env(), cache_dir=tmp_path / "cache", offline=False)
    view = cuda_home_view(spec.prefix)
    assert (view / "include" / "nvjpeg.h").is_file()
    assert (view / "lib64" / "libnvjpeg.so").is_file()
    assert command.capture([view / "bin" / "nvcc"], env=env).endswith("V13.0.88")


def test_shell_text_in_the_cache_dir_never_runs(channel: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue #14: the activation ran through `bash -c` with the prefix inside the script text, so
    a `$(...)` in --cache-dir executed. The prefix is an argument now; the env still activates."""
    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "c$(touch pwned)`touch pwned2`"
    spec = make_spec(tmp_path / "work", FULL_SPECS, (channel.as_uri(),), cuda="12.8")
    env = create_conda_env(spec, base_env(), cache_dir=cache, offline=False).env
    real = spec.prefix.resolve()
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()
    assert env["CONDA_PREFIX"] == str(real) and str(cache) in str(real)
    assert env["PATH"].split(os.pathsep)[0] == str(real / "bin")
    assert env["TEST_GXX_ACTIVATED"] == "1"


def test_package_paths_outside_the_prefix_are_refused(tmp_path: Path) -> None:
    """Issue #14: a package whose paths.json has `../` entries must be refused, clearly."""
    channel = tmp_path / "evil-channel"
    conda_channel.build_channel(channel, (conda_channel.Pkg(
        "evil", "1.0", {"../../escaped.txt": "pwned\n", "share/ok.txt": "ok\n"}),))
    spec = make_spec(tmp_path / "work", ("evil",), (channel.as_uri(),))
    with pytest.raises(IntegrityError) as err:
        create_conda_env(spec, base_env(), cache_dir=tmp_path / "cache", offline=False)
    assert "outside the environment's prefix" in err.value.message
    assert "../../escaped.txt" in err.value.message
    assert env_dirs(tmp_path / "cache") == []  # nothing was installed
    assert not (tmp_path / "cache" / "escaped.txt").exists()
