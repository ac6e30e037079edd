"""Progress parsing, ETA and the live-line renderer (fake clock, output into a StringIO)."""

from __future__ import annotations

import io
import time

import pytest

from torchbuild.build.progress import (
    Eta,
    ProgressLine,
    StepRecord,
    format_duration,
    format_size,
    parse_progress,
    step_rows,
    wheel_rows,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TtyIO(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("[1234/5678] Building CXX object caffe2/CMakeFiles/torch_cpu.dir/x.cpp.o", (1234, 5678)),
        ("[1/2] /usr/bin/c++ -c a.cpp -o a.o", (1, 2)),
        ("[ 42%] Building CXX object CMakeFiles/x.dir/x.cpp.o", (42, 100)),
        ("[100%] Linking CXX shared library libx.so", (100, 100)),
        ("  [  3%] Built target protobuf", (3, 100)),
        ("-- Configuring done", None),
        ("a.cpp:3: error: [1/2] not at line start", None),
        ("[5/0] bogus total", None),
        ("[7/3] done beyond total", None),
        ("[101%] impossible", None),
    ],
)
def test_parse_progress(line: str, expected: tuple[int, int] | None) -> None:
    assert parse_progress(line) == expected


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59.4, "59s"), (60, "1m00s"), (245, "4m05s"), (3600, "1h00m"), (7380, "2h03m")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_eta_from_recent_rate() -> None:
    clock = FakeClock()
    eta = Eta(clock=clock)
    eta.update(0, 100)
    assert eta.remaining_s() is None  # one sample: no rate yet
    clock.now += 10
    eta.update(20, 100)  # 2 tasks/s, 80 left
    assert eta.remaining_s() == pytest.approx(40.0)
    clock.now += 40
    eta.update(100, 100)
    assert eta.remaining_s() == 0.0


def test_eta_restarts_when_total_changes() -> None:
    # torch's build runs more than one ninja; the second one's [1/50] must not reuse the old rate.
    clock = FakeClock()
    eta = Eta(clock=clock)
    eta.update(0, 1000)
    clock.now += 1
    eta.update(500, 1000)
    clock.now += 1
    eta.update(1, 50)
    assert eta.remaining_s() is None
    clock.now += 7
    eta.update(8, 50)  # 1 task/s
    assert eta.remaining_s() == pytest.approx(42.0)


def test_non_tty_prints_a_plain_line_every_ten_percent() -> None:
    clock, out = FakeClock(), io.StringIO()
    line = ProgressLine("compile torch", out, verbosity=1, tty=False, clock=clock)
    for done in range(101):
        clock.now += 1
        line.feed(f"[{done}/100] Building CXX object o{done}.o")
    printed = out.getvalue().splitlines()
    assert len(printed) == 11  # 0 %, 10 %, ..., 100 %
    assert "\r" not in out.getvalue()
    assert "\033" not in out.getvalue()
    assert "[ 50%]" in printed[5]
    assert "eta 50s" in printed[5]  # 1 task/s, 50 left


def test_a_new_ninja_run_restarts_the_plain_lines() -> None:
    """#12 §5: torch's codegen ninja run had 4 steps, the compile 1766; the log stayed at
    "[ 75%] 3/4" because the next line was only due at 80 % of the new run."""
    clock, out = FakeClock(), io.StringIO()
    line = ProgressLine("build-torch", out, verbosity=1, tty=False, clock=clock)
    for done in range(1, 5):
        clock.now += 1
        line.feed(f"[{done}/4] Generating ATen sources")
    before = len(out.getvalue().splitlines())
    for done in (1, 2, 180):
        clock.now += 1
        line.feed(f"[{done}/1766] Building CXX object o{done}.o")
    new = out.getvalue().splitlines()[before:]
    assert new and "1/1766" in new[0] and "[  0%]" in new[0]
    assert "180/1766" in new[-1] and "[ 10%]" in new[-1]
    # The same total again (the next extension's ninja run) restarts too: its count goes back.
    line.feed("[1/1766] Building CXX object again.o")
    assert "1/1766" in out.getvalue().splitlines()[-1]


