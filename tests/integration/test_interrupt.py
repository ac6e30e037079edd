"""Ctrl-C during a real build step: exit 130, the step's process tree stopped, --dist untouched."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from conftest import base_env, dir_listing, fixture_args

pytestmark = pytest.mark.integration


def _wait_for(path, timeout=180.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            return
        time.sleep(0.2)
    raise AssertionError(f"{path} never appeared")


def test_ctrl_c_stops_cleanly(mirror_root, tmp_path):
    root, _ = mirror_root
    args = fixture_args(root, tmp_path, "--env", "venv", "--cpu", "--no-verify",
                        "--set", "SLOW_BUILD=120", "--set", f"SLOW_BUILD_MARK={tmp_path / 'mark'}")
    (tmp_path / "dist").mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "torchbuild", *args], env=base_env(tmp_path),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _wait_for(tmp_path / "mark")      # setup.py of the torch step is running now
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)            # what a terminal's Ctrl-C delivers
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert time.monotonic() - started < 30
    assert "interrupted" in err and "re-run the same command" in err
    assert dir_listing(tmp_path / "dist") == []
    # the build's own process (setup.py sleeping) is gone too
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert str(tmp_path / "work" / "wheels" / ".tmp-torch") not in ps
