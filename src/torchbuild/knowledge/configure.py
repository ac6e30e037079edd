"""How each torch era configures without compiling (the configure-only audit's first half).

Knowledge, not audit: the plan needs it to write the ``configure-torch`` step, and the audit
(proof/cmake_audit.py) reads what that step left behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

# The first torch whose setup.py takes CMAKE_ONLY=1 instead of `build --cmake-only`
# (reference/pytorch-build.md §2 table: absent in the 2.4-era docstring, present in the 2.8 one).
CMAKE_ONLY_ENV_SINCE = Version("2.8")


@dataclass(frozen=True)
class ConfigureCommand:
    """How one torch tag configures without compiling: argv plus env variables to add."""

    argv: tuple[str, ...]
    env: Mapping[str, str]


def configure_only_argv(era: str | Version, python: str | Path) -> ConfigureCommand:
    """The tag's own configure-only command (``--cmake-only`` became ``CMAKE_ONLY=1`` in 2.8)."""
    version = era if isinstance(era, Version) else Version(str(era))
    if version.release[:2] >= CMAKE_ONLY_ENV_SINCE.release[:2]:
        return ConfigureCommand((str(python), "setup.py", "build"), {"CMAKE_ONLY": "1"})
    return ConfigureCommand((str(python), "setup.py", "build", "--cmake-only"), {})
