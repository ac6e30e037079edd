"""The execution boundary, intercepted: what ``pipeline.run_build`` would run, and with what.

Every process torchbuild starts goes through ``command.py`` (the only module that imports
subprocess). ``FakeSubprocess`` stands in for the subprocess module *there*, records each call
(argv, env, cwd) and answers like the real tools would; a build step's wheel appears where the
step's argv puts it. ``Spy`` records the same calls but lets them run (the real-repo variant).
cibuildwheel's ``intercepted_build_args`` fixture is the model.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Plausible answers of the tools the pipeline probes (program name -> stdout).
ANSWERS = {
    "git": "git version 2.39.5", "cmake": "cmake version 3.28.1", "ninja": "1.11.1",
    "gcc": "12.2.0", "g++": "12.2.0", "nvcc": "Cuda compilation tools, release 12.6, V12.6.85",
    "python": "Python 3.12.3",
}


@dataclass(frozen=True)
class Call:
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str | None
    streamed: bool   # command.run (a step or a long command) rather than a probe/capture


def _program(argv: Sequence[str]) -> str:
    return Path(argv[0]).name


def _answer(argv: Sequence[str]) -> str:
    if "rev-parse" in argv:
        return "a" * 40
    name = _program(argv)
    if name.startswith("python") and "--version" not in argv:
        return ""
    return ANSWERS.get(name, "")


def _make_wheel(argv: Sequence[str]) -> None:
    """A build step writes its wheel into the ``.tmp-<component>`` dir its argv names."""
    for arg in argv:
        if "/.tmp-" in arg:
            out = Path(arg)
            out.mkdir(parents=True, exist_ok=True)
            component = out.name.removeprefix(".tmp-")
            dist = {"vision": "torchvision", "audio": "torchaudio",
                    "text": "torchtext"}.get(component, component)
            (out / f"{dist}-0.0.0-py3-none-any.whl").write_bytes(b"PK\x05\x06" + b"\0" * 18)


class _Proc:
    def __init__(self, lines: Sequence[str]) -> None:
        self.stdout: Iterator[str] = iter(f"{line}\n" for line in lines)
        self.pid = 0
        self.returncode = 0

    def wait(self, timeout: float | None = None) -> int:
        return 0


@dataclass
class FakeSubprocess:
    """Enough of the subprocess module for command.py: Popen (streamed) and run (probes)."""

    calls: list[Call] = field(default_factory=list)
    DEVNULL = subprocess.DEVNULL
    PIPE = subprocess.PIPE
    STDOUT = subprocess.STDOUT
    TimeoutExpired = subprocess.TimeoutExpired
    CompletedProcess = subprocess.CompletedProcess

    def Popen(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              cwd: Any = None, **_kw: Any) -> _Proc:
        self.calls.append(Call(tuple(argv), dict(env or {}), str(cwd) if cwd else None, True))
        _make_wheel(argv)
        return _Proc([f"ran {_program(argv)}"])

    def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
            cwd: Any = None, **_kw: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(Call(tuple(argv), dict(env or {}), str(cwd) if cwd else None, False))
        return subprocess.CompletedProcess(list(argv), 0, stdout=_answer(argv), stderr="")

    def streamed(self) -> list[Call]:
        return [c for c in self.calls if c.streamed]


@dataclass
class Spy:
    """Records what command.py starts and lets it run for real."""

    calls: list[Call] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)

    def Popen(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen[str]:
        env, cwd = kw.get("env"), kw.get("cwd")
        self.calls.append(Call(tuple(argv), dict(env or {}), str(cwd) if cwd else None, True))
        return subprocess.Popen(argv, **kw)

    def streamed(self) -> list[Call]:
        return self.calls
