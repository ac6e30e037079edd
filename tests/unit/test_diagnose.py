"""Each failure signature against the error text users actually posted (reference/pain.md §1-2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchbuild.build.diagnose import (
    SIGNATURES,
    diagnose,
    explain_failure,
    first_errors,
    is_error_line,
    render,
)

_BDIST_WHEEL_LOG = [
    "Processing /tmp/vfix",
    "  Preparing metadata (pyproject.toml): started",
    "  Running command Preparing metadata (pyproject.toml)",
    ("  /tmp/cmp-tv/lib/python3.11/site-packages/torch/_subclasses/functional_tensor.py:368: "
     "UserWarning: Failed to initialize NumPy: No module named 'numpy' (Triggered internally at "
     "/__w/pytorch/pytorch/torch/csrc/utils/tensor_numpy.cpp:84.)"),
    "  running dist_info",
    "  creating '/tmp/pip-modern-metadata-luzbt161/torchvision-0.99.0.dist-info'",
    "  error: invalid command 'bdist_wheel'",
    "  error: subprocess-exited-with-error",
    "  × Preparing metadata (pyproject.toml) did not run successfully.",
    "  │ exit code: 1",
    "error: metadata-generation-failed",
]
_CAFFE2_CUDA_LOG = [
    "-- Detecting CXX compile features - done",
    ("CMake Error at /venv/lib/python3.11/site-packages/torch/share/cmake/Caffe2/"
     "Caffe2Config.cmake:90 (message):"),
    "  Your installed Caffe2 version uses CUDA but I cannot find the CUDA",
    "  libraries.  Please set the proper CUDA prefixes and / or install CUDA.",
    "Call Stack (most recent call first):",
    ("  /venv/lib/python3.11/site-packages/torch/share/cmake/Torch/TorchConfig.cmake:68 "
     "(find_package)"),
    "  CMakeLists.txt:3 (find_package)",
    "-- Configuring incomplete, errors occurred!",
]
# torchvision's setup.py: warnings.warn("Building torchvision without WEBP support") (v0.21.0)
_WEBP_WARNING = [
    "/w/src/vision/setup.py:362: UserWarning: Building torchvision without WEBP support",
    '  warnings.warn("Building torchvision without WEBP support")',
]

# (FM id, log lines as quoted in pain.md); `…` elisions kept: users' paths differ anyway.
REAL_TEXTS: list[tuple[str, list[str]]] = [
    ("FM-01", ["c++: fatal error: Killed signal terminated program cc1plus",
               "compilation terminated."]),
    ("FM-01", ["c++: internal compiler error: Killed (program cc1plus)"]),
    ("FM-01", ["nvcc error   : 'cicc' died due to signal 9 (Kill signal)"]),
    ("FM-01", ["virtual memory exhausted: Cannot allocate memory"]),
    ("FM-02", [
        ("FAILED: caffe2/CMakeFiles/torch_cuda.dir/__/aten/src/ATen/native/transformers/cuda/"
        "flash_attn/kernels/flash_bwd_hdim256_bf16_sm80.cu.o"),
        "nvcc error   : 'cicc' died due to signal 9 (Kill signal)",
    ]),
    ("FM-05", [
        ("…/crt/host_config.h:132:2: error: #error -- unsupported GNU version! gcc versions later "
        "than 12 are not supported! The nvcc flag '-allow-unsupported-compiler' can be used to "
        "override this version check; …"),
    ]),
    ("FM-06", [
        "third_party/gloo/gloo/types.h:66:11: error: 'uint8_t' does not name a type",
        ("third_party/gloo/gloo/types.h:13:1: note: 'uint8_t' is defined in header '<cstdint>'; "
        "did you forget to '#include <cstdint>'?"),
    ]),
    ("FM-07", ["-- Not using CUDA"]),
    ("FM-07", ["Could NOT find CUDA (missing: CUDA_NVCC_EXECUTABLE)"]),
    ("FM-07", ["Cannot find cuDNN library.  Turning the option off"]),
    ("FM-07", [("NumPy could not be found. Not building with NumPy. Suppress this warning with "
               "-DUSE_NUMPY=OFF")]),
    ("FM-10", [
        ("CMake Error at cmake/Modules_CUDA_fix/upstream/FindCUDA/select_compute_arch.cmake:225 "
        "(message): Unknown CUDA Architecture Name 9.0a in CUDA_SELECT_NVCC_ARCH_FLAGS"),
    ]),
    ("FM-10", ["ValueError: Unknown CUDA arch (8.9) or GPU not supported"]),
    ("FM-10", ["-- Automatic GPU detection failed. Building for common architectures."]),
    ("FM-11", ["nvcc fatal   : Unsupported gpu architecture 'compute_89'"]),
    ("FM-12", [("RuntimeError: CUDA error: no kernel image is available for execution on the "
               "device")]),
    ("FM-12", [
        ("NVIDIA GeForce RTX 5090 with CUDA capability sm_120 is not compatible with the current "
        "PyTorch installation. The current PyTorch install supports CUDA capabilities sm_50 … "
        "sm_90."),
    ]),
    ("FM-13", [
        "-- Found cuDNN: v?  (include: /usr/local/cuda/include, library: …/libcudnn.so)",
        "CMake Error at cmake/public/cuda.cmake:174 (message): PyTorch requires cuDNN 7 and above.",
    ]),
    ("FM-13", [("RuntimeError: cuDNN version mismatch: PyTorch was compiled against 7102 but "
                "linked against 7600")]),
    ("FM-13", [
        ("cuDNN version incompatibility: PyTorch was compiled against (8, 9, 2) but found runtime "
        "version (8, 8, 1). … one possibility is that there is a conflicting cuDNN in "
        "LD_LIBRARY_PATH."),
    ]),
    ("FM-14", ["fatal error: 'magma_v2.h' file not found"]),
    ("FM-14", [("PackagesNotFoundError: The following packages are not available from current "
               "channels: - magma-cuda102")]),
    ("FM-15", ["libcaffe2.so: undefined reference to 'cblas_sgemm_pack_get_size'"]),
    ("FM-15", ["Intel MKL FATAL ERROR: Cannot load libmkl_def.so."]),
    ("FM-15", ["ImportError: libtorch_cpu.so: undefined symbol: iJIT_NotifyEvent"]),
    ("FM-16", [
        ("ImportError: /usr/lib/x86_64-linux-gnu/libstdc++.so.6: version 'GLIBCXX_3.4.30' not "
        "found (required by …/torch/lib/libtorch_python.so)"),
    ]),
    ("FM-17", [
        ("Could not find any of CMakeLists.txt, Makefile, setup.py, LICENSE, LICENSE.md, "
        "LICENSE.txt in …/third_party/ios-cmake"),
    ]),
    ("FM-17", [
        ("CMake Error at …: The source directory …/third_party/psimd does not contain a "
        "CMakeLists.txt file."),
    ]),
    ("FM-18", [
        ("ImportError: …/torchvision/_C.cpython-37m-x86_64-linux-gnu.so: undefined symbol: "
        "_ZN3c106Device8validateEv"),
    ]),
    ("FM-18", ["RuntimeError: operator torchvision::nms does not exist"]),
    ("FM-19", ["Reading https://pypi.org/simple/torch/"]),
    ("FM-19", ["Downloading torch-2.3.0-cp311-cp311-manylinux1_x86_64.whl (779.1 MB)"]),
    ("FM-20", ["Building torchvision without PNG support"]),
    ("FM-20", ["libavutil header files were not found, disabling ffmpeg support"]),
    ("FM-21", ["ImportError: FFmpeg libraries are not found. Please install FFmpeg."]),
    ("FM-21", ["configure: error: cannot find flac"]),
    ("FM-22", [
        ("UserWarning: Attempted to use ninja as the BuildExtension backend but we could not find "
        "ninja.. Falling back to using the slow distutils backend."),
    ]),
    ("FM-23", ["sccache: error: failed to execute compile",
               ("sccache: caused by: Compiler not supported: \"nvcc fatal   : Failed to preprocess "
               "host compiler properties.\\n\"")]),
    ("FM-24", [("make[2]: *** No rule to make target '/usr/local/cuda-10.0/lib64/libnvrtc.so', "
               "needed by 'lib/libcaffe2_gpu.so'.  Stop.")]),
    ("FM-25", ["/sbin/ldconfig.real: /usr/lib/wsl/lib/libcuda.so.1 is not a symbolic link"]),
    ("FM-25", ["/usr/bin/ld: cannot find -lcuda"]),
    ("FM-25", ["OSError: libcuda.so: cannot open shared object file"]),
    ("FM-27", ["fatal error: error writing to /tmp/cc2mYx0T.s: No space left on device"]),
    ("FM-27", ["fatbinary fatal   : Could not write file '/tmp/tmpxft_00001234.fatbin.c'"]),
    ("FM-32", [
        ("CMake Error at third_party/protobuf/cmake/CMakeLists.txt:2 (cmake_minimum_required): "
        "Compatibility with CMake < 3.5 has been removed from CMake."),
    ]),
    ("FM-33", ["SetuptoolsDeprecationWarning: setup.py install is deprecated."]),
    ("FM-30", ["torch/csrc/cuda/nccl.cpp:5:10: fatal error: nccl.h: No such file or directory"]),
    ("FM-30", ["undefined reference to 'ncclAllReduce'"]),
    ("FM-30", ["error: 'gloo::transport::tcp' has not been declared"]),
    ("FM-30", ["fatal error: tensorpipe/tensorpipe.h: No such file or directory"]),
    # #17: `pip wheel --no-build-isolation` of torchvision in a venv with setuptools 65, no wheel
    # (recorded here, pip 23.2.1, setuptools 65.7.0)
    ("FM-36", _BDIST_WHEEL_LOG),
    # #13: `pip wheel . --no-build-isolation` of Debian's torchvision 0.21.0 orig tarball with
    # setuptools 84.2.1 (recorded here)
    ("FM-38", ["  Traceback (most recent call last):",
               '    File "<string>", line 12, in <module>',
               "  ModuleNotFoundError: No module named 'pkg_resources'",
               "  error: subprocess-exited-with-error"]),
    # the same with a pkg_resources directory left behind by an upgrade to setuptools 84
    ("FM-38", [("  ImportError: cannot import name 'DistributionNotFound' from 'pkg_resources' "
                "(unknown location)")]),
    # #17: torchaudio's configure against a CUDA torch on a machine without a toolkit (CMake
    # 3.25.1's rendering of Caffe2Config.cmake's FATAL_ERROR)
    ("FM-37", _CAFFE2_CUDA_LOG),
    ("FM-31", ["RuntimeError: PyTorch was compiled without NumPy support"]),
    ("FM-31", [("A module that was compiled using NumPy 1.x cannot be run in NumPy 2.0.0 as it may "
               "crash")]),
    # flash-attn's own build (--extra): the FAILED line of hiyouga/LlamaFactory#4907 (pip install
    # flash-attn, torch.utils.cpp_extension's ninja object NAME.o), the kill line nvcc prints.
    ("FM-39", [
        ("FAILED: /tmp/pip-install-ey_n4ais/flash-attn_eab4e71c03454645a5fb5f7575be374b/build/"
         "temp.linux-x86_64-cpython-310/csrc/flash_attn/src/flash_bwd_hdim128_bf16_sm80.o"),
        "nvcc error   : 'cicc' died due to signal 9 (Kill signal)",
    ]),
]

NOISE = [
    "[1/2] /usr/bin/c++ -Werror=return-type -Wno-error=deprecated -c a.cpp -o a.o",
    "-- Build files have been written to: /w/build",
    "[2/2] Linking CXX shared library libx.so",
]


@pytest.mark.parametrize(("fm", "lines"), REAL_TEXTS,
                         ids=[f"{fm}-{i}" for i, (fm, _) in enumerate(REAL_TEXTS)])
def test_signature_matches_real_error_text(fm: str, lines: list[str]) -> None:
    found = diagnose([*NOISE, *lines, *NOISE])
    assert [d.fm for d in found] == [fm]
    assert found[0].line_no > len(NOISE)  # points at the real line, not the noise around it
    assert found[0].fix


def test_every_signature_is_exercised_by_a_real_text() -> None:
    assert {s.fm for s in SIGNATURES} == {fm for fm, _ in REAL_TEXTS}


def test_noise_alone_is_not_diagnosed() -> None:
    assert diagnose(NOISE) == []


def test_fix_names_the_gcc_limit_from_the_message() -> None:
    (diag,) = diagnose(REAL_TEXTS[5][1])
    assert diag.fm == "FM-05"
    assert "gcc <= 12" in diag.fix


def test_fix_names_the_unsupported_arch() -> None:
    (diag,) = diagnose(["nvcc fatal   : Unsupported gpu architecture 'compute_120'"])
    assert "compute_120" in diag.fix


def test_oom_fix_suggests_half_the_jobs() -> None:
    (diag,) = diagnose(["c++: fatal error: Killed signal terminated program cc1plus"], jobs=12)
    assert "--jobs 6" in diag.fix


def test_exit_137_without_message_is_oom() -> None:
    (diag,) = diagnose(["[17/900] Building CXX object foo.o"], returncode=137, jobs=3)
    assert diag.fm == "FM-01"
    assert "--jobs 1" in diag.fix


def test_does_not_name_a_type_alone_is_not_fm06() -> None:
    # Only the <cstdint> note makes it the "gcc too new" case rather than an ordinary bug.
    assert diagnose(["x.h:3:1: error: 'Foo' does not name a type"]) == []


def test_flash_attn_failed_line_without_kill_is_not_fm02() -> None:
    line = "FAILED: x/flash_attn/kernels/flash_fwd_hdim64_fp16_sm80.cu.o"
    assert diagnose([line, "x.cu(3): error: identifier y is undefined"]) == []


_FLASH_ATTN_EXTRA_OOM = [
    # torch 2.11's cpp_extension names CUDA objects NAME.cuda.o (the H200 run's build log).
    ("FAILED: [code=1] /tmp/tb-flash/work/src/flash-attn/build/temp.linux-x86_64-cpython-312/"
     "csrc/flash_attn/src/flash_bwd_hdim256_fp16_sm80.cuda.o"),
    ("/usr/local/cuda-13.0/bin/nvcc -c /tmp/tb-flash/work/src/flash-attn/csrc/flash_attn/src/"
     "flash_bwd_hdim256_fp16_sm80.cu -o /tmp/tb-flash/work/src/flash-attn/build/"
     "temp.linux-x86_64-cpython-312/csrc/flash_attn/src/flash_bwd_hdim256_fp16_sm80.cuda.o"),
    "nvcc error   : 'cicc' died due to signal 9 (Kill signal)",
]


def test_flash_attn_extension_oom_is_not_torchs_flash_attention_rule() -> None:
    # The flash-attn package is not torch: USE_FLASH_ATTENTION=0 would not help it, and the number
    # to use is half the MAX_JOBS this extra's build step ran with.
    (diag,) = diagnose(_FLASH_ATTN_EXTRA_OOM, jobs=16)
    assert diag.fm == "FM-39"
    assert "--jobs 8" in diag.fix and "MAX_JOBS=16" in diag.fix
    assert "USE_FLASH_ATTENTION=0" not in diag.fix


def test_torchs_own_flash_attention_oom_keeps_its_switch_advice() -> None:
    (diag,) = diagnose(REAL_TEXTS[[fm for fm, _ in REAL_TEXTS].index("FM-02")][1], jobs=10)
    assert diag.fm == "FM-02"
    assert "--jobs (try 5)" in diag.fix and "USE_FLASH_ATTENTION=0" in diag.fix


def test_a_cmake_flash_attn_copy_outside_torch_is_not_fm02() -> None:
    # vllm's vllm-flash-attn builds flash-attn's .cu files with CMake (NAME.cu.o), outside torch.
    line = ("FAILED: CMakeFiles/vllm_flash_attn_c.dir/_deps/vllm-flash-attn-src/csrc/flash_attn/"
            "src/flash_fwd_hdim128_bf16_sm80.cu.o")
    found = diagnose([line, "nvcc error   : 'cicc' died due to signal 9 (Kill signal)"], jobs=4)
    assert [d.fm for d in found] == ["FM-39"]
    assert "--jobs 2" in found[0].fix


def test_each_failure_mode_reported_once_in_order() -> None:
    lines = ["-- Not using CUDA", "c++: fatal error: Killed signal terminated program cc1plus",
             "-- Not using CUDA"]
    assert [d.fm for d in diagnose(lines)] == ["FM-07", "FM-01"]


def test_first_errors_prefers_the_first_real_error_over_trailing_noise() -> None:
    log = [
        "[1/3] /usr/bin/c++ -Werror=format -c a.cpp -o a.o",
        "a.cpp:3:5: warning: unused variable 'x'",
        "a.cpp:9:1: error: expected ';' before '}' token",
        "ninja: build stopped: subcommand failed.",
        *[f"  File \"setup.py\", line {n}, in run" for n in range(50)],
        ("subprocess.CalledProcessError: Command '['cmake', '--build', '.']' returned non-zero "
        "exit status 1."),
    ]
    errors = first_errors(log, limit=2)
    assert errors[0] == "a.cpp:9:1: error: expected ';' before '}' token"
    assert len(errors) == 2
    assert not is_error_line(log[0])
    assert not is_error_line(log[1])


# The v2.6.0 configure failure of #12 §5 (opentelemetry-cpp not in the mirror, BLAS=Eigen), as
# CMake prints it after FindMKL's probing.
_OTEL = [
    "-- Library mkl_intel_lp64: not found",
    "-- Checking for [mkl_gf_lp64 - mkl_gnu_thread - mkl_core - gomp - pthread - m - dl]",
    "--   Library mkl_gf_lp64: not found",
    "-- MKL library not found",
    "-- Configuring done (61.2s)",
    "CMake Error in torch/CMakeLists.txt:",
    "  Imported target \"opentelemetry-cpp::api\" includes non-existent path",
    "",
    "    \"/w/src/torch/third_party/opentelemetry-cpp/api/include\"",
    "",
    "  in its INTERFACE_INCLUDE_DIRECTORIES.  Possible reasons include:",
    "",
    "  * The path was deleted, renamed, or moved to another location.",
    "",
    "-- Generating done (1.2s)",
    "CMake Generate step failed.  Build files cannot be regenerated correctly.",
]


def test_missing_submodule_named_and_mkl_probing_is_not_a_cause() -> None:
    causes = diagnose(_OTEL)
    assert [d.fm for d in causes] == ["FM-17"]
    assert "third_party/opentelemetry-cpp" in causes[0].fix


def test_first_cmake_error_is_shown_with_its_whole_message() -> None:
    errors = first_errors(_OTEL)
    assert errors[0].startswith("CMake Error in torch/CMakeLists.txt:")
    assert "includes non-existent path" in errors[0]
    assert "opentelemetry-cpp/api/include" in errors[0]
    assert "INTERFACE_INCLUDE_DIRECTORIES" in errors[0]
    assert not any("mkl" in e.lower() for e in errors)


def test_render_lists_errors_then_causes_with_fixes() -> None:
    lines = ["c++: fatal error: Killed signal terminated program cc1plus"]
    text = render(diagnose(lines, jobs=8), first_errors(lines))
    assert text.splitlines()[0] == "first errors:"
    assert "likely cause (FM-01)" in text
    assert "fix: " in text


def test_explain_failure_reads_the_whole_log(tmp_path: Path) -> None:
    log = tmp_path / "03-build-torch.log"
    noise = [f"[{n}/5000] Building CXX object o{n}.o" for n in range(1, 3000)]
    log.write_text("\n".join([
        "+ python -m pip wheel .",
        "c++: fatal error: Killed signal terminated program cc1plus",
        *noise,
        "ninja: build stopped: subcommand failed.",
    ]) + "\n", encoding="utf-8")
    text = explain_failure(log, returncode=1, jobs=16)
    assert "Killed signal terminated program cc1plus" in text.splitlines()[1]
    assert "--jobs 8" in text
    missing = explain_failure(tmp_path / "absent.log", returncode=137, jobs=2,
                              fallback=["[1/9] x"])
    assert "likely cause (FM-01)" in missing


def test_first_errors_puts_ninja_bookkeeping_after_the_compiler_message() -> None:
    log = ["[1/2] CXX build/u1.o",
           "FAILED: [code=1] build/u0.o",
           "g++ -O1 -c src/u0.cpp -o build/u0.o",
           "src/u0.cpp:1:10: fatal error: nccl.h: No such file or directory",
           "compilation terminated.",
           "ninja: build stopped: subcommand failed."]
    assert first_errors(log) == [
        "src/u0.cpp:1:10: fatal error: nccl.h: No such file or directory",
        "FAILED: [code=1] build/u0.o",
    ]


def test_webp_warning_is_noise_beside_the_real_cause() -> None:
    # #17: the bdist_wheel failure was blamed on the harmless WEBP warning printed before it
    found = diagnose([*_WEBP_WARNING, *_BDIST_WHEEL_LOG])
    assert [d.fm for d in found] == ["FM-36"]
    assert "wheel" in found[0].fix and "--clean" not in found[0].fix
    assert not any("WEBP" in line for line in first_errors([*_WEBP_WARNING, *_BDIST_WHEEL_LOG]))


def test_webp_warning_alone_is_a_note_not_a_cause() -> None:
    found = diagnose(_WEBP_WARNING)
    assert [(d.fm, d.benign) for d in found] == [("FM-20", True)]
    text = render(found, first_errors(_WEBP_WARNING))
    assert "likely cause" not in text and "note (FM-20)" in text


def test_caffe2_cuda_error_names_the_toolkit_not_clean() -> None:
    found = diagnose([*_WEBP_WARNING, *_CAFFE2_CUDA_LOG])
    assert [d.fm for d in found] == ["FM-37"]
    assert "CUDA_HOME" in found[0].fix and "--clean" not in found[0].fix
    assert first_errors(_CAFFE2_CUDA_LOG)[0].startswith("CMake Error at")


def test_disk_full_outranks_what_came_before_it() -> None:
    """Issue #14: a full disk was listed after setuptools' deprecation notice, which appears in
    every setup.py build log before the real failure."""
    lines = ["running install",
             "SetuptoolsDeprecationWarning: setup.py install is deprecated.",
             "error: could not write build/lib/torch/_C.so",
             "OSError: [Errno 28] No space left on device"]
    found = diagnose(lines)
    assert found[0].fm == "FM-27"
    assert "free disk space" in found[0].fix


def test_a_python_exception_line_is_among_the_first_errors() -> None:
    # #13: torchvision 0.21.0's setup.py under setuptools 84: the digest showed "Traceback" and
    # pip's unwinding, not the line that says what is missing.
    log = ["  Traceback (most recent call last):",
           '    File "<string>", line 12, in <module>',
           "  ModuleNotFoundError: No module named 'pkg_resources'",
           "  error: subprocess-exited-with-error"]
    assert first_errors(log)[:2] == ["  Traceback (most recent call last):",
                                     "  ModuleNotFoundError: No module named 'pkg_resources'"]
