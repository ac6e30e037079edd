"""Build requirements as data: pip's installation report -> records -> hash-pinned requirements,
and the deps commands the plan spells out (normal, --offline, replay). Pure."""

from __future__ import annotations

import json
from pathlib import Path

from torchbuild.__main__ import build_parser
from torchbuild.build.deps import (
    Installed,
    download_args,
    for_offline,
    hashed_requirements,
    read_report,
    recorded_from_manifest,
)
from torchbuild.knowledge.recipe import load_recipes
from torchbuild.machine.facts import Facts
from torchbuild.machine.probes import MemInfo, Toolkit
from torchbuild.options import resolve
from torchbuild.plan import make_plan, pin_deps

TOOLKIT = Toolkit("/usr/local/cuda/bin/nvcc", "12.8", Path("/usr/local/cuda"), (), None, None)
FACTS = Facts(cores=8, mem=MemInfo(64.0, 60.0, 0.0, 0.0), machine="x86_64", toolkit=TOOLKIT,
              host_python="/usr/bin/python3", host_python_version="3.11")
# The shape of `pip install --report` (pip's docs: installation report, version 1).
REPORT = {"version": "1", "install": [
    {"metadata": {"name": "PyYAML", "version": "6.0.2"},
     "download_info": {"url": "https://files.example/PyYAML-6.0.2-cp311-cp311-manylinux.whl",
                       "archive_info": {"hash": "sha256=" + "a" * 64,
                                        "hashes": {"sha256": "a" * 64}}}},
    {"metadata": {"name": "numpy", "version": "2.3.1"},
     "download_info": {"url": "file:///w/numpy-2.3.1-cp311-cp311-manylinux.whl",
                       "archive_info": {"hash": "sha256=" + "b" * 64}}}]}


def _plan(*argv: str):
    opts = resolve(vars(build_parser().parse_args(list(argv))), {"HOME": "/home/u"})
    return make_plan(load_recipes(), opts, FACTS)


def test_report_to_records_to_hashed_requirements(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(REPORT))
    items = read_report(path)
    assert [(i.name, i.version, i.sha256[:1]) for i in items] == [("numpy", "2.3.1", "b"),
                                                                  ("PyYAML", "6.0.2", "a")]
    assert items[1].file == "PyYAML-6.0.2-cp311-cp311-manylinux.whl"
    assert hashed_requirements(items) == (f"numpy==2.3.1 --hash=sha256:{'b' * 64}\n"
                                          f"PyYAML==6.0.2 --hash=sha256:{'a' * 64}\n")
    manifest = {"deps": {"torch": {"installed": [i.to_json() for i in items]}, "vision": {}}}
    assert recorded_from_manifest(manifest) == {"torch": items}


def test_deps_step_records_and_goes_offline_from_the_wheelhouse(tmp_path: Path) -> None:
    deps = next(s for s in _plan("--cc", "8.6", "--torch", "2.9.1").steps if s.kind == "deps")
    assert deps.argv[3:] == ("install", "-r", "requirements.txt", "--report",
                             "/home/u/.cache/torchbuild/work/torch-2.9.1-cu128/deps/torch.json")
    plan = _plan("--cc", "8.6", "--torch", "2.9.1", "--offline", "--cache-dir", str(tmp_path))
    offline, warnings = for_offline(plan)
    step = next(s for s in offline.steps if s.kind == "deps")
    assert step.argv[3:6] == ("install", "--no-index", "-r")    # no wheelhouse: say so
    assert len(warnings) == 1 and "torchbuild fetch" in warnings[0]
    house = tmp_path / "wheelhouse" / "torch-v2.9.1"
    house.mkdir(parents=True)
    (tmp_path / "wheelhouse" / "torch-v2.9.1.txt").write_text("")
    offline, warnings = for_offline(plan)
    step = next(s for s in offline.steps if s.kind == "deps")
    assert step.argv[3:] == ("install", "--no-index", "--find-links", str(house),
                             "--require-hashes", "-r", f"{house}.txt", "--report",
                             str(plan.work_dir / "deps" / "torch.json"))
    assert warnings == []


def test_replay_pins_the_recorded_files() -> None:
    plan = _plan("--cc", "8.6", "--torch", "2.13.0")
    pinned = pin_deps(plan, {"torch": [Installed("numpy", "2.3.1", "n.whl", "b" * 64)]})
    deps = next(s for s in pinned.steps if s.kind == "deps")
    assert "--group" not in deps.argv
    assert deps.argv[3:8] == ("install", "--require-hashes", "--no-deps", "-r",
                              str(plan.work_dir / "deps" / "torch.replay.txt"))
    assert [s.argv for s in pinned.steps if s.kind != "deps"] == \
        [s.argv for s in plan.steps if s.kind != "deps"]


def test_download_args_read_the_tags_files(tmp_path: Path) -> None:
    files = {"requirements.txt": "-r requirements-build.txt\nnumpy\n",
             "requirements-build.txt": "cmake\n", "pyproject.toml": "[dependency-groups]\n"}
    args = download_args(["-r", "requirements.txt", "--report", "x.json", "--group", "dev"],
                         files.__getitem__, tmp_path)
    assert args == ["-r", str(tmp_path / "requirements.txt"), "--group",
                    f"{tmp_path / 'pyproject.toml'}:dev"]
    assert (tmp_path / "requirements-build.txt").read_text() == "cmake\n"
