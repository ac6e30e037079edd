"""Every build leaves a report: a fixture build through the whole pipeline writes
dist/torchbuild-report.html and its PNG with the wheels, and a real headless Chromium (Debian's
``chromium``; .ci/run installs it) renders the page and decodes the embedded timeline."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import fixture_args

pytestmark = pytest.mark.integration

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]


def dump_dom(page: Path, profile: Path) -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's)")
    proc = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                           "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_fixture_build_writes_a_report_chromium_renders(mirror_root, cli, tmp_path):
    root, _ = mirror_root
    proc = cli(*fixture_args(root, tmp_path, "--env", "venv", "--cpu", "--no-verify"))
    assert proc.returncode == 0, proc.stderr
    dist = tmp_path / "dist"
    page, png = dist / "torchbuild-report.html", dist / "torchbuild-report.png"
    assert page.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    text = page.read_text()
    for step in ("build-torch", "install-torch", "build-vision"):
        assert step in text
    dom = dump_dom(page, tmp_path / "chromium-profile")
    assert "<h1>torchbuild: torch " in dom                       # it rendered
    width = re.search(r'id="timeline"[^>]*data-natural-width="(\d+)"', dom) or \
        re.search(r'data-natural-width="(\d+)"[^>]*id="timeline"', dom)
    assert width and int(width.group(1)) > 500, dom[:500]      # the embedded PNG decoded
