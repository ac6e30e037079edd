"""Real third-party code: torch-scatter 2.1.2's PyPI sdist built with ``--extra`` against torch.

The sdist comes from PyPI through torchbuild's own resolver (the index's sha256 is checked), is
built by the pipeline with ``--torch-from-env`` against the real torch 2.13.0 CPU wheel, verified in
the throwaway env, relabelled and pinned to that torch. Then the wheel goes into a fresh venv and
``torch_scatter.scatter_add`` is compared with plain torch. Network: PyPI only (the sdist is the
point of the test). About 3-4 minutes of compiling on 2 cores.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from conftest import base_env, make_venv
from gitrepos import PROJECTS, _commit_all, _publish, git

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# PyPI's published hash of torch_scatter-2.1.2.tar.gz (the index lists it; the build checks it).
SDIST_SHA256 = "69b3aa435f2424ac6a1bfb6ff702da6eb73b33ca0db38fb26989c74159258e47"


@pytest.fixture(scope="session")
def scatter_build(torch_venv: Path, tmp_path_factory: pytest.TempPathFactory
                  ) -> tuple[Path, subprocess.CompletedProcess[str], float]:
    tmp = tmp_path_factory.mktemp("extra-scatter")
    args = ["--torch", "2.13.0", "--cpu", "--env", "existing", "--python", str(torch_venv),
            "--torch-from-env", "--vision", "none", "--audio", "none",
            "--extra", "torch-scatter==2.1.2", "--work-dir", str(tmp / "work"),
            "--cache-dir", str(tmp / "cache"), "--dist", str(tmp / "dist")]
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "torchbuild", *args], env=base_env(tmp),
                          cwd=tmp, capture_output=True, text=True, timeout=1800)
    return tmp, proc, time.monotonic() - started


def test_torch_scatter_sdist_through_pipeline(scatter_build):
    tmp, proc, took = scatter_build
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    wheels = sorted((tmp / "dist").glob("*.whl"))
    assert [w.name.split("-")[:2] for w in wheels] == [["torch_scatter", "2.1.2+cpu"]]
    manifest = json.loads((tmp / "dist" / "torchbuild-manifest.json").read_text())
    assert manifest["sources"]["torch-scatter"]["commit"] == f"sha256:{SDIST_SHA256}"
    build = next(s for s in manifest["plan"]["steps"] if s["id"] == "build-torch-scatter")
    assert build["env"]["FORCE_ONLY_CPU"] == "1" and int(build["env"]["MAX_JOBS"]) >= 1
    assert "--no-build-isolation" in build["argv"] and "--no-deps" in build["argv"]
    checks = {c["check"]: c["status"] for c in manifest["verify"]["checks"]}
    assert checks["torch-scatter import torch_scatter"] == "ok", checks
    assert checks["torch-scatter smoke cpu"] == "ok", checks
    assert checks["torch-scatter pin"] == "ok", checks
    with zipfile.ZipFile(wheels[0]) as zf:
        meta = zf.read("torch_scatter-2.1.2+cpu.dist-info/METADATA").decode()
    assert "Version: 2.1.2+cpu" in meta and "Requires-Dist: torch==2.13.0+cpu" in meta
    print(f"\ntorch-scatter 2.1.2 through the pipeline: {took:.1f}s")


def test_torch_scatter_wheel_in_a_fresh_venv(scatter_build, tmp_path):
    tmp, proc, _ = scatter_build
    assert proc.returncode == 0, proc.stdout[-3000:]
    wheel = next((tmp / "dist").glob("torch_scatter-*.whl"))
    fresh = make_venv(tmp_path / "fresh", "torch==2.13.0")
    subprocess.run([str(fresh), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
                   check=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    code = (
        "import torch, torch_scatter\n"
        "torch.manual_seed(0)\n"
        "src = torch.randn(1000, 16); index = torch.randint(0, 37, (1000,))\n"
        "got = torch_scatter.scatter_add(src, index, dim=0, dim_size=37)\n"
        "ref = torch.zeros(37, 16).index_add_(0, index, src)\n"
        "print(torch.allclose(got, ref, atol=1e-5), tuple(got.shape))\n")
    out = subprocess.run([str(fresh), "-c", code], cwd=empty, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "True (37, 16)"
    check = subprocess.run([str(fresh), "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout


def test_git_extra_through_the_mirror_cache_pinned_and_resumed(torch_venv, tmp_path):
    """``--extra git+URL@TAG``: cloned through the mirror cache (``--git-mirror``), commit in the
    manifest, labelled; the second run skips the unchanged build."""
    work = tmp_path / "tbext-work"
    shutil.copytree(PROJECTS / "cppext", work)
    git("init", "-q", cwd=work)
    commit = _commit_all(work, "tbext")
    git("tag", "v0.99.0", cwd=work)
    root = tmp_path / "srv"
    _publish(work, root / "example" / "tbext.git")
    args = ["--torch", "2.13.0", "--cpu", "--env", "existing", "--python", str(torch_venv),
            "--torch-from-env", "--vision", "none", "--audio", "none",
            "--extra", "git+https://git.example.org/example/tbext.git@v0.99.0",
            "--git-mirror", f"file://{root}", "--work-dir", str(tmp_path / "work"),
            "--cache-dir", str(tmp_path / "cache"), "--dist", str(tmp_path / "dist")]

    def run(*more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "torchbuild", *args, *more],
                              env=base_env(tmp_path), cwd=tmp_path, capture_output=True,
                              text=True, timeout=1200)

    dry = run("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "extra tbext 0.99.0 -> 0.99.0+cpu" in dry.stdout
    assert f"file://{root}/example/tbext.git" in dry.stdout
    first = run()
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    manifest = json.loads((tmp_path / "dist" / "torchbuild-manifest.json").read_text())
    assert manifest["sources"]["tbext"]["commit"] == commit
    wheels = [w.name for w in (tmp_path / "dist").glob("*.whl")]
    assert wheels and wheels[0].startswith("tbext-0.0.0+cpu-"), wheels   # its setup.py's version
    second = run()
    assert second.returncode == 0, second.stdout[-3000:]
    steps = {s["id"]: s["status"] for s in json.loads(
        (tmp_path / "dist" / "torchbuild-manifest.json").read_text())["steps"]}
    assert steps["build-tbext"] == "skipped", steps


def test_bad_extra_spec_is_refused_in_seconds(tmp_path):
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "torchbuild", "--cc", "8.6", "--dry-run",
                           "--extra", "https://example.org/flash_attn-2.8.3.tar.gz"],
                          env=base_env(tmp_path), cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "--extra" in proc.stderr and "fix:" in proc.stderr
    assert time.monotonic() - started < 20


def test_fetch_fills_the_cache_an_offline_extra_build_plans_from(torch_venv, tmp_path):
    """``fetch --extra`` (what the GPU run's carry is made with): the index answer and the sdist,
    hash-checked, land in the cache, and the same build then plans ``--offline``. a3134e4 had
    dropped --extra from fetch's options; this fails if that happens again."""
    common = ["--torch", "2.13.0", "--cpu", "--env", "existing", "--python", str(torch_venv),
              "--torch-from-env", "--vision", "none", "--audio", "none",
              "--extra", "torch-scatter==2.1.2", "--cache-dir", str(tmp_path / "cache"),
              "--work-dir", str(tmp_path / "work")]

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "torchbuild", *argv], env=base_env(tmp_path),
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)

    listed = run("fetch", *common, "--dry-run")
    assert listed.returncode == 0, listed.stderr
    assert f"would download torch_scatter-2.1.2.tar.gz (sha256 {SDIST_SHA256[:12]})" in \
        listed.stdout
    fetched = run("fetch", *common)
    assert fetched.returncode == 0, fetched.stdout[-2000:] + fetched.stderr[-2000:]
    sdist = tmp_path / "cache" / "sdists" / "files" / "torch_scatter-2.1.2.tar.gz"
    assert hashlib.sha256(sdist.read_bytes()).hexdigest() == SDIST_SHA256
    offline = run(*common, "--offline", "--dist", str(tmp_path / "dist"), "--dry-run")
    assert offline.returncode == 0, offline.stdout[-2000:] + offline.stderr[-2000:]
    assert "extra torch-scatter 2.1.2 -> 2.1.2+cpu" in offline.stdout
