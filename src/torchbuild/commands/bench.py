"""``torchbuild bench``: a training speed ladder on the GPU present, and side-by-side comparisons.

The measuring happens in :mod:`torchbuild.resources.bench_worker`, started by path under each
interpreter being measured (which need not have torchbuild). This module schedules those runs,
alternates interpreters under ``--compare`` so that drift (clocks, heat, neighbours) hits all of
them alike, and turns the workers' records into a table, a JSON report and optionally a bar chart.

Everything between "records in" and "report out" is pure and tested on its own.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from torchbuild.command import run
from torchbuild.errors import BenchError, CommandFailed, UsageError
from torchbuild.logger import log
from torchbuild.options import HelpFormatter
from torchbuild.resources import bench_worker as worker

WORKER = Path(worker.__file__)
SCHEMA = 1
GIB = 1024**3


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Record:
    """One measured (or skipped) rung from one worker run."""

    python: int  # index into the report's interpreters
    round: int
    model: str
    mode: str
    title: str
    unit: str
    batch_size: int = 0
    step_time_s: float = 0.0
    throughput: float = 0.0
    peak_memory_bytes: int | None = None
    step_times_s: tuple[float, ...] = ()
    skipped: str | None = None


@dataclass(frozen=True)
class Row:
    """A rung summarised over rounds for one interpreter."""

    python: int
    model: str
    mode: str
    title: str
    unit: str
    batch_size: int
    rounds: int
    throughput: float | None  # median over rounds; None when skipped
    step_time_s: float | None
    peak_memory_bytes: int | None
    speedup: float | None  # against the model's baseline rung, same interpreter
    baseline: str | None
    skipped: str | None = None


@dataclass(frozen=True)
class Ratio:
    model: str
    mode: str
    python: int
    ratio: float  # throughput(python) / throughput(reference interpreter)
    per_round: tuple[float, ...]  # the same ratio within each round


@dataclass
class Settings:
    models: list[str] | None
    modes: list[str] | None
    batch_size: int | None
    steps: int
    warmup: int
    rounds: int
    device: str
    pythons: list[str]
    compare: bool
    json_out: Path | None = None
    plot_out: Path | None = None


# --------------------------------------------------------------------------- parsing worker output


def parse_worker_line(line: str) -> dict[str, Any] | None:
    """The record on a worker output line, or None for anything else (warnings, progress)."""
    if not line.startswith(worker.MARK):
        return None
    payload: dict[str, Any] = json.loads(line[len(worker.MARK):])
    return payload


def record_from(payload: Mapping[str, Any], python: int, round_: int) -> Record:
    if payload.get("skipped"):
        return Record(python, round_, payload["model"], payload["mode"], payload["title"],
                      payload["unit"], skipped=str(payload["skipped"]))
    return Record(
        python, round_, payload["model"], payload["mode"], payload["title"], payload["unit"],
        batch_size=int(payload["batch_size"]), step_time_s=float(payload["step_time_s"]),
        throughput=float(payload["throughput"]), peak_memory_bytes=payload["peak_memory_bytes"],
        step_times_s=tuple(float(t) for t in payload["step_times_s"]),
    )


# --------------------------------------------------------------------------- summarising


def _key(rec: Record | Row) -> tuple[int, str, str]:
    return rec.python, rec.model, rec.mode


def summarize(records: Sequence[Record], mode_order: Sequence[str]) -> list[Row]:
    """One row per (interpreter, model, rung), medians over rounds, speed-ups against the first
    measured rung of the ladder (``fp32`` unless the user left it out)."""
    groups: dict[tuple[int, str, str], list[Record]] = {}
    for rec in records:
        groups.setdefault(_key(rec), []).append(rec)
    order = {m: i for i, m in enumerate(mode_order)}
    keys = sorted(groups, key=lambda k: (k[0], k[1], order.get(k[2], len(order))))
    medians = {k: _median_or_none([r.throughput for r in groups[k] if not r.skipped]) for k in keys}
    rows = []
    for key in keys:
        base = next((k for k in keys if k[:2] == key[:2] and medians[k]), None)
        rows.append(_row(groups[key], medians[key], base[2] if base else None,
                         medians[base] if base else None))
    return rows


def _median_or_none(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _row(group: Sequence[Record], throughput: float | None, baseline: str | None,
         base_throughput: float | None) -> Row:
    first = group[0]
    measured = [r for r in group if not r.skipped]
    peaks = [r.peak_memory_bytes for r in measured if r.peak_memory_bytes is not None]
    speedup = throughput / base_throughput if throughput and base_throughput else None
    return Row(
        python=first.python, model=first.model, mode=first.mode, title=first.title,
        unit=first.unit, batch_size=measured[0].batch_size if measured else 0,
        rounds=len(measured), throughput=throughput,
        step_time_s=_median_or_none([r.step_time_s for r in measured]),
        peak_memory_bytes=max(peaks) if peaks else None,
        speedup=speedup, baseline=baseline,
        skipped=None if measured else first.skipped,
    )


def ratios(records: Sequence[Record], rows: Sequence[Row], reference: int = 0) -> list[Ratio]:
    """Each interpreter's throughput over the reference interpreter's, per model and rung.

    ``ratio`` divides the medians; ``per_round`` divides within each round, which shows how much
    the ratio moved while both ran alternately.
    """
    by_key = {_key(r): r for r in rows}
    by_round = {(r.python, r.model, r.mode, r.round): r.throughput
                for r in records if not r.skipped}
    out = []
    for row in rows:
        ref = by_key.get((reference, row.model, row.mode))
        if row.python == reference or not row.throughput or not ref or not ref.throughput:
            continue
        rounds = sorted({k[3] for k in by_round if k[:3] == _key(row)})
        per_round = tuple(
            by_round[(row.python, row.model, row.mode, n)]
            / by_round[(reference, row.model, row.mode, n)]
            for n in rounds if (reference, row.model, row.mode, n) in by_round
        )
        out.append(Ratio(row.model, row.mode, row.python, row.throughput / ref.throughput,
                         per_round))
    return out


# --------------------------------------------------------------------------- rendering


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table_rows(rows: Sequence[Row]) -> tuple[list[str], list[list[str]]]:
    header = ["model", "mode", "what", "batch", "samples/s", "step ms", "peak GiB", "speed-up"]
    body = []
    for r in rows:
        if r.skipped:
            body.append([r.model, r.mode, r.title, "-", "skipped", "-", "-", r.skipped])
            continue
        peak = None if r.peak_memory_bytes is None else r.peak_memory_bytes / GIB
        step_ms = None if r.step_time_s is None else r.step_time_s * 1000.0
        body.append([r.model, r.mode, r.title, str(r.batch_size), _num(r.throughput, ".1f"),
                     _num(step_ms, ".2f"), _num(peak, ".2f"),
                     "-" if r.speedup is None else f"x{r.speedup:.2f}"])
    return header, body


def ratio_rows(items: Sequence[Ratio], labels: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    header = ["model", "mode", "interpreter", f"ratio vs {labels[0]}", "per round"]
    body = [[r.model, r.mode, labels[r.python], f"x{r.ratio:.3f}",
             " ".join(f"{x:.3f}" for x in r.per_round)] for r in items]
    return header, body


def build_report(settings: Settings, envs: Sequence[Mapping[str, Any]],
                 records: Sequence[Record], mode_order: Sequence[str],
                 command: str) -> dict[str, Any]:
    rows = summarize(records, mode_order)
    return {
        "schema": SCHEMA,
        "tool": "torchbuild bench",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "settings": {
            "models": settings.models, "modes": list(mode_order),
            "batch_size": settings.batch_size, "steps": settings.steps,
            "warmup": settings.warmup, "rounds": settings.rounds, "device": settings.device,
            "timing": "CUDA events per step after warm-up (host clock on CPU); median of steps",
        },
        "interpreters": [dict(e) for e in envs],
        "records": [asdict(r) for r in records],
        "summary": [asdict(r) for r in rows],
        "ratios": [asdict(r) for r in ratios(records, rows)],
    }


def labels_for(envs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Short names for the interpreters: index, torch version and (when they share a version,
    as in an A/A check) the interpreter itself."""
    versions = [str(e.get("torch", "?")) for e in envs]
    same = len(set(versions)) < len(versions)
    return [f"#{i} torch {v}" + (f" ({e.get('python')})" if same else "")
            for i, (v, e) in enumerate(zip(versions, envs, strict=True))]


