#!/usr/bin/env python3
"""No-op re-run of a finished build vs the full build, side by side (issue #6; target < 2 s).

Builds the resume fixture (tests/resumerepos.py: a ninja build of small C++ files plus a
companion, through the whole pipeline with --env existing), then re-runs the identical command
several times. Every re-run must skip every step; prints the medians and the ratio.

    python benchmarks/bench_resume.py [--repeats 5] [--python /venv/with/setuptools-wheel-ninja]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from resumerepos import cli_args, make_resume_server, write_recipes  # noqa: E402
from venvs import make_venv  # noqa: E402  (pytest-free: runs from a plain install)


def _run(args: list[str], tmp: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHBUILD_")}
    env["NO_COLOR"] = "1"
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "torchbuild", *args], env=env, cwd=tmp,
                          capture_output=True, text=True, check=False)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"torchbuild failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--python", type=Path, help="existing build venv python (else made)")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-resume-") as name:
        tmp = Path(name)
        python = opts.python or make_venv(tmp / "venv", "setuptools", "wheel", "ninja")
        root = tmp / "srv"
        make_resume_server(root, delay="0")
        args = cli_args(root, write_recipes(tmp / "recipes"), tmp, python)
        full = _run(args, tmp)
        noop = [_run(args, tmp) for _ in range(opts.repeats)]
        steps = json.loads((tmp / "dist" / "torchbuild-manifest.json").read_text())["steps"]
        assert {s["status"] for s in steps} == {"skipped"}, steps
    median = statistics.median(noop)
    print(f"full build          {full:6.2f} s")
    print(f"no-op re-run        {median:6.2f} s  (median of {len(noop)}: "
          f"{', '.join(f'{t:.2f}' for t in noop)})")
    print(f"ratio no-op / full  {median / full:6.1%}")
    print(f"target < 2 s        {'PASS' if median < 2.0 else 'FAIL'}")
    return 0 if median < 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
