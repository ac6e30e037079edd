#!/usr/bin/env python3
"""Clone of a cached tag vs a cold clone, side by side (issue #6; target: cached <= 10 % of cold).

The fixture upstream looks like pytorch in the way that matters: a long history of large,
incompressible changes (the pack) and a small tree at the tag (the checkout), plus a submodule
with the same shape. Cold: empty cache -> mirror upstream + submodule, then check out. Cached:
the mirrors exist -> a fresh work dir checked out from them (what a second build, `--clean`, or a
build of another work dir does). Both go through torchbuild.build.sources.checkout, alternated.

    python benchmarks/bench_clone.py [--repeats 3] [--history-mb 60]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from gitrepos import UPSTREAM, _commit_all, _publish, git  # noqa: E402
from torchbuild.build import sources  # noqa: E402
from torchbuild.plan import SourceSpec  # noqa: E402

CHUNK = 512 * 1024


def _history(work: Path, megabytes: int, files: int = 4) -> None:
    """``megabytes`` of incompressible history over ``files`` files; the tip tree stays small."""
    for i in range(max(1, megabytes * 1024 * 1024 // (CHUNK * files))):
        for f in range(files):
            (work / f"blob{f}.bin").write_bytes(os.urandom(CHUNK))
        _commit_all(work, f"change {i}")


def make_upstream(root: Path, megabytes: int) -> None:
    scratch = root.parent / "scratch"
    dep = scratch / "dep"
    dep.mkdir(parents=True)
    git("init", "-q", cwd=dep)
    _history(dep, max(1, megabytes // 4))
    _publish(dep, root / "pytorch" / "fakedep.git")
    top = scratch / "pytorch"
    top.mkdir()
    git("init", "-q", cwd=top)
    _history(top, megabytes)
    git("submodule", "add", "-q", str(root / "pytorch" / "fakedep.git"), "third_party/dep",
        cwd=top)
    git("config", "--file", ".gitmodules", "submodule.third_party/dep.url",
        f"{UPSTREAM}/fakedep.git", cwd=top)
    _commit_all(top, "release")
    git("tag", "v2.99.0", cwd=top)
    _publish(top, root / "pytorch" / "pytorch.git")


def clone(root: Path, cache: Path, work: Path) -> float:
    spec = SourceSpec("torch", f"{UPSTREAM}/pytorch.git", f"{UPSTREAM}/pytorch.git", "v2.99.0",
                      work / "src" / "torch")
    ctx = sources.GitContext(cache, {"PATH": "/usr/bin:/bin", "HOME": str(work)},
                             f"file://{root}", False, work / "git.log")
    started = time.perf_counter()
    checkout = sources.checkout(spec, ctx)
    took = time.perf_counter() - started
    assert (checkout.path / "third_party" / "dep" / "blob0.bin").is_file()
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--history-mb", type=int, default=60)
    opts = parser.parse_args()
    cold: list[float] = []
    cached: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-clone-") as name:
        tmp = Path(name)
        make_upstream(tmp / "srv", opts.history_mb)
        warm_cache = tmp / "warm-cache"
        clone(tmp / "srv", warm_cache, tmp / "prime")  # fills the cache the cached runs use
        for n in range(opts.repeats):
            cold.append(clone(tmp / "srv", tmp / f"cold-cache{n}", tmp / f"cold{n}"))
            cached.append(clone(tmp / "srv", warm_cache, tmp / f"warm{n}"))
            shutil.rmtree(tmp / f"cold-cache{n}")
    ratio = statistics.median(cached) / statistics.median(cold)
    print(f"history {opts.history_mb} MB + submodule, {opts.repeats} runs each, alternated")
    print(f"cold clone (mirror + checkout)   {statistics.median(cold):6.2f} s  "
          f"({', '.join(f'{t:.2f}' for t in cold)})")
    print(f"cached tag (checkout from cache) {statistics.median(cached):6.2f} s  "
          f"({', '.join(f'{t:.2f}' for t in cached)})")
    print(f"ratio cached / cold              {ratio:6.1%}  target <= 10 %: "
          f"{'PASS' if ratio <= 0.10 else 'FAIL'}")
    return 0 if ratio <= 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
