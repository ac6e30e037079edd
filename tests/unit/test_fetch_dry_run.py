"""`fetch --dry-run` lists what `fetch` would do, in its order, and nothing it would not do."""

from __future__ import annotations

from pathlib import Path

from torchbuild.__main__ import build_parser
from torchbuild.commands.fetch import dry_run_lines
from torchbuild.knowledge.recipe import load_recipes
from torchbuild.machine.facts import Facts
from torchbuild.machine.probes import MemInfo, Toolkit
from torchbuild.options import resolve
from torchbuild.plan import make_plan

TOOLKIT = Toolkit("/usr/local/cuda/bin/nvcc", "12.8", Path("/usr/local/cuda"), (), None, None)
FACTS = Facts(cores=16, mem=MemInfo(64.0, 60.0, 0.0, 0.0), machine="x86_64", toolkit=TOOLKIT,
              host_python="/usr/bin/python3", host_python_version="3.11")


def _lines(*argv: str) -> list[str]:
    opts = resolve(vars(build_parser().parse_args([*argv, "--cache-dir", "/c"])), {"HOME": "/h"})
    return dry_run_lines(make_plan(load_recipes(), opts, FACTS))


def test_conda_plan_mirrors_each_repo_and_says_conda_packages_are_not_fetched() -> None:
    lines = _lines("--cc", "8.6", "--torch", "2.9.1")
    assert lines[0] == ("would mirror torch v2.9.1 from https://github.com/pytorch/pytorch.git "
                        "(with submodules) into /c/git")
    assert "would download torch v2.9.1's build requirements into /c/wheelhouse/torch-v2.9.1" \
        in lines
    assert [ln.split()[2] for ln in lines if ln.startswith("would mirror")] == \
        ["torch", "vision", "audio"]
    assert lines[-1].startswith("conda packages are not fetched")
    assert not any("pip packages" in ln for ln in lines)


def test_venv_plan_downloads_the_pip_packages_and_skips_what_is_left_out() -> None:
    lines = _lines("--cpu", "--env", "venv", "--torch", "2.9.1", "--audio", "none")
    assert lines[-1] == "would download the build env's pip packages into /c/pip"
    assert not any(" audio " in ln for ln in lines)
    assert not any("conda" in ln for ln in lines)
