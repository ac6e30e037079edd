#!/usr/bin/env python3
"""torchbuild's overhead on a real compile: the pipeline vs the same commands typed by hand.

Builds the C++ torch-operator fixture (tests/fixtures/projects/cppext) against the real torch
2.13.0 CPU wheel, alternating (A) `python -m torchbuild --env existing --torch-from-env ...` and
(B) the equivalent manual commands (git clone --branch TAG + pip wheel --no-build-isolation), each
from a fresh work dir, and prints the medians and the ratio A/B.

    python benchmarks/bench_overhead.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from gitrepos import FIXTURES, make_cppext_repo  # noqa: E402
from venvs import make_venv  # noqa: E402  (pytest-free: runs from a plain install)


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHBUILD_")}
    env.update(XDG_CACHE_HOME=str(tmp / "xdg"), NO_COLOR="1", PIP_CONSTRAINT="/dev/null")
    return env


def pipeline(python: Path, root: Path, tmp: Path) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "torchbuild", "--recipe-dir",
                    str(FIXTURES / "recipes-cppext"), "--git-mirror", f"file://{root}",
                    "--env", "existing", "--python", str(python), "--torch-from-env", "--cpu",
                    "--work-dir", str(tmp / "w"), "--cache-dir", str(tmp / "c"),
                    "--dist", str(tmp / "d"), "--no-verify", "--quiet"],
                   env=_env(tmp), check=True, capture_output=True)
    return time.monotonic() - started


def by_hand(python: Path, root: Path, tmp: Path) -> float:
    started = time.monotonic()
    src = tmp / "src"
    subprocess.run(["git", "clone", "-q", "--branch", "v0.99.0", str(root / "pytorch" /
                    "cppext.git"), str(src)], check=True, capture_output=True)
    env = _env(tmp)
    env.update(BUILD_VERSION="0.99.0+cpu", PYTORCH_VERSION="2.13.0+cpu", MAX_JOBS="2")
    subprocess.run([str(python), "-m", "pip", "wheel", ".", "--no-build-isolation", "--no-deps",
                    "--no-index", "--wheel-dir", str(tmp / "d")], cwd=src, env=env, check=True,
                   capture_output=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall",
                    str(next((tmp / "d").glob("*.whl")))], env=env, check=True,
                   capture_output=True)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        base = Path(d)
        python = make_venv(base / "venv", "torch==2.13.0", "setuptools", "wheel", "ninja")
        root = base / "srv"
        make_cppext_repo(root)
        times: dict[str, list[float]] = {"torchbuild": [], "by hand": []}
        for i in range(args.repeats):
            for name, fn in (("torchbuild", pipeline), ("by hand", by_hand)):
                tmp = base / f"{name.replace(' ', '')}-{i}"
                tmp.mkdir()
                times[name].append(fn(python, root, tmp))
                shutil.rmtree(tmp)
        a, b = (statistics.median(times[k]) for k in ("torchbuild", "by hand"))
        for name, values in times.items():
            print(f"{name:<11} median {statistics.median(values):6.1f} s   runs "
                  + " ".join(f"{v:.1f}" for v in values))
        print(f"ratio torchbuild / by hand: {a / b:.2f}  (overhead {a - b:+.1f} s)")


if __name__ == "__main__":
    main()
