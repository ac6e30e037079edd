"""CPU busy share of a ninja build, from its ``.ninja_log``.

    python benchmarks/ninja_busy.py BUILD/.ninja_log --cores 16 [--json]

ninja logs every finished edge as ``start_ms end_ms mtime target hash`` (format v5/v6, times
relative to the start of that ninja run). A restarted build appends a second run whose times start
again at 0; only the last run is counted (an entry whose start is below the previous one's marks a
new run). An edge with several outputs (torchgen writes hundreds) has one line per output with the
same start, end and command hash: it is counted once.
busy = sum(end - start) / (span * cores), span = last end - first start.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def last_run(lines: list[str]) -> list[tuple[int, int, str]]:
    """(start_ms, end_ms, command hash) of each edge of the last ninja run in the log."""
    runs: list[list[tuple[int, int, str]]] = [[]]
    seen: set[tuple[int, int, str]] = set()
    previous_end = -1
    for line in lines:
        if line.startswith("#") or not line.strip():
            continue
        start, end, _mtime, _target, cmd_hash = line.split("\t")[:5]
        entry = (int(start), int(end), cmd_hash)
        if runs[-1] and entry[1] < previous_end and entry[0] == 0:
            runs.append([])
            seen = set()
        if entry not in seen:
            seen.add(entry)
            runs[-1].append(entry)
        previous_end = entry[1]
    return runs[-1]


def busy(log: Path, cores: int) -> dict[str, float | int]:
    entries = last_run(log.read_text(encoding="utf-8").splitlines())
    if not entries:
        return {"edges": 0}
    first = min(s for s, _, _ in entries)
    last = max(e for _, e, _ in entries)
    cpu_ms = sum(e - s for s, e, _ in entries)
    span_s = (last - first) / 1000
    return {"edges": len(entries), "span_s": round(span_s, 1), "cpu_s": round(cpu_ms / 1000, 1),
            "cores": cores, "busy_pct": round(100 * cpu_ms / 1000 / (span_s * cores), 1)
            if span_s else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("--cores", type=int, required=True)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = busy(args.log, args.cores)
    print(json.dumps(result) if args.json else
          " ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
