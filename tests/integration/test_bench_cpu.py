"""``torchbuild bench`` for real on CPU: the tiny ladder under the real torch 2.13.0 CPU wheel,
timed by the real worker, reported as a table, JSON and a PNG; ``--compare`` across two real
interpreters run alternately. Small models and few steps keep this to well under a minute once the
session's ``torch_venv`` exists."""

from __future__ import annotations

import json
import os
import statistics
import sys
import venv
from pathlib import Path
from typing import Any

import pytest

from torchbuild.command import probe, run
from torchbuild.errors import BenchError
from torchbuild.resources import bench_worker

pytestmark = pytest.mark.integration

BENCH_EXIT = BenchError.exit_code


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def second_interpreter(torch_python: Path, where: Path) -> Path:
    """Another real interpreter (own prefix, own sys.executable) that imports the first venv's
    torch through a .pth file: the cheap way to a second env, no second 190 MB install."""
    venv.create(where, with_pip=False, symlinks=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = torch_python.parent.parent / "lib" / version / "site-packages"
    assert (site / "torch").is_dir()
    (where / "lib" / version / "site-packages" / "torch-from-first.pth").write_text(f"{site}\n")
    return where / "bin" / "python"


def check_row_arithmetic(report: dict[str, Any]) -> None:
    """Every number in the summary follows from the step times the worker measured."""
    records = report["records"]
    for row in report["summary"]:
        mine = [r for r in records if (r["python"], r["model"], r["mode"])
                == (row["python"], row["model"], row["mode"])]
        per_round = []
        for r in mine:
            assert len(r["step_times_s"]) == report["settings"]["steps"]
            assert all(0 < t < 30 for t in r["step_times_s"])
            assert r["step_time_s"] == pytest.approx(statistics.median(r["step_times_s"]))
            assert r["throughput"] == pytest.approx(r["batch_size"] / r["step_time_s"])
            per_round.append(r["throughput"])
        assert row["throughput"] > 0
        assert row["throughput"] == pytest.approx(statistics.median(per_round))
        base = next(b for b in report["summary"] if (b["python"], b["model"], b["mode"])
                    == (row["python"], row["model"], row["baseline"]))
        assert row["speedup"] == pytest.approx(row["throughput"] / base["throughput"])


def test_cpu_ladder_table_json_and_plot(cli, torch_venv, tmp_path):
    pytest.importorskip("matplotlib")
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    proc = cli("bench", "--python", str(torch_venv), "--steps", "6", "--warmup", "2",
               "--json", str(out_json), "--plot", str(out_png))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no CUDA GPU" in proc.stderr  # it says why it runs the CPU ladder

    report = load(out_json)
    (env,) = report["interpreters"]
    assert env["device"] == "cpu"
    assert env["torch"].startswith("2.13.0")
    assert Path(env["python"]) == torch_venv
    pairs = [(r["model"], r["mode"]) for r in report["summary"]]
    assert pairs == [(m, mode) for m in bench_worker.CPU_DEFAULT_MODELS
                     for mode in bench_worker.CPU_DEFAULT_MODES]
    check_row_arithmetic(report)
    for row in report["summary"]:
        assert f"{row['throughput']:.1f}" in proc.stdout  # the table shows the measured numbers
        if row["mode"] == "fp32":
            assert row["speedup"] == pytest.approx(1.0)

    from matplotlib.image import imread

    image = imread(out_png)
    assert image.shape[0] > 200
    assert image.shape[1] > 400


def test_compare_runs_two_interpreters_alternately(cli, torch_venv, tmp_path):
    other = second_interpreter(torch_venv, tmp_path / "second")
    out_json = tmp_path / "compare.json"
    proc = cli("bench", "--compare", str(torch_venv), str(other), "--model", "tiny-cnn",
               "--rounds", "2", "--steps", "4", "--warmup", "1", "--json", str(out_json))
    assert proc.returncode == 0, proc.stdout + proc.stderr

    report = load(out_json)
    first, second = report["interpreters"]
    assert Path(first["python"]) == torch_venv
    assert Path(second["python"]) == other
    assert first["torch"] == second["torch"]
    # Run order, as recorded: A B in round 1, B A in round 2.
    order = list(dict.fromkeys((r["python"], r["round"]) for r in report["records"]))
    assert order == [(0, 0), (1, 0), (1, 1), (0, 1)]
    check_row_arithmetic(report)

    summary = {(r["python"], r["mode"]): r for r in report["summary"]}
    assert {r["mode"] for r in report["ratios"]} == set(bench_worker.CPU_DEFAULT_MODES)
    for ratio in report["ratios"]:
        a, b = summary[(0, ratio["mode"])], summary[(ratio["python"], ratio["mode"])]
        assert ratio["ratio"] == pytest.approx(b["throughput"] / a["throughput"])
        assert len(ratio["per_round"]) == 2
        assert f"x{ratio['ratio']:.3f}" in proc.stdout


def test_worker_runs_without_torchbuild(torch_venv):
    """The worker must run in an env that has torch but not torchbuild (an official wheel's)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    imports = probe([str(torch_venv), "-c", "import torchbuild"], env=env, timeout=60)
    assert imports is not None
    assert imports[0] != 0, "the test venv should not see torchbuild"
    lines: list[str] = []
    cfg = {"models": ["tiny-transformer"], "modes": ["bf16"], "steps": 2, "warmup": 1,
           "batch_size": 3}
    run([str(torch_venv), bench_worker.__file__, "--json-args", json.dumps(cfg)], env=env,
        on_line=lines.append)
    records = [json.loads(x.split(" ", 1)[1]) for x in lines if x.startswith(bench_worker.MARK)]
    assert [r["kind"] for r in records] == ["env", "result", "done"]
    assert records[1]["batch_size"] == 3
    assert records[1]["throughput"] > 0


def test_interpreter_without_torch_is_a_bench_error(cli, tmp_path):
    bare = tmp_path / "bare"
    venv.create(bare, with_pip=False)
    proc = cli("bench", "--python", str(bare / "bin" / "python"), "--steps", "1")
    assert proc.returncode == BENCH_EXIT, proc.stdout + proc.stderr
    assert "No module named 'torch'" in proc.stderr
    assert "pip install torch" in proc.stderr


def test_device_cuda_without_a_gpu_is_a_bench_error(cli, torch_venv):
    proc = cli("bench", "--python", str(torch_venv), "--device", "cuda", "--steps", "1")
    assert proc.returncode == BENCH_EXIT, proc.stdout + proc.stderr
    assert "no CUDA GPU" in proc.stderr
    assert "nvidia-smi" in proc.stderr


def test_resnet50_without_torchvision_says_what_to_install(cli, torch_venv, tmp_path):
    proc = cli("bench", "--python", str(torch_venv), "--model", "resnet50", "--steps", "1")
    assert proc.returncode == BENCH_EXIT, proc.stdout + proc.stderr
    assert "torchvision" in proc.stderr
    assert "tiny-cnn" in proc.stderr
