"""The build report: ``torchbuild-report.html`` (self-contained) and ``torchbuild-report.png``.

Long builds are where a picture beats a log. The report shows each step's wall time, how busy the
compiler was over time (from ninja's ``.ninja_log``: jobs running against MAX_JOBS, and the tail
where parallelism collapses), CPU-seconds per component and per CMake target, the 15 slowest
compile units, the compiler-cache hit rates and the peak memory of the largest build process.

The HTML has no external reference at all: the PNG is embedded as a data: URI, the style is inline,
so it opens from a mail attachment or an air-gapped machine. matplotlib draws the PNG with its
object API and the Agg canvas (no pyplot, no display, no global backend switch).
"""

from __future__ import annotations

import base64
import gzip
import html
import io
import re
import resource
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchbuild.build.steps import BuildResult
from torchbuild.plan import Plan

HTML_NAME = "torchbuild-report.html"
PNG_NAME = "torchbuild-report.png"
SLOWEST = 15
# Below this share of MAX_JOBS running, the build is in its tail (links, the last big units).
TAIL_SHARE = 0.5


# ---------------------------------------------------------------------------------- ninja log


@dataclass(frozen=True)
class Edge:
    start_ms: int
    end_ms: int
    target: str

    @property
    def seconds(self) -> float:
        return (self.end_ms - self.start_ms) / 1000


def read_log_text(path: Path) -> str:
    raw = path.read_bytes()
    return gzip.decompress(raw).decode() if raw[:2] == b"\x1f\x8b" else raw.decode()


def last_run(text: str) -> list[Edge]:
    """The edges of the last ninja run in a ``.ninja_log`` (v5-v7: ``start end mtime target
    hash``, times relative to that run's start). A restarted build appends a run whose times start
    at 0 again; an edge with many outputs has one line per output with the same start, end and
    command hash, and counts once."""
    runs: list[list[Edge]] = [[]]
    seen: set[tuple[str, str, str]] = set()
    previous_end = -1
    for line in text.splitlines():
        parts = line.split("\t")
        if line.startswith("#") or len(parts) < 5:
            continue
        start, end, target, digest = int(parts[0]), int(parts[1]), parts[3], parts[4]
        if runs[-1] and start == 0 and end < previous_end:
            runs.append([])
            seen = set()
        key = (parts[0], parts[1], digest)
        if key not in seen:
            seen.add(key)
            runs[-1].append(Edge(start, end, target))
        previous_end = end
    return runs[-1]


def running(edges: Sequence[Edge], step_s: float = 1.0) -> tuple[list[float], list[float]]:
    """(bin start times in s, mean jobs running in each bin): the parallelism curve. Each edge
    adds the share of every bin it overlaps, so a burst of 40 tiny codegen edges in one second
    counts for what it cost, not as 40 jobs."""
    if not edges:
        return [], []
    width = step_s * 1000
    n = int(max(e.end_ms for e in edges) / width) + 1
    load = [0.0] * n
    for e in edges:
        first, last = int(e.start_ms / width), int(e.end_ms / width)
        for i in range(first, min(last, n - 1) + 1):
            lo, hi = max(e.start_ms, i * width), min(e.end_ms, (i + 1) * width)
            load[i] += max(0.0, hi - lo) / width
    return [i * step_s for i in range(n)], load


def target_group(target: str) -> str:
    """``caffe2/CMakeFiles/torch_cpu.dir/.../x.cpp.o`` -> ``torch_cpu``; else the first folder."""
    m = re.search(r"CMakeFiles/([^/]+)\.dir/", target)
    if m:
        return m.group(1)
    return target.split("/", 1)[0] if "/" in target else "(top level)"


@dataclass(frozen=True)
class NinjaStats:
    component: str
    edges: list[Edge]
    jobs: int

    @property
    def span_s(self) -> float:
        if not self.edges:
            return 0.0
        return (max(e.end_ms for e in self.edges) - min(e.start_ms for e in self.edges)) / 1000

    @property
    def cpu_s(self) -> float:
        return sum(e.seconds for e in self.edges)

    @property
    def busy(self) -> float:
        """Share of MAX_JOBS slots busy over the span: sum(edge time) / (span x MAX_JOBS)."""
        return self.cpu_s / (self.span_s * self.jobs) if self.span_s and self.jobs else 0.0

    def tail(self) -> tuple[float, float]:
        """(start s, length s) of the tail: from the last second at least half of MAX_JOBS ran."""
        times, jobs = running(self.edges)
        if not times:
            return 0.0, 0.0
        full = [t for t, j in zip(times, jobs, strict=True) if j >= TAIL_SHARE * self.jobs]
        start = full[-1] + 1 if full else 0.0
        end = max(e.end_ms for e in self.edges) / 1000
        return min(start, end), max(0.0, end - start)

    def groups(self) -> list[tuple[str, float]]:
        out: dict[str, float] = {}
        for e in self.edges:
            out[target_group(e.target)] = out.get(target_group(e.target), 0.0) + e.seconds
        return sorted(out.items(), key=lambda kv: -kv[1])


