"""Solve / install / reuse timings of the conda backend on the tiny test channel.

    python benchmarks/bench_conda_env.py [--runs 7]

Builds tests/conda_channel.py's channel in a temp dir, then for file:// and for HTTP on 127.0.0.1:
* solve   -- RattlerBackend.solve with a fresh repodata cache (the lock is written too),
* create  -- create_conda_env from that lock into a fresh cache (hash checks, download/extract,
             link, rename, activation),
* reuse   -- create_conda_env again with the same lock and cache (marker check + activation).
Prints medians and the reuse/create ratio. Numbers are for toy packages: they measure torchbuild's
and rattler's overhead, not conda-forge download times.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

import conda_channel  # noqa: E402
from torchbuild.env import conda_lock  # noqa: E402
from torchbuild.env.conda import RattlerBackend, create_conda_env  # noqa: E402
from torchbuild.logger import log  # noqa: E402
from torchbuild.plan import EnvSpec  # noqa: E402

SPECS = ("cmake-test >=3.30", "ninja-test", "mkl-test", "typing-ext-test", "gxx-test",
         "cuda-nvcc-test", "python 3.11.*")
BASE = {"PATH": "/usr/bin:/bin"}


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _spec(work: Path, lock: Path) -> EnvSpec:
    prefix = work / "env"
    return EnvSpec(backend="conda", prefix=prefix, python=prefix / "bin/python",
                   python_version="3.11", lock=lock)


def bench(channel_url: str, scratch: Path, runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"solve": [], "create": [], "reuse": []}
    for i in range(runs):
        run_dir = scratch / f"run{i}"
        lock_path = run_dir / "conda-lock.yml"

        def solve(run_dir: Path = run_dir, lock_path: Path = lock_path) -> None:
            lock = RattlerBackend(cache_dir=run_dir / "solve-cache").solve(
                SPECS, [channel_url], "12.8")
            conda_lock.write(lock, lock_path)

        out["solve"].append(_timed(solve))
        cache = run_dir / "cache"
        spec = _spec(run_dir / "work", lock_path)
        out["create"].append(_timed(partial(create_conda_env, spec, BASE, cache_dir=cache,
                                            offline=False)))
        out["reuse"].append(_timed(partial(create_conda_env, spec, BASE, cache_dir=cache,
                                           offline=True)))
    return out


def report(name: str, times: dict[str, list[float]]) -> None:
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["reuse"] / med["create"]
    print(f"{name:7} solve {med['solve'] * 1000:7.1f} ms   create {med['create'] * 1000:7.1f} ms"
          f"   reuse {med['reuse'] * 1000:6.1f} ms   reuse/create {ratio:.3f}"
          f"   (medians of {len(times['solve'])})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    log.verbosity = 0
    with tempfile.TemporaryDirectory(prefix="bench-conda-") as tmp:
        scratch = Path(tmp)
        started = time.perf_counter()
        conda_channel.build_channel(scratch / "chan")
        print(f"channel: {len(conda_channel.PACKAGES)} packages built and indexed in "
              f"{(time.perf_counter() - started) * 1000:.0f} ms; specs: {len(SPECS)}")
        report("file://", bench((scratch / "chan").as_uri(), scratch / "file", args.runs))
        with conda_channel.serve(scratch / "chan") as http:
            report("http", bench(http.url, scratch / "http", args.runs))


if __name__ == "__main__":
    main()
