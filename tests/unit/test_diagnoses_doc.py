"""docs/diagnoses.md lists every failure signature a failed step can name, as diagnose.py has it."""

from __future__ import annotations

import runpy
from pathlib import Path

from torchbuild.build.diagnose import SIGNATURES

REPO = Path(__file__).resolve().parents[2]


def test_the_page_is_what_the_table_makes() -> None:
    made = runpy.run_path(str(REPO / "scripts" / "diagnoses_doc.py"))["render"]()
    page = (REPO / "docs" / "diagnoses.md").read_text(encoding="utf-8")
    assert page == made, "docs/diagnoses.md is stale: python scripts/diagnoses_doc.py > it"
    for sig in SIGNATURES:
        assert f"| {sig.fm} | {sig.title}" in page, sig.fm
