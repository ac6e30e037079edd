"""Manifest round trip: build the fixture projects, replay the manifest, compare the wheels.

The fixture projects write the build time into ``_buildinfo.json``, so a replay cannot be
byte-identical; it must say exactly that (and nothing else) rather than "differs".
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import base_env, dir_listing, fixture_args

pytestmark = pytest.mark.integration


def _torchbuild(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "torchbuild", *args], env=base_env(tmp),
                          cwd=tmp, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def recorded(mirror_root: tuple[Path, dict[str, str]],
             tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root, _ = mirror_root
    tmp = tmp_path_factory.mktemp("replay")
    proc = _torchbuild(*fixture_args(root, tmp, "--env", "venv", "--cc", "8.6", "--cuda", "13.0",
                                     "--no-verify", "--force"), tmp=tmp)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp, tmp / "dist" / "torchbuild-manifest.json"


def test_unchanged_inputs_replay_to_the_same_wheel_contents(recorded: tuple[Path, Path]) -> None:
    tmp, manifest = recorded
    # --force: the preflight disk estimate is for real torch, not the fixtures, on a shared disk.
    # --trust-manifest: the recorded --git-mirror and --recipe-dir are this test's fixtures, not
    # the user's own settings (an untrusted manifest is test_a_redirected_mirror_is_refused).
    proc = _torchbuild("replay", str(manifest), "--force", "--trust-manifest", tmp=tmp)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "every recorded input is the same here" in out
    replayed = tmp / "dist" / "replay"
    assert [n for n in dir_listing(replayed) if n.endswith(".whl")] == [
        n for n in dir_listing(tmp / "dist") if n.endswith(".whl")]
    # The only differences are the build timestamps the fixtures record, and RECORD's hash of them.
    reasons = [ln.strip() for ln in out.splitlines() if ".whl: " in ln]
    assert reasons, out[-2000:]
    for reason in reasons:
        assert reason.endswith(("/_buildinfo.json content differs", "/RECORD content differs")), \
            reason
    new_manifest = json.loads((replayed / "torchbuild-manifest.json").read_text())
    old_manifest = json.loads(manifest.read_text())
    assert {n: s["commit"] for n, s in new_manifest["sources"].items()} == {
        n: s["commit"] for n, s in old_manifest["sources"].items()}


def test_a_changed_input_is_reported_before_anything_starts(recorded: tuple[Path, Path]) -> None:
    tmp, manifest = recorded
    data = json.loads(manifest.read_text())
    step = next(s for s in data["plan"]["steps"] if s["id"] == "build-torch")
    step["env"]["TORCH_CUDA_ARCH_LIST"] = "7.5"
    data["toolchain"]["git"] = "1.0.0"
    edited = tmp / "edited" / "torchbuild-manifest.json"
    edited.parent.mkdir()
    edited.write_text(json.dumps(data))
    proc = _torchbuild("replay", str(edited), "--strict", "--force", "--trust-manifest", tmp=tmp)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 10, out[-3000:]
    assert "steps.build-torch.env.TORCH_CUDA_ARCH_LIST" in out
    assert "toolchain.git" in out
    assert "==> build" not in out  # refused before the first step
    assert not (edited.parent / "replay").exists()


def test_a_redirected_mirror_is_refused_unless_trusted(recorded: tuple[Path, Path]) -> None:
    """Issue #14: a manifest edited to fetch from another git mirror listed 21 differences, and
    the mirror was not among them. Now every code-deciding input is listed, and one that differs
    from the user's own settings is refused in seconds unless confirmed or given explicitly."""
    tmp, manifest = recorded
    data = json.loads(manifest.read_text())
    data["options"]["git_mirror"] = {"value": "file:///srv/evil", "origin": "command line"}
    data["options"]["set"] = {"value": [["LD_PRELOAD", "/tmp/x.so"]], "origin": "command line"}
    edited = tmp / "evil" / "torchbuild-manifest.json"
    edited.parent.mkdir()
    edited.write_text(json.dumps(data))
    proc = _torchbuild("replay", str(edited), "--force", tmp=tmp)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 10, out[-3000:]
    assert "file:///srv/evil" in proc.stderr and "LD_PRELOAD=/tmp/x.so" in proc.stderr
    assert "--trust-manifest" in proc.stderr and "Traceback" not in out
    assert "--recipe-dir" in out and "--conda-exe" in out     # every such input is listed
    assert "==> sources" not in out and not (edited.parent / "replay").exists()
    # Confirmed: listed as trusted, and the replay goes on.
    dry = _torchbuild("replay", str(edited), "--dry-run", "--trust-manifest", tmp=tmp)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "trusted" in dry.stdout
