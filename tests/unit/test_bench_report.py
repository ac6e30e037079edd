"""bench's pure parts: worker-record parsing, medians, speed-ups, ratios, scheduling, tables."""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from torchbuild.commands import bench
from torchbuild.errors import BenchError, UsageError
from torchbuild.resources import bench_worker as worker

CPU_ORDER = ["fp32", "bf16"]


def rec(python: int, round_: int, model: str, mode: str, times: list[float],
        batch: int = 32, peak: int | None = None) -> bench.Record:
    """A record as the worker makes it: throughput from the median step time."""
    median = statistics.median(times)
    return bench.Record(python, round_, model, mode, worker.MODES[mode].title, "images",
                        batch_size=batch, step_time_s=median, throughput=batch / median,
                        peak_memory_bytes=peak, step_times_s=tuple(times))


def test_worker_lines_are_told_apart_from_noise() -> None:
    payload = {"kind": "result", "model": "tiny-cnn", "mode": "fp32"}
    line = f"{worker.MARK} {json.dumps(payload)}"
    assert bench.parse_worker_line(line) == payload
    assert bench.parse_worker_line("UserWarning: Failed to initialize NumPy") is None
    assert bench.parse_worker_line(f"[bench_worker] {json.dumps(payload)}") is None


def test_record_from_worker_payload_keeps_measurements() -> None:
    payload = {"model": "tiny-cnn", "mode": "bf16", "title": "AMP bf16", "unit": "images",
               "batch_size": 8, "step_time_s": 0.5, "throughput": 16.0,
               "peak_memory_bytes": 1234, "step_times_s": [0.4, 0.5, 0.6]}
    r = bench.record_from(payload, python=1, round_=2)
    assert (r.python, r.round, r.batch_size, r.throughput) == (1, 2, 8, 16.0)
    assert r.step_times_s == (0.4, 0.5, 0.6)
    assert r.skipped is None
    skipped = bench.record_from({"model": "m", "mode": "bf16-cl", "title": "t", "unit": "u",
                                 "skipped": "n/a"}, 0, 0)
    assert skipped.skipped == "n/a"
    assert skipped.throughput == 0.0


def test_speedups_are_measured_throughput_over_the_fp32_baseline() -> None:
    records = [rec(0, 0, "tiny-cnn", "fp32", [0.4, 0.5, 0.6]),
               rec(0, 0, "tiny-cnn", "bf16", [0.2, 0.25, 0.3], peak=2 * bench.GIB)]
    rows = bench.summarize(records, CPU_ORDER)
    assert [r.mode for r in rows] == ["fp32", "bf16"]
    fp32, bf16 = rows
    assert fp32.speedup == pytest.approx(1.0)
    assert bf16.speedup == pytest.approx(records[1].throughput / records[0].throughput)
    assert bf16.baseline == "fp32"
    assert bf16.peak_memory_bytes == 2 * bench.GIB
    assert fp32.peak_memory_bytes is None


def test_rows_follow_the_ladder_order_not_the_record_order() -> None:
    records = [rec(0, 0, "m", "bf16", [1.0]), rec(0, 0, "m", "fp32", [2.0])]
    assert [r.mode for r in bench.summarize(records, CPU_ORDER)] == CPU_ORDER


def test_baseline_is_the_first_measured_rung_when_fp32_is_left_out() -> None:
    records = [rec(0, 0, "m", "tf32", [1.0]), rec(0, 0, "m", "bf16", [0.5])]
    rows = bench.summarize(records, ["tf32", "bf16"])
    assert rows[1].baseline == "tf32"
    assert rows[1].speedup == pytest.approx(rows[1].throughput / rows[0].throughput)


def test_medians_over_rounds_and_skipped_rungs() -> None:
    records = [rec(0, n, "m", "fp32", [t]) for n, t in enumerate([1.0, 3.0, 2.0])]
    records.append(bench.Record(0, 0, "m", "bf16-cl", "t", "sequences", skipped="n/a"))
    rows = bench.summarize(records, ["fp32", "bf16-cl"])
    fp32, cl = rows
    assert fp32.rounds == 3
    assert fp32.throughput == pytest.approx(statistics.median(r.throughput for r in records[:3]))
    assert fp32.step_time_s == pytest.approx(2.0)
    assert cl.skipped == "n/a"
    assert cl.throughput is None
    assert cl.speedup is None


