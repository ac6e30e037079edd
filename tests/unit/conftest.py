"""Unit tests are pure logic: any process a unit test starts fails it (cibuildwheel's
``mock_protection``, nox's ``prevent_conda``). Tests that need a real process live in
tests/integration."""

from __future__ import annotations

import os
import subprocess

import pytest


def _refuse(*args: object, **_kwargs: object) -> None:
    what = args[1] if len(args) > 1 else args[0] if args else "?"
    msg = f"a unit test started a process ({what!r}): move it to tests/integration"
    raise AssertionError(msg)


@pytest.fixture(autouse=True)
def no_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess.Popen, "_execute_child", _refuse)
    for name in ("system", "fork", "forkpty", "posix_spawn", "posix_spawnp", "execv", "execve",
                 "execvp", "execvpe", "spawnv", "spawnve", "spawnvp", "spawnvpe"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, _refuse)
