"""MAX_JOBS has one derivation: the plan, the preflight report, ``--dry-run``, doctor and the build
step's env show the same number, whether the attention kernels are switched off with ``--set`` or
by the process environment (issue #11: the plan said 10, preflight 4)."""

from __future__ import annotations

import re

import pytest

from torchbuild import pipeline
from torchbuild.__main__ import build_parser
from torchbuild.commands import doctor
from torchbuild.knowledge.recipe import load_recipes
from torchbuild.machine import facts
from torchbuild.machine.preflight import request_for_plan, resource_findings
from torchbuild.machine.probes import MemInfo
from torchbuild.options import resolve
from torchbuild.plan import make_plan

# 16 cores, 30 GB: heavy kernels -> (30-4)/5.5 = 4 jobs; both attention features off -> 10.
MACHINE = facts.Facts(cores=16, mem=MemInfo(32.0, 30.0, 0.0, 0.0), machine="x86_64",
                      host_python="/usr/bin/python3", host_python_version="3.12",
                      host_checked=True, work_dir_free_gb=500.0, tmp_free_gb=100.0)
OFF = {"USE_FLASH_ATTENTION": "0", "USE_MEM_EFF_ATTENTION": "0"}
CASES = {
    "--set": (["--set", "USE_FLASH_ATTENTION=0", "--set", "USE_MEM_EFF_ATTENTION=0"], {}),
    "process env": ([], OFF),
}


def _first(pattern: str, text: str) -> int:
    found = re.search(pattern, text, re.MULTILINE)
    assert found, f"{pattern!r} not in:\n{text}"
    return int(found.group(1))


def _numbers(argv: list[str], environ: dict[str, str], monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture[str]) -> dict[str, int]:
    environ = {"HOME": "/home/u", "PATH": "/usr/bin", **environ}
    cli = vars(build_parser().parse_args(["--cc", "8.6", "--torch", "2.6.0", *argv]))
    options = resolve(cli, environ)
    plan = make_plan(load_recipes(), options, MACHINE)
    build = next(s for s in plan.steps if s.id == "build-torch")
    report = {f.check: f.message for f in resource_findings(request_for_plan(plan, options),
                                                             MACHINE)}
    monkeypatch.setattr(facts, "gather", lambda *_a, **_k: MACHINE)
    assert pipeline.run_build(resolve({**cli, "dry_run": True}, environ)) == 0
    dry = capsys.readouterr().out
    return {
        "plan": plan.jobs,
        "build step env": int(build.env["MAX_JOBS"]),
        "preflight report": int(re.findall(r"MAX_JOBS=(\d+)", report["jobs"])[-1]),
        "--dry-run header": _first(r"^jobs +MAX_JOBS (\d+)", dry),
        "--dry-run step env": _first(r"^\s+MAX_JOBS=(\d+)", dry),
    }


@pytest.mark.parametrize("case", list(CASES))
def test_max_jobs_is_one_number_everywhere(case: str, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    argv, environ = CASES[case]
    numbers = _numbers(argv, environ, monkeypatch, capsys)
    assert set(numbers.values()) == {10}, numbers


def test_doctor_says_what_a_build_from_this_shell_gets() -> None:
    assert doctor._jobs(MACHINE, OFF)["cuda_sm80_plus"]["jobs"] == 10
    assert doctor._jobs(MACHINE, {})["cuda_sm80_plus"]["jobs"] == 4


def test_heavy_kernels_need_both_switches_off(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    numbers = _numbers(["--set", "USE_FLASH_ATTENTION=0"], {"USE_MEM_EFF_ATTENTION": "1"},
                       monkeypatch, capsys)
    assert set(numbers.values()) == {4}, numbers


def test_companions_alone_get_the_cuda_budget(tmp_path) -> None:
    """--torch-from-env builds no torch, so torch's attention kernels (5.5 GB a job) set nothing:
    the companions' 2.5 GB CUDA budget does, in the plan and in preflight's report alike."""
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.write_text("")
    machine = facts.Facts(**{**vars(MACHINE), "env_python": str(python),
                             "env_python_version": "3.12", "env_torch_version": "2.6.0+cu126"})
    cli = vars(build_parser().parse_args(["--cc", "8.6", "--cuda", "12.6", "--torch-from-env",
                                          "--env", "existing", "--python", str(python)]))
    options = resolve(cli, {"HOME": str(tmp_path), "PATH": "/usr/bin"})
    plan = make_plan(load_recipes(), options, machine)
    assert [c.name for c in plan.components] == ["vision", "audio"]
    report = resource_findings(request_for_plan(plan, options), machine)[0].message
    assert plan.jobs == 10 and "2.5 GB per job (CUDA)" in plan.jobs_decision.reasoning, plan
    assert report.endswith("MAX_JOBS=10")
