"""Where the build requirements of a deps step are recorded and cached (paths only, pure).

The plan needs these to spell out the deps step's command; ``build/deps.py`` reads and writes
the files.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["replay_file", "report_file", "wheelhouse", "wheelhouse_lock"]

REPORT_DIR = "deps"


def report_file(work_dir: Path, component: str) -> Path:
    """Where the deps step of ``component`` writes pip's installation report."""
    return work_dir / REPORT_DIR / f"{component}.json"


def replay_file(work_dir: Path, component: str) -> Path:
    """The hash-pinned requirements a replay's deps step installs."""
    return work_dir / REPORT_DIR / f"{component}.replay.txt"


def wheelhouse(cache_dir: Path, component: str, tag: str) -> Path:
    """``fetch``'s downloads for one component's build requirements at one tag."""
    return cache_dir / "wheelhouse" / f"{component}-{tag}"


def wheelhouse_lock(cache_dir: Path, component: str, tag: str) -> Path:
    """The hashes of what ``fetch`` downloaded: the requirements file ``--offline`` installs."""
    return cache_dir / "wheelhouse" / f"{component}-{tag}.txt"
