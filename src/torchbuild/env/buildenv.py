"""``BuildEnv``: the result every backend returns, and the base environment they all start from.

A backend returns the *complete* environment of the build's child processes as data; the tool's
own ``os.environ`` is never modified.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from torchbuild.command import probe
from torchbuild.machine.probes import parse_nvcc_version

__all__ = ["BuildEnv", "base_environment", "prepend_path", "tool_versions"]

# Variables that make a child python import the wrong packages or the wrong torch.
_SCRUB = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV",
          "PIP_USER", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "CONDA_SHLVL")


@dataclass(frozen=True)
class BuildEnv:
    backend: str
    prefix: Path
    python: Path
    env: Mapping[str, str]
    lock_path: Path | None = None
    lock_sha256: str | None = None
    tools: Mapping[str, str] = field(default_factory=dict)


def base_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The user's environment minus what would leak into the build, plus quiet pip defaults."""
    env = {k: v for k, v in environ.items() if k not in _SCRUB}
    env.setdefault("PATH", os.defpath)
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONUNBUFFERED="1",
               GIT_TERMINAL_PROMPT="0")
    return env


def prepend_path(env: dict[str, str], *dirs: Path) -> None:
    env["PATH"] = os.pathsep.join([*(str(d) for d in dirs), env.get("PATH", "")]).rstrip(
        os.pathsep)


_VERSION = re.compile(r"(\d+\.\d+(?:\.\d+)?)")


def _first_version(text: str) -> str | None:
    m = _VERSION.search(text)
    return m.group(1) if m else None


def tool_versions(env: Mapping[str, str]) -> dict[str, str]:
    """Best-effort versions of the toolchain the build will see (for the manifest)."""
    probes = {"python": ["python", "--version"], "cmake": ["cmake", "--version"],
              "ninja": ["ninja", "--version"], "gcc": ["gcc", "-dumpfullversion"],
              "nvcc": ["nvcc", "--version"], "git": ["git", "--version"]}
    out: dict[str, str] = {}
    for name, argv in probes.items():
        res = probe(argv, env=env, timeout=10)
        if res and res[0] == 0:
            text = res[1] + res[2]
            version = parse_nvcc_version(text) if name == "nvcc" else _first_version(text)
            if version:
                out[name] = version
    return out
