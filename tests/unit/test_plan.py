from __future__ import annotations

import builtins
import dataclasses
import os
import pathlib
from pathlib import Path

import pytest

from torchbuild.__main__ import build_parser
from torchbuild.errors import CompatibilityError, UsageError
from torchbuild.knowledge.recipe import load_recipes
from torchbuild.machine.facts import Facts
from torchbuild.machine.probes import MemInfo, Toolkit
from torchbuild.options import resolve
from torchbuild.plan import make_plan, redirect_url, render
from torchbuild.proof.verify import request_for_plan, request_from_manifest

TOOLKIT = Toolkit("/usr/local/cuda/bin/nvcc", "12.8", Path("/usr/local/cuda"), (), None, None)
FACTS = Facts(cores=16, mem=MemInfo(64.0, 60.0, 0.0, 0.0), machine="x86_64", toolkit=TOOLKIT,
              host_python="/usr/bin/python3", host_python_version="3.11")


def plan_for(*argv: str, facts: Facts = FACTS):
    opts = resolve(vars(build_parser().parse_args(list(argv))), {"HOME": "/home/u"})
    return make_plan(load_recipes(), opts, facts)


def test_newest_default_plan():
    p = plan_for("--cc", "8.6")
    assert (p.torch_version, p.cuda, p.torch_label) == ("2.15.0", "13.2", "2.15.0+cu132.sm86")
    assert [c.name for c in p.components] == ["torch", "vision", "audio"]
    # 2.15 is a scikit-build-core tree (pytorch/pytorch#180247/#180248): no setup.py.
    assert [s.id for s in p.steps] == ["deps-torch", "backend-torch", "configure-torch",
                                       "build-torch", "install-torch", "build-vision",
                                       "install-vision", "build-audio", "install-audio"]
    assert p.steps[1].argv[-1] == "scikit-build-core>=1.0"
    configure = p.steps[2]
    assert configure.argv[:5] == ("cmake", "-S", ".", "-B", "build")
    assert not any("setup.py" in a for s in p.steps for a in s.argv)
    assert configure.outputs == (p.work_dir / "src" / "torch" / "build" / "CMakeCache.txt",)
    build = p.steps[3]
    assert build.env["TORCH_CUDA_ARCH_LIST"] == "8.6"
    assert build.env["PYTORCH_BUILD_VERSION"] == "2.15.0+cu132.sm86"
    assert build.argv[1:4] == ("-m", "pip", "wheel")
    assert p.work_dir == Path("/home/u/.cache/torchbuild/work/torch-2.15.0-cu132")
    assert p.steps[5].env["PYTORCH_VERSION"] == "2.15.0+cu132.sm86"
    assert p.steps[5].env["FORCE_CUDA"] == "1"
    assert build.env["USE_MAGMA"] == "1"                 # libmagma-devel's 13.0 build serves 13.x
    assert build.env["USE_SYSTEM_NCCL"] == "1"           # the env's nccl, not third_party/nccl
    assert not any("MAGMA" in w for w in p.warnings)
    assert "2.15.0+cu132.sm86" in render(p)


@pytest.mark.parametrize(("torch", "configure", "extra", "backend_step"), [
    ("2.6.0", ("setup.py", "build", "--cmake-only"), {}, False),     # real v2.6.0 setup.py
    ("2.8.0", ("setup.py", "build"), {"CMAKE_ONLY": "1"}, False),
    ("2.13.0", ("setup.py", "build"), {"CMAKE_ONLY": "1"}, False),
    ("2.14.0", ("-S", ".", "-B", "build"), {}, True),                 # scikit-build-core
])
def test_configure_step_per_backend_era(torch, configure, extra, backend_step):
    p = plan_for("--cc", "8.6", "--torch", torch)
    ids = [s.id for s in p.steps]
    assert ("backend-torch" in ids) == backend_step
    step = next(s for s in p.steps if s.id == "configure-torch")
    assert step.argv[1:1 + len(configure)] == configure
    assert {k: step.env[k] for k in extra} == extra
    assert step.outputs[0].parts[-2:] == ("build", "CMakeCache.txt")


