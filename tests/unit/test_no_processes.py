"""The guard in tests/conftest.py (no_processes_in_unit_tests) stops a unit test from
starting a process."""

from __future__ import annotations

import os
import subprocess

import pytest

from torchbuild import command


@pytest.mark.parametrize("start", [
    lambda: subprocess.run(["true"], check=False),
    lambda: command.probe(["true"]),
    lambda: os.system("true"),
])
def test_starting_a_process_fails_a_unit_test(start: object) -> None:
    with pytest.raises(AssertionError, match="started a process"):
        start()  # type: ignore[operator]
