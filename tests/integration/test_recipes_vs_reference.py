"""recipes/releases.toml is exactly what scripts/import_compat.py makes of the researched facts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]  # tests/integration/this.py -> the repo
COMPAT = REPO.parent / "shared" / "reference" / "compat.toml"


@pytest.mark.skipif(not COMPAT.is_file(), reason="../shared/reference/compat.toml not present")
def test_releases_toml_is_regenerated_from_compat():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "import_compat.py"), str(COMPAT)],
                         capture_output=True, text=True, check=True).stdout
    assert out == (REPO / "recipes" / "releases.toml").read_text(), (
        "recipes/releases.toml is stale: run scripts/import_compat.py > recipes/releases.toml")
