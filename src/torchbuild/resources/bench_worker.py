"""Standalone speed-ladder worker, run inside the interpreter being measured.

It is started by path (``PYTHON bench_worker.py --json-args '{...}'``) and must not import
torchbuild: the interpreter under test may be an official-wheel env that has only torch (and maybe
torchvision), on any Python from 3.8 up. It needs the standard library and torch; torch is imported
lazily so that ``torchbuild.commands.bench`` can import this module for its constants without torch.

Protocol: progress goes to stderr as plain lines; machine-readable records go to stdout, one per
line, prefixed by :data:`MARK` (``env`` once, then one ``result`` per model x mode, then ``done``),
so that torch's own warnings on either stream cannot corrupt them.
"""

from __future__ import annotations

# Run by path: Python puts this folder (torchbuild/resources) first on sys.path. It holds only
# scripts named after themselves, so nothing here can shadow a module that torch imports.
import argparse
import gc
import json
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MARK = "@@torchbuild-bench@@"
PROTOCOL = 1


@dataclass(frozen=True)
class Mode:
    """One rung of the ladder. Each rung keeps the previous rung's settings unless it says so."""

    name: str
    title: str
    tf32: bool
    cudnn_benchmark: bool
    amp: str | None  # None, "bfloat16" or "float16"
    channels_last: bool
    compile: bool


MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode("fp32", "fp32, TF32 off (baseline)", False, False, None, False, False),
        Mode("cudnn", "+ cuDNN autotuning", False, True, None, False, False),
        Mode("tf32", "+ TF32", True, True, None, False, False),
        Mode("bf16", "AMP bf16", True, True, "bfloat16", False, False),
        Mode("bf16-cl", "AMP bf16 + channels_last", True, True, "bfloat16", True, False),
        Mode("fp16-cl", "AMP fp16 + GradScaler + channels_last", True, True, "float16", True,
             False),
        Mode("compile", "AMP bf16 (+ channels_last) + torch.compile", True, True, "bfloat16", True,
             True),
    )
}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # "cnn" or "transformer"
    unit: str  # what one sample is, for "samples/s"
    batch_size: int
    needs: str  # the import it needs besides torch ("" = none)


MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec("resnet50", "cnn", "images", 256, "torchvision"),
        ModelSpec("transformer", "transformer", "sequences", 16, ""),
        ModelSpec("tiny-cnn", "cnn", "images", 32, ""),
        ModelSpec("tiny-transformer", "transformer", "sequences", 16, ""),
    )
}

# What a plain `bench` runs when the user names nothing.
GPU_DEFAULT_MODELS = ("resnet50", "transformer")
GPU_DEFAULT_MODES = ("fp32", "cudnn", "tf32", "bf16", "bf16-cl", "fp16-cl", "compile")
# torch.compile on a 2-core CPU takes minutes, so the CPU ladder leaves it to --modes.
CPU_DEFAULT_MODELS = ("tiny-cnn", "tiny-transformer")
CPU_DEFAULT_MODES = ("fp32", "bf16")

# Transformer shapes: (layers, width, heads, feed-forward width, sequence length).
TRANSFORMER_SHAPES: dict[str, tuple[int, int, int, int, int]] = {
    "transformer": (12, 1024, 16, 4096, 1024),
    "tiny-transformer": (2, 64, 4, 128, 32),
}
IMAGE_SIZE = {"resnet50": 224, "tiny-cnn": 32}
CLASSES = {"resnet50": 1000, "tiny-cnn": 10}


