"""Resume for real: a fixture build (ninja over real C++ files) interrupted by a signal mid-step,
re-run, then re-run with one changed flag, then once more with nothing changed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import base_env, make_venv
from resumerepos import UNITS, cli_args, compiled, make_resume_server, write_recipes

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def build_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_venv(tmp_path_factory.mktemp("resumevenv") / "venv", "setuptools", "wheel",
                     "ninja")


def _run(args: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "torchbuild", *args], env=base_env(tmp),
                          cwd=tmp, capture_output=True, text=True, timeout=600)


def _steps(tmp: Path) -> dict[str, str]:
    manifest = json.loads((tmp / "dist" / "torchbuild-manifest.json").read_text())
    return {s["id"]: s["status"] for s in manifest["steps"]}


def _interrupt_mid_compile(args: list[str], tmp: Path, log: Path, after: int) -> str:
    """Start a build, send SIGINT once ninja reports ``[after/N]`` in the step log."""
    proc = subprocess.Popen([sys.executable, "-m", "torchbuild", *args], env=base_env(tmp),
                            cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while f"[{after}/{UNITS}]" not in (log.read_text() if log.exists() else ""):
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "the build never reached the compile"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out[-3000:]
    return out


def test_interrupt_resume_then_change_one_flag(tmp_path: Path, build_python: Path) -> None:
    root = tmp_path / "srv"
    make_resume_server(root)
    recipes = write_recipes(tmp_path / "recipes")
    args = cli_args(root, recipes, tmp_path, build_python)
    torch_tree = tmp_path / "work" / "src" / "torch"
    vision_tree = tmp_path / "work" / "src" / "vision"

    # 1. Ctrl-C in the middle of torch's compile.
    out = _interrupt_mid_compile(args, tmp_path, tmp_path / "work" / "logs" / "01-build-torch.log",
                                 after=3)
    assert "interrupted" in out
    first = compiled(torch_tree)
    assert 2 <= len(first) < UNITS  # stopped part-way, with finished units on disk

    # 2. Same command again: continues in the same tree, every unit compiled once overall.
    proc = _run(args, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "the last run stopped during this step; continuing in its build tree" in proc.stdout
    everything = compiled(torch_tree)
    assert sorted(set(everything)) == sorted(f"build/u{i}.o" for i in range(UNITS))
    assert len(everything) <= UNITS + 1  # at most the unit being compiled at the signal, twice
    assert everything[:len(first)] == first  # the log was not cleaned: same tree
    assert _steps(tmp_path) == {"build-torch": "ok", "install-torch": "ok",
                                "build-vision": "ok", "install-vision": "ok"}

    # 3. A flag of vision changes: torch's steps are skipped, vision's stale tree is cleaned.
    torch_units = compiled(torch_tree)
    stale_marker = vision_tree / "build" / "stale-marker"
    stale_marker.write_text("from the previous build")
    write_recipes(recipes, vision_flag="1")
    proc = _run(args, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert _steps(tmp_path) == {"build-torch": "skipped", "install-torch": "skipped",
                                "build-vision": "ok", "install-vision": "ok"}
    assert "inputs changed (env VISION_FLAG added (1)): cleaning the build tree" in proc.stdout
    assert not stale_marker.exists()
    assert compiled(vision_tree) == ["build/u0.o", "build/u1.o"]  # rebuilt from scratch, once
    assert compiled(torch_tree) == torch_units  # torch untouched

    # 4. Nothing changed: a no-op that says where the wheels are.
    started = time.monotonic()
    proc = _run(args, tmp_path)
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(_steps(tmp_path).values()) == {"skipped"}
    assert "nothing to do: all 4 steps are unchanged" in proc.stdout
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "dist").glob("*.whl")) == [
        "torch", "torchvision"]
    print(f"\nno-op re-run took {took:.2f}s")

    # 5. --clean starts over: every unit compiled again.
    plan = json.loads(_run([*args, "--clean", "--dry-run", "--json"], tmp_path).stdout)
    assert plan["clean"] is True
    proc = _run([*args, "--clean"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(_steps(tmp_path).values()) == {"ok"}
    assert len(compiled(torch_tree)) == UNITS


def test_second_run_on_a_busy_work_dir_fails_fast(tmp_path: Path, build_python: Path) -> None:
    root = tmp_path / "srv"
    make_resume_server(root)
    args = cli_args(root, write_recipes(tmp_path / "recipes"), tmp_path, build_python)
    log = tmp_path / "work" / "logs" / "01-build-torch.log"
    first = subprocess.Popen([sys.executable, "-m", "torchbuild", *args], env=base_env(tmp_path),
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while "[1/" not in (log.read_text() if log.exists() else ""):
            assert first.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = _run(args, tmp_path)
        assert second.returncode == 17, second.stderr
        assert f"pid {first.pid}" in second.stderr
        assert "busy" in second.stderr
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=60)
    assert not (tmp_path / "dist" / "torchbuild-manifest.json").exists()


def test_failed_step_shows_first_error_and_known_cause(tmp_path: Path,
                                                      build_python: Path) -> None:
    root = tmp_path / "srv"
    make_resume_server(root, delay="0", vision_include="nccl.h")
    args = cli_args(root, write_recipes(tmp_path / "recipes"), tmp_path, build_python)
    proc = _run(args, tmp_path)
    assert proc.returncode == 12, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    first = lines.index("  first errors:")
    # g++'s own message comes first, before ninja's and pip's unwinding.
    assert "fatal error: nccl.h: No such file or directory" in lines[first + 1]
    assert "likely cause (FM-30): NCCL / distributed build error" in proc.stderr
    assert "USE_NCCL=0" in proc.stderr
    assert _steps_done(tmp_path) == ["build-torch", "install-torch"]


def _steps_done(tmp: Path) -> list[str]:
    stamps = tmp / "work" / "stamps"
    return sorted((p.stem for p in stamps.glob("*.json") if ".started" not in p.name),
                  key=["build-torch", "install-torch", "build-vision"].index)
