"""Every benchmark script runs from a plain install: no pytest (the test extras) needed.

Three of them once imported pytest through the test helpers, two imported modules from where
they lived before the wings, and all crashed before printing anything. Here pytest is made
unimportable (a stand-in module on PYTHONPATH that raises ImportError, as a missing package
does) and each script is run as a user runs it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import base_env

pytestmark = pytest.mark.integration

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
# smoke_torch.py runs inside the env of a built torch and imports torch first (never torchbuild):
# it needs torch, not the test extras, and is run on the GPU machine by gpu_real_torch.sh.
NEEDS_TORCH = {"smoke_torch.py"}
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if p.name not in NEEDS_TORCH)


def _plain(tmp_path: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    shim = tmp_path / "no-pytest"
    shim.mkdir(exist_ok=True)
    (shim / "pytest.py").write_text('raise ImportError("No module named \'pytest\'")\n')
    env = {**base_env(tmp_path), "PYTHONPATH": str(shim)}
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def test_the_shim_really_hides_pytest(tmp_path: Path) -> None:
    shim = tmp_path / "no-pytest"
    shim.mkdir()
    (shim / "pytest.py").write_text('raise ImportError("No module named \'pytest\'")\n')
    proc = subprocess.run([sys.executable, "-c", "import pytest"], capture_output=True, text=True,
                          env={**base_env(tmp_path), "PYTHONPATH": str(shim)}, check=False)
    assert proc.returncode == 1 and "No module named 'pytest'" in proc.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_help_runs_without_pytest(tmp_path: Path, script: str) -> None:
    proc = _plain(tmp_path, script, "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage:")


def test_tiny_clone_and_conda_benchmarks_run_without_pytest(tmp_path: Path) -> None:
    clone = _plain(tmp_path, "bench_clone.py", "--repeats", "1", "--history-mb", "1")
    assert "cached tag (checkout from cache)" in clone.stdout, clone.stderr[-2000:]
    assert clone.returncode in (0, 1)    # 1: a 1 MB history misses the 10 % goal, as it may
    conda = _plain(tmp_path, "bench_conda_env.py", "--runs", "1")
    assert conda.returncode == 0, conda.stderr[-2000:]
    assert "file:// solve" in conda.stdout and "http    solve" in conda.stdout
