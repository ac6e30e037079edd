"""The full pipeline with the default conda backend, up to the first build step.

The real `recipes/conda.toml` (CPU variant) is solved by py-rattler against a local channel of tiny
stand-in packages carrying conda-forge's names; the env is locked, hash-checked, installed and
activated by the pipeline itself; the first step then runs the env's (stand-in) python. A real
build needs a real python, which the venv-backend tests cover.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from conda_channel import Pkg, _sh, build_channel, stand_in
from conftest import base_env, dir_listing, fixture_args, make_venv
from gitrepos import RECIPES
from torchbuild.knowledge.conda_specs import conda_specs_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _recipes(tmp: Path) -> Path:
    """The fixture recipes + the project's real conda.toml, opened up for the 2.99 stand-in."""
    d = tmp / "recipes"
    shutil.copytree(RECIPES, d)
    text = (REPO / "recipes" / "conda.toml").read_text()
    text = text.replace('versions = ">=2.12,<2.16"', 'versions = ">=2.12"')
    text = re.sub(r'(?m)^channels = \[.*\]$', "channels = []", text)
    text = text.replace('"2.15" = ["3.11", "3.15"]', '"2.15" = ["3.11", "3.15"]\n"2.99" = '
                        '["3.10", "3.14"]')
    (d / "conda.toml").write_text(text)
    return d


def _version_for(constraint: str) -> str:
    """A version that satisfies a simple MatchSpec constraint like '>=2024.2,<2025' or '14.*'."""
    if not constraint:
        return "1.0"
    first = re.search(r"\d+(\.\d+)*", constraint)
    assert first, constraint
    return first.group(0) + (".0" if "." not in first.group(0) else "")


def _stand_ins(specs: tuple[str, ...], python: Path | None = None) -> tuple[Pkg, ...]:
    """One stand-in per spec, laid out like the conda-forge package (conda_channel.LAYOUTS).
    The env's python either fails at once (proves the first step ran inside the activated env)
    or, given ``python``, is that real interpreter under the env's name."""
    pkgs = []
    for spec in specs:
        name, _, constraint = spec.partition(" ")
        if name == "python":
            body = 'echo "stand-in python $*"; exit 3' if python is None else \
                f'exec "{python}" "$@"'
            pkgs.append(Pkg(name, _version_for(constraint), {"bin/python": _sh(body)},
                            executables=("bin/python",)))
        else:
            pkgs.append(stand_in(name, _version_for(constraint)))
    return tuple(pkgs)


def test_conda_backend_up_to_first_step(mirror_root, tmp_path):
    root, _ = mirror_root
    recipes = _recipes(tmp_path)
    # The fixture builds torchvision too, so the env gets its image codecs.
    specs, _ = conda_specs_for("2.99.0", None, "3.11", recipe_dir=recipes, vision=True)
    assert {"libjpeg-turbo", "libpng", "libwebp"} <= {s.split(" ")[0] for s in specs}
    assert "python 3.11.*" in specs and any(s.startswith("gxx_linux-64 ") for s in specs)
    channel = tmp_path / "channel"
    build_channel(channel, _stand_ins(specs))

    args = fixture_args(root, tmp_path, "--env", "conda", "--cpu", "--python", "3.11",
                        "--channel", channel.as_uri(), "--no-verify")
    args[args.index("--recipe-dir") + 1] = str(recipes)
    proc = subprocess.run([sys.executable, "-m", "torchbuild", *args], env=base_env(tmp_path),
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 12, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "step deps-torch failed" in proc.stderr
    log = (tmp_path / "work" / "logs" / "01-deps-torch.log").read_text()
    assert "stand-in python -m pip install" in log          # the env's python ran the step

    env_link = tmp_path / "work" / "env"
    assert env_link.is_symlink()
    prefix = env_link.resolve()
    assert prefix.parent == tmp_path / "cache" / "envs"
    installed = {p.name.rsplit("-", 2)[0] for p in (prefix / "conda-meta").glob("*.json")}
    assert {s.split(" ")[0] for s in specs} <= installed
    locks = list((tmp_path / "cache" / "locks").glob("*.yml"))
    assert locks, "the solve was not written as a conda-lock.yml"
    lock = yaml.safe_load(locks[0].read_text())
    assert lock["version"] == 1
    assert all(p["hash"]["sha256"] for p in lock["package"])
    assert dir_listing(tmp_path / "dist") == []               # failed build: nothing published


def test_conda_env_gives_the_vision_build_its_codecs(mirror_root, tmp_path):
    """The whole fixture pipeline in a conda env solved from the real conda.toml: torchvision's
    codec lookups (CONDA_PREFIX/include, libpng-config on PATH) land in the env, not the host."""
    root, _ = mirror_root
    recipes = _recipes(tmp_path)
    specs, _ = conda_specs_for("2.99.0", None, "3.11", recipe_dir=recipes, vision=True)
    # A real interpreter to run the fixture builds (setuptools from PyPI: the builds need it).
    python = make_venv(tmp_path / "buildpy", "setuptools>=70.1")
    channel = tmp_path / "channel"
    build_channel(channel, _stand_ins(specs, python))
    args = fixture_args(root, tmp_path, "--env", "conda", "--cpu", "--python", "3.11",
                        "--channel", channel.as_uri(), "--no-verify", "--audio", "none")
    args[args.index("--recipe-dir") + 1] = str(recipes)
    proc = subprocess.run([sys.executable, "-m", "torchbuild", *args], env=base_env(tmp_path),
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    prefix = (tmp_path / "work" / "env").resolve()
    wheel = next((tmp_path / "dist").glob("torchvision-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        info = json.loads(zf.read("torchvision/_buildinfo.json"))
    assert info["codecs"] == {"jpeg": f"{prefix}/include/jpeglib.h",
                              "png": f"{prefix}/include/libpng16/png.h",
                              "webp": f"{prefix}/include/webp/decode.h"}
