"""Live progress for long steps: ninja ``[N/M]`` and CMake ``[ 42%]`` lines -> percentage and ETA.

The renderer keeps one line on a terminal (rewritten in place with ``\\r``), prints a plain line
every 10 % when the output is not a terminal (CI logs, pipes) -- starting again at 0 % whenever a
new ninja run begins (its total changes, or its count goes back), and at least once a minute
while nothing else was printed, from a heartbeat thread -- prints nothing in quiet mode (the
logger already shows step starts/ends), and streams every child line in verbose mode. The step's
full output goes to its log file regardless; that is command.run's job, not this module's.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TextIO

Clock = Callable[[], float]

# ninja prints "[1234/5678] Building CXX object ..." (the status prefix is configurable through
# NINJA_STATUS, whose default is "[%f/%t] "); CMake's Makefile generator prints "[ 42%] Building".
_NINJA = re.compile(r"^\s*\[(\d+)/(\d+)\]\s")
_CMAKE = re.compile(r"^\s*\[\s*(\d{1,3})%\]\s")
# The rate is taken over the last samples only: early ninja tasks (codegen, small files) are much
# faster than the template-heavy ones at the end, and a whole-run average promises too much.
_RATE_WINDOW = 200
_REDRAW_S = 0.25
_PLAIN_EVERY_PCT = 10
# Without a terminal a line at least this often, so a log never looks hung (#12 §5: it sat at
# "[ 75%] 3/4 ... eta 2s" for ten minutes while the next ninja run had 1766 steps).
HEARTBEAT_S = 60.0


def parse_progress(line: str) -> tuple[int, int] | None:
    """(done, total) from a ninja or CMake progress line, else None. CMake gives (pct, 100)."""
    match = _NINJA.match(line)
    if match is not None:
        done, total = int(match.group(1)), int(match.group(2))
        return (done, total) if total > 0 and done <= total else None
    match = _CMAKE.match(line)
    if match is not None and int(match.group(1)) <= 100:
        return int(match.group(1)), 100
    return None


def format_duration(seconds: float) -> str:
    """``7s``, ``4m05s``, ``2h03m``: short enough for a live line, exact enough to plan a coffee."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


@dataclass
class Eta:
    """Estimated time left from the recent completion rate."""

    clock: Clock = time.monotonic
    _samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=_RATE_WINDOW))
    done: int = 0
    total: int = 0

    def update(self, done: int, total: int) -> None:
        if total != self.total:
            # A new ninja invocation (torch runs several) or a re-plan: the old rate is meaningless.
            self._samples.clear()
        self.done, self.total = done, total
        self._samples.append((self.clock(), done))

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    def remaining_s(self) -> float | None:
        if not self.total:
            return None
        if self.done >= self.total:
            return 0.0
        if len(self._samples) < 2:
            return None
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        if d1 <= d0 or t1 <= t0:
            return None
        rate = (d1 - d0) / (t1 - t0)
        return (self.total - self.done) / rate


