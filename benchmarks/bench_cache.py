#!/usr/bin/env python3
"""Warm-cache rebuild vs cold build of the real-compile fixture, side by side (issue #6;
target: warm <= 15 % of cold).

The fixture is the C++ torch operator (tests/fixtures/projects/cppext) built through the whole
pipeline against the real torch 2.13.0 CPU wheel. Each repeat: a cold build (fresh clone, empty
compiler cache), then a warm rebuild (fresh clone in a new work dir, the cache the cold build
filled). Prints the compile step's and the whole command's medians and ratios.

    python benchmarks/bench_cache.py [--repeats 3] [--tool ccache] [--python /venv/bin/python]
                                     [--extra-units N]

`--python` is a venv with torch==2.13.0, setuptools, wheel and ninja (made when omitted).
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

from resumerepos import cppext_args, make_cppext_server  # noqa: E402
from venvs import make_venv  # noqa: E402  (pytest-free: runs from a plain install)


def build(args: list[str], tmp: Path) -> tuple[float, float, float | None]:
    """(wall seconds, compile step seconds, cache hit rate) of one torchbuild run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHBUILD_")}
    env.update(NO_COLOR="1", PATH="/usr/local/bin:/usr/bin:/bin")
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "torchbuild", *args, "--quiet"], env=env,
                          cwd=tmp, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"torchbuild failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    dist = Path(args[args.index("--dist") + 1])
    steps = json.loads((dist / "torchbuild-manifest.json").read_text())["steps"]
    step = next(s for s in steps if s["id"] == "build-vision")
    return wall, float(step["duration_s"]), step.get("cache_hit_rate")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tool", default="ccache", choices=("ccache", "sccache"))
    parser.add_argument("--python", type=Path)
    parser.add_argument("--extra-units", type=int, default=0,
                        help="more translation units in the fixture (compile time vs overhead)")
    opts = parser.parse_args()
    cold: list[tuple[float, float, float | None]] = []
    warm: list[tuple[float, float, float | None]] = []
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as name:
        tmp = Path(name)
        python = opts.python or make_venv(tmp / "venv", "torch==2.13.0", "setuptools", "wheel",
                                          "ninja")
        root = tmp / "srv"
        make_cppext_server(root, extra_units=opts.extra_units)
        for n in range(opts.repeats):
            cache = tmp / f"cache{n}"
            for label, runs in (("cold", cold), ("warm", warm)):
                # sccache needs the same checkout path (it hashes absolute depfile paths).
                work = tmp / (f"{label}{n}" if opts.tool == "ccache" else f"w{n}")
                subprocess.run(["rm", "-rf", str(work)], check=True)
                runs.append(build(cppext_args(root, python, work, cache, tmp / f"d{label}{n}",
                                              "--compiler-cache", opts.tool), tmp))
    for label, runs in (("cold", cold), ("warm", warm)):
        print(f"{label}: wall {statistics.median(r[0] for r in runs):6.2f} s, compile step "
              f"{statistics.median(r[1] for r in runs):6.2f} s, hit rates "
              f"{[r[2] for r in runs]}")
    step_ratio = statistics.median(r[1] for r in warm) / statistics.median(r[1] for r in cold)
    wall_ratio = statistics.median(r[0] for r in warm) / statistics.median(r[0] for r in cold)
    print(f"fixture: {1 + opts.extra_units} translation unit(s), {opts.tool}")
    print(f"ratio warm / cold: compile step {step_ratio:.1%}, whole command {wall_ratio:.1%}"
          f"  target <= 15 %: {'PASS' if wall_ratio <= 0.15 else 'FAIL'}")
    return 0 if wall_ratio <= 0.15 else 1


if __name__ == "__main__":
    sys.exit(main())
