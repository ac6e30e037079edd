"""``pipeline.run_build`` in-process over the fixture repos, for real: real git mirrors, a real
venv, real wheel builds. The spy at the execution boundary (tests/seam.py) checks that what ran
is exactly the plan's steps, with the plan's env (the unit twin, tests/unit/test_seams.py, checks
the same shape without starting anything)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import base_env, fixture_args
from seam import Spy
from torchbuild import command, pipeline
from torchbuild.__main__ import build_parser
from torchbuild.build.steps import resolve_argv
from torchbuild.options import resolve

pytestmark = pytest.mark.integration


def test_run_build_in_process_over_the_fixture_repos(
        mirror_root: tuple[Path, dict[str, str]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    root, commits = mirror_root
    argv = fixture_args(root, tmp_path, "--env", "venv", "--cpu", "--no-verify",
                        "--set", "SEAM_FLAG=1")
    options = resolve(vars(build_parser().parse_args(argv)), base_env(tmp_path))
    plan, _ = pipeline.prepare(options)
    spy = Spy()
    monkeypatch.setattr(command, "subprocess", spy)
    assert pipeline.run_build(options) == 0

    dist = tmp_path / "dist"
    manifest = json.loads((dist / "torchbuild-manifest.json").read_text())
    wheels = {w["file"].split("-")[0].removeprefix("torch") or "torch": w["file"]
              for w in manifest["wheels"]}
    built = {"torch": wheels["torch"], "vision": wheels["vision"], "audio": wheels["audio"]}
    expected = [resolve_argv(s, {c: plan.work_dir / "wheels" / c / f for c, f in built.items()})
                for s in plan.steps]
    ran = [c for c in spy.calls if c.argv in expected]
    assert [c.argv for c in ran] == expected
    for step, call in zip(plan.steps, ran, strict=True):
        assert call.cwd == str(step.cwd)
        assert {k: call.env[k] for k in step.env} == dict(step.env)
        assert (call.env.get("SEAM_FLAG") == "1") is (step.kind == "build")  # --set: builds
    assert manifest["sources"]["torch"]["commit"] == commits["pytorch@v2.99.0"]
    assert sorted(p.name.split("-")[0] for p in dist.glob("*.whl")) == [
        "torch", "torchaudio", "torchvision"]