def print_report(report: Mapping[str, Any]) -> None:
    envs = report["interpreters"]
    labels = labels_for(envs)
    rows = [Row(**r) for r in report["summary"]]
    for i, env in enumerate(envs):
        log.info(f"{labels[i]}: {env.get('python')} on {env.get('device_name')} "
                 f"(cuda {env.get('torch_cuda')}, cudnn {env.get('cudnn')})")
        header, body = table_rows([r for r in rows if r.python == i])
        log.table(body, header)
    if report["ratios"]:
        header, body = ratio_rows([Ratio(**{**r, "per_round": tuple(r["per_round"])})
                                   for r in report["ratios"]], labels)
        log.table(body, header)


def plot_report(report: Mapping[str, Any], path: Path) -> None:
    """A bar chart per model: throughput per rung, one bar per interpreter, speed-ups on top."""
    plt = _pyplot()
    rows = [Row(**r) for r in report["summary"]]
    labels = labels_for(report["interpreters"])
    models = list(dict.fromkeys(r.model for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.5), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        _plot_model(ax, [r for r in rows if r.model == model], labels)
        ax.set_title(model)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_model(ax: Any, rows: Sequence[Row], labels: Sequence[str]) -> None:
    modes = list(dict.fromkeys(r.mode for r in rows if r.throughput))  # skipped: no empty slot
    pythons = sorted({r.python for r in rows})
    width = 0.8 / len(pythons)
    for n, py in enumerate(pythons):
        mine = {r.mode: r for r in rows if r.python == py}
        xs = [i + n * width for i in range(len(modes))]
        ys = [mine[m].throughput or 0.0 if m in mine else 0.0 for m in modes]
        bars = ax.bar(xs, ys, width, label=labels[py])
        for bar, m in zip(bars, modes, strict=True):
            speedup = mine[m].speedup if m in mine else None
            if speedup is not None:
                ax.annotate(f"x{speedup:.1f}", (bar.get_x() + bar.get_width() / 2,
                                                bar.get_height()),
                            ha="center", va="bottom", fontsize=8)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(modes))], modes, rotation=30)
    ax.set_ylabel(f"{rows[0].unit}/s (training)")
    ax.legend(fontsize=8)


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        msg = "--plot needs matplotlib, which is not installed in torchbuild's environment"
        raise BenchError(msg, fix="pip install 'torchbuild[bench]' (or matplotlib)") from None
    matplotlib.use("Agg")  # no display needed, and no GUI backend is picked by accident
    import matplotlib.pyplot as plt

    return plt


