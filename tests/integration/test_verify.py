"""verify against the real torch 2.13.0 CPU wheel (pip takes it from a local file here).

One throwaway-env install is shared by the module (about 20 s); the other tests read the same real
probe output with different requests, or run the CLI against the env it left behind.
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from torchbuild.cc import parse_cc
from torchbuild.command import capture
from torchbuild.commands.verify import main as verify_main
from torchbuild.commands.verify import register
from torchbuild.proof.verify import (
    ArchListError,
    CudaMismatchError,
    DependencyCheckError,
    VerifyReport,
    VerifyRequest,
    check_probe,
    compare_rows,
    make_throwaway_env,
    pip_check,
    request_from_manifest,
    verify_wheels,
)
from venvs import pure_wheel as _wheel

pytestmark = pytest.mark.integration

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp"}


def _pip(python: Path, *args: str) -> str:
    return capture([str(python), "-m", "pip", *args, "--disable-pip-version-check"], env=None,
                   timeout=900)


@pytest.fixture(scope="module")
def torch_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("wheels")
    _pip(Path(sys.executable), "download", "--no-deps", "-d", str(dest), "torch==2.13.0")
    return next(dest.glob("torch-2.13.0*.whl"))


@pytest.fixture(scope="module")
def base_python(tmp_path_factory: pytest.TempPathFactory, torch_wheel: Path) -> Path:
    """A build env stand-in: torch's own requirements (read from the wheel), but no torch."""
    root = tmp_path_factory.mktemp("base")
    capture([sys.executable, "-m", "venv", str(root / "env")], env=None, timeout=300)
    python = root / "env" / "bin" / "python"
    with zipfile.ZipFile(torch_wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        message = Parser().parsestr(zf.read(meta).decode())
    reqs = [Requirement(r) for r in message.get_all("Requires-Dist") or []]
    wanted = [str(r) for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]
    _pip(python, "install", "-q", *wanted)
    return python


@pytest.fixture(scope="module")
def cpu_report(tmp_path_factory: pytest.TempPathFactory, torch_wheel: Path,
               base_python: Path) -> VerifyReport:
    request = VerifyRequest(torch_version="2.13.0", cpu=True, features=("mkl",))
    return verify_wheels([torch_wheel], request, base_python=base_python,
                         work_dir=tmp_path_factory.mktemp("verify"), environ=ENV)


def _by_name(report: VerifyReport) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def test_cpu_wheel_passes_and_is_imported_from_the_throwaway_env(cpu_report: VerifyReport) -> None:
    status = _by_name(cpu_report)
    assert cpu_report.ok, cpu_report.rows()
    for name in ("import torch", "version", "cuda", "mkl", "pip check"):
        assert status[name] == "ok", name
    assert status["gpu smoke"] == "skipped" or "gpu matmul" in status
    assert cpu_report.env_dir is not None
    torch_file = cpu_report.probe["torch"]["file"]
    assert torch_file.startswith(str(cpu_report.env_dir.resolve()))
    # It ran from an empty directory, in isolated mode, with the wheel's own version.
    assert Path(cpu_report.probe["cwd"]).name == "empty-cwd"
    assert cpu_report.probe["torch"]["version"].startswith("2.13.0")
    assert cpu_report.probe["torch"]["cuda"] is None
    # The report is plain JSON all the way down.
    assert json.loads(json.dumps(cpu_report.to_json()))["ok"] is True


def test_cuda_archs_requested_of_a_cpu_build_is_refused(cpu_report: VerifyReport) -> None:
    request = VerifyRequest(torch_version="2.13.0", cuda="12.8", archs=parse_cc("8.6"),
                            features=("cudnn", "magma", "mkl"))
    report = VerifyReport(check_probe(request, cpu_report.probe, site=None), cpu_report.probe)
    failed = {c.name: c for c in report.failures}
    assert set(failed) >= {"cuda", "arch list", "cudnn", "magma"}
    assert failed["cuda"].error is CudaMismatchError
    assert failed["arch list"].error is ArchListError
    assert "sm_86" in failed["arch list"].found
    with pytest.raises(CudaMismatchError) as err:
        report.raise_for_failures()
    assert err.value.exit_code == 23
    assert "none (CPU build)" in err.value.message


def test_wrong_tag_is_a_version_mismatch(cpu_report: VerifyReport) -> None:
    request = VerifyRequest(torch_version="2.12.0", cpu=True)
    report = VerifyReport(check_probe(request, cpu_report.probe, site=None), cpu_report.probe)
    assert [c.name for c in report.failures] == ["version"]
    with pytest.raises(Exception, match="expected 2.12.0") as err:
        report.raise_for_failures()
    assert getattr(err.value, "exit_code", None) == 22


def test_cli_on_an_installed_python_refuses_cuda_archs(cpu_report: VerifyReport,
                                                       tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert cpu_report.env_dir is not None
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    python = cpu_report.env_dir / "bin" / "python"
    args = parser.parse_args(["verify", str(python), "--cc", "8.6", "--torch", "2.13.0",
                              "--json", "--work-dir", str(tmp_path)])
    with pytest.raises(CudaMismatchError):
        verify_main(args, ENV)
    printed = json.loads(capsys.readouterr().out)
    assert printed["ok"] is False
    assert {c["check"]: c["exit_code"] for c in printed["checks"] if c["status"] == "FAILED"}[
        "cuda"] == 23


def test_compare_shows_no_difference_against_itself(cpu_report: VerifyReport) -> None:
    rows = compare_rows(cpu_report.probe, cpu_report.probe)
    assert rows, "nothing compared"
    assert all(r[0].startswith("  ") for r in rows)
    assert any(r[0].strip() == "BLAS" for r in rows)


def test_pip_check_failure_has_its_own_exit_code(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path, "tbprobe_extra", ["definitely-not-installed-xyz>=1"])
    python = make_throwaway_env(Path(sys.executable), [wheel], tmp_path / "env", ENV)
    check = pip_check(python, ENV, pip_python=Path(sys.executable))
    assert check.status == "FAILED"
    assert "definitely-not-installed-xyz" in check.found
    assert check.error is DependencyCheckError
    assert DependencyCheckError.exit_code == 29


def test_a_build_plan_asks_for_what_it_configured(tmp_path: Path) -> None:
    """The request verify derives from a real plan (``--dry-run --json``), as the pipeline does."""
    recipes = Path(__file__).resolve().parents[1] / "fixtures" / "recipes"
    out = capture([sys.executable, "-m", "torchbuild", "--recipe-dir", str(recipes), "--env",
                   "venv", "--cc", "8.6 9.0+PTX", "--cuda", "13.0", "--dry-run", "--json",
                   "--work-dir", str(tmp_path / "w"), "--dist", str(tmp_path / "d")],
                  env={**ENV, "HOME": str(tmp_path)}, cwd=tmp_path)
    plan = json.loads(out)
    request = request_from_manifest({"plan": plan}, ["magma"], "x86_64")
    assert request.torch_version == plan["torch_version"]
    assert request.cuda == "13.0"
    assert [str(a) for a in request.archs] == ["8.6", "9.0+PTX"]
    assert request.features == ("cudnn", "mkl")  # magma allowed missing
    assert request.companions == ("torchaudio", "torchvision")
    cpu = request_from_manifest({"plan": {**plan, "cuda": None}}, [], "aarch64")
    assert (cpu.cpu, cpu.archs, cpu.features) == (True, (), ())
