"""cuobjdump on real CUDA binaries: compiled here with nvcc, packed in a wheel, installed, listed.

Needs nvcc (skipped without one) and cuobjdump (``pip install nvidia-cuda-cuobjdump``). No GPU.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from torchbuild.cc import parse_cc
from torchbuild.command import capture
from torchbuild.errors import MissingToolError
from torchbuild.proof.cubin import (
    coverage,
    find_cuobjdump,
    list_device_code,
    may_have_device_code,
    scan,
)
from torchbuild.proof.verify import (
    KernelImageError,
    VerifyRequest,
    check_kernels,
    make_throwaway_env,
    run_probe,
)

pytestmark = pytest.mark.integration

KERNEL = r"""
extern "C" __global__ void add_one(float* x, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] += 1.0f;
}
extern "C" void launch(float* x, int n) { add_one<<<(n + 255) / 256, 256>>>(x, n); }
"""
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
GENCODE = {
    "sm86": ["-gencode", "arch=compute_86,code=sm_86"],
    "sm90ptx": ["-gencode", "arch=compute_90,code=[sm_90,compute_90]"],
}


def _pypi_nvcc() -> str | None:
    """nvcc from the nvidia-cuda-nvcc wheel (with nvidia-cuda-crt and -runtime): CI's compiler."""
    try:
        files = metadata.distribution("nvidia-cuda-nvcc").files or []
    except metadata.PackageNotFoundError:
        return None
    found = [f for f in files if f.name == "nvcc" and f.parent.name == "bin"]
    return str(found[0].locate()) if found else None


