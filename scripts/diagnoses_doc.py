#!/usr/bin/env python3
"""Write docs/diagnoses.md: every failure a build log is matched against (build/diagnose.py), by
the id a failed step prints in `likely cause (FM-xx)`, with its title and the fix it gives.

Maintainer script: run it when diagnose.py's table changes, review the diff, commit.
    python scripts/diagnoses_doc.py > docs/diagnoses.md
tests/unit/test_diagnoses_doc.py fails while the page and the table differ.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from torchbuild.build.diagnose import SIGNATURES

HEAD = """# What a failed build's `likely cause (FM-xx)` means

When a build step fails, torchbuild reads the first real error lines of its log and names the known
failure it matches, with the fix, e.g.

    likely cause (FM-01): compiler killed: out of memory

The ids name the failure modes torchbuild knows (one id can have several log signatures, and so
several rows); quote the id when you report a build problem. `…` stands for what the log line
itself names (a package, a path, a version); `{jobs}` and `{half_jobs}` are filled in with the
build's MAX_JOBS and half of it. This page is made by `python scripts/diagnoses_doc.py`
from `src/torchbuild/build/diagnose.py`; a unit test keeps the two in step.

| id | failure | what torchbuild tells you to do |
|---|---|---|
"""


def _cell(text: str) -> str:
    text = re.sub(r"\{\d+\}", "…", text)
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    rows: list[str] = []
    seen: set[tuple[str, str, str]] = set()
    for sig in sorted(SIGNATURES, key=lambda s: int(s.fm.split("-")[1])):
        key = (sig.fm, sig.title, sig.fix)
        if key in seen:
            continue
        seen.add(key)
        note = " (a warning: it fails nothing by itself)" if sig.benign else ""
        rows.append(f"| {sig.fm} | {_cell(sig.title)}{note} | {_cell(sig.fix)} |")
    return HEAD + "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