def test_heartbeat_prints_once_a_minute_without_a_terminal() -> None:
    clock, out = FakeClock(), io.StringIO()
    line = ProgressLine("build-vision", out, verbosity=1, tty=False, clock=clock)
    line.feed("[100/100] Linking CXX shared module _C.so")
    printed = len(out.getvalue().splitlines())
    clock.now += 59
    line.tick()
    assert len(out.getvalue().splitlines()) == printed          # not due yet
    clock.now += 1
    line.tick()
    assert len(out.getvalue().splitlines()) == printed + 1      # a minute of silence: a line
    assert "build-vision: [100%]" in out.getvalue().splitlines()[-1]
    clock.now += 30
    line.tick()
    assert len(out.getvalue().splitlines()) == printed + 1
    tty = ProgressLine("t", TtyIO(), verbosity=1, tty=True, clock=clock)
    clock.now += 120
    tty.tick()                                                  # a terminal has its live line
    assert "\n" not in tty.out.getvalue()


def test_heartbeat_thread_stops_at_finish() -> None:
    out = io.StringIO()
    line = ProgressLine("s", out, verbosity=1, tty=False, heartbeat_s=0.0)
    line.start_heartbeat(every_s=0.01)
    deadline = time.monotonic() + 5
    while not out.getvalue() and time.monotonic() < deadline:
        pass
    line.finish()
    assert out.getvalue()   # the thread printed without any input line
    assert line._stop.is_set()


def test_tty_rewrites_one_line_and_clears_it_at_the_end() -> None:
    clock, out = FakeClock(), TtyIO()
    line = ProgressLine("compile torch", out, verbosity=1, tty=True, clock=clock)
    for done in range(1, 5):
        clock.now += 1
        line.feed(f"[{done}/4] Building CXX object o{done}.o")
    line.finish()
    text = out.getvalue()
    assert "\n" not in text  # never scrolls the terminal
    assert text.count("\r") == 5  # four redraws and the final clear
    assert "[100%] 4/4" in text
    assert text.endswith("\r\033[K")


def test_tty_redraws_are_rate_limited() -> None:
    clock, out = FakeClock(), TtyIO()
    line = ProgressLine("compile", out, verbosity=1, tty=True, clock=clock)
    for done in range(1, 1001):
        clock.now += 0.001  # a thousand lines in one second
        line.feed(f"[{done}/1000] x")
    assert out.getvalue().count("\r") <= 5


def test_quiet_prints_nothing() -> None:
    out = io.StringIO()
    line = ProgressLine("compile", out, verbosity=0, tty=True, clock=FakeClock())
    for done in range(1, 11):
        line.feed(f"[{done}/10] x")
    line.finish()
    assert out.getvalue() == ""


def test_verbose_streams_every_line() -> None:
    out = io.StringIO()
    line = ProgressLine("compile", out, verbosity=2, tty=True, clock=FakeClock())
    lines = ["-- Configuring done", "[1/2] cc a.c", "[2/2] link"]
    for text in lines:
        line.feed(text)
    assert out.getvalue().splitlines() == [f"    | {t}" for t in lines]


def test_for_stream_respects_no_color_and_non_tty() -> None:
    assert ProgressLine.for_stream("s", TtyIO(), verbosity=1, environ={}).color
    no_color = ProgressLine.for_stream("s", TtyIO(), verbosity=1, environ={"NO_COLOR": "1"})
    assert no_color.tty
    assert not no_color.color
    dumb = ProgressLine.for_stream("s", TtyIO(), verbosity=1, environ={"TERM": "dumb"})
    assert not dumb.tty
    assert not ProgressLine.for_stream("s", io.StringIO(), verbosity=1, environ={}).tty


def test_elapsed_shown_before_any_progress_line() -> None:
    clock, out = FakeClock(), io.StringIO()
    line = ProgressLine("configure", out, verbosity=1, tty=False, clock=clock)
    clock.now += 65
    assert line.text() == "    configure: 1m05s"


def test_summary_rows() -> None:
    header, rows = step_rows([StepRecord("torch-wheel", "built", 3725, 0.875),
                              StepRecord("clone", "skipped", 0.2)])
    assert header == ["step", "status", "time", "cache hits"]
    assert rows == [["torch-wheel", "built", "1h02m", "88%"], ["clone", "skipped", "0s", "-"]]
    _, wrows = wheel_rows([("torch-2.13.0-cp311.whl", 3 * 1024 * 1024 * 1024 // 2, "ab" * 32)])
    assert wrows == [["torch-2.13.0-cp311.whl", "1.5 GiB", "ab" * 32]]
    assert format_size(512) == "512 B"
    assert format_size(2048) == "2.0 KiB"