def _nvcc() -> str:
    for candidate in (os.environ.get("NVCC"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc",
                      _pypi_nvcc()):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("nvcc is not installed (pip install nvidia-cuda-nvcc nvidia-cuda-crt "
                "nvidia-cuda-runtime)")


def _wheel(tmp: Path, libs: list[Path]) -> Path:
    """A platform wheel holding the libraries, RECORD hashes included, as pip expects."""
    path = tmp / "cudakern-1.0-py3-none-linux_x86_64.whl"
    info = "cudakern-1.0.dist-info"
    files = {f"cudakern/{lib.name}": lib.read_bytes() for lib in libs}
    files["cudakern/__init__.py"] = b""
    files[f"{info}/METADATA"] = b"Metadata-Version: 2.1\nName: cudakern\nVersion: 1.0\n"
    files[f"{info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
                              b"Tag: py3-none-linux_x86_64\n")
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


@pytest.fixture(scope="module")
def libs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    nvcc = _nvcc()
    tmp = tmp_path_factory.mktemp("cuda")
    src = tmp / "kernel.cu"
    src.write_text(KERNEL)
    out = {}
    for name, flags in {**GENCODE, "fat": GENCODE["sm86"] + GENCODE["sm90ptx"]}.items():
        out[name] = tmp / f"lib{name}.so"
        capture([nvcc, "-shared", "-Xcompiler", "-fPIC", *flags, "-o", str(out[name]), str(src)],
                env={**ENV, "PATH": f"{Path(nvcc).parent}:{ENV['PATH']}"}, timeout=300)
    host = tmp / "libhost.so"
    (tmp / "host.c").write_text("int host(void) { return 1; }\n")
    capture(["gcc", "-shared", "-fPIC", "-o", str(host), str(tmp / "host.c")], env=ENV)
    out["host"] = host
    return out


def test_find_cuobjdump_order(tmp_path: Path) -> None:
    packaged = find_cuobjdump({"PATH": str(tmp_path)})  # not on PATH: the PyPI wheel's copy
    assert packaged.name == "cuobjdump"
    assert os.access(packaged, os.X_OK)
    fake_home = tmp_path / "cuda"
    (fake_home / "bin").mkdir(parents=True)
    shutil.copy2(packaged, fake_home / "bin" / "cuobjdump")
    assert find_cuobjdump({"PATH": str(tmp_path), "CUDA_HOME": str(fake_home)}) == (
        fake_home / "bin" / "cuobjdump")
    assert find_cuobjdump({"PATH": str(fake_home / "bin")}) == fake_home / "bin" / "cuobjdump"
    assert find_cuobjdump({"CUOBJDUMP": str(packaged), "PATH": str(fake_home / "bin")}) == packaged
    with pytest.raises(MissingToolError):
        find_cuobjdump({"CUOBJDUMP": str(tmp_path / "nope")})


def test_lists_exactly_what_was_compiled(libs: dict[str, Path]) -> None:
    tool = find_cuobjdump(ENV)
    sm86 = list_device_code(libs["sm86"], tool)
    sm90 = list_device_code(libs["sm90ptx"], tool)
    fat = list_device_code(libs["fat"], tool)
    assert (sm86.sass, sm86.ptx) == ({"sm_86"}, set())
    assert (sm90.sass, sm90.ptx) == ({"sm_90"}, {"compute_90"})
    assert (fat.sass, fat.ptx) == ({"sm_86", "sm_90"}, {"compute_90"})


def test_host_only_files_are_skipped_without_running_cuobjdump(libs: dict[str, Path]) -> None:
    assert not may_have_device_code(libs["host"])
    assert may_have_device_code(libs["sm86"])
    assert scan([libs["host"], libs["sm86"]], find_cuobjdump(ENV))[0].path == libs["sm86"]
    assert len(scan([libs["host"]], find_cuobjdump(ENV))) == 0


def test_coverage_per_arch(libs: dict[str, Path]) -> None:
    codes = scan([libs["fat"]], find_cuobjdump(ENV))
    by_arch = {c.arch: c for c in coverage(codes, parse_cc("8.6 9.0+PTX 10.0"))}
    assert by_arch["8.6"].ok
    assert by_arch["8.6"].ptx is None
    assert by_arch["9.0+PTX"].ok
    assert by_arch["9.0+PTX"].ptx is True
    assert not by_arch["10.0"].ok
    assert by_arch["10.0"].lacking == ("libfat.so: sm_100",)
    # PTX asked for where only SASS was built:
    only_sass = coverage(scan([libs["sm86"]], find_cuobjdump(ENV)), parse_cc("8.6+PTX"))[0]
    assert only_sass.sass
    assert only_sass.ptx is False
    assert not only_sass.ok


def test_verify_reads_the_installed_wheel(libs: dict[str, Path], tmp_path: Path) -> None:
    wheel = _wheel(tmp_path, [libs["sm86"], libs["sm90ptx"], libs["host"]])
    python = make_throwaway_env(Path(sys.executable), [wheel], tmp_path / "env", ENV)
    probe = run_probe(python, ["cudakern"], companions=(), smoke=False, work_dir=tmp_path,
                      env=ENV)
    installed = sorted(Path(p).name for p in probe["binaries"]["cudakern"]["value"])
    assert installed == ["libhost.so", "libsm86.so", "libsm90ptx.so"]

    ok_req = VerifyRequest(cuda="13.0", archs=parse_cc("8.6"))
    checks, codes, _ = check_kernels(ok_req, probe, ENV)
    assert sorted(c.path.name for c in codes) == ["libsm86.so", "libsm90ptx.so"]
    # 8.6 is only in one of the two libraries: the other would fail at runtime on an 8.6 GPU.
    (check,) = checks
    assert check.status == "FAILED"
    assert "libsm90ptx.so: sm_86" in check.found
    assert check.error is KernelImageError

    (tmp_path / "single").mkdir()
    single = _wheel(tmp_path / "single", [libs["sm90ptx"]])
    python2 = make_throwaway_env(Path(sys.executable), [single], tmp_path / "env2", ENV)
    probe2 = run_probe(python2, ["cudakern"], companions=(), smoke=False, work_dir=tmp_path,
                       env=ENV)
    checks2, _, cov = check_kernels(VerifyRequest(archs=parse_cc("9.0+PTX 8.9")), probe2, ENV)
    assert {c.name: c.status for c in checks2} == {"kernels 8.9": "FAILED",
                                                   "kernels 9.0+PTX": "ok"}
    assert [c.ok for c in cov] == [False, True]
