"""Our arch-list normalisation (``cc.parse_cc`` -> ``arch_list_env``) and arch-syntax knowledge
against the parsers of the real torch 2.13.0 wheel:

* ``torch.utils.cpp_extension._get_cuda_arch_flags`` (what torchvision/torchaudio use), run in the
  wheel's own interpreter with TORCH_CUDA_ARCH_LIST in the child's environment;
* the wheel's ``select_compute_arch.cmake`` (what the torch build itself uses), run by real cmake.

The torch venv comes from conftest's session fixture ``torch_venv`` (``pip install torch==2.13.0``
takes the CPU wheel from a local file on these machines).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from torchbuild import command
from torchbuild.cc import Arch, arch_list_env, parse_cc
from torchbuild.knowledge.rules import cpp_extension_accepts, load_knowledge

pytestmark = pytest.mark.integration

TORCH = "2.13.0"
# A spread: plain, several, +PTX, 'a', two-digit majors, 'f', compact spellings, names, and
# archs torch 2.13 does not know (8.8, 10.7, 10.1) or that CUDA dropped long ago (3.5).
SPREAD = [
    "8.6", "7.5 8.6", "8.6+PTX", "9.0a", "sm_86", "compute_90", "6.1;7.0;7.5+PTX", "3.5",
    "Ampere", "Hopper+PTX", "Blackwell", "Turing Ampere", "12.0a 12.1a+PTX", "11.0", "10.3+PTX",
    "10.0f", "8.8", "10.7", "10.1", "8.9 9.0 10.0 12.0+PTX",
]

# Runs inside the torch venv: one result per TORCH_CUDA_ARCH_LIST value from the child's env.
_ONE = """
import json, warnings
warnings.filterwarnings("ignore")
from torch.utils import cpp_extension
try:
    print(json.dumps({"flags": cpp_extension._get_cuda_arch_flags()}))
except ValueError as exc:
    print(json.dumps({"error": str(exc)}))
"""
# The same for many values in one interpreter (importing torch takes seconds on 2 cores): the
# child sets the variable in its own environment before each call, as a fresh process would have.
_MANY = """
import json, os, sys, warnings
warnings.filterwarnings("ignore")
from torch.utils import cpp_extension
out = {}
for value in json.loads(sys.argv[1]):
    os.environ["TORCH_CUDA_ARCH_LIST"] = value
    try:
        out[value] = {"flags": cpp_extension._get_cuda_arch_flags()}
    except ValueError as exc:
        out[value] = {"error": str(exc)}
