"""``pipeline.run_build`` in-process, up to the execution boundary (tests/seam.py): which steps
it runs, with which argv, env and cwd, for a CUDA and a CPU plan. No process is started."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from seam import FakeSubprocess
from torchbuild import command, pipeline
from torchbuild.__main__ import build_parser
from torchbuild.build import compiler_cache, sources
from torchbuild.build.steps import resolve_argv
from torchbuild.machine import facts, probes
from torchbuild.machine.probes import MemInfo, Toolkit
from torchbuild.options import resolve
from torchbuild.plan import Plan

TOOLKIT = Toolkit("/usr/local/cuda-12.6/bin/nvcc", "12.6", Path("/usr/local/cuda-12.6"),
                  ("7.5", "8.0", "8.6", "9.0"), 13, None)
MACHINE = facts.Facts(cores=8, mem=MemInfo(64.0, 60.0, 0.0, 0.0), machine="x86_64",
                      toolkit=TOOLKIT, host_python=sys.executable, host_python_version="3.12",
                      env_python_version="3.12",
                      # the companions' build requirements are there: nothing to install first
                      env_packages={"setuptools": "80.9.0", "wheel": "0.45.1",
                                    "ninja": "1.11.1.4", "cmake": "3.31.6"})


@dataclasses.dataclass
class Run:
    plan: Plan
    fake: FakeSubprocess
    checkouts: list[sources.SourceSpec]
    tmp: Path
    rc: int


def _run(tmp: Path, monkeypatch: pytest.MonkeyPatch, *argv: str) -> Run:
    python = tmp / "env" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")   # --env existing: the interpreter must exist
    environ = {"HOME": str(tmp), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    cli = vars(build_parser().parse_args([
        "--torch", "2.6.0", "--env", "existing", "--python", str(python),
        "--work-dir", str(tmp / "work"), "--cache-dir", str(tmp / "cache"),
        "--dist", str(tmp / "dist"), "--compiler-cache", "none", "--no-verify",
        # The image-codec check looks at this host's headers; the seam does not depend on them.
        *(a for c in ("jpeg", "png", "webp", "nvjpeg") for a in ("--allow-missing", c)),
        *argv]))
    options = resolve(cli, environ)
    fake = FakeSubprocess()
    monkeypatch.setattr(command, "subprocess", fake)
    monkeypatch.setattr(command, "resolve_program", lambda program, _env: program)
    monkeypatch.setattr(facts, "gather", lambda _env, env_python=None: dataclasses.replace(
        MACHINE, env_python=env_python))
    # The host's free disk is not part of the seam: a CUDA plan's 44 GB estimate failed CI on a
    # machine whose /tmp had 37 GB left.
    monkeypatch.setattr(probes, "disk_free_gb", lambda _path: 500.0)
    checked: list[sources.SourceSpec] = []

    def checkout_all(specs: tuple[sources.SourceSpec, ...], _ctx: sources.GitContext
                     ) -> dict[str, sources.Checkout]:
        checked.extend(specs)
        return {s.name: sources.Checkout(s.name, s.path, s.tag, "b" * 40, s.url) for s in specs}

    monkeypatch.setattr(sources, "checkout_all", checkout_all)
    plan, _ = pipeline.prepare(options)
    _configured(plan)
    rc = pipeline.run_build(options)
    return Run(plan, fake, checked, tmp, rc)


def _configured(plan: Plan) -> None:
    """What the (faked) configure step would leave: a CMake cache with every feature on, which
    the pipeline's audit then reads (it runs after every configure step)."""
    cache = next(s.outputs[0] for s in plan.steps if s.kind == "configure")
    cache.parent.mkdir(parents=True)
    on = [f"USE_{f}:BOOL=ON" for f in ("CUDA", "CUDNN", "MAGMA", "NCCL", "SYSTEM_NCCL",
                                       "DISTRIBUTED", "NUMPY", "CUSPARSELT", "CUDSS", "CUFILE")]
    flags = " ".join(f"-gencode arch=compute_{a.sm[3:]},code={a.sm}" for a in plan.archs)
    cache.write_text("\n".join([*on, "BLAS:STRING=MKL", f"CMAKE_CUDA_FLAGS:STRING={flags}"]))


def _steps_ran(run: Run) -> list[tuple[str, ...]]:
    return [c.argv for c in run.fake.streamed()]