class WorkerError(Exception):
    """A condition the orchestrator reports in its own words (``code`` says which)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def emit(kind: str, payload: dict[str, Any]) -> None:
    print(f"{MARK} {json.dumps({'kind': kind, **payload})}", flush=True)


def say(message: str) -> None:
    print(f"[bench_worker] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- models and data


def build_model(torch: Any, name: str) -> Any:
    if name == "resnet50":
        import torchvision

        return torchvision.models.resnet50(weights=None)
    if name == "tiny-cnn":
        nn = torch.nn
        return nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, CLASSES[name]),
        )
    layers, width, heads, ffn, _ = TRANSFORMER_SHAPES[name]
    layer = torch.nn.TransformerEncoderLayer(
        width, heads, ffn, dropout=0.1, activation="gelu", batch_first=True, norm_first=True
    )
    # Nested tensors only apply to padded inference batches; off keeps training on one path.
    return torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def make_batch(torch: Any, spec: ModelSpec, batch: int, device: Any) -> tuple[Any, Any]:
    """Synthetic inputs created on the device, so no input pipeline is measured."""
    gen = torch.Generator(device=device).manual_seed(0)
    if spec.kind == "cnn":
        size = IMAGE_SIZE[spec.name]
        x = torch.randn(batch, 3, size, size, device=device, generator=gen)
        y = torch.randint(0, CLASSES[spec.name], (batch,), device=device, generator=gen)
        return x, y
    _, width, _, _, seq = TRANSFORMER_SHAPES[spec.name]
    return torch.randn(batch, seq, width, device=device, generator=gen), None


def loss_of(torch: Any, spec: ModelSpec, out: Any, target: Any) -> Any:
    if spec.kind == "cnn":
        return torch.nn.functional.cross_entropy(out.float(), target)
    # No labels for an encoder: any scalar that depends on every output exercises the backward.
    return out.float().square().mean()


# --------------------------------------------------------------------------- backend settings


def set_backend_flags(torch: Any, mode: Mode, cuda: bool) -> None:
    if not cuda:
        return
    torch.backends.cudnn.benchmark = mode.cudnn_benchmark
    precision = "tf32" if mode.tf32 else "ieee"
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        # torch >= 2.9: the new per-backend API; mixing it with allow_tf32 raises, so use only it.
        torch.backends.cuda.matmul.fp32_precision = precision
        torch.backends.cudnn.conv.fp32_precision = precision
        torch.backends.cudnn.rnn.fp32_precision = precision
    else:
        torch.backends.cuda.matmul.allow_tf32 = mode.tf32
        torch.backends.cudnn.allow_tf32 = mode.tf32  # on by default: the baseline must turn it off


# --------------------------------------------------------------------------- timing


class Timer:
    """Per-step times in seconds: CUDA events on a GPU (no host sync inside the loop), else the
    host clock (CPU work is synchronous)."""

    def __init__(self, torch: Any, cuda: bool) -> None:
        self.torch = torch
        self.cuda = cuda
        self.marks: list[Any] = []

    def mark(self) -> None:
        if self.cuda:
            event = self.torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def step_times(self) -> list[float]:
        # Indexing, not zip(strict=)/pairwise: the worker also runs on interpreters older than
        # torchbuild's own (an official wheel's env on Python 3.8 or 3.9).
        ends = range(1, len(self.marks))
        if self.cuda:
            self.torch.cuda.synchronize()
            return [self.marks[i - 1].elapsed_time(self.marks[i]) / 1000.0 for i in ends]
        return [self.marks[i] - self.marks[i - 1] for i in ends]


def make_step(torch: Any, spec: ModelSpec, mode: Mode, model: Any, device: Any,
              batch: tuple[Any, Any]) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    amp_dtype = getattr(torch, mode.amp) if mode.amp else None
    scaler = torch.amp.GradScaler(device.type) if mode.amp == "float16" else None
    forward = torch.compile(model) if mode.compile else model
    x, y = batch

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = loss_of(torch, spec, forward(x), y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()

    return step


def applicable(spec: ModelSpec, mode: Mode) -> str | None:
    """Why a rung does not apply to a model (None if it does)."""
    if spec.kind != "cnn" and mode.name == "bf16-cl":
        return "n/a: channels_last is for 4-D (CNN) activations"
    return None


def run_mode(torch: Any, spec: ModelSpec, mode: Mode, cfg: dict[str, Any],
             device: Any) -> dict[str, Any]:
    cuda = device.type == "cuda"
    batch_size = int(cfg.get("batch_size") or spec.batch_size)
    torch.manual_seed(0)
    set_backend_flags(torch, mode, cuda)
    model = build_model(torch, spec.name).to(device).train()
    batch = make_batch(torch, spec, batch_size, device)
    if mode.channels_last and spec.kind == "cnn":
        model = model.to(memory_format=torch.channels_last)
        batch = (batch[0].contiguous(memory_format=torch.channels_last), batch[1])
    step = make_step(torch, spec, mode, model, device, batch)
    started = time.perf_counter()
    for _ in range(int(cfg["warmup"])):
        step()
    if cuda:
        torch.cuda.synchronize()
        # Peak of the timed steps only: warm-up (autotuning, compilation) can allocate extra.
        torch.cuda.reset_peak_memory_stats()
    warm_s = time.perf_counter() - started
    timer = Timer(torch, cuda)
    timer.mark()
    for _ in range(int(cfg["steps"])):
        step()
        timer.mark()
    times = timer.step_times()
    peak = int(torch.cuda.max_memory_allocated()) if cuda else None
    median = statistics.median(times)
    return {
        "model": spec.name, "mode": mode.name, "title": mode.title, "unit": spec.unit,
        "batch_size": batch_size, "warmup_steps": int(cfg["warmup"]), "warmup_s": warm_s,
        "step_times_s": times, "step_time_s": median,
        "throughput": batch_size / median, "peak_memory_bytes": peak,
    }


def free(torch: Any, cuda: bool) -> None:
    """Release the previous rung's model, optimizer and compiled graphs before the next one."""
    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    if hasattr(torch, "_dynamo"):
        torch._dynamo.reset()


