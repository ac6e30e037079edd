"""The configure audit against real CMake runs of a small project that behaves like PyTorch's.

The project below finds (or misses) its dependencies with CMake's own find_* commands in a prefix
the test fills, and on a miss does what PyTorch's cmake/Dependencies.cmake does: warns, turns the
option off in the cache with FORCE, and falls back (BLAS stays "MKL" in the cache but BLAS_INFO says
eigen). The arch flags come from TORCH_CUDA_ARCH_LIST in the environment, as in
cmake/public/cuda.cmake, and the Summary block is printed like cmake/Summary.cmake.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from torchbuild.cc import parse_cc
from torchbuild.command import run
from torchbuild.errors import ConfigureAuditError, UsageError
from torchbuild.knowledge.configure import configure_only_argv
from torchbuild.logger import log as logger
from torchbuild.proof.cmake_audit import (
    AuditReport,
    RequestedFeatures,
    audit_cmake_cache,
    audit_torch_configure,
    read_cmake_cache,
)

pytestmark = pytest.mark.integration

CMAKELISTS = r"""
cmake_minimum_required(VERSION 3.18)
project(fake_torch LANGUAGES NONE)

macro(caffe2_update_option variable value)
  get_property(__help_string CACHE ${variable} PROPERTY HELPSTRING)
  set(${variable} ${value} CACHE BOOL ${__help_string} FORCE)
endmacro()

option(USE_CUDA "Use CUDA" ON)
option(USE_CUDNN "Use cuDNN" ON)
option(USE_MAGMA "Use MAGMA" ON)
option(USE_NCCL "Use NCCL" ON)
option(USE_DISTRIBUTED "Use distributed" ON)
option(USE_NUMPY "Use NumPy" ON)
option(USE_CUSPARSELT "Use cuSPARSELt" ON)
option(USE_CUDSS "Use cuDSS" ON)
option(USE_CUFILE "Use cuFile" OFF)
option(USE_SYSTEM_NCCL "Use system-wide NCCL" OFF)
set(BLAS "MKL" CACHE STRING "Selected BLAS library")

message(STATUS "Trying to find preferred BLAS backend of choice: " ${BLAS})
find_library(MKL_LIBRARY mkl_intel_lp64 PATHS ${DEPS}/lib NO_DEFAULT_PATH)
if(MKL_LIBRARY)
  message(STATUS "MKL libraries: ${MKL_LIBRARY}")
  set(BLAS_INFO "mkl")
else()
  message(STATUS "Library mkl_intel_lp64: not found")
  message(WARNING "MKL could not be found. Defaulting to Eigen")
  set(BLAS_INFO "eigen")
endif()

if(USE_CUDA)
  find_program(CUDA_NVCC_EXECUTABLE nvcc PATHS ${DEPS}/bin NO_DEFAULT_PATH)
  if(NOT CUDA_NVCC_EXECUTABLE)
    message(STATUS "Could NOT find CUDA (missing: CUDA_NVCC_EXECUTABLE)")
    message(WARNING "PyTorch: CUDA cannot be found. Depending on whether you are building "
                    "PyTorch or a PyTorch dependent library, the next warning / error will "
                    "give you more info.")
    message(STATUS "Not using CUDA")
    caffe2_update_option(USE_CUDA OFF)
  else()
    message(STATUS "Caffe2: CUDA nvcc is: ${CUDA_NVCC_EXECUTABLE}")
  endif()
endif()