# --------------------------------------------------------------------------- running workers


def schedule(settings: Settings, models: Sequence[str]) -> list[tuple[int, int, list[str]]]:
    """(interpreter, round, models) for each worker run, in the order they run.

    One interpreter: a single run of the whole ladder. Several: per model and round, every
    interpreter in turn, reversing the order every other round (A B, B A, ...) so that a slow
    drift in the machine's speed favours none of them.
    """
    if not settings.compare:
        return [(0, 0, list(models))]  # empty: the worker picks the defaults for its device
    runs: list[tuple[int, int, list[str]]] = []
    order = list(range(len(settings.pythons)))
    for model in models:
        for round_ in range(settings.rounds):
            turn = order if round_ % 2 == 0 else order[::-1]
            runs.extend((py, round_, [model]) for py in turn)
    return runs


def worker_args(settings: Settings, models: Sequence[str] | None) -> dict[str, Any]:
    """The worker's --json-args; None for models/modes/batch_size lets it pick its defaults."""
    return {"models": list(models) if models else None, "modes": settings.modes,
            "steps": settings.steps, "warmup": settings.warmup, "device": settings.device,
            "batch_size": settings.batch_size}


@dataclass
class WorkerRun:
    env: dict[str, Any] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    done: bool = False
    on_env: Callable[[dict[str, Any]], None] | None = None

    def feed(self, line: str) -> None:
        payload = parse_worker_line(line)
        if payload is None:
            if line.startswith("[bench_worker] "):
                log.info(line.removeprefix("[bench_worker] "))
            else:
                log.detail(line)
            return
        kind = payload.pop("kind")
        if kind == "env":
            self.env, self.models, self.modes = payload["env"], payload["models"], payload["modes"]
            if self.on_env is not None:
                self.on_env(self.env)
        elif kind == "result":
            self.results.append(payload)
        elif kind == "error":
            self.error = payload
        elif kind == "done":
            self.done = True


def run_worker(python: str, cfg: Mapping[str, Any], environ: Mapping[str, str],
               on_env: Callable[[dict[str, Any]], None] | None = None) -> WorkerRun:
    out = WorkerRun(on_env=on_env)
    argv = [python, str(WORKER), "--json-args", json.dumps(cfg)]
    try:
        run(argv, env=dict(environ), on_line=out.feed, check=True)
    except CommandFailed as exc:
        if out.error is None:
            digest = "\n    ".join(exc.digest)
            msg = f"the bench worker failed under {python} (exit {exc.returncode}):\n    {digest}"
            raise BenchError(msg, fix="re-run with -v to see its whole output") from None
    if out.error is not None:
        raise _worker_error(python, out.error)
    if not out.done:
        msg = f"the bench worker under {python} stopped without finishing its ladder"
        raise BenchError(msg, fix="re-run with -v to see its whole output")
    return out


