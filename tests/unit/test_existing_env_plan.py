"""The plan for an --env existing interpreter: which build requirements it lacks (#17)."""

from __future__ import annotations

import dataclasses

from test_plan import FACTS, plan_for

from torchbuild.__main__ import build_parser
from torchbuild.knowledge.recipe import load_recipes
from torchbuild.options import resolve
from torchbuild.pipeline import plan_for as pipeline_plan_for
from torchbuild.plan import missing_requirements, render

USER_VENV = dataclasses.replace(
    FACTS, env_python="/home/u/venv/bin/python", env_python_version="3.11",
    env_torch_version="2.6.0",
    env_packages={"torch": "2.6.0", "setuptools": "65.5.0", "pip": "24.0", "cmake": "3.31.6"})


def test_missing_requirements_says_why() -> None:
    installed = {"setuptools": "65.5.0", "ninja": "1.11.1.4", "cmake": "4.0.2"}
    assert missing_requirements(("setuptools<70", "wheel", "ninja", "cmake>=3.18,<4"),
                                installed) == [("wheel", "not installed"),
                                               ("cmake>=3.18,<4", "found 4.0.2")]
    assert missing_requirements(("Typing_Extensions>=4",), {"typing-extensions": "4.12.2"}) == []


def test_companions_against_a_pypi_torch_venv_install_what_is_missing() -> None:
    p = plan_for("--torch", "2.6.0", "--cpu", "--torch-from-env", "--env", "existing",
                 "--python", "/home/u/venv/bin/python", facts=USER_VENV)
    env = p.environment
    assert env.pip_requirements == ("setuptools", "wheel", "ninja", "cmake>=3.18,<4")
    assert env.pip_install == ("wheel", "ninja")
    assert "installed into it first (missing): wheel ninja" in render(p)
    assert any("lacks build requirements: wheel (not installed), ninja (not installed)" in w
               for w in p.warnings)


def test_nothing_missing_nothing_installed() -> None:
    complete = dataclasses.replace(USER_VENV, env_packages={
        **USER_VENV.env_packages, "wheel": "0.45.1", "ninja": "1.11.1.4"})
    p = plan_for("--torch", "2.6.0", "--cpu", "--torch-from-env", "--env", "existing",
                 "--python", "/home/u/venv/bin/python", facts=complete)
    assert p.environment.pip_install == ()
    assert not any("lacks build requirements" in w for w in p.warnings)


def test_other_backends_bring_their_own_requirements() -> None:
    p = plan_for("--torch", "2.6.0", "--cpu", "--env", "venv")
    assert p.environment.pip_install == ()


def test_a_component_set_reaches_only_that_components_steps() -> None:
    p = plan_for("--torch", "2.6.0", "--cpu", "--torch-from-env", "--env", "existing",
                 "--python", "/home/u/venv/bin/python", "--set", "audio:CUDA_HOME=/opt/cuda-12.4",
                 "--set", "USE_X=1", facts=USER_VENV)
    builds = {s.component: s.env for s in p.steps if s.kind == "build"}
    assert builds["audio"]["CUDA_HOME"] == "/opt/cuda-12.4" and builds["audio"]["USE_X"] == "1"
    assert "CUDA_HOME" not in builds["vision"] and builds["vision"]["USE_X"] == "1"


def test_companions_of_a_pypi_torch_carry_this_builds_label() -> None:
    # PyPI's torch 2.6.0 says just "2.6.0": the label comes from this build, the pin from torch
    p = plan_for("--torch", "2.6.0", "--cpu", "--torch-from-env", "--env", "existing",
                 "--python", "/home/u/venv/bin/python", facts=USER_VENV)
    labels = {c.name: c.label for c in p.components}
    assert labels == {"vision": "0.21.0+cpu", "audio": "2.6.0+cpu"}
    vision = next(s for s in p.steps if s.id == "build-vision")
    assert vision.env["BUILD_VERSION"] == "0.21.0+cpu"
    assert vision.env["PYTORCH_VERSION"] == "2.6.0"


def test_the_plan_says_when_the_compiler_cache_cannot_reach_torchvision() -> None:
    p = plan_for("--torch", "2.6.0", "--cpu", "--torch-from-env", "--env", "existing",
                 "--python", "/home/u/venv/bin/python", facts=USER_VENV)
    assert any("torch 2.6.0's cpp_extension does not put ccache" in w for w in p.warnings)
    newer = dataclasses.replace(USER_VENV, env_torch_version="2.13.0+cpu")
    p = plan_for("--torch", "2.13.0", "--cpu", "--torch-from-env", "--env", "existing",
                 "--python", "/home/u/venv/bin/python", facts=newer)
    assert not any("cpp_extension does not" in w for w in p.warnings)
    p = plan_for("--torch", "2.6.0", "--cpu", "--torch-from-env", "--env", "existing",
                 "--python", "/home/u/venv/bin/python", "--compiler-cache", "none",
                 facts=USER_VENV)
    assert not any("cpp_extension does not" in w for w in p.warnings)


def _from_env(env_torch: str, *argv: str):
    facts = dataclasses.replace(USER_VENV, env_torch_version=env_torch)
    opts = resolve(vars(build_parser().parse_args(
        ["--cpu", "--torch-from-env", "--env", "existing", "--python",
         "/home/u/venv/bin/python", *argv])), {"HOME": "/home/u"})
    plan, chosen = pipeline_plan_for(load_recipes(), opts, facts)
    return plan, chosen


def test_the_envs_torch_picks_the_companions_not_the_newest_release() -> None:
    plan, chosen = _from_env("2.13.0+cpu")
    assert chosen.torch == "2.13.0" and chosen.origin["torch"] == "resolved"
    # 2.13.0's own pairing in recipes/releases.toml, not 2.15.0's (vision 0.29.2)
    assert {c.name: c.version for c in plan.components} == {"vision": "0.28.0", "audio": "2.11.1"}
    assert plan.choice == ("torch 2.13.0+cpu is in the env: building the companions of "
                           "torch 2.13.0")
    vision = next(s for s in plan.steps if s.id == "build-vision")
    assert vision.env["PYTORCH_VERSION"] == "2.13.0+cpu"


def test_an_unknown_patch_takes_the_newest_known_patch_of_its_minor() -> None:
    plan, chosen = _from_env("2.12.7")
    assert chosen.torch == "2.12.1"
    assert "not a release the recipes know" in plan.choice and "(same 2.12)" in plan.choice
    assert {c.name: c.version for c in plan.components}["vision"] == "0.27.1"


def test_a_pinned_torch_and_an_unknown_minor_are_left_alone() -> None:
    plan, chosen = _from_env("2.13.0+cpu", "--torch", "2.6.0")
    assert chosen.torch == "2.6.0" and plan.choice == ""
    assert {c.name: c.version for c in plan.components}["vision"] == "0.21.0"
    plan, chosen = _from_env("2.16.0.dev20261130+cpu")
    assert chosen.torch is None and plan.choice == ""
    assert plan.torch_version == load_recipes().newest
