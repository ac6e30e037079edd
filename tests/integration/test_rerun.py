"""Reruns of a finished build against a real torch (#17): a no-op with verify on in under a second
that keeps the verify report, --no-verify keeping it too, the durations of the run that built each
step, fresh per-step logs with the previous one kept as .1, and ``torchbuild verify DIST`` using
the build env the manifest records.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import CLI, base_env
from gitrepos import FIXTURES
from resumerepos import make_cppext_server
from torchbuild import pipeline
from torchbuild.__main__ import build_parser
from torchbuild.options import resolve

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _manifest(tmp: Path) -> dict:
    return dict(json.loads((tmp / "dist" / "torchbuild-manifest.json").read_text()))


def _args(tmp: Path, root: Path, python: Path) -> list[str]:
    return ["--recipe-dir", str(FIXTURES / "recipes-cppext"), "--git-mirror", f"file://{root}",
            "--env", "existing", "--python", str(python), "--torch-from-env", "--cpu",
            "--work-dir", str(tmp / "work"), "--cache-dir", str(tmp / "cache"),
            "--dist", str(tmp / "dist"), "--compiler-cache", "none"]


def test_reruns_keep_what_the_build_proved(torch_venv: Path, cli: CLI, tmp_path: Path) -> None:
    root = tmp_path / "srv"
    make_cppext_server(root)
    args = _args(tmp_path, root, torch_venv)
    first = cli(*args, timeout=1200)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    built = _manifest(tmp_path)
    assert built["verify"]["ok"] is True
    built_s = {s["id"]: s["duration_s"] for s in built["steps"]}
    assert built_s["build-vision"] > 1.0

    started = time.monotonic()
    again = cli(*args)
    took = time.monotonic() - started
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "the wheels and the env are unchanged; keeping the report" in again.stdout
    rerun = _manifest(tmp_path)
    assert rerun["verify"] == built["verify"]
    assert {s["id"]: s["status"] for s in rerun["steps"]} == {"build-vision": "skipped",
                                                              "install-vision": "skipped"}
    assert {s["id"]: s["duration_s"] for s in rerun["steps"]} == pytest.approx(built_s, abs=1e-3)
    print(f"\nno-op rerun with verify on, whole process: {took:.2f}s")

    no_verify = cli(*args, "--no-verify")
    assert no_verify.returncode == 0, no_verify.stderr
    assert _manifest(tmp_path)["verify"] == built["verify"]

    # Something changed: the step runs again with a fresh log, the previous one kept as .1.
    log = tmp_path / "work" / "logs" / "01-build-vision.log"
    first_log = log.read_text()
    changed = cli(*args, "--set", "vision:CUSTOM_RERUN=1", "--no-verify")
    assert changed.returncode == 0, changed.stdout[-3000:] + changed.stderr[-3000:]
    assert (log.with_name(log.name + ".1")).read_text() == first_log
    assert log.read_text() != first_log and first_log not in log.read_text()
    assert _manifest(tmp_path)["verify"] is None   # other wheels: the old report does not apply

    # torchbuild verify DIST: the manifest's build env, not this interpreter (which has no torch)
    proc = cli("verify", str(tmp_path / "dist"), "--work-dir", str(tmp_path / "v"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"base interpreter: {torch_venv}" in proc.stdout + proc.stderr

    # The no-op itself, in this process (interpreter start-up and imports excluded: they are the
    # same for every command): the first run verifies the rebuilt wheel, the second keeps it.
    options = resolve(vars(build_parser().parse_args(
        [*args, "--set", "vision:CUSTOM_RERUN=1"])), base_env(tmp_path))
    assert pipeline.run_build(options) == 0
    # The build report is part of the no-op too: an all-skipped run keeps the one drawn before.
    started = time.monotonic()
    assert pipeline.run_build(options) == 0
    took = time.monotonic() - started
    print(f"no-op rerun with verify on, run_build: {took:.2f}s")
    assert _manifest(tmp_path)["verify"]["ok"] is True
    assert took < 1.0, f"a no-op rerun took {took:.2f}s"
