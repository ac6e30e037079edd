"""recipes/releases.toml is exactly what scripts/import_compat.py makes of the researched facts
(docs/data/compat.toml, in the repository), and the README's release count is what it prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]  # tests/integration/this.py -> the repo
COMPAT = REPO / "docs" / "data" / "compat.toml"


def test_releases_toml_is_regenerated_from_compat():
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "import_compat.py")],
                          capture_output=True, text=True, check=True, cwd=REPO.parent)
    assert proc.stdout == (REPO / "recipes" / "releases.toml").read_text(), (
        "recipes/releases.toml is stale: run scripts/import_compat.py > recipes/releases.toml")
    # The same table from the file named explicitly (the script's documented form).
    named = subprocess.run([sys.executable, str(REPO / "scripts" / "import_compat.py"),
                            str(COMPAT)], capture_output=True, text=True, check=True)
    assert named.stdout == proc.stdout
    summary = proc.stderr.strip()          # "38 releases from 1.9.0 to 2.15.0"
    count, _, rest = summary.partition(" releases from ")
    assert int(count) == proc.stdout.count("[releases.") and rest
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    assert summary in readme, f"the README should quote {summary!r}"