# --------------------------------------------------------------------------- environment


def describe(torch: Any, device: Any) -> dict[str, Any]:
    cuda = device.type == "cuda"
    info: dict[str, Any] = {
        "protocol": PROTOCOL,
        "python": sys.executable,
        "python_version": platform.python_version(),
        "torch": torch.__version__,
        "torch_path": str(Path(torch.__file__).parent),
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "device": "cuda" if cuda else "cpu",
        "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor()
        or platform.machine(),
        "threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
    }
    if cuda:
        info["capability"] = "{}.{}".format(*torch.cuda.get_device_capability(device))
        info["arch_list"] = torch.cuda.get_arch_list()
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:
        info["torchvision"] = None
    return info


def missing_imports(models: list[str]) -> str:
    """Check up front that each model's extra package imports, so a missing torchvision is one
    clear message instead of a traceback half-way through the ladder."""
    for name in models:
        needs = MODELS[name].needs
        if not needs:
            continue
        try:
            __import__(needs)
        except ImportError as exc:
            return f"model {name} needs {needs}, which does not import here: {exc}"
    return ""


def pick_device(torch: Any, wanted: str) -> Any:
    if wanted == "cuda" or (wanted == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise WorkerError("no-cuda", "device 'cuda' asked for, but torch sees no CUDA GPU")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def run_ladder(cfg: dict[str, Any]) -> int:
    try:
        import torch
    except ImportError as exc:
        emit("error", {"error": "no-torch", "message": str(exc), "python": sys.executable})
        return 3
    try:
        device = pick_device(torch, str(cfg.get("device", "auto")))
    except WorkerError as exc:
        emit("error", {"error": exc.code, "message": str(exc), "python": sys.executable})
        return 3
    cuda = device.type == "cuda"
    env = describe(torch, device)
    models = list(cfg.get("models") or (GPU_DEFAULT_MODELS if cuda else CPU_DEFAULT_MODELS))
    modes = list(cfg.get("modes") or (GPU_DEFAULT_MODES if cuda else CPU_DEFAULT_MODES))
    missing = missing_imports(models)
    if missing:
        emit("error", {"error": "missing-module", "message": missing, "python": sys.executable})
        return 3
    emit("env", {"env": env, "models": models, "modes": modes})
    if cfg.get("probe"):
        # Only the facts and the resolved defaults: lets the caller plan per-model runs.
        emit("done", {})
        return 0
    for model_name in models:
        spec = MODELS[model_name]
        for mode_name in modes:
            mode = MODES[mode_name]
            skip = applicable(spec, mode)
            if skip:
                emit("result", {"model": spec.name, "mode": mode.name, "title": mode.title,
                                "unit": spec.unit, "skipped": skip})
                continue
            say(f"{spec.name} / {mode.name}: {mode.title}")
            try:
                emit("result", run_mode(torch, spec, mode, cfg, device))
            except Exception as exc:  # noqa: BLE001
                # One rung that cannot run here (too big for the GPU, a compiler missing for
                # torch.compile) should not lose the rest of the ladder: report it and go on.
                traceback.print_exc()
                reason = f"failed: {type(exc).__name__}: {exc}".splitlines()[0][:240]
                emit("result", {"model": spec.name, "mode": mode.name, "title": mode.title,
                                "unit": spec.unit, "skipped": reason})
            free(torch, cuda)
    emit("done", {})
    return 0


def parse(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json-args", required=True, help="the run's settings as a JSON object")
    parser.add_argument("--describe", action="store_true", help="print the ladder's tables")
    args = parser.parse_args(argv)
    cfg: dict[str, Any] = json.loads(args.json_args)
    cfg["describe"] = args.describe
    return cfg


def tables() -> dict[str, Any]:
    return {"modes": {k: asdict(v) for k, v in MODES.items()},
            "models": {k: asdict(v) for k, v in MODELS.items()}}


def main(argv: list[str]) -> int:
    cfg = parse(argv)
    if cfg["describe"]:
        emit("tables", tables())
        return 0
    return run_ladder(cfg)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
