"""Run one command and report its wall time and memory: ``python3 gpu_measure.py RESULT -- ARGV``.

Writes one line to RESULT when the command ends (so a caller that started it with setsid can poll
for the file): its exit code, wall seconds, the largest single process (``ru_maxrss`` of the waited
children: torchbuild waits pip, pip ninja, ninja nvcc, nvcc cicc/ptxas, so the deepest compiler
counts), and the machine's peak use (MemTotal - MemAvailable, sampled every 0.5 s), which is what
MAX_JOBS has to fit into. Standard library only: it runs under the GPU image's python3.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path


def used_gib() -> float:
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    kib = int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])
    return kib / 2**20


def parse(argv: list[str]) -> tuple[str, list[str]]:
    parser = argparse.ArgumentParser(
        prog="gpu_measure.py", description="Run ARGV; write its exit code, wall time and peak "
        "memory as one line to RESULT.", usage="%(prog)s RESULT -- ARGV...")
    parser.add_argument("result", metavar="RESULT", help="file the RESULT line is written to")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to measure after --")
    return args.result, command


def main(argv: list[str]) -> int:
    result, command = parse(argv)
    base, peak, done = used_gib(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], used_gib())
            time.sleep(0.5)

    threading.Thread(target=sample, daemon=True).start()
    start = time.monotonic()
    rc = subprocess.run(command, check=False).returncode
    wall = time.monotonic() - start
    done.set()
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    line = (f"RESULT rc={rc} wall_s={wall:.1f} largest_process_gib={rss:.2f} "
            f"machine_peak_used_gib={peak[0]:.2f} (before: {base:.2f})")
    print(line, flush=True)
    Path(result).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