print(json.dumps(out))
"""


def implied_flags(archs: Sequence[Arch]) -> list[str]:
    """The -gencode flags our Arch values mean: SASS per arch, PTX where +PTX."""
    flags = set()
    for a in archs:
        nn = f"{a.major}{a.minor}{a.suffix}"
        flags.add(f"-gencode=arch=compute_{nn},code=sm_{nn}")
        if a.ptx:
            flags.add(f"-gencode=arch=compute_{nn},code=compute_{nn}")
    return sorted(flags)


def torch_flags_many(python: Path, values: Sequence[str]) -> dict[str, dict[str, list[str] | str]]:
    env = {k: v for k, v in os.environ.items() if k != "TORCH_CUDA_ARCH_LIST"}
    out = command.capture([str(python), "-c", _MANY, json.dumps(list(values))], env=env,
                          timeout=300)
    result: dict[str, dict[str, list[str] | str]] = json.loads(out.splitlines()[-1])
    return result


def torch_flags_one(python: Path, value: str) -> dict[str, list[str] | str]:
    env = {**os.environ, "TORCH_CUDA_ARCH_LIST": value}
    result: dict[str, list[str] | str] = json.loads(
        command.capture([str(python), "-c", _ONE], env=env, timeout=300).splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def torch_results(torch_venv: Path) -> dict[str, dict[str, list[str] | str]]:
    kn = load_knowledge()
    table = kn.cpp_ext(TORCH)
    assert table is not None
    values = [arch_list_env(parse_cc(s)) for s in SPREAD]
    values += list(table.supported) + [name for name, _ in table.named]
    values += [expansion for _, expansion in table.named]
    return torch_flags_many(torch_venv, sorted(set(values)))


def test_normalisation_agrees_with_cpp_extension(
        torch_results: dict[str, dict[str, list[str] | str]]) -> None:
    table = load_knowledge().cpp_ext(TORCH)
    assert table is not None
    for text in SPREAD:
        archs = parse_cc(text)
        got = torch_results[arch_list_env(archs)]
        if all(cpp_extension_accepts(a, table) for a in archs):
            assert got.get("flags") == implied_flags(archs), (text, got)
        else:  # knowledge says torch rejects it: torch must agree
            assert "Unknown CUDA arch" in str(got.get("error")), (text, got)


def test_supported_table_matches_the_wheel(
        torch_results: dict[str, dict[str, list[str] | str]]) -> None:
    table = load_knowledge().cpp_ext(TORCH)
    assert table is not None
    for item in table.supported:
        nn = item.replace(".", "")
        assert torch_results[item] == {"flags": [f"-gencode=arch=compute_{nn},code=sm_{nn}"]}


def test_named_table_matches_the_wheel(
        torch_results: dict[str, dict[str, list[str] | str]]) -> None:
    table = load_knowledge().cpp_ext(TORCH)
    assert table is not None
    for name, expansion in table.named:
        assert torch_results[name] == torch_results[expansion], name


def test_names_differ_on_ptx_by_design(
        torch_results: dict[str, dict[str, list[str] | str]]) -> None:
    # cpp_extension's 'Ampere' is '8.0;8.6+PTX'; cc.py expands names the CMake way (PTX only with
    # '+PTX') and passes numbers, so torch and its companions get the same kernels.
    ours = set(implied_flags(parse_cc("Ampere")))
    raw = set(torch_results["Ampere"]["flags"])
    assert raw - ours == {"-gencode=arch=compute_86,code=compute_86"}
    assert ours <= raw


def test_batch_equals_a_fresh_process(torch_venv: Path,
                                      torch_results: dict[str, dict[str, list[str] | str]]) -> None:
    for value in ("7.5;8.6", "10.0f"):
        assert torch_flags_one(torch_venv, value) == torch_results[value]


# ------------------------------------------------------------------------------ CMake side


def _select_compute_arch(torch_venv: Path) -> Path:
    found = sorted(torch_venv.parent.parent.glob(
        "lib/python*/site-packages/torch/share/cmake/Caffe2/Modules_CUDA_fix/upstream/"
        "FindCUDA/select_compute_arch.cmake"))
    assert found, "torch wheel without select_compute_arch.cmake"
    return found[0]


def test_cmake_regex_matches_the_wheel(torch_venv: Path) -> None:
    text = _select_compute_arch(torch_venv).read_text()
    m = re.search(r'if\(arch_name MATCHES "(\^\(\[0-9\].*?)"\)', text)
    assert m is not None
    wheel_regex = m.group(1).replace("\\\\", "\\")
    release = load_knowledge().release(TORCH)
    assert load_knowledge().cmake_regex[release.arch_syntax] == wheel_regex


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_normalisation_agrees_with_torch_cmake(torch_venv: Path, tmp_path: Path) -> None:
    script = tmp_path / "select.cmake"
    script.write_text(f'set(CUDA_VERSION "13.0")\ninclude("{_select_compute_arch(torch_venv)}")\n'
                      'CUDA_SELECT_NVCC_ARCH_FLAGS(flags "${ARCHS}")\n'
                      'message(STATUS "FLAGS=${flags}")\n')
    for text in SPREAD:
        archs = parse_cc(text)
        res = command.probe(["cmake", f"-DARCHS={arch_list_env(archs)}", "-P", str(script)])
        assert res is not None and res[0] == 0, (text, res)
        m = re.search(r"FLAGS=(.*)", res[1] + res[2])
        assert m is not None
        parts = m.group(1).strip().split(";")
        flags = sorted({f"-gencode={p}" for p in parts if p != "-gencode"})
        assert flags == implied_flags(archs), text