def find_ninja_logs(src_dirs: Mapping[str, Path]) -> dict[str, Path]:
    """The ``.ninja_log`` of each component's build tree (torch: build/; setuptools/cpp_extension
    companions: build/temp.*/), the newest when there are several."""
    found: dict[str, Path] = {}
    for name, src in src_dirs.items():
        logs = [p for pattern in ("build/.ninja_log", "build/*/.ninja_log")
                for p in src.glob(pattern) if p.is_file()]
        if logs:
            found[name] = max(logs, key=lambda p: p.stat().st_mtime)
    return found


# --------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class StepTime:
    id: str
    status: str
    seconds: float
    cache_hit_rate: float | None = None
    note: str = ""


@dataclass(frozen=True)
class ReportData:
    title: str
    steps: list[StepTime]
    jobs: int
    cores: int
    ninja: list[NinjaStats] = field(default_factory=list)
    peak_rss_gb: float | None = None       # largest single build process (getrusage)
    facts: list[tuple[str, str]] = field(default_factory=list)   # (label, value) rows on top

    @property
    def total_s(self) -> float:
        return sum(s.seconds for s in self.steps)

    def slowest(self) -> list[tuple[str, str, float]]:
        units = [(n.component, e.target, e.seconds) for n in self.ninja for e in n.edges]
        return sorted(units, key=lambda u: -u[2])[:SLOWEST]


def ninja_stats(logs: Mapping[str, Path], jobs: int) -> list[NinjaStats]:
    return [NinjaStats(name, last_run(read_log_text(path)), jobs) for name, path in logs.items()]


# -------------------------------------------------------------------------------------- image


def _steps_panel(ax: Any, data: ReportData) -> None:
    offset = 0.0
    colors = {"ok": "#4c72b0", "skipped": "#bbbbbb", "failed": "#c44e52"}
    for i, s in enumerate(data.steps):
        ax.barh(i, max(s.seconds, 0.01), left=offset, color=colors.get(s.status, "#888888"))
        ax.text(offset + s.seconds, i, f" {s.seconds:.1f} s", va="center", fontsize=8)
        offset += s.seconds
    ax.set_yticks(range(len(data.steps)), [s.id for s in data.steps], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the first step")
    ax.set_title(f"steps: {data.total_s:.1f} s in all", fontsize=10, loc="left")


def _parallelism_panel(ax: Any, n: NinjaStats) -> None:
    times, jobs = running(n.edges)
    ax.fill_between(times, jobs, step="post", color="#4c72b0", alpha=0.6, label="jobs running")
    ax.axhline(n.jobs, color="#c44e52", linestyle="--", label=f"MAX_JOBS={n.jobs}")
    start, length = n.tail()
    if length > 0:
        ax.axvspan(start, start + length, color="#dd8452", alpha=0.25,
                   label=f"tail: {length:.0f} s below {TAIL_SHARE:.0%} of MAX_JOBS")
    ax.set_xlabel(f"seconds since {n.component}'s ninja started")
    ax.set_ylabel("compile jobs")
    ax.set_title(f"{n.component}: {n.busy:.0%} of {n.jobs} job slots busy over "
                 f"{n.span_s:.0f} s ({len(n.edges)} edges, {n.cpu_s:.0f} CPU-s)",
                 fontsize=10, loc="left")
    ax.legend(fontsize=8, loc="lower left")


def _groups_panel(ax: Any, data: ReportData) -> None:
    rows = [(f"{n.component}: {g}", s) for n in data.ninja for g, s in n.groups()[:8]]
    rows = sorted(rows, key=lambda r: -r[1])[:12]
    ax.barh(range(len(rows)), [r[1] for r in rows], color="#55a868")
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("CPU-seconds")
    ax.set_title("CPU-seconds per component / CMake target", fontsize=10, loc="left")


def _slowest_panel(ax: Any, data: ReportData) -> None:
    units = data.slowest()
    ax.barh(range(len(units)), [u[2] for u in units], color="#8172b3")
    ax.set_yticks(range(len(units)), [_short(u[1]) for u in units], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.set_title(f"{len(units)} slowest compile units", fontsize=10, loc="left")


def _short(target: str, width: int = 60) -> str:
    return target if len(target) <= width else "…" + target[-(width - 1):]


def render_png(data: ReportData) -> bytes:
    # Imported here, not at module level: matplotlib takes 1-3 s to import, and every torchbuild
    # command (--help, --dry-run, a no-op rerun) imports this module; only a run that draws pays.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = 1 + len(data.ninja) + (2 if data.ninja else 0)
    fig = Figure(figsize=(11, 3.2 * panels), dpi=90, layout="constrained")
    axes = fig.subplots(panels, 1, squeeze=False)[:, 0]
    _steps_panel(axes[0], data)
    for ax, n in zip(axes[1:], data.ninja, strict=False):
        _parallelism_panel(ax, n)
    if data.ninja:
        _groups_panel(axes[-2], data)
        _slowest_panel(axes[-1], data)
    fig.suptitle(data.title, fontsize=12)
    out = io.BytesIO()
    FigureCanvasAgg(fig).print_png(out)  # type: ignore[no-untyped-call]
    return out.getvalue()


# --------------------------------------------------------------------------------------- html


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f} %"


_STYLE = ("body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;"
          "margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left;"
          "font-size:90%}th{background:#eee}img{max-width:100%}.big{font-size:140%}")


def render_html(data: ReportData, png: bytes) -> str:
    parts = [f"<h1>{html.escape(data.title)}</h1>"]
    lead = [f"{data.total_s:.0f} s of steps", f"MAX_JOBS {data.jobs} on {data.cores} cores"]
    lead += [f"{n.component}: {n.busy:.0%} of job slots busy, tail {n.tail()[1]:.0f} s"
             for n in data.ninja]
    if data.peak_rss_gb is not None:
        lead.append(f"peak memory of one build process {data.peak_rss_gb:.1f} GiB")
    parts.append(f"<p class='big' id='headline'>{html.escape(' · '.join(lead))}</p>")
    if data.facts:
        parts.append(_table(["", ""], data.facts))
    src = "data:image/png;base64," + base64.b64encode(png).decode()
    parts.append(f"<img id='timeline' alt='build timeline' src='{src}'>")
    # Records the decoded image's width on the element: a headless browser's --dump-dom then
    # shows that the embedded image really loaded (tests/integration/test_report_chromium.py).
    parts.append("<script>const i=document.getElementById('timeline');"
                 "const m=()=>{i.dataset.naturalWidth=i.naturalWidth};"
                 "if(i.complete)m();else i.addEventListener('load',m);</script>")
    parts.append("<h2>Steps</h2>" + _table(
        ["step", "status", "wall time", "compiler cache hits", "note"],
        [(s.id, s.status, f"{s.seconds:.1f} s", _pct(s.cache_hit_rate), s.note)
         for s in data.steps]))
    if data.ninja:
        parts.append("<h2>Compiler parallelism (ninja)</h2>" + _table(
            ["component", "edges", "span", "CPU-seconds", "busy (of MAX_JOBS)", "tail"],
            [(n.component, len(n.edges), f"{n.span_s:.0f} s", f"{n.cpu_s:.0f}", _pct(n.busy),
              f"{n.tail()[1]:.0f} s") for n in data.ninja]))
        parts.append(f"<h2>{SLOWEST} slowest compile units</h2>" + _table(
            ["component", "target", "seconds"],
            [(c, t, f"{s:.1f}") for c, t, s in data.slowest()]))
    else:
        parts.append("<p>No ninja log in the build trees: no per-unit timing for this build.</p>")
    peak = "unknown" if data.peak_rss_gb is None else f"{data.peak_rss_gb:.2f} GiB"
    parts.append(f"<h2>Memory</h2><p>Peak resident memory of the largest single build process "
                 f"(getrusage RUSAGE_CHILDREN): {peak}.</p>")
    body = "\n".join(parts)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(data.title)}"
            f"</title><style>{_STYLE}</style></head><body>{body}</body></html>\n")


