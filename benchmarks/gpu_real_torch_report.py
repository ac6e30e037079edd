"""Summarise a benchmarks/gpu_real_torch.sh run: cold wall, CPU busy %, the tool's own time, the
warm/cold ratio and the compiler-cache hit rate. Reads only the files that script wrote.

    python benchmarks/gpu_real_torch_report.py RESULTS --cores 16   (writes RESULTS/summary.json)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ninja_busy import busy


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _steps(res: Path, run: str) -> dict[str, dict[str, Any]]:
    """Step records from the published manifest, else from the stamps (a run that failed verify
    publishes nothing, but its stamps keep each finished step's duration)."""
    manifest = _load(res / f"{run}-manifest.json")
    if manifest:
        return {s["id"]: s for s in manifest.get("steps", [])}
    stamps = sorted((res / f"{run}-stamps").glob("*.json"))
    return {p.stem: _load(p) for p in stamps}


def summarise(res: Path, cores: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for run in ("cold", "warm"):
        wall = _load(res / f"{run}-wall.json")
        steps = _steps(res, run)
        log = res / f"{run}.ninja_log"
        ninja = busy(log, cores) if log.is_file() else {}
        in_steps = sum(float(s.get("duration_s") or 0) for s in steps.values())
        out[run] = {
            "rc": wall.get("rc"), "wall_s": wall.get("wall_s"),
            "steps_s": {k: round(float(s.get("duration_s") or 0), 1) for k, s in steps.items()},
            "cache_hit_rate": steps.get("build-torch", {}).get("cache_hit_rate"),
            "ninja": ninja,
            # The tool's own time: everything in the run that is not a build command.
            "tool_outside_steps_s": round(float(wall["wall_s"]) - in_steps, 1)
            if wall.get("wall_s") else None,
            # Everything that is not ninja compiling: configure, codegen, packaging, the tool.
            "outside_compile_s": round(float(wall["wall_s"]) - float(ninja["span_s"]), 1)
            if wall.get("wall_s") and ninja.get("span_s") else None,
        }
    cold, warm = out["cold"].get("wall_s"), out["warm"].get("wall_s")
    out["warm_over_cold"] = round(float(warm) / float(cold), 3) if cold and warm else None
    out["smoke"] = _load(res / "smoke.json")
    return out


def render(s: dict[str, Any]) -> str:
    lines = [("| run | rc | wall s | compile span s | CPU busy % of cores | outside compile s | "
             "tool outside steps s | cache hit rate |"), "|---|---|---|---|---|---|---|---|"]
    for run in ("cold", "warm"):
        r = s[run]
        hit = r["cache_hit_rate"]
        lines.append(f"| {run} | {r['rc']} | {r['wall_s']} | {r['ninja'].get('span_s', '-')} | "
                     f"{r['ninja'].get('busy_pct', '-')} of {r['ninja'].get('cores', '-')} | "
                     f"{r['outside_compile_s']} | {r['tool_outside_steps_s']} | "
                     f"{'-' if hit is None else f'{100 * hit:.1f} %'} |")
    lines.append("")
    lines.append(f"warm/cold wall: {s['warm_over_cold']}")
    for run in ("cold", "warm"):
        lines.append(f"{run} steps: " + ", ".join(f"{k} {v}s" for k, v in
                                                  s[run]["steps_s"].items()))
    lines.append("smoke: " + ", ".join(f"{k}: {v}" for k, v in s["smoke"].items()
                                       if k not in {"file"}))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("results", type=Path)
    parser.add_argument("--cores", type=int, required=True)
    args = parser.parse_args()
    summary = summarise(args.results, args.cores)
    (args.results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(render(summary))


if __name__ == "__main__":
    main()
