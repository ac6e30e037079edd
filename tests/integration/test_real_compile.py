"""A real C++ torch operator built through the whole pipeline against the real torch 2.13.0 wheel.

`--env existing --torch-from-env` builds the companion slot (a cpp_extension project in a local git
repo) against the torch already installed; the wheel is then installed into a fresh venv and its
operator called.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from conftest import base_env, make_venv
from gitrepos import FIXTURES, make_cppext_repo

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_cpp_extension_through_pipeline(torch_venv, tmp_path):
    root = tmp_path / "srv"
    commit = make_cppext_repo(root)
    args = ["--recipe-dir", str(FIXTURES / "recipes-cppext"), "--git-mirror", f"file://{root}",
            "--env", "existing", "--python", str(torch_venv), "--torch-from-env", "--cpu",
            "--work-dir", str(tmp_path / "work"), "--cache-dir", str(tmp_path / "cache"),
            "--dist", str(tmp_path / "dist")]
    started = time.monotonic()
    proc = subprocess.run([str(Path(__import__("sys").executable)), "-m", "torchbuild", *args],
                          env=base_env(tmp_path), cwd=tmp_path, capture_output=True, text=True,
                          timeout=1200)
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    wheels = sorted((tmp_path / "dist").glob("*.whl"))
    assert [w.name.split("-")[:2] for w in wheels] == [["tbext", "0.99.0+cpu"]]
    assert "linux_x86_64" in wheels[0].name or "linux" in wheels[0].name
    manifest = json.loads((tmp_path / "dist" / "torchbuild-manifest.json").read_text())
    assert manifest["sources"]["vision"]["commit"] == commit
    # the pipeline verified the wheel in a throwaway env before publishing it
    assert manifest["verify"] is not None, proc.stdout[-3000:]
    assert manifest["verify"]["ok"] is True
    print(f"\npipeline wall time for the real compile: {took:.1f}s")

    # A fresh venv: the real torch wheel + our wheel; call the operator from an empty directory.
    fresh = make_venv(tmp_path / "fresh", "torch==2.13.0")
    subprocess.run([str(fresh), "-m", "pip", "install", "-q", "--no-deps", str(wheels[0])],
                   check=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    code = ("import torch, tbext; a=torch.ones(3); b=torch.arange(3.0); "
            "r=torch.ops.tbext.scaled_add(a, b, 2.0); print(r.tolist())")
    out = subprocess.run([str(fresh), "-c", code], cwd=empty, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[1.0, 3.0, 5.0]"
    # torch in the fresh venv was not replaced by anything from our build
    meta = subprocess.run([str(fresh), "-c", "import torch; print(torch.__version__)"],
                          capture_output=True, text=True, check=True)
    assert meta.stdout.strip() == "2.13.0+cpu"