def _worker_error(python: str, error: Mapping[str, Any]) -> BenchError:
    fixes = {
        "no-torch": f"install torch into that environment ({python} -m pip install torch)",
        "no-cuda": "drop --device cuda, or check the driver with nvidia-smi",
        "missing-module": f"install it into that environment, or pick another --model "
                          f"(the CPU ladder's {', '.join(worker.CPU_DEFAULT_MODELS)} need "
                          f"only torch)",
    }
    msg = f"{python}: {error.get('message')}"
    return BenchError(msg, fix=fixes.get(str(error.get("error")), "see the message above"))


# --------------------------------------------------------------------------- the subcommand


def measure(settings: Settings, environ: Mapping[str, str]
            ) -> tuple[list[dict[str, Any]], list[Record], list[str]]:
    """Run every worker of the schedule; return interpreter facts, records and the rung order."""
    envs: list[dict[str, Any]] = [{} for _ in settings.pythons]
    records: list[Record] = []
    modes: list[str] = list(settings.modes or [])
    models = settings.models
    if models is None and settings.compare:
        # The default models depend on the device; ask the first interpreter (no measuring).
        probe = run_worker(settings.pythons[0], {**worker_args(settings, None), "probe": True},
                           environ)
        models = probe.models
    plan = schedule(settings, models or [])
    for n, (py, round_, run_models) in enumerate(plan, start=1):
        python = settings.pythons[py]
        what = ", ".join(run_models) or "default models"
        log.step(f"bench {n}/{len(plan)}: {what} under {python}"
                 + (f" (round {round_ + 1})" if settings.compare else ""))
        said = bool(envs[py])  # say which device once per interpreter, not once per run
        result = run_worker(python, worker_args(settings, run_models or None), environ,
                            on_env=None if said else lambda e: _say_device(e, settings.device))
        envs[py] = result.env
        modes = modes or result.modes
        records.extend(record_from(p, py, round_) for p in result.results)
    log.step_end(ok=True)
    _check_same_device(envs, settings.pythons)
    return envs, records, modes


def _say_device(env: Mapping[str, Any], wanted: str) -> None:
    if env.get("device") == "cuda":
        log.info(f"GPU: {env.get('device_name')} (sm {env.get('capability')}), "
                 f"torch {env.get('torch')}")
    elif wanted != "cpu":
        log.warn(f"no CUDA GPU is visible to {env.get('python')} (torch {env.get('torch')}): "
                 "running the tiny CPU ladder (fp32 vs bf16 autocast on small models) instead")


def _check_same_device(envs: Sequence[Mapping[str, Any]], pythons: Sequence[str]) -> None:
    devices = {(e.get("device"), e.get("device_name")) for e in envs}
    if len(devices) > 1:
        seen = ", ".join(f"{p}: {e.get('device')}" for p, e in zip(pythons, envs, strict=True))
        msg = f"the interpreters measured different devices ({seen}); their ratios mean nothing"
        raise BenchError(msg, fix="pass --device cpu or --device cuda so all use the same one")


def command_line(settings: Settings) -> str:
    """The command that reproduces this run, for the report."""
    parts = ["python", "-m", "torchbuild", "bench"]
    if settings.models:
        parts += ["--model", ",".join(settings.models)]
    if settings.modes:
        parts += ["--modes", ",".join(settings.modes)]
    if settings.batch_size:
        parts += ["--batch-size", str(settings.batch_size)]
    parts += ["--steps", str(settings.steps), "--warmup", str(settings.warmup)]
    if settings.device != "auto":
        parts += ["--device", settings.device]
    if settings.compare:
        parts += ["--rounds", str(settings.rounds), "--compare", *settings.pythons]
    return " ".join(parts)


def settings_from(args: argparse.Namespace) -> Settings:
    compare = bool(args.compare)
    pythons = list(args.compare) if compare else [args.python or sys.executable]
    if compare and len(pythons) < 2:
        msg = "--compare needs at least two interpreters"
        raise UsageError(msg, fix="e.g. --compare /opt/official/bin/python .venv/bin/python")
    return Settings(models=args.models, modes=args.modes, batch_size=args.batch_size,
                    steps=args.steps, warmup=args.warmup, rounds=args.rounds,
                    device=args.device, pythons=pythons, compare=compare,
                    json_out=args.json_out, plot_out=args.plot_out)