def write_report(data: ReportData, out_dir: Path) -> list[Path]:
    """Write the PNG and the HTML into ``out_dir`` (the publish step then moves them into dist
    together with the wheels and the manifest)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = render_png(data)
    (out_dir / PNG_NAME).write_bytes(png)
    (out_dir / HTML_NAME).write_text(render_html(data, png), encoding="utf-8")
    return [out_dir / HTML_NAME, out_dir / PNG_NAME]


def existing_report(out_dir: Path) -> list[Path]:
    """The report files an earlier run left in ``out_dir``, if both are there."""
    files = [out_dir / HTML_NAME, out_dir / PNG_NAME]
    return files if all(f.is_file() for f in files) else []


# --------------------------------------------------------------------------- from a real build


def peak_child_rss_gb() -> float | None:
    """Peak RSS of the largest finished descendant (the biggest compiler or linker process);
    Linux reports ru_maxrss in KiB. None where the platform does not say."""
    try:
        kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    except (OSError, ValueError):
        return None
    return kib / (1024 * 1024) if kib > 0 else None


def report_for(plan: Plan, result: BuildResult, cores: int) -> ReportData:
    """What the pipeline knows after a build, as report data."""
    # A skipped step's record keeps the duration of the run that built it (for the manifest);
    # this run's timeline spent no time on it.
    steps = [StepTime(r.id, r.status, 0.0 if r.status == "skipped" else r.duration_s,
                      r.cache_hit_rate, r.note)
             for r in result.records]
    logs = find_ninja_logs({s.name: s.path for s in plan.sources})
    facts = [("torch", plan.torch_label), ("CUDA", plan.cuda or "none (CPU)"),
             ("archs", plan.arch_list or "-"), ("Python", plan.python_version),
             ("environment", plan.environment.backend), ("MAX_JOBS", plan.jobs_reason),
             *([("why this release", plan.choice)] if plan.choice else []),
             ("components", ", ".join(f"{c.dist} {c.label}" for c in plan.components))]
    return ReportData(title=f"torchbuild: torch {plan.torch_label}", steps=steps, jobs=plan.jobs,
                      cores=cores, ninja=ninja_stats(logs, plan.jobs),
                      peak_rss_gb=peak_child_rss_gb(), facts=facts)
