"""Resume stamps: digests, the four states, and the reason text a user reads."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from torchbuild.build.stamps import (
    SCHEME_VERSION,
    Stamps,
    StepInputs,
    explain_change,
    relevant_env,
    step_inputs,
)


def inputs(**changes: object) -> StepInputs:
    base = StepInputs(
        argv=("python", "-m", "pip", "wheel", "--no-build-isolation", "."),
        env={"USE_CUDA": "1", "TORCH_CUDA_ARCH_LIST": "8.6", "CUDA_HOME": "/usr/local/cuda-12.8"},
        sources={"pytorch": "a" * 40},
        lock_sha256="f" * 64,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_digest_is_stable_and_independent_of_mapping_order() -> None:
    a = inputs(env={"A": "1", "B": "2"})
    b = inputs(env={"B": "2", "A": "1"})
    assert a.digest() == b.digest()
    assert len(a.digest()) == 64
    assert a.to_json()["scheme"] == SCHEME_VERSION


@pytest.mark.parametrize(
    "change",
    [
        {"argv": ("python", "setup.py", "bdist_wheel")},
        {"env": {"USE_CUDA": "0"}},
        {"sources": {"pytorch": "b" * 40}},
        {"lock_sha256": "0" * 64},
        {"extra": {"nvcc": "13.0"}},
    ],
)
def test_every_input_kind_changes_the_digest(change: dict[str, object]) -> None:
    assert inputs(**change).digest() != inputs().digest()


def test_relevant_env_drops_what_cannot_change_outputs() -> None:
    env = {"MAX_JOBS": "8", "CMAKE_CXX_COMPILER_LAUNCHER": "ccache", "CCACHE_DIR": "/c",
           "TERM": "xterm", "USE_CUDA": "1", "PATH": "/env/bin:/usr/bin", "CC": "gcc-12",
           "SSH_AUTH_SOCK": "/tmp/agent", "MY_FLAG": "x"}
    assert relevant_env(env) == {"USE_CUDA": "1", "CC": "gcc-12"}
    # What the plan sets for the step always counts, except parallelism.
    assert relevant_env(env, {"MY_FLAG": "x", "MAX_JOBS": "8"}) == {
        "USE_CUDA": "1", "CC": "gcc-12", "MY_FLAG": "x"}


def test_step_inputs_chain_and_tools() -> None:
    env = {"USE_CUDA": "1", "MAX_JOBS": "4"}
    first = step_inputs(["make"], env, {}, sources={"t": "a"}, lock_sha256=None,
                        tools={"gcc": "12.2.0"})
    second = step_inputs(["make"], env, {}, sources={"t": "a"}, lock_sha256=None,
                         tools={"gcc": "12.2.0"}, previous=first.digest())
    assert first.env == {"USE_CUDA": "1"}
    assert first.extra == {"tool gcc": "12.2.0"}
    assert second.extra["after"] == first.digest()
    newer_gcc = step_inputs(["make"], env, {}, sources={"t": "a"}, lock_sha256=None,
                            tools={"gcc": "13.1.0"})
    assert newer_gcc.digest() != first.digest()
    assert explain_change(first.to_json(), newer_gcc.to_json()) == "tool gcc: 12.2.0 -> 13.1.0"
    assert explain_change(second.to_json(), replace(second, extra={**second.extra, "after": "x"})
                          .to_json()) == "an earlier step was rebuilt with other inputs"


def test_lifecycle_new_interrupted_done(tmp_path: Path) -> None:
    stamps = Stamps(tmp_path / "stamps")
    step = inputs()
    assert stamps.check("torch-wheel", step).state == "new"
    stamps.mark_started("torch-wheel", step)
    status = stamps.check("torch-wheel", step)
    assert status.state == "interrupted"
    assert "continuing" in status.reason
    stamps.mark_done("torch-wheel", step, duration_s=12.5, outputs=["dist/torch.whl"])
    assert stamps.check("torch-wheel", step).state == "done"
    assert not (tmp_path / "stamps" / "torch-wheel.started.json").exists()
    recorded = stamps.recorded("torch-wheel")
    assert recorded is not None
    assert recorded["outputs"] == ["dist/torch.whl"]


def test_changed_env_is_stale_and_says_which_variable(tmp_path: Path) -> None:
    stamps = Stamps(tmp_path)
    stamps.mark_done("torch-wheel", inputs(), duration_s=1)
    new = inputs(env={**inputs().env, "TORCH_CUDA_ARCH_LIST": "8.6;9.0"})
    status = stamps.check("torch-wheel", new)
    assert status.state == "stale"
    assert status.reason == "env TORCH_CUDA_ARCH_LIST: 8.6 -> 8.6;9.0"


def test_interrupted_with_other_inputs_is_stale(tmp_path: Path) -> None:
    stamps = Stamps(tmp_path)
    stamps.mark_started("torch-wheel", inputs())
    status = stamps.check("torch-wheel", inputs(sources={"pytorch": "c" * 40}))
    assert status.state == "stale"
    assert "interrupted earlier" in status.reason
    assert "source pytorch" in status.reason


def test_forget_removes_both_stamps(tmp_path: Path) -> None:
    stamps = Stamps(tmp_path)
    stamps.mark_done("a", inputs(), duration_s=1)
    stamps.mark_started("a", inputs())
    stamps.forget("a")
    assert stamps.check("a", inputs()).state == "new"


def test_corrupt_stamp_reads_as_not_built(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"digest": "trunc', encoding="utf-8")
    assert Stamps(tmp_path).check("a", inputs()).state == "new"


def test_old_scheme_is_stale_with_reason(tmp_path: Path) -> None:
    stamps = Stamps(tmp_path)
    stamps.mark_done("a", inputs(), duration_s=1)
    path = tmp_path / "a.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["inputs"]["scheme"] = 0
    data["digest"] = "old"
    path.write_text(json.dumps(data), encoding="utf-8")
    status = Stamps(tmp_path).check("a", inputs())
    assert status.state == "stale"
    assert status.reason == f"stamp scheme changed (v0 -> v{SCHEME_VERSION})"


def test_explain_change_orders_and_truncates() -> None:
    old = inputs().to_json()
    new = inputs(env={"X": "1", "Y": "2"}, sources={"pytorch": "b" * 40}).to_json()
    text = explain_change(old, new)
    assert text.startswith("source pytorch: ")
    assert text.endswith("more)")
    assert explain_change(old, inputs(lock_sha256="1").to_json()) == (
        "build environment lock changed")
    assert explain_change(old, inputs(argv=("make",)).to_json()) == "command line changed"
