"""Command line: ``python -m torchbuild [options]`` builds; ``python -m torchbuild VERB ...`` for
the other verbs. This is the only place that exits; errors become one message and an exit code."""

from __future__ import annotations

import argparse
import atexit
import difflib
import errno
import importlib
import os
import shutil
import signal
import sys
import textwrap
import time
import traceback
from collections.abc import Mapping, Sequence

from torchbuild import __version__, command
from torchbuild.errors import (
    CommandFailed,
    Interrupted,
    Signalled,
    TorchbuildError,
    UsageError,
    disk_error,
    interrupted,
)
from torchbuild.logger import configure_from_environ, log
from torchbuild.options import HelpFormatter, add_build_arguments, resolve
from torchbuild.pipeline import run_build

# Verbs other than the default build: module name -> one-line help. Each module exposes
# register(subparsers) and main(args, environ) -> int (docs/DEVELOPING.md).
SUBCOMMANDS: dict[str, str] = {
    "doctor": "what this machine can build: GPUs, driver, toolkits, compilers, RAM, disk, WSL2",
    "verify": "check built wheels (or an installed torch) against what was asked for",
    "replay": "rebuild from a torchbuild-manifest.json, listing changed inputs first",
    "fetch": "fill the caches (git mirrors, packages) for a later --offline build",
    "bench": "training speed ladder on this GPU; --compare two interpreters",
    "docker": "the same build in a container: env | build | export | up",
}


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on bad input itself; route that through our error type instead."""

    def error(self, message: str) -> None:  # type: ignore[override]
        # The message is printed after "torchbuild: bad option:"; only a verb's parser adds its
        # own name ("verify: ...").
        verb = self.prog.removeprefix("torchbuild").strip()
        raise UsageError(f"{verb}: {message}" if verb else message,
                         fix=f"see `{self.prog} --help`")


EXAMPLES = """examples:
  torchbuild --cc 8.6                        newest torch for an RTX 30xx, into ./dist
  torchbuild --cc 6.1 --dry-run              the plan for a Pascal GPU: release, CUDA, steps
  torchbuild --cc "7.5 8.6" --torch 2.9.1 --python 3.12 --install-into ~/venv/bin/python"""


def build_parser() -> argparse.ArgumentParser:
    verbs = "\n".join(f"  {name:<8} {text}" for name, text in SUBCOMMANDS.items())
    parser = _Parser(
        prog="torchbuild",
        usage="torchbuild [build] --cc CC|--cpu [options]\n       torchbuild COMMAND --help",
        description=textwrap.fill(
            "Build PyTorch and its companions (torchvision, torchaudio, torchtext) from source "
            "into wheels. `torchbuild --cc 8.6` builds the newest release that can target the "
            "GPU. Every option can also come from its TORCHBUILD_* variable or a --config file; "
            "the command line wins.", width=min(100, shutil.get_terminal_size((100, 24)).columns)),
        epilog=f"other commands (torchbuild COMMAND --help):\n{verbs}\n\n{EXAMPLES}",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"torchbuild {__version__}")
    add_build_arguments(parser)
    return parser


def _subcommand_parser(verb: str) -> tuple[argparse.ArgumentParser, argparse.Namespace | None]:
    parser = _Parser(prog="torchbuild")
    subs = parser.add_subparsers(dest="verb", parser_class=_Parser)
    module = importlib.import_module(f"torchbuild.commands.{verb}")
    module.register(subs)
    return parser, None


def _unknown_verb(word: str) -> UsageError:
    names = ["build", *SUBCOMMANDS]
    close = difflib.get_close_matches(word, names, n=1)
    maybe = f"did you mean `torchbuild {close[0]}`? " if close else ""
    return UsageError(f"unknown command {word!r} (commands: {', '.join(names)})",
                      fix=f"{maybe}see `torchbuild --help`; build options start with --, e.g. "
                      "--cc 8.6")


def _unknown_options(verb: str, parser: argparse.ArgumentParser,
                     unknown: Sequence[str]) -> UsageError:
    """An option the verb does not take: named with the verb, pointing at the verb's own help
    (the top-level parser would say `see torchbuild --help`, the build's options)."""
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    known = [s for a in subs.choices[verb]._actions for s in a.option_strings]
    hints = [close[0] for word in unknown
             for close in [difflib.get_close_matches(word.split("=")[0], known, n=1)] if close]
    maybe = f" (did you mean {' / '.join(hints)}?)" if hints else ""
    return UsageError(f"{verb}: unrecognized arguments: {' '.join(unknown)}{maybe}",
                      fix=f"see `torchbuild {verb} --help` for the options {verb} takes")


def _dispatch(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    if argv and argv[0] == "build":     # the explicit verb; the bare form builds too
        argv = argv[1:]
    elif argv and not argv[0].startswith("-") and argv[0] not in SUBCOMMANDS:
        raise _unknown_verb(argv[0])
    if argv and argv[0] in SUBCOMMANDS:
        parser, _ = _subcommand_parser(argv[0])
        args, unknown = parser.parse_known_args(list(argv))
        if unknown:
            raise _unknown_options(argv[0], parser, unknown)
        configure_from_environ(1, environ)
        return int(args.func(args, environ))
    args = build_parser().parse_args(list(argv))
    options = resolve(vars(args), environ)
    configure_from_environ(options.verbosity, environ)
    return run_build(options)


def _rattler_exit_guard() -> None:
    # py-rattler can crash at interpreter exit after a solve (pyo3/tokio finalisation race);
    # a short pause lets its runtime wind down first (reference/conda-offline.md, hazard 1).
    if "rattler" in sys.modules:
        time.sleep(0.05)


def _debug(argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """``--debug`` or TORCHBUILD_DEBUG (any yes-value), known before the options are parsed: a
    malformed option must still show its traceback."""
    flag = environ.get("TORCHBUILD_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}
    return "--debug" in argv or (flag and "--no-debug" not in argv)


def _untranslated(exc: CommandFailed) -> TorchbuildError:
    """A subprocess failure no stage turned into its own error: still one paragraph and a fix."""
    digest = "; ".join(exc.digest[-3:])
    msg = f"{exc.message}{': ' + digest if digest else ''}"
    where = f" (log: {exc.log_path})" if exc.log_path else ""
    return TorchbuildError(msg, fix="re-run the same command (finished work is kept); if it "
                           f"fails again, re-run with --debug and report the output{where}")


# Set once the first signal is being handled: a second Ctrl-C (or systemd's TERM after our own
# stop began) must not abort the stopping of the build's process group half-way.
_STOPPING: list[int] = []


def _on_signal(signum: int, _frame: object) -> None:
    if _STOPPING:
        return
    _STOPPING.append(signum)
    if signum == signal.SIGHUP:
        _detach_from_dead_terminal()
    raise Signalled(signum)


def _detach_from_dead_terminal() -> None:
    """After a hang-up, writes to the terminal fail with EIO: the error message, and Python's own
    flush at exit (which would turn our exit code into 120). Point stdout/stderr at /dev/null
    then; the step logs in the work dir still have everything."""
    for fd in (1, 2):
        try:
            if os.isatty(fd):
                os.write(fd, b"\n")
        except OSError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)


def install_signal_handlers() -> None:
    """SIGTERM (kill, systemd, a batch scheduler) and SIGHUP (the terminal closed) do what Ctrl-C
    does: stop the running step's process group, leave --dist untouched, exit 128 + signal."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)


def _clean_given(argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    return "--clean" in argv or environ.get("TORCHBUILD_CLEAN", "").lower() in {"1", "true",
                                                                               "yes", "on"}


def _rerun_advice(err: TorchbuildError, argv: Sequence[str], environ: Mapping[str, str]) -> None:
    """--clean starts over; repeating it after an interruption would throw away what this run
    built. The advice to re-run says to drop it."""
    if err.fix and "re-run the same command" in err.fix and _clean_given(argv, environ):
        err.fix = err.fix.replace("re-run the same command",
                                  "re-run the same command without --clean")


def _report(err: TorchbuildError) -> None:
    status = "INTERRUPTED" if isinstance(err, Interrupted) else "FAILED"
    try:
        log.error(err.render(), status=status)
    except OSError:
        _detach_from_dead_terminal()


# 128 + SIGPIPE: what a shell reports for a command whose reader went away (`... | head`).
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


def _reader_gone() -> int:
    """Our stdout's reader exited (`torchbuild ... | head`): stop quietly, as Unix tools do, not
    with a disk error. Children are stopped; stdout then points at /dev/null so the interpreter's
    flush of what is still buffered cannot fail again at exit."""
    command.stop_all()
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):   # a stdout without a file descriptor (tests capture it)
        pass
    return EXIT_BROKEN_PIPE


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    started = time.monotonic()
    code = _main(argv, environ)
    if code == EXIT_BROKEN_PIPE:
        return code       # nobody reads the output any more: nothing to add to it
    # Every run ends with how long it took (stderr: stdout may be a --json plan).
    took = time.monotonic() - started
    try:
        print(f"torchbuild: {'done' if code == 0 else f'exit {code}'} after {_elapsed(took)}",
              file=sys.stderr, flush=True)
    except OSError:
        _detach_from_dead_terminal()   # the terminal is gone (SIGHUP): the code still counts
    return code


def _elapsed(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _main(argv: Sequence[str] | None, environ: Mapping[str, str] | None) -> int:
    environ = dict(os.environ if environ is None else environ)
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(argv, environ)
    except BrokenPipeError:
        return _reader_gone()
    except KeyboardInterrupt as exc:
        err: TorchbuildError = interrupted(exc, "stopped")
        caught: BaseException = exc
    except CommandFailed as exc:
        err, caught = _untranslated(exc), exc
    except TorchbuildError as exc:
        err, caught = exc, exc
    except OSError as exc:
        # EIO on our own output: the terminal was closed and the write beat the SIGHUP handler.
        # Anything else: a write no stage expected to fail (a log, a stamp) on a bad disk.
        hung_up = exc.errno == errno.EIO
        if hung_up:
            _STOPPING.append(signal.SIGHUP)   # the SIGHUP still on its way must not interrupt
            _detach_from_dead_terminal()
        err = interrupted(Signalled(signal.SIGHUP), "the terminal was closed") if hung_up \
            else disk_error(exc)
        caught = exc
    except Exception as exc:  # noqa: BLE001 (the one place for it: a bug is still one paragraph;
        # the traceback comes with --debug)
        err = TorchbuildError(f"internal error: {type(exc).__name__}: {exc}",
                              fix="re-run with --debug and report the output (exit 1 is a bug)")
        caught = exc
    if isinstance(err, Interrupted):
        command.stop_all()    # children of worker threads (parallel clones), if any are left
    _rerun_advice(err, argv, environ)
    if _debug(argv, environ):
        # The exception object, not sys.exc_info(): outside the except block that is empty.
        traceback.print_exception(type(caught), caught, caught.__traceback__)
    _report(err)
    return err.exit_code


def entry() -> None:
    atexit.register(_rattler_exit_guard)
    install_signal_handlers()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    code = main()
    try:
        sys.stdout.flush()
    except OSError:
        _detach_from_dead_terminal()
    sys.exit(code)


if __name__ == "__main__":
    entry()
