"""Verify's kernel check of an --extra on real CUDA binaries (nvcc here, cuobjdump; no GPU).

flash-attn asked for ``--cc 8.6`` compiles its sm_80 target (FLASH_ATTN_CUDA_ARCHS=80): its .so must
be checked against sm_80, not against the 8.6 that torch and the companions carry.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from torchbuild.cc import parse_cc
from torchbuild.command import capture
from torchbuild.knowledge.extensions import decide_archs, load_extensions
from torchbuild.knowledge.recipe import default_recipe_dir
from torchbuild.proof.verify import (
    ExtraExpectation,
    VerifyRequest,
    check_kernels,
    extra_kernels,
)

pytestmark = pytest.mark.integration

KERNEL = 'extern "C" __global__ void k(float* x) { x[threadIdx.x] += 1.0f; }\n'
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}


@pytest.fixture(scope="module")
def sm80_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    nvcc = os.environ.get("NVCC") or shutil.which("nvcc")
    if not nvcc:
        pytest.skip("nvcc is not installed")
    tmp = tmp_path_factory.mktemp("extra-kernels")
    (tmp / "k.cu").write_text(KERNEL)
    lib = tmp / "flash_attn_2_cuda.so"
    capture([nvcc, "-shared", "-Xcompiler", "-fPIC", "-gencode", "arch=compute_80,code=sm_80",
             "-o", str(lib), str(tmp / "k.cu")],
            env={**ENV, "PATH": f"{Path(nvcc).parent}:{ENV['PATH']}"}, timeout=300)
    return lib


def test_extra_is_checked_against_the_archs_it_compiles(sm80_lib: Path) -> None:
    recipe = load_extensions(default_recipe_dir()).packages["flash-attn"]
    expected = decide_archs(recipe, parse_cc("8.6"), "12.8", "flash-attn").expected
    assert [str(a) for a in expected] == ["8.0"]
    probe = {"binaries": {"flash-attn": {"ok": True, "value": [str(sm80_lib)]}}}
    ok = VerifyRequest(cuda="12.8", archs=parse_cc("8.6"),
                       extras=(ExtraExpectation("flash-attn", expected),))
    checks, codes, _ = extra_kernels(ok, probe, ENV)
    assert [(c.name, c.status) for c in checks] == [("flash-attn kernels 8.0", "ok")]
    assert codes[0].sass == {"sm_80"}
    # torch's own 8.6 check leaves the extra's library alone
    assert check_kernels(ok, probe, ENV) == ([], [], [])
    wrong = VerifyRequest(cuda="12.8", archs=parse_cc("9.0"),
                          extras=(ExtraExpectation("flash-attn", parse_cc("9.0")),))
    checks, _, _ = extra_kernels(wrong, probe, ENV)
    assert [(c.name, c.status) for c in checks] == [("flash-attn kernels 9.0", "FAILED")]
    assert "sm_90" in checks[0].found