def test_old_release_uses_setup_py_and_text():
    p = plan_for("--cc", "7.5 8.6", "--torch", "1.9.1", "--cuda", "11.1", "--python", "3.9",
                 "--env", "venv")
    assert [c.name for c in p.components] == ["torch", "vision", "audio", "text"]
    build = next(s for s in p.steps if s.id == "build-torch")
    assert build.argv[1:3] == ("setup.py", "bdist_wheel")
    assert build.env["USE_QNNPACK"] == "0"
    assert build.env["CMAKE_POLICY_VERSION_MINIMUM"] == "3.5"   # CMake 4 vs old vendored deps
    assert next(s for s in p.steps if s.id == "build-audio").env["BUILD_SOX"] == "0"
    assert p.components[3].tag == "v0.10.1"
    assert p.python_version == "3.9"


@pytest.mark.parametrize("version", ["2.4.0", "2.6.0", "2.9.1", "2.12.1", "2.14.1"])
def test_plans_across_releases(version):
    p = plan_for("--cc", "8.6", "--torch", version)
    comps = {c.name: c for c in p.components}
    release = load_recipes().release(version)
    assert comps["vision"].version == release.vision and "text" not in comps
    assert p.cuda == release.default_cuda
    era_pip = tuple(int(x) for x in version.split(".")[:2]) >= (2, 6)
    build = next(s for s in p.steps if s.id == "build-torch")
    assert (build.argv[1] == "-m") == era_pip
    configure = next(s for s in p.steps if s.id == "configure-torch")
    assert ("--cmake-only" in configure.argv) == (tuple(int(x) for x in version.split(".")[:2])
                                                  < (2, 8))
    deps = p.steps[0].argv
    assert ("--group" in deps) == (tuple(int(x) for x in version.split(".")[:2]) >= (2, 13))


def test_cpu_and_venv_plan():
    p = plan_for("--cpu", "--env", "venv", "--torch", "2.9.1", "--audio", "none")
    assert p.cuda is None and p.torch_label == "2.9.1+cpu"
    assert [c.name for c in p.components] == ["torch", "vision"]
    build = next(s for s in p.steps if s.id == "build-torch")
    assert build.env["USE_CUDA"] == "0" and "TORCH_CUDA_ARCH_LIST" not in build.env
    assert p.environment.backend == "venv"
    assert "numpy" in p.environment.pip_requirements


def test_venv_uses_system_toolkit_and_cuda_home():
    p = plan_for("--cc", "8.6", "--env", "venv", "--torch", "2.9.1")
    assert p.cuda == "12.8"
    assert next(s for s in p.steps if s.id == "build-torch").env["CUDA_HOME"] == "/usr/local/cuda"


def test_venv_without_toolkit_is_refused():
    facts = dataclasses.replace(FACTS, toolkit=None)
    with pytest.raises(UsageError, match="no CUDA toolkit found"):
        plan_for("--cc", "8.6", "--env", "venv", facts=facts)


def test_companion_mismatch_and_force():
    with pytest.raises(CompatibilityError, match="its vision is 0.24.1 \\(tag v0.24.1\\)"):
        plan_for("--cc", "8.6", "--torch", "2.9.1", "--vision", "0.23.0")
    p = plan_for("--cc", "8.6", "--torch", "2.9.1", "--vision", "0.23.0", "--force")
    assert next(c for c in p.components if c.name == "vision").tag == "v0.23.0"


def test_user_set_and_jobs():
    p = plan_for("--cc", "8.6", "--set", "USE_FLASH_ATTENTION=0", "--jobs", "3")
    build = next(s for s in p.steps if s.id == "build-torch")
    assert build.env["USE_FLASH_ATTENTION"] == "0"
    assert build.env["MAX_JOBS"] == "3" and p.jobs_reason.startswith("--jobs 3")