@dataclass
class ProgressLine:
    """Renders one step's progress. Feed it every output line of the step (``on_line``)."""

    title: str
    out: TextIO
    verbosity: int = 1  # 0 quiet, 1 normal, 2 verbose (same scale as logger.Logger)
    tty: bool = False
    color: bool = False
    clock: Clock = time.monotonic
    eta: Eta = field(init=False)
    started: float = field(init=False)
    _last_draw: float = field(default=-1e9, init=False)
    heartbeat_s: float = HEARTBEAT_S
    _last_plain_pct: int = field(default=-_PLAIN_EVERY_PCT, init=False)
    _last_plain_at: float = field(default=0.0, init=False)
    _drawn: bool = field(default=False, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)

    def __post_init__(self) -> None:
        self.eta = Eta(clock=self.clock)
        self.started = self.clock()
        self._last_plain_at = self.started

    def feed(self, line: str) -> None:
        parsed = parse_progress(line)
        with self._lock:
            if parsed is not None:
                self._restart_if_new_run(*parsed)
                self.eta.update(*parsed)
            if self.verbosity >= 2:
                print(f"    | {line}", file=self.out, flush=True)
            elif self.verbosity == 1:
                self._draw()

    def _restart_if_new_run(self, done: int, total: int) -> None:
        """A new ninja run (torch's build runs several; an extension build starts its own):
        its 10 % steps are printed from 0 again instead of waiting for the old run's level."""
        if total != self.eta.total or done < self.eta.done:
            self._last_plain_pct = -_PLAIN_EVERY_PCT

    def tick(self) -> None:
        """The heartbeat: without a terminal, print the line if nothing was printed for
        ``heartbeat_s`` (a long compile prints nothing for minutes)."""
        with self._lock:
            if self.tty or self.verbosity != 1:
                return
            if self.clock() - self._last_plain_at >= self.heartbeat_s:
                self._plain()

    def start_heartbeat(self, every_s: float = 5.0) -> None:
        """Call :meth:`tick` from a daemon thread until :meth:`finish` (non-terminal output)."""
        if self.tty or self.verbosity != 1:
            return

        def beat() -> None:
            while not self._stop.wait(every_s):
                self.tick()

        threading.Thread(target=beat, name=f"progress-{self.title}", daemon=True).start()

    def text(self) -> str:
        elapsed = format_duration(self.clock() - self.started)
        if not self.eta.total:
            return f"    {self.title}: {elapsed}"
        pct = f"[{int(100 * self.eta.fraction):3d}%]"
        if self.color:
            pct = f"\033[1m{pct}\033[0m"
        left = self.eta.remaining_s()
        eta = f", eta {format_duration(left)}" if left is not None else ""
        count = f" {self.eta.done}/{self.eta.total}" if self.eta.total != 100 else ""
        return f"    {self.title}: {pct}{count} {elapsed}{eta}"

    def _draw(self) -> None:
        now = self.clock()
        if self.tty:
            if now - self._last_draw >= _REDRAW_S:
                self._last_draw = now
                # \033[K clears what a longer previous line left behind.
                print(f"\r{self.text()}\033[K", end="", file=self.out, flush=True)
                self._drawn = True
            return
        pct = int(100 * self.eta.fraction) if self.eta.total else -1
        if pct >= self._last_plain_pct + _PLAIN_EVERY_PCT:
            self._last_plain_pct = pct - pct % _PLAIN_EVERY_PCT
            self._plain()

    def _plain(self) -> None:
        self._last_plain_at = self.clock()
        print(self.text(), file=self.out, flush=True)

    @classmethod
    def for_stream(cls, title: str, out: TextIO, *, verbosity: int,
                   environ: Mapping[str, str]) -> ProgressLine:
        """A renderer suited to ``out``: live only on a real terminal, colour unless NO_COLOR."""
        tty = hasattr(out, "isatty") and out.isatty() and environ.get("TERM") != "dumb"
        color = tty and not environ.get("NO_COLOR")
        return cls(title, out, verbosity=verbosity, tty=tty, color=color)

    def finish(self) -> None:
        """Stop the heartbeat; remove the live line so the logger's "ok ... in 12.3s" starts on a
        clean line."""
        self._stop.set()
        if self._drawn:
            print("\r\033[K", end="", file=self.out, flush=True)
            self._drawn = False


@dataclass(frozen=True)
class StepRecord:
    """One line of the end-of-run summary."""

    step_id: str
    status: str  # "built", "skipped" (stamp matched), "resumed", "failed"
    duration_s: float
    cache_hit_rate: float | None = None  # None: no compiler cache, or nothing compiled


def format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError  # unreachable: the loop returns at GiB


def step_rows(records: list[StepRecord]) -> tuple[list[str], list[list[str]]]:
    """Header and rows for ``logger.log.table``: steps with durations and cache hit rates."""
    rows = []
    for rec in records:
        hit = f"{100 * rec.cache_hit_rate:.0f}%" if rec.cache_hit_rate is not None else "-"
        rows.append([rec.step_id, rec.status, format_duration(rec.duration_s), hit])
    return ["step", "status", "time", "cache hits"], rows


def wheel_rows(wheels: list[tuple[str, int, str]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows for the wheels: (file name, size in bytes, sha256)."""
    rows = [[name, format_size(size), sha] for name, size, sha in wheels]
    return ["wheel", "size", "sha256"], rows