def _assert_steps_are_the_plan(run: Run) -> None:
    """Exactly the plan's steps ran, in order, each with its own argv, cwd and env over the
    build env's."""
    assert run.rc == 0
    wheels = {c: run.plan.work_dir / "wheels" / c / f"{d}-0.0.0-py3-none-any.whl" for c, d in
              (("torch", "torch"), ("vision", "torchvision"), ("audio", "torchaudio"))}
    expected = [resolve_argv(s, wheels) for s in run.plan.steps]
    assert _steps_ran(run) == expected
    base = run.fake.streamed()[0].env
    for step, call in zip(run.plan.steps, run.fake.streamed(), strict=True):
        assert call.cwd == str(step.cwd)
        extra = compiler_cache.disabled_env() if step.kind == "build" else {}
        assert {k: call.env[k] for k in {**step.env, **extra}} == {**step.env, **extra}
        assert call.env["PATH"] == base["PATH"] and call.env["PATH"].startswith(
            str(run.tmp / "env" / "bin"))
    # Besides these, only the (empty) lock that serialises publishing into a shared dist.
    assert sorted(p.name for p in (run.tmp / "dist").iterdir()) == [
        ".torchbuild-dist.lock", "torch-0.0.0-py3-none-any.whl",
        "torchaudio-0.0.0-py3-none-any.whl", "torchbuild-manifest.json",
        "torchbuild-report.html", "torchbuild-report.png",
        "torchvision-0.0.0-py3-none-any.whl"]
    manifest = json.loads((run.tmp / "dist" / "torchbuild-manifest.json").read_text())
    assert [s["id"] for s in manifest["steps"]] == [s.id for s in run.plan.steps]
    # The audit ran after the configure step and its report is in the manifest (#12).
    audit = next(s["audit"] for s in manifest["steps"] if s["id"] == "configure-torch")
    assert audit["ok"] and audit["checks"] and all(c["ok"] for c in audit["checks"])


def test_a_cuda_plan_at_the_execution_boundary(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    run = _run(tmp_path, monkeypatch, "--cc", "8.6 9.0", "--cuda", "12.6",
               "--set", "USE_FLASH_ATTENTION=0")
    _assert_steps_are_the_plan(run)
    assert [s.id for s in run.plan.steps] == [
        "deps-torch", "configure-torch", "build-torch", "install-torch", "build-vision",
        "install-vision", "build-audio", "install-audio"]
    calls = dict(zip([s.id for s in run.plan.steps], run.fake.streamed(), strict=True))
    build = calls["build-torch"]
    assert build.argv == (str(run.tmp / "env" / "bin" / "python"), "-m", "pip", "wheel", ".",
                          "--no-build-isolation", "--no-deps", "-v", "--wheel-dir",
                          str(run.plan.work_dir / "wheels" / ".tmp-torch"))
    assert build.env["TORCH_CUDA_ARCH_LIST"] == "8.6;9.0"
    assert build.env["CUDA_HOME"] == "/usr/local/cuda-12.6"
    assert build.env["MAX_JOBS"] == str(run.plan.jobs)
    assert build.env["USE_FLASH_ATTENTION"] == "0"
    assert build.env["PYTORCH_BUILD_VERSION"] == run.plan.torch_label == "2.6.0+cu126.sm86.sm90"
    assert calls["configure-torch"].argv[-1] == "--cmake-only"   # the 2.6 era's spelling
    assert calls["build-vision"].env["FORCE_CUDA"] == "1"
    assert calls["install-torch"].argv[-1].endswith("torch-0.0.0-py3-none-any.whl")
    # Sources: the planned specs, fetched from the recipe's upstream URLs.
    assert [(s.name, s.tag) for s in run.checkouts] == [
        ("torch", "v2.6.0"), ("vision", "v0.21.0"), ("audio", "v2.6.0")]
    # Preflight compiled one probe kernel for both archs with the system toolkit's nvcc.
    nvcc = [c.argv for c in run.fake.calls if c.argv[0] == TOOLKIT.nvcc and "-c" in c.argv]
    assert nvcc and {"-gencode=arch=compute_86,code=sm_86",
                     "-gencode=arch=compute_90,code=sm_90"} <= set(nvcc[0])


def test_a_cpu_plan_at_the_execution_boundary(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    run = _run(tmp_path, monkeypatch, "--cpu")
    _assert_steps_are_the_plan(run)
    build = next(c for s, c in zip(run.plan.steps, run.fake.streamed(), strict=True)
                 if s.id == "build-torch")
    assert build.env["USE_CUDA"] == "0" and "TORCH_CUDA_ARCH_LIST" not in build.env
    assert "CUDA_HOME" not in build.env
    assert run.plan.torch_label == "2.6.0+cpu"
    assert not [c for c in run.fake.calls if c.argv[0] == TOOLKIT.nvcc]