def test_redirect_and_labels():
    assert redirect_url("https://github.com/pytorch/vision.git", "file:///m/") == \
        "file:///m/pytorch/vision.git"
    assert redirect_url("git@github.com:pytorch/audio.git", "https://git.corp") == \
        "https://git.corp/pytorch/audio.git"
    assert redirect_url("https://github.com/pytorch/vision.git", None) == \
        "https://github.com/pytorch/vision.git"
    p = plan_for("--cc", "8.6 9.0+PTX", "--torch", "2.9.1", "--env", "venv")
    assert p.torch_label == "2.9.1+cu128.sm86.sm90ptx"
    assert [c.label for c in p.components] == ["2.9.1+cu128.sm86.sm90ptx",
                                                "0.24.1+cu128.sm86.sm90ptx",
                                                "2.9.1+cu128.sm86.sm90ptx"]


def test_plan_json_round_trips():
    import json

    data = plan_for("--cc", "8.6").to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["schema_version"] == 1 and data["archs"] == ["8.6"]


# ----------------------------------------------------------------------------- purity


class _Untouchable(dict):  # type: ignore[type-arg]
    """A stand-in for os.environ that fails the test on any read."""

    def _fail(self, *_args: object, **_kwargs: object) -> None:
        msg = "make_plan read the process environment"
        raise AssertionError(msg)

    __getitem__ = get = __contains__ = __iter__ = keys = items = copy = _fail  # type: ignore[assignment]


def _no_io(*_args: object, **_kwargs: object) -> None:
    msg = "make_plan touched the file system"
    raise AssertionError(msg)


@pytest.mark.parametrize("argv", [
    ("--cc", "8.6 9.0+PTX", "--set", "USE_FLASH_ATTENTION=0", "--clean"),
    ("--cpu", "--env", "venv", "--python", "3.12", "--torch", "2.6.0"),
    ("--cc", "8.6", "--env", "conda-exe", "--work-dir", "/w", "--compiler-cache", "ccache"),
])
def test_make_plan_reads_no_files_and_no_environment(argv, monkeypatch):
    book = load_recipes()
    opts = resolve(vars(build_parser().parse_args(list(argv))), {"HOME": "/home/u"})
    with monkeypatch.context() as m:
        m.setattr(os, "environ", _Untouchable())
        m.setattr(os, "stat", _no_io)
        m.setattr(os, "getenv", _no_io)
        m.setattr(builtins, "open", _no_io)
        for name in ("read_text", "read_bytes", "open", "stat", "exists", "is_file", "is_dir",
                     "expanduser", "home", "resolve", "iterdir", "glob"):
            m.setattr(pathlib.Path, name, _no_io)
        plan = make_plan(book, opts, FACTS)
    assert plan.steps and plan.work_dir.is_absolute()
    # The typed fields the execution stages read instead of a bag of options.
    assert plan.clean is ("--clean" in argv)
    assert plan.compiler_cache == ("ccache" if "ccache" in argv else "auto")
    assert plan.machine == "x86_64"


@pytest.mark.parametrize("argv", [("--cc", "8.6 9.0+PTX", "--allow-missing", "cudnn"), ("--cpu",),
                                  ("--cc", "8.6", "--torch-from-env")])
def test_verify_request_comes_from_the_typed_plan(argv):
    """No JSON round trip: the typed plan gives the same request its manifest would."""
    facts = dataclasses.replace(FACTS, env_torch_version="2.15.0")
    plan = plan_for(*argv, facts=facts)
    typed = request_for_plan(plan)
    assert typed == request_from_manifest({"plan": plan.to_json()}, plan.allow_missing,
                                          plan.machine)
    assert typed.cpu is (plan.cuda is None)
