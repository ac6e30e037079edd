"""Exit codes: one table (errors.EXIT_CODES), unique, and the README's; main()'s last resort."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from torchbuild import __main__ as cli
from torchbuild import errors
from torchbuild.errors import EXIT_CODES, CommandFailed, TorchbuildError
from torchbuild.logger import log

README = Path(__file__).resolve().parents[2] / "README.md"


def _classes() -> list[type[TorchbuildError]]:
    seen, todo = [], [TorchbuildError]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo += cls.__subclasses__()
    return [c for c in seen if c.__module__ == errors.__name__]


def _readme_codes() -> set[int]:
    text = README.read_text(encoding="utf-8")
    table = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    codes: set[int] = set()
    for cell in re.findall(r"^\| ([0-9][0-9, –-]*) \|", table, re.MULTILINE):
        for part in cell.split(","):
            lo, _, hi = part.strip().replace("–", "-").partition("-")
            codes.update(range(int(lo), int(hi or lo) + 1))
    return codes


def test_every_error_class_lives_in_errors_py_with_its_own_code() -> None:
    classes = [c for c in _classes() if c not in (TorchbuildError, CommandFailed)]
    codes = [c.exit_code for c in classes]
    assert len(codes) == len(set(codes)), sorted(codes)
    assert set(EXIT_CODES) == set(codes)
    assert all(EXIT_CODES[c.exit_code] is c for c in classes)
    # No exit code defined outside errors.py (verify's 20-29 moved here).
    everywhere = [c for c in TorchbuildError.__subclasses__() if c.__module__ != errors.__name__]
    assert everywhere == []


def test_the_readme_table_is_the_errors_table() -> None:
    assert _readme_codes() == {0, 1, *EXIT_CODES}


def test_debug_prints_the_real_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["--cc", "8.6", "--jobs", "0", "--debug"], {"HOME": "/nonexistent"})
    err = capsys.readouterr().err
    assert rc == errors.UsageError.exit_code
    assert "Traceback (most recent call last)" in err and "NoneType: None" not in err
    assert "torchbuild.errors.UsageError" in err and "in _convert" in err


def test_no_traceback_without_debug(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--cc", "8.6", "--jobs", "0"], {"HOME": "/nonexistent"}) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_an_untranslated_command_failure_still_gets_a_fix(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    def boom(_argv: object, _environ: object) -> int:
        raise CommandFailed(["git", "frobnicate"], 128, digest=["fatal: not a git command"])

    monkeypatch.setattr(cli, "_dispatch", boom)
    stream = io.StringIO()
    monkeypatch.setattr(log, "err", stream)
    assert cli.main(["--cpu"], {}) == 1
    err = stream.getvalue()
    assert "`git frobnicate` exited with 128: fatal: not a git command" in err
    assert "fix: re-run the same command" in err


def test_a_bug_is_one_paragraph_and_exit_1(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """README: exit 1 is an error torchbuild did not classify; re-run with --debug and report."""
    def bug(_argv: object, _environ: object) -> int:
        raise NameError("name 'HelpFormatter' is not defined")

    monkeypatch.setattr(cli, "_dispatch", bug)
    stream = io.StringIO()
    monkeypatch.setattr(log, "err", stream)
    assert cli.main(["--cpu"], {}) == 1
    text = stream.getvalue()
    assert "internal error: NameError: name 'HelpFormatter' is not defined" in text
    assert "re-run with --debug" in text
    assert "Traceback" not in text + capsys.readouterr().err
    assert cli.main(["--cpu", "--debug"], {}) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err
