"""Replay's input diffing, on manifests shaped like artifacts.build_manifest writes them."""

from __future__ import annotations

import copy
import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from torchbuild.build.extras import choose_sdist
from torchbuild.commands.replay import (
    Difference,
    compare_wheel_dirs,
    diff_inputs,
    load_manifest,
    replay_cli_values,
    snapshot,
)
from torchbuild.errors import UsageError
from torchbuild.options import resolve


def _manifest() -> dict[str, Any]:
    step_env = {"TORCH_CUDA_ARCH_LIST": "8.6", "USE_CUDA": "1", "MAX_JOBS": "4"}
    return {
        "schema_version": 1,
        "tool": {"name": "torchbuild", "version": "0.1.0"},
        "created": "2026-11-28T18:00:00+00:00",
        "options": {"cc": {"value": "8.6", "origin": "command line"},
                    "torch": {"value": "2.9.1", "origin": "command line"},
                    "set": {"value": [["USE_FLASH_ATTENTION", "0"]], "origin": "command line"},
                    "dry_run": {"value": False, "origin": "default"},
                    "jobs": {"value": None, "origin": "default"},
                    "dist": {"value": "/out/dist", "origin": "command line"}},
        "recipe": {"release": {"version": "2.9.1", "cuda": ["12.6", "12.8"]},
                   "components": [{"name": "torch", "dist": "torch", "version": "2.9.1",
                                   "label": "2.9.1+cu128.sm86", "tag": "v2.9.1"}]},
        "sources": {"torch": {"url": "https://github.com/pytorch/pytorch.git", "tag": "v2.9.1",
                              "commit": "a" * 40,
                              "submodules": {"third_party/nccl": "b" * 40}}},
        "environment": {"backend": "venv", "prefix": "/w/env", "python": "/w/env/bin/python",
                        "python_version": "3.12", "lock": None, "lock_sha256": None,
                        "pip_requirements": ["cmake<4", "ninja"], "conda_specs": []},
        "toolchain": {"gcc": "12.2.0", "nvcc": "12.8", "python": "3.12.3", "cmake": "3.31.6"},
        "steps": [{"id": "build-torch", "argv": ["python", "setup.py", "bdist_wheel"],
                   "env": step_env, "cwd": "/w/src/torch", "duration_s": 4321.0,
                   "status": "ok", "log": "/w/logs/01-build-torch.log"}],
        "wheels": [{"file": "torch-2.9.1+cu128.sm86-cp312-cp312-linux_x86_64.whl",
                    "sha256": "c" * 64, "size": 123}],
        "verify": {"ok": True},
        "plan": {"torch_label": "2.9.1+cu128.sm86", "cuda": "12.8", "arch_list": "8.6",
                 "python_version": "3.12", "archs": ["8.6"],
                 "steps": [{"id": "build-torch", "argv": ["python", "setup.py", "bdist_wheel"],
                            "env": step_env, "cwd": "/w/src/torch"}]},
    }


def test_snapshot_holds_inputs_not_outputs() -> None:
    snap = snapshot(_manifest())
    assert snap["sources.torch.commit"] == "a" * 40
    assert snap["sources.torch.submodules.third_party/nccl"] == "b" * 40
    assert snap["steps.build-torch.env.TORCH_CUDA_ARCH_LIST"] == "8.6"
    assert snap["environment.pip_requirements"] == "cmake<4 ninja"
    assert snap["toolchain.gcc"] == "12.2.0"
    assert not any(k.startswith(("wheels", "verify", "created")) for k in snap)
    assert not any("duration" in k or k.endswith(".log") for k in snap)


def test_identical_inputs_have_no_differences() -> None:
    assert diff_inputs(snapshot(_manifest()), snapshot(_manifest())) == []


def test_outputs_changing_is_not_an_input_difference() -> None:
    other = _manifest()
    other["wheels"][0]["sha256"] = "d" * 64
    other["steps"][0]["duration_s"] = 1.0
    other["created"] = "2027-01-01T00:00:00+00:00"
    assert diff_inputs(snapshot(_manifest()), snapshot(other)) == []


@pytest.mark.parametrize(("path", "value", "key"), [
    (("sources", "torch", "commit"), "e" * 40, "sources.torch.commit"),
    (("toolchain", "gcc"), "13.1.0", "toolchain.gcc"),
    (("environment", "lock_sha256"), "f" * 64, "environment.lock_sha256"),
    (("tool", "version"), "0.2.0", "tool.version"),
])
def test_one_changed_input_is_reported_exactly(path: tuple[str, ...], value: str,
                                               key: str) -> None:
    now = _manifest()
    target = now
    for part in path[:-1]:
        target = target[part]
    was = str(target[path[-1]] or "")
    target[path[-1]] = value
    assert diff_inputs(snapshot(_manifest()), snapshot(now)) == [Difference(key, was, value)]


def test_changed_step_flag_names_the_variable() -> None:
    now = _manifest()
    now["plan"]["steps"][0]["env"] = {**now["plan"]["steps"][0]["env"],
                                      "TORCH_CUDA_ARCH_LIST": "8.6;9.0"}
    now["plan"]["steps"][0]["env"].pop("MAX_JOBS")
    diffs = diff_inputs(snapshot(_manifest()), snapshot(now))
    assert [d.row() for d in diffs] == [
        ["steps.build-torch.env.MAX_JOBS", "4", "<absent>"],
        ["steps.build-torch.env.TORCH_CUDA_ARCH_LIST", "8.6", "8.6;9.0"],
    ]


