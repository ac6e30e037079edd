"""How long preflight takes for a typical plan (goal: under 10 s, one-kernel compiles included).

    python benchmarks/bench_preflight.py [--cc "8.6 9.0 12.0"] [--torch 2.13.0] [--repeat 3]

Prints each stage's wall time, and three ways to compile the probe kernel for every arch: one nvcc
with all targets compiled in parallel (``--threads 0``, what preflight runs), one nvcc per arch in
parallel (what preflight falls back to, to name a failing arch), and one nvcc per arch one after the
other. Measured, never asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from torchbuild.cc import parse_cc
from torchbuild.knowledge.rules import load_knowledge
from torchbuild.machine import probes
from torchbuild.machine.preflight import (
    PreflightRequest,
    compile_all,
    compile_each,
    compile_one,
    gather_facts,
    kernel_findings,
    machine_findings,
    request_findings,
    run_preflight,
)


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``repeat`` calls, in seconds."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def compiles(req: PreflightRequest, how: str) -> None:
    """The three ways to compile the probe kernel for every requested arch."""
    nvcc = probes.find_nvcc(req.environ)
    assert nvcc is not None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "probe.cu").write_text(probes.kernel_source())
        if how == "one nvcc":
            assert compile_all(nvcc, req.archs, work, req.environ, None)
        elif how == "parallel":
            compile_each(nvcc, req.archs, work, req.environ, None)
        else:
            for arch in req.archs:
                compile_one(nvcc, arch, work, req.environ, None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cc", default="8.6 9.0 12.0")
    ap.add_argument("--torch", default="2.13.0")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    environ = dict(os.environ)
    nvcc = probes.find_nvcc(environ)
    toolkit = probes.probe_toolkit(nvcc, environ) if nvcc else None
    if toolkit is None:
        print("no CUDA toolkit here: nothing to compile; install one or set CUDA_HOME")
        return 1
    req = PreflightRequest(
        torch_version=args.torch, cuda=toolkit.version, archs=parse_cc(args.cc),
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        work_dir=Path(tempfile.gettempdir()) / "torchbuild-bench", env_backend="venv",
        needs_system_toolkit=True, estimated_disk_gb=1.0, environ=environ)
    kn = load_knowledge()
    facts = gather_facts(req)
    rows = [
        ("1 request rules (pure)", timed(lambda: request_findings(req, kn), args.repeat)),
        ("2a probe the machine", timed(lambda: gather_facts(req), args.repeat)),
        ("2b machine rules", timed(lambda: machine_findings(req, facts, kn), args.repeat)),
        (f"3 kernel compiles x{len(req.archs)} (as run)",
         timed(lambda: kernel_findings(req, facts), args.repeat)),
        ("  one nvcc, --threads 0", timed(lambda: compiles(req, "one nvcc"), args.repeat)),
        ("  one nvcc per arch, in parallel", timed(lambda: compiles(req, "parallel"),
                                                   args.repeat)),
        ("  one nvcc per arch, one by one", timed(lambda: compiles(req, "sequential"),
                                                  args.repeat)),
        ("total run_preflight", timed(lambda: run_preflight(req, force=False,
                                                            sink=lambda _: None), args.repeat)),
    ]
    print(f"preflight benchmark: torch {args.torch}, CUDA {toolkit.version}, --cc {args.cc!r}, "
          f"{probes.cpu_count()} cores, median of {args.repeat}")
    for name, secs in rows:
        print(f"  {name:<36} {secs:7.3f} s")
    one, par, seq, total = rows[4][1], rows[5][1], rows[6][1], rows[7][1]
    print(f"  one nvcc --threads 0 vs one per arch in parallel: {par / one:.2f}x faster; "
          f"vs one by one: {seq / one:.2f}x")
    print(f"  goal < 10 s: {'met' if total < 10 else 'MISSED'} ({total:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