if(USE_CUDA)
  set(TORCH_CUDA_ARCH_LIST "$ENV{TORCH_CUDA_ARCH_LIST}" CACHE STRING "arch list")
  set(NVCC_FLAGS_EXTRA "")
  foreach(arch IN LISTS TORCH_CUDA_ARCH_LIST)
    string(REPLACE "+PTX" "" num "${arch}")
    string(REPLACE "." "" num "${num}")
    list(APPEND NVCC_FLAGS_EXTRA "-gencode" "arch=compute_${num},code=sm_${num}")
    if(arch MATCHES "\\+PTX$")
      list(APPEND NVCC_FLAGS_EXTRA "-gencode" "arch=compute_${num},code=compute_${num}")
    endif()
  endforeach()
  message(STATUS "Added CUDA NVCC flags for: ${NVCC_FLAGS_EXTRA}")

  find_path(CUDNN_INCLUDE_PATH cudnn_version.h PATHS ${DEPS}/include NO_DEFAULT_PATH)
  find_library(CUDNN_LIBRARY_PATH cudnn PATHS ${DEPS}/lib NO_DEFAULT_PATH)
  if(NOT CUDNN_INCLUDE_PATH OR NOT CUDNN_LIBRARY_PATH)
    message(STATUS "Could NOT find CUDNN (missing: CUDNN_LIBRARY_PATH CUDNN_INCLUDE_PATH)")
    message(WARNING "Cannot find cuDNN library. Turning the option off")
    caffe2_update_option(USE_CUDNN OFF)
  else()
    message(STATUS "Found cuDNN: v9.1.0  (include: ${CUDNN_INCLUDE_PATH})")
  endif()

  find_path(MAGMA_INCLUDE_DIR magma_v2.h PATHS ${DEPS}/include NO_DEFAULT_PATH)
  if(NOT MAGMA_INCLUDE_DIR)
    message(STATUS "Could NOT find MAGMA")
    message(STATUS "MAGMA not found. Compiling without MAGMA support")
    caffe2_update_option(USE_MAGMA OFF)
  endif()

  # cmake/public/cuda.cmake (v2.6.0): cuSPARSELt is forced off in the cache, cuDSS only with a
  # plain set() -- the cache keeps saying ON and the Summary tells the truth.
  find_path(CUSPARSELT_INCLUDE_PATH cusparseLt.h PATHS ${DEPS}/include NO_DEFAULT_PATH)
  if(USE_CUSPARSELT AND NOT CUSPARSELT_INCLUDE_PATH)
    message(WARNING "Cannot find cuSPARSELt library. Turning the option off")
    caffe2_update_option(USE_CUSPARSELT OFF)
  endif()
  find_path(CUDSS_INCLUDE_PATH cudss.h PATHS ${DEPS}/include NO_DEFAULT_PATH)
  if(USE_CUDSS AND NOT CUDSS_INCLUDE_PATH)
    message(WARNING "Cannot find CUDSS library. Turning the option off")
    set(USE_CUDSS OFF)
  endif()

  find_path(NCCL_INCLUDE_DIR nccl.h PATHS ${DEPS}/include NO_DEFAULT_PATH)
  if(NOT NCCL_INCLUDE_DIR)
    message(WARNING "Not compiling with NCCL support. Suppress this warning with -DUSE_NCCL=OFF.")
    caffe2_update_option(USE_NCCL OFF)
  endif()
else()
  caffe2_update_option(USE_CUDNN OFF)
  caffe2_update_option(USE_MAGMA OFF)
  caffe2_update_option(USE_NCCL OFF)
endif()

