"""The build report from the real torch 2.6.0 CPU build's .ninja_log (16 cores, MAX_JOBS 16,
benchmarks/results/gpu-real-torch-2.6.0) and small hand-written logs for the edge cases."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from torchbuild.proof import report as R

REAL_LOG = (Path(__file__).resolve().parents[2] / "benchmarks" / "results" /
            "gpu-real-torch-2.6.0" / "cold.ninja_log.gz")


@pytest.fixture(scope="module")
def real() -> R.NinjaStats:
    return R.ninja_stats({"torch": REAL_LOG}, 16)[0]


def test_real_log_is_busy_and_its_tail_collapses(real: R.NinjaStats) -> None:
    # 1768 edges once the multi-output lines (torchgen) are counted once.
    assert len(real.edges) == 1768
    assert real.busy == pytest.approx(real.cpu_s / (real.span_s * 16))
    assert 0.96 < real.busy < 0.99           # benchmarks/ninja_busy.py says 97.3 %
    start, length = real.tail()
    assert 0 < length < 30 and start > 850   # the last ~15 s run below 8 jobs
    times, jobs = R.running(real.edges)
    assert max(jobs) <= 16.5                 # mean load per second never exceeds MAX_JOBS
    assert real.groups()[0][0] == "torch_cpu"


def test_restarted_build_counts_only_the_last_run_and_multi_output_edges_once() -> None:
    text = ("# ninja log v7\n"
            "0\t5000\t1\tslow.o\taa\n"            # first run, interrupted
            "0\t1000\t1\tgen/a.h\tbb\n"           # a new run starts at 0 again
            "0\t1000\t1\tgen/b.h\tbb\n"           # same edge, second output
            "1000\t3000\t1\tlib/CMakeFiles/core.dir/x.cpp.o\tcc\n")
    edges = R.last_run(text)
    assert [e.target for e in edges] == ["gen/a.h", "lib/CMakeFiles/core.dir/x.cpp.o"]
    assert R.target_group(edges[1].target) == "core"


def data(ninja: list[R.NinjaStats]) -> R.ReportData:
    return R.ReportData("torchbuild: torch 2.6.0+cpu",
                        [R.StepTime("deps-torch", "ok", 12.0),
                         R.StepTime("build-torch", "ok", 936.3, 0.0)],
                        jobs=16, cores=16, ninja=ninja, peak_rss_gb=1.5,
                        facts=[("torch", "2.6.0+cpu")])


def test_html_is_self_contained_with_the_png_embedded(real: R.NinjaStats, tmp_path: Path) -> None:
    html_path, png_path = R.write_report(data([real]), tmp_path)
    page = html_path.read_text()
    png = png_path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    src = re.search(r"src='data:image/png;base64,([^']+)'", page)
    assert src and base64.b64decode(src.group(1)) == png
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", page)   # nothing fetched
    assert "97 % " in page or "97%" in page                         # busy share, at a glance
    assert "FlashAttentionKernel" in page                           # among the 15 slowest
    assert page.count("<tr>") >= 2 + 1 + R.SLOWEST


def test_report_without_ninja_logs_still_shows_the_steps(tmp_path: Path) -> None:
    html_path, _ = R.write_report(data([]), tmp_path)
    page = html_path.read_text()
    assert "build-torch" in page and "No ninja log" in page