def test_not_yet_known_inputs_are_skipped_but_known_ones_compared() -> None:
    now = _manifest()
    now["sources"]["torch"]["submodules"] = {}
    now["toolchain"] = {"gcc": "12.2.0"}
    assert diff_inputs(snapshot(_manifest()), snapshot(now),
                       unknown_ok=("sources.", "toolchain.")) == []
    assert {d.key for d in diff_inputs(snapshot(_manifest()), snapshot(now))} == {
        "sources.torch.submodules.third_party/nccl", "toolchain.cmake", "toolchain.nvcc",
        "toolchain.python"}


def test_recorded_options_become_cli_values() -> None:
    cli = replay_cli_values(_manifest(), None, {"dist": "/new/dist", "jobs": None})
    assert cli["cc"] == "8.6"
    assert cli["set"] == ["USE_FLASH_ATTENTION=0"]
    assert cli["dist"] == "/new/dist"
    assert "dry_run" not in cli  # how to run is not what to build
    assert "jobs" not in cli


def test_cc_auto_is_replaced_by_the_recorded_archs(tmp_path: Path) -> None:
    manifest = _manifest()
    manifest["options"]["cc"]["value"] = "auto"
    manifest["plan"]["archs"] = ["7.5", "8.6+PTX"]
    lock = tmp_path / "conda-lock.yml"
    cli = replay_cli_values(manifest, lock, {})
    assert cli["cc"] == "7.5 8.6+PTX"
    assert cli["lock"] == str(lock)


def test_manifest_schema_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "torchbuild-manifest.json"
    path.write_text(json.dumps({**_manifest(), "schema_version": 99}))
    with pytest.raises(UsageError, match="schema 99"):
        load_manifest(path)
    path.write_text(json.dumps(_manifest()))
    assert load_manifest(tmp_path)["tool"]["version"] == "0.1.0"
    with pytest.raises(UsageError, match="does not exist"):
        load_manifest(tmp_path / "nope.json")


def _wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_wheel_comparison_lists_members_that_differ(tmp_path: Path) -> None:
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    old_dir.mkdir()
    new_dir.mkdir()
    name = "torch-2.9.1-py3-none-any.whl"
    old = _wheel(old_dir / name, {"torch/__init__.py": b"x", "torch/_info.json": b"1",
                                  "torch/gone.py": b""})
    _wheel(new_dir / name, {"torch/__init__.py": b"x", "torch/_info.json": b"2",
                            "torch/new.py": b""})
    _wheel(new_dir / "extra-1.0-py3-none-any.whl", {"extra/__init__.py": b""})
    recorded = [{"file": name, "sha256": hashlib.sha256(old.read_bytes()).hexdigest()}]
    assert compare_wheel_dirs(recorded, old_dir, new_dir) == [
        f"{name}: torch/gone.py only in the recorded wheel",
        f"{name}: torch/new.py only in the new wheel",
        f"{name}: torch/_info.json content differs",
        "extra-1.0-py3-none-any.whl: built now, not in the manifest",
    ]


def test_identical_rebuild_has_no_reasons(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    wheel = _wheel(dist / "a-1.0-py3-none-any.whl", {"a/__init__.py": b""})
    recorded = [{"file": wheel.name, "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest()}]
    assert compare_wheel_dirs(copy.deepcopy(recorded), None, dist) == []


def _gpu_manifest() -> dict[str, Any]:
    """The manifest of the H200 causal-conv1d run (benchmarks/results), as it was written."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / \
        "gpu-extra-causal-conv1d-manifest.json"
    return dict(json.loads(path.read_text(encoding="utf-8")))


def test_an_unpinned_pypi_extra_is_replayed_at_the_version_that_was_built() -> None:
    manifest = _gpu_manifest()
    manifest["options"]["extra"]["value"] = ["causal-conv1d", "git+https://github.com/x/y@v1",
                                             "./my-kernels"]
    cli = replay_cli_values(manifest, None, {})
    assert cli["extra"] == ["causal-conv1d==1.7.0", "git+https://github.com/x/y@v1",
                            "./my-kernels"]
    # ... and the sdist choice then takes that release, not a newer one the index lists now,
    # while the recorded sha256 stays the source pin the download is checked against.
    doc = {"files": [
        {"filename": "causal_conv1d-1.7.0.tar.gz", "url": "u170",
         "hashes": {"sha256": manifest["sources"]["causal-conv1d"]["commit"][len("sha256:"):]}},
        {"filename": "causal_conv1d-1.8.0.tar.gz", "url": "u180", "hashes": {"sha256": "c" * 64}},
    ]}
    opts = resolve(cli, {"HOME": "/home/u"})
    spec = opts.extra[0]
    version, entry = choose_sdist(doc, "causal-conv1d", spec[len("causal-conv1d"):])
    assert (version, entry["url"]) == ("1.7.0", "u170")
    assert f"sha256:{entry['hashes']['sha256']}" == manifest["sources"]["causal-conv1d"]["commit"]


def test_a_ranged_extra_is_pinned_too_and_an_unbuilt_one_is_left_as_it_was() -> None:
    manifest = _gpu_manifest()
    manifest["options"]["extra"]["value"] = ["Causal_Conv1d>=1.4,<2", "flash-attn"]
    assert replay_cli_values(manifest, None, {})["extra"] == ["causal-conv1d==1.7.0",
                                                              "flash-attn"]