def test_ratios_divide_medians_and_show_each_round() -> None:
    records = [rec(0, 0, "m", "fp32", [1.0]), rec(1, 0, "m", "fp32", [0.5]),
               rec(1, 1, "m", "fp32", [0.4]), rec(0, 1, "m", "fp32", [1.2])]
    rows = bench.summarize(records, ["fp32"])
    (ratio,) = bench.ratios(records, rows)
    a = next(r for r in rows if r.python == 0)
    b = next(r for r in rows if r.python == 1)
    assert ratio.python == 1
    assert ratio.ratio == pytest.approx(b.throughput / a.throughput)
    assert ratio.per_round == pytest.approx(
        (records[1].throughput / records[0].throughput,
         records[2].throughput / records[3].throughput))


def compare_settings(n: int, rounds: int) -> bench.Settings:
    return bench.Settings(models=None, modes=None, batch_size=None, steps=3, warmup=1,
                          rounds=rounds, device="auto", pythons=[f"py{i}" for i in range(n)],
                          compare=n > 1)


def test_schedule_alternates_interpreters_and_reverses_every_other_round() -> None:
    plan = bench.schedule(compare_settings(2, 3), ["a", "b"])
    assert [(py, rnd) for py, rnd, _ in plan if _ == ["a"]] == [
        (0, 0), (1, 0), (1, 1), (0, 1), (0, 2), (1, 2)]
    assert len(plan) == 12
    assert bench.schedule(compare_settings(1, 3), ["a", "b"]) == [(0, 0, ["a", "b"])]


def test_worker_args_carry_the_options_and_leave_defaults_to_the_worker() -> None:
    s = compare_settings(1, 1)
    assert bench.worker_args(s, None)["models"] is None
    assert bench.worker_args(s, None)["batch_size"] is None
    s.batch_size = 4
    args = bench.worker_args(s, ["tiny-cnn"])
    assert (args["batch_size"], args["models"], args["steps"]) == (4, ["tiny-cnn"], 3)
    assert json.loads(json.dumps(args)) == args  # it travels as --json-args


def test_table_formats_the_numbers_it_is_given() -> None:
    records = [rec(0, 0, "m", "fp32", [0.25], peak=3 * bench.GIB),
               rec(0, 0, "m", "bf16", [0.125])]
    header, body = bench.table_rows(bench.summarize(records, CPU_ORDER))
    assert header[4] == "samples/s"
    assert body[0][4] == f"{32 / 0.25:.1f}"
    assert body[0][5] == f"{250:.2f}"
    assert body[0][6] == f"{3:.2f}"
    assert body[1][7] == f"x{2:.2f}"


def test_worker_run_collects_records_and_errors() -> None:
    run = bench.WorkerRun()
    seen: list[dict[str, object]] = []
    run.on_env = seen.append
    run.feed(f"{worker.MARK} " + json.dumps({"kind": "env", "env": {"device": "cpu"},
                                              "models": ["m"], "modes": ["fp32"]}))
    run.feed("some warning from torch")
    run.feed(f"{worker.MARK} " + json.dumps({"kind": "result", "model": "m"}))
    run.feed(f"{worker.MARK} " + json.dumps({"kind": "done"}))
    assert seen == [{"device": "cpu"}]
    assert run.models == ["m"]
    assert run.results == [{"model": "m"}]
    assert run.done
    assert run.error is None


def test_report_is_json_and_names_the_command(tmp_path: Path) -> None:
    s = compare_settings(2, 1)
    records = [rec(0, 0, "m", "fp32", [1.0]), rec(1, 0, "m", "fp32", [0.5])]
    envs = [{"torch": "2.13.0", "device": "cpu"}, {"torch": "2.13.0", "device": "cpu"}]
    report = bench.build_report(s, envs, records, ["fp32"], bench.command_line(s))
    again = json.loads(json.dumps(report))
    assert again["command"].endswith("--compare py0 py1")
    assert len(again["summary"]) == 2
    assert again["ratios"][0]["ratio"] == pytest.approx(2.0)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="torchbuild", exit_on_error=False)
    bench.register(p.add_subparsers())
    return p


