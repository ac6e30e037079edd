"""Every --help a user can ask for reads as help: no internal notes, no code names.

The notes that used to leak (issue #15): "pain.md FM-07", RST double backticks, function names
such as ``compare_wheel_dirs``, issue numbers. Help is made by argparse from our parsers, so this
walks the real parsers of the build and of every verb, in-process.
"""

from __future__ import annotations

import argparse
import re

import pytest

from torchbuild.__main__ import SUBCOMMANDS, _subcommand_parser, build_parser
from torchbuild.commands.fetch import FETCH_OPTIONS
from torchbuild.options import OPTION_DEFS

# What a maintainer's note looks like, and what a reader would see instead of help.
INTERNAL = {
    "a reference note": re.compile(r"pain\.md|cresset\.md|reference/|\bFM-\d"),
    "RST double backticks": re.compile(r"``"),
    "an issue or PR number": re.compile(r"(?<![\w/&])#\d+\b"),
    "a function call": re.compile(r"\b[A-Za-z_]\w*\(\)"),
}
# Lower-case snake_case words are code names, except these, which users type or read as terms.
SNAKE = re.compile(r"(?<![\w$/.-])[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")
USER_WORDS = {"channels_last", "x86_64"}


def _verb_parser(verb: str) -> argparse.ArgumentParser:
    parser, _ = _subcommand_parser(verb)
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subs.choices[verb]


def _verb_help(verb: str) -> str:
    return _verb_parser(verb).format_help()


def _all_help() -> dict[str, str]:
    return {"torchbuild": build_parser().format_help(),
            **{f"torchbuild {verb}": _verb_help(verb) for verb in SUBCOMMANDS}}


@pytest.mark.parametrize("name", ["torchbuild", *(f"torchbuild {v}" for v in SUBCOMMANDS)])
def test_help_has_no_internal_notes(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")   # a wide terminal: help still stops at 100 columns
    text = _all_help()[name]
    assert "usage: torchbuild" in text      # it really is that command's help
    found = [f"{what}: {m.group(0)!r}" for what, pattern in INTERNAL.items()
             for m in pattern.finditer(text)]
    found += [f"a code name: {m.group(0)!r}" for m in SNAKE.finditer(text)
              if m.group(0) not in USER_WORDS]
    assert not found, f"`{name} --help` shows " + "; ".join(found)
    wide = [line for line in text.splitlines() if len(line) > 100]
    assert not wide, f"`{name} --help` has lines wider than 100 columns: {wide}"


@pytest.mark.parametrize(("text", "what"), [
    ("see pain.md FM-07", "a reference note"),
    ("``torchbuild verify TARGET``", "RST double backticks"),
    ("fixed in #15", "an issue or PR number"),
    ("compared by compare_wheel_dirs()", "a function call"),
])
def test_the_patterns_catch_the_notes_that_leaked(text: str, what: str) -> None:
    assert INTERNAL[what].search(text)


def test_the_code_name_pattern_spares_options_and_variables() -> None:
    text = "--work-dir WORK_DIR [$TORCHBUILD_WORK_DIR] MAX_JOBS docs/performance.md"
    assert not SNAKE.findall(text)
    assert SNAKE.findall("compared by compare_wheel_dirs") == ["compare_wheel_dirs"]


def _flags(verb: str) -> set[str]:
    """The long options the verb's parser takes (and so its --help lists)."""
    return {s for a in _verb_parser(verb)._actions if a.help != argparse.SUPPRESS
            for s in a.option_strings if s.startswith("--")} - {"--help"}


def test_docker_lists_only_the_options_that_mean_something_in_a_container() -> None:
    shown = _flags("docker")
    for d in OPTION_DEFS:
        # Those that travel into the image, --dist (export's destination), --cache-dir (where an
        # installed wheel lays out its build context) and --dry-run.
        meaningful = d.container == "pass" or d.name in {"dist", "cache_dir", "dry_run"}
        assert (d.flag in shown) == meaningful, d.flag
    assert "--config" not in shown


def test_fetch_lists_only_the_options_that_decide_what_is_fetched() -> None:
    shown = _flags("fetch")
    build_flags = {d.flag for d in OPTION_DEFS}
    assert shown & build_flags == {d.flag for d in OPTION_DEFS if d.name in FETCH_OPTIONS}
    for meaningless in ("--jobs", "--dist", "--verify", "--install-into", "--force",
                        "--set", "--json", "--clean", "--stop-after", "--compiler-cache"):
        assert meaningless not in shown
    # --extra's sdists and --torch-from-env (no torch to mirror) decide what is fetched.
    assert {"--extra", "--torch-from-env"} <= shown