message(STATUS "")
message(STATUS "******** Summary ********")
message(STATUS "  BLAS                  : ${BLAS_INFO}")
message(STATUS "  USE_CUDA              : ${USE_CUDA}")
message(STATUS "  USE_CUDNN             : ${USE_CUDNN}")
message(STATUS "  USE_MAGMA             : ${USE_MAGMA}")
message(STATUS "  USE_NCCL              : ${USE_NCCL}")
message(STATUS "    USE_CUSPARSELT      : ${USE_CUSPARSELT}")
message(STATUS "    USE_CUDSS           : ${USE_CUDSS}")
message(STATUS "    USE_CUFILE          : ${USE_CUFILE}")
message(STATUS "  USE_DISTRIBUTED       : ${USE_DISTRIBUTED}")
"""

EVERYTHING = ("bin/nvcc", "lib/libmkl_intel_lp64.so", "include/cudnn_version.h",
              "lib/libcudnn.so", "include/magma_v2.h", "include/nccl.h", "include/cusparseLt.h",
              "include/cudss.h")


def _cmake() -> str:
    here = Path(sys.executable).parent / "cmake"
    found = str(here) if here.exists() else shutil.which("cmake")
    if found is None:
        pytest.skip("cmake is not installed (pip install cmake)")
    return found


Configure = Callable[..., tuple[Path, Path]]


@pytest.fixture
def configure(tmp_path: Path) -> Configure:
    """Configure the fake project with the given dependency files present; (build dir, log)."""
    def _configure(present: tuple[str, ...] = EVERYTHING, arch_list: str = "8.6",
                   defs: tuple[str, ...] = ()) -> tuple[Path, Path]:
        src, build, deps = tmp_path / "src", tmp_path / "build", tmp_path / "deps"
        src.mkdir()
        (src / "CMakeLists.txt").write_text(CMAKELISTS)
        for rel in present:
            f = deps / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text("")
            f.chmod(0o755)
        env = {"PATH": "/usr/bin:/bin", "TORCH_CUDA_ARCH_LIST": arch_list}
        log = tmp_path / "configure.log"
        run([_cmake(), "-S", src, "-B", build, f"-DDEPS={deps}", *defs], env=env, log_path=log)
        return build, log
    return _configure


def _cuda_request(cc: str = "8.6") -> RequestedFeatures:
    return RequestedFeatures.from_step_env({}, cpu=False, archs=parse_cc(cc), machine="x86_64")


def test_complete_configure_passes_and_reports_every_feature(configure: Configure) -> None:
    build, log = configure()
    report = audit_cmake_cache(build, _cuda_request(), (), configure_log=log)
    assert isinstance(report, AuditReport)
    assert [c.name for c in report.checks] == [
        "cuda", "cudnn", "magma", "mkl", "nccl", "distributed", "numpy", "arch"]
    assert report.failures == []
    assert all(c.ok for c in report.checks)
    assert report.to_json()["ok"] is True


def test_missing_cudnn_stops_with_the_cmake_lines_that_explain_it(configure: Configure) -> None:
    present = tuple(p for p in EVERYTHING if "cudnn" not in p)
    build, log = configure(present)
    assert read_cmake_cache(build / "CMakeCache.txt")["USE_CUDNN"] == "OFF"
    with pytest.raises(ConfigureAuditError) as err:
        audit_cmake_cache(build, _cuda_request(), (), configure_log=log)
    text = " ".join(err.value.message.split())  # CMake re-flows warning text
    assert "cudnn was requested but CMake configured USE_CUDNN=OFF" in text
    assert "Cannot find cuDNN library. Turning the option off" in text
    assert "Could NOT find CUDNN (missing: CUDNN_LIBRARY_PATH CUDNN_INCLUDE_PATH)" in text
    assert "magma" not in text  # only what is actually off is blamed
    assert err.value.exit_code == 13
    assert "--allow-missing cudnn" in (err.value.fix or "")


def test_allow_missing_accepts_a_known_downgrade(configure: Configure) -> None:
    present = tuple(p for p in EVERYTHING if "magma" not in p and "nccl" not in p)
    build, log = configure(present)
    report = audit_cmake_cache(build, _cuda_request(), ("MAGMA", "nccl"), configure_log=log)
    assert sorted(c.name for c in report.downgrades) == ["magma", "nccl"]
    assert report.failures == []
    magma = next(r for r in report.rows() if r[0] == "magma")
    assert magma[1:3] == ["on (default)", "USE_MAGMA=OFF (allowed missing)"]
    assert "magma" in magma[3].lower()   # the configure log's own line is the evidence


def test_mkl_fallback_is_caught_although_the_cache_still_says_mkl(configure: Configure) -> None:
    present = tuple(p for p in EVERYTHING if "mkl" not in p)
    build, log = configure(present)
    assert read_cmake_cache(build / "CMakeCache.txt")["BLAS"] == "MKL"
    with pytest.raises(ConfigureAuditError) as err:
        audit_cmake_cache(build, _cuda_request(), (), configure_log=log)
    text = " ".join(err.value.message.split())
    assert "MKL could not be found. Defaulting to Eigen" in text
    assert "BLAS_INFO=eigen" in text


def test_no_nvcc_turns_cuda_off_and_every_cuda_feature_is_blamed(configure: Configure) -> None:
    present = tuple(p for p in EVERYTHING if p != "bin/nvcc")
    build, log = configure(present)
    with pytest.raises(ConfigureAuditError) as err:
        audit_cmake_cache(build, _cuda_request(), (), configure_log=log)
    text = " ".join(err.value.message.split())
    assert "cuda was requested but CMake configured USE_CUDA=OFF" in text
    assert "Could NOT find CUDA (missing: CUDA_NVCC_EXECUTABLE)" in text
    for name in ("cudnn", "magma", "nccl", "arch"):
        assert f"{name} was requested" in text


def test_arch_flags_must_cover_the_requested_archs(configure: Configure) -> None:
    build, log = configure(arch_list="8.0;9.0")
    with pytest.raises(ConfigureAuditError, match="missing sm_86") as err:
        audit_cmake_cache(build, _cuda_request("8.6"), (), configure_log=log)
    assert "Added CUDA NVCC flags for: -gencode;arch=compute_80,code=sm_80" in err.value.message


def test_ptx_is_required_when_asked_for(configure: Configure) -> None:
    build, log = configure(arch_list="9.0")
    with pytest.raises(ConfigureAuditError, match="missing compute_90"):
        audit_cmake_cache(build, _cuda_request("9.0+PTX"), (), configure_log=log)


def test_ptx_present_passes(configure: Configure) -> None:
    build, log = configure(arch_list="8.6;9.0+PTX")
    report = audit_cmake_cache(build, _cuda_request("8.6 9.0+PTX"), (), configure_log=log)
    arch = next(c for c in report.checks if c.name == "arch")
    assert arch.ok
    assert "compute_90" in arch.found
    assert "sm_86" in arch.found


def test_cpu_request_ignores_cuda_features(configure: Configure) -> None:
    build, log = configure(("lib/libmkl_intel_lp64.so",))
    request = RequestedFeatures.from_step_env({"USE_CUDA": "0"}, cpu=True, archs=(),
                                              machine="x86_64")
    report = audit_cmake_cache(build, request, (), configure_log=log)
    assert [c.name for c in report.checks] == ["mkl", "distributed", "numpy"]


def test_step_env_that_turns_a_feature_off_is_not_blamed(configure: Configure,
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    # The logger keeps the streams it was created with; point it at the captured ones.
    monkeypatch.setattr(logger, "out", sys.stdout)
    monkeypatch.setattr(logger, "err", sys.stderr)
    present = tuple(p for p in EVERYTHING if "magma" not in p and "nccl" not in p)
    build, log = configure(present)
    report = audit_torch_configure(build.parent, {"USE_MAGMA": "0"}, cpu=False,
                                   archs=parse_cc("8.6"), machine="x86_64",
                                   allow_missing=("nccl",), configure_log=log)
    assert "magma" not in [c.name for c in report.checks]
    assert [c.name for c in report.downgrades] == ["nccl"]
    captured = capsys.readouterr()
    assert "USE_NCCL=OFF (allowed missing)" in captured.out
    assert "nccl is off (USE_NCCL=OFF)" in captured.err


def test_unknown_allow_missing_name_is_a_usage_error(configure: Configure) -> None:
    build, log = configure()
    with pytest.raises(UsageError, match="cudann"):
        audit_cmake_cache(build, _cuda_request(), ("cudann",), configure_log=log)


def test_missing_cache_is_a_configure_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigureAuditError, match="CMakeCache.txt does not exist"):
        audit_cmake_cache(tmp_path, _cuda_request(), ())


@pytest.mark.parametrize(("tag", "argv_tail", "env"), [
    ("2.4.1", ("setup.py", "build", "--cmake-only"), {}),
    ("2.7.1", ("setup.py", "build", "--cmake-only"), {}),
    ("2.8.0", ("setup.py", "build"), {"CMAKE_ONLY": "1"}),
    ("2.13.0", ("setup.py", "build"), {"CMAKE_ONLY": "1"}),
])
def test_configure_only_command_per_era(tag: str, argv_tail: tuple[str, ...],
                                        env: dict[str, str]) -> None:
    cmd = configure_only_argv(tag, "/env/bin/python")
    assert cmd.argv == ("/env/bin/python", *argv_tail)
    assert dict(cmd.env) == env


# The packager's switches (plan.packaged_switches): USE_SYSTEM_NCCL and the CUDA math libraries.
PACKAGED = {"USE_SYSTEM_NCCL": "1", "USE_CUSPARSELT": "1", "USE_CUDSS": "1", "USE_CUFILE": "1"}


def _packaged_request() -> RequestedFeatures:
    return RequestedFeatures.from_step_env(PACKAGED, cpu=False, archs=parse_cc("8.6"),
                                           machine="x86_64")


def test_packaged_libraries_are_checked_when_asked_for(configure: Configure) -> None:
    build, log = configure(defs=("-DUSE_SYSTEM_NCCL=ON", "-DUSE_CUFILE=ON"))
    report = audit_cmake_cache(build, _packaged_request(), (), configure_log=log)
    assert [c.name for c in report.checks][-3:] == ["cusparselt", "cudss", "cufile"]
    assert all(c.ok for c in report.checks)
    assert "USE_SYSTEM_NCCL=ON" in next(c.found for c in report.checks if c.name == "nccl")


def test_cudss_off_in_the_summary_is_caught_although_the_cache_says_on(
        configure: Configure) -> None:
    present = tuple(p for p in EVERYTHING if "cudss" not in p)
    build, log = configure(present, defs=("-DUSE_SYSTEM_NCCL=ON", "-DUSE_CUFILE=ON"))
    assert read_cmake_cache(build / "CMakeCache.txt")["USE_CUDSS"] == "ON"
    with pytest.raises(ConfigureAuditError) as err:
        audit_cmake_cache(build, _packaged_request(), (), configure_log=log)
    text = " ".join(err.value.message.split())
    assert "cudss was requested but CMake configured USE_CUDSS=OFF" in text
    assert "Cannot find CUDSS library. Turning the option off" in text
    assert "cusparselt was requested" not in text
    assert "libcudss-dev" in (err.value.fix or "")
    report = audit_cmake_cache(build, _packaged_request(), ("cudss",), configure_log=log)
    assert [c.name for c in report.downgrades] == ["cudss"]


def test_bundled_nccl_where_the_system_one_was_asked_for_is_caught(configure: Configure) -> None:
    build, log = configure(defs=("-DUSE_CUFILE=ON",))   # USE_SYSTEM_NCCL stays OFF
    with pytest.raises(ConfigureAuditError, match="USE_SYSTEM_NCCL=OFF"):
        audit_cmake_cache(build, _packaged_request(), (), configure_log=log)


def test_codec_names_are_accepted_by_allow_missing(configure: Configure) -> None:
    build, log = configure()
    report = audit_cmake_cache(build, _cuda_request(), ("jpeg", "nvjpeg"), configure_log=log)
    assert report.failures == []
