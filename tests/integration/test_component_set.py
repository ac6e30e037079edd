"""``--set COMPONENT:KEY=VALUE`` reaches one component, and only that component rebuilds (#17).

A first build of the fixture torch, torchvision and torchaudio; the second run adds a variable to
torchaudio alone: torch and torchvision stay finished (their stamps did not change), torchaudio is
rebuilt and its wheel records the variable.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from conftest import CLI, fixture_args, make_venv

pytestmark = pytest.mark.integration


def _buildinfo(wheel: Path) -> dict[str, object]:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith("_buildinfo.json"))
        return dict(json.loads(zf.read(name)))


def _stamps(work: Path) -> dict[str, str]:
    return {p.stem: json.loads(p.read_text())["digest"] for p in (work / "stamps").glob("*.json")
            if not p.name.endswith(".started.json")}


def test_a_component_variable_changes_only_that_components_stamps(mirror_root, cli: CLI,
                                                                  tmp_path: Path) -> None:
    root, _ = mirror_root
    python = make_venv(tmp_path / "venv", "setuptools", "wheel")
    args = fixture_args(root, tmp_path, "--env", "existing", "--python", str(python), "--cpu",
                        "--no-verify")
    first = cli(*args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    before = _stamps(tmp_path / "work")
    assert set(before) == {"deps-torch", "build-torch", "install-torch", "build-vision",
                           "install-vision", "build-audio", "install-audio"}

    second = cli(*args, "--set", "audio:CUSTOM_AUDIO_ONLY=1")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    after = _stamps(tmp_path / "work")
    changed = sorted(k for k in before if before[k] != after[k])
    assert changed == ["build-audio", "install-audio"]
    steps = {s["id"]: s for s in json.loads(
        (tmp_path / "dist" / "torchbuild-manifest.json").read_text())["steps"]}
    assert steps["build-vision"]["status"] == "skipped"
    assert steps["build-torch"]["status"] == "skipped"
    assert steps["build-audio"]["status"] == "ok"
    assert "env CUSTOM_AUDIO_ONLY added" in steps["build-audio"]["note"]
    dist = tmp_path / "dist"
    audio = _buildinfo(next(dist.glob("torchaudio-*.whl")))["env"]
    vision = _buildinfo(next(dist.glob("torchvision-*.whl")))["env"]
    assert isinstance(audio, dict) and audio.get("CUSTOM_AUDIO_ONLY") == "1"
    assert isinstance(vision, dict) and "CUSTOM_AUDIO_ONLY" not in vision
