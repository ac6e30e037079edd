"""Step logging for humans: step start/end with durations, warnings on stderr, CI folding, NO_COLOR.

A single module-level ``log`` is used because there is one stdout per process. Library code calls
``log.step(...)``/``log.info(...)``; only the CLI configures verbosity and colour.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TextIO


def _want_color(stream: TextIO, environ: Mapping[str, str]) -> bool:
    if environ.get("NO_COLOR"):
        return False
    if environ.get("FORCE_COLOR"):
        return True
    return hasattr(stream, "isatty") and stream.isatty()


@dataclass
class Logger:
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    verbosity: int = 1  # 0 quiet (step starts/ends only), 1 normal, 2 verbose (stream everything)
    color: bool = False
    github: bool = False
    _step: str | None = None
    _step_started: float = 0.0

    def configure(self, *, verbosity: int, environ: Mapping[str, str]) -> None:
        self.verbosity = verbosity
        self.color = _want_color(self.out, environ)
        self.github = environ.get("GITHUB_ACTIONS") == "true"

    def _c(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def step(self, title: str) -> None:
        """Start a step (closing the previous one as successful)."""
        if self._step is not None:
            self.step_end(ok=True)
        self._step = title
        self._step_started = time.monotonic()
        if self.github:
            print(f"::group::{title}", file=self.out, flush=True)
        print(self._c("1", f"==> {title}"), file=self.out, flush=True)

    def step_end(self, *, ok: bool = True, note: str = "", status: str = "FAILED") -> float:
        """Close the step: "ok", or ``status`` (FAILED, INTERRUPTED) when not ``ok``."""
        if self._step is None:
            return 0.0
        took = time.monotonic() - self._step_started
        mark = self._c("32", "ok") if ok else self._c("31", status)
        extra = f" ({note})" if note else ""
        print(f"    {mark} {self._step} in {took:.1f}s{extra}", file=self.out, flush=True)
        if self.github:
            print("::endgroup::", file=self.out, flush=True)
        self._step = None
        return took

    def info(self, message: str) -> None:
        if self.verbosity >= 1:
            print(f"    {message}", file=self.out, flush=True)

    def detail(self, message: str) -> None:
        """Child output and other lines only shown in verbose mode."""
        if self.verbosity >= 2:
            print(f"    | {message}", file=self.out, flush=True)

    def warn(self, message: str) -> None:
        print(self._c("33", f"torchbuild: warning: {message}"), file=self.err, flush=True)

    def error(self, message: str, *, status: str = "FAILED") -> None:
        if self._step is not None:
            self.step_end(ok=False, status=status)
        print(self._c("31", message), file=self.err, flush=True)

    def table(self, rows: list[list[str]], header: list[str]) -> None:
        widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
        line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False))
        print(self._c("1", line), file=self.out)
        for row in rows:
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)),
                  file=self.out)
        self.out.flush()


log = Logger()


def configure_from_environ(verbosity: int, environ: Mapping[str, str] | None = None) -> None:
    log.configure(verbosity=verbosity, environ=environ if environ is not None else os.environ)