def test_cli_options_parse_into_settings() -> None:
    args = parser().parse_args(["bench", "--model", "tiny-cnn", "--modes", "fp32,bf16,compile",
                                "--batch-size", "8", "--steps", "3", "--json", "r.json"])
    s = bench.settings_from(args)
    assert s.models == ["tiny-cnn"]
    assert s.modes == ["fp32", "bf16", "compile"]
    assert (s.batch_size, s.steps, s.json_out, s.compare) == (8, 3, Path("r.json"), False)


@pytest.mark.parametrize("bad", [["--modes", "fp32,fp64"], ["--model", "vgg"],
                                 ["--steps", "0"]])
def test_cli_rejects_unknown_names_and_numbers(bad: list[str]) -> None:
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        parser().parse_args(["bench", *bad])


def test_compare_needs_two_interpreters() -> None:
    args = parser().parse_args(["bench", "--compare", "/usr/bin/python3"])
    with pytest.raises(UsageError):
        bench.settings_from(args)


def test_ladder_tables_are_consistent() -> None:
    assert list(worker.MODES) == list(worker.GPU_DEFAULT_MODES)
    assert set(worker.CPU_DEFAULT_MODES) <= set(worker.MODES)
    assert "compile" not in worker.CPU_DEFAULT_MODES  # too slow on CI's 2 cores
    for name in (*worker.GPU_DEFAULT_MODELS, *worker.CPU_DEFAULT_MODELS):
        assert name in worker.MODELS
    for name in worker.CPU_DEFAULT_MODELS:
        assert worker.MODELS[name].needs == ""  # the CPU ladder must run with torch alone
    transformer = worker.MODELS["transformer"]
    assert worker.applicable(transformer, worker.MODES["bf16-cl"]) is not None
    assert worker.applicable(worker.MODELS["resnet50"], worker.MODES["bf16-cl"]) is None


def load_renderer() -> Any:
    path = Path(__file__).resolve().parents[2] / "scripts" / "render_bench.py"
    spec = importlib.util.spec_from_file_location("render_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_render_bench_compares_measured_numbers_with_the_reference(tmp_path: Path) -> None:
    render = load_renderer()
    s = compare_settings(1, 1)
    # 256 images in 0.25 s and 0.05 s: 1024 and 5120 images/s, against 909 and 4704 referenced.
    records = [rec(0, 0, "resnet50", "fp32", [0.25], batch=256, peak=21 * bench.GIB),
               rec(0, 0, "resnet50", "bf16-cl", [0.05], batch=256, peak=11 * bench.GIB)]
    envs = [{"torch": "2.11.0+cu130", "device": "cuda", "device_name": "NVIDIA H200"}]
    report = json.loads(json.dumps(
        bench.build_report(s, envs, records, ["fp32", "bf16-cl"], bench.command_line(s))))
    page = render.render([report], [tmp_path / "r.json"], tmp_path / "performance.md")
    fp32_dev = 1024 / render.REFERENCE[("resnet50", "fp32")] - 1
    cl_dev = 5120 / render.REFERENCE[("resnet50", "bf16-cl")] - 1
    assert "| 1024.0 |" in page
    assert f"{fp32_dev * 100:+.1f} %" in page
    assert f"{cl_dev * 100:+.1f} %" in page
    assert f"x{5120 / 1024:.2f}" in page
    inside = sum(abs(d) <= render.TOLERANCE for d in (fp32_dev, cl_dev))
    assert f"{inside} of 2 rungs" in page
    assert report["command"] in page
    assert report["created"] in page


def test_rungs_that_broke_fail_the_command_but_not_applicable_ones_do_not() -> None:
    fine = [rec(0, 0, "m", "fp32", [1.0]),
            bench.Record(0, 0, "m", "bf16-cl", "t", "sequences", skipped="n/a: 4-D only")]
    bench._check_failures(fine, ["py0"])
    broken = [*fine, bench.Record(0, 0, "m", "compile", "t", "images",
                                  skipped="failed: RuntimeError: no compiler")]
    with pytest.raises(BenchError, match="m compile under py0: failed: RuntimeError"):
        bench._check_failures(broken, ["py0"])