def main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    if args.verbose:
        log.configure(verbosity=2, environ=environ)  # stream the workers' whole output
    settings = settings_from(args)
    if settings.plot_out is not None:
        _pyplot()  # fail before minutes of measuring, not after
    envs, records, modes = measure(settings, environ)
    report = build_report(settings, envs, records, modes, command_line(settings))
    print_report(report)
    if settings.json_out is not None:
        settings.json_out.parent.mkdir(parents=True, exist_ok=True)
        settings.json_out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        log.info(f"wrote {settings.json_out}")
    if settings.plot_out is not None:
        plot_report(report, settings.plot_out)
        log.info(f"wrote {settings.plot_out}")
    _check_failures(records, settings.pythons)
    return 0


def _check_failures(records: Sequence[Record], pythons: Sequence[str]) -> None:
    """Rungs that broke (not the n/a ones) fail the command, after the rest has been reported."""
    failed = [r for r in records if r.skipped and r.skipped.startswith("failed")]
    if failed:
        lines = "\n    ".join(f"{r.model} {r.mode} under {pythons[r.python]}: {r.skipped}"
                              for r in failed)
        msg = f"{len(failed)} rung(s) could not run:\n    {lines}"
        raise BenchError(msg, fix="re-run with -v for the tracebacks, or leave those rungs "
                                  "out with --modes")


# --------------------------------------------------------------------------- argparse

DESCRIPTION = """\
Measure training throughput along a ladder of settings on the GPU present:
fp32 (TF32 off), + cuDNN autotuning, + TF32, AMP bf16, + channels_last, AMP fp16 with a
GradScaler, + torch.compile; on ResNet-50 (batch 256, 224x224) and a 12-layer transformer
encoder (width 1024, sequence 1024), with synthetic data made on the GPU. Each rung is timed
with CUDA events after warm-up; the median step gives samples/s, next to peak GPU memory and the
speed-up over fp32. Without a GPU it says so and runs a tiny CPU ladder (fp32 vs bf16).

--compare PYTHON PYTHON... runs the same ladder under each interpreter, alternately, and prints
their throughput ratios; those interpreters need torch (and torchvision for ResNet-50), not
torchbuild. See docs/performance.md for measured numbers.
"""


def _names(choices: Sequence[str], what: str) -> Any:
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        bad = [n for n in names if n not in choices]
        if bad or not names:
            msg = f"unknown {what} {', '.join(bad) or repr(text)}; choose from {', '.join(choices)}"
            raise argparse.ArgumentTypeError(msg)
        return names

    return parse


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"expected a whole number >= 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "bench", help="training speed ladder on the GPU present (or a tiny CPU ladder)",
        description=DESCRIPTION, formatter_class=HelpFormatter,
    )
    p.add_argument("--model", dest="models", type=_names(list(worker.MODELS), "model"),
                   metavar="MODEL[,MODEL]",
                   help="comma-separated; default resnet50,transformer on a GPU, "
                        "tiny-cnn,tiny-transformer on CPU")
    p.add_argument("--modes", type=_names(list(worker.MODES), "mode"), metavar="RUNG[,RUNG]",
                   help=f"comma-separated rungs, in order; all: {','.join(worker.MODES)} "
                        "(default: all on a GPU, fp32,bf16 on CPU)")
    p.add_argument("--batch-size", type=_positive, metavar="N",
                   help="for every model run (default: 256 resnet50, 16 transformer, "
                        "32 tiny-cnn, 16 tiny-transformer)")
    p.add_argument("--steps", type=_positive, default=20, metavar="N",
                   help="timed steps per rung (default 20; the median gives the speed)")
    p.add_argument("--warmup", type=_positive, default=5, metavar="N",
                   help="untimed steps per rung before timing (default 5)")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.add_argument("--python", help="interpreter to measure (default: this one)")
    p.add_argument("--compare", nargs="+", metavar="PYTHON",
                   help="measure several interpreters alternately and report ratios")
    p.add_argument("--rounds", type=_positive, default=2, metavar="N",
                   help="with --compare: alternating rounds per model")
    p.add_argument("--json", dest="json_out", type=Path, metavar="PATH",
                   help="write the report as JSON")
    p.add_argument("--plot", dest="plot_out", type=Path, metavar="PNG",
                   help="bar chart of the ladder (needs matplotlib)")
    p.add_argument("-v", "--verbose", action="store_true", help="show the workers' output")
    p.set_defaults(func=main)
