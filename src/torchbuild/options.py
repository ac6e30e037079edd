"""Options: resolved once into a frozen object, remembering where each value came from.

Precedence, highest first: command line > ``TORCHBUILD_<NAME>`` environment variables > the config
file (``--config FILE`` or ``TORCHBUILD_CONFIG``) > built-in defaults. The process environment is
never read directly: ``__main__`` passes a mapping in, tests pass their own.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

from torchbuild.cc import Arch, parse_cc
from torchbuild.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ENV_BACKENDS = ("conda", "conda-exe", "venv", "existing")
COMPILER_CACHES = ("auto", "ccache", "sccache", "none")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in {"1", "true", "yes", "on"}:
        return True
    if low in {"0", "false", "no", "off", ""}:
        return False
    msg = f"{text!r} is not a yes/no value"
    raise ValueError(msg)


def _jobs(text: str) -> int:
    value = int(text)
    if value < 1:
        msg = "must be at least 1"
        raise ValueError(msg)
    return value


def _words(text: str) -> tuple[str, ...]:
    return tuple(w for w in re.split(r"[\s,]+", text.strip()) if w)


# TORCHBUILD_EXTRA (or a config string) with several specs: a space or a comma separates two, but
# not a comma or space before a version operator, which continues the specifier before it
# (PEP 440 "causal-conv1d>=1.4,<2", "x >= 1.4, < 2").
_EXTRA_SEP = re.compile(r"(?<![\s,<>=!~])[\s,]+(?=[^\s,<>=!~])")


def _extra_items(text: str) -> tuple[str, ...]:
    return tuple(w for w in (p.strip(" \t\n,") for p in _EXTRA_SEP.split(text.strip())) if w)


# A second KEY= after a space or comma: the old comma/space-separated TORCHBUILD_SET form.
_ANOTHER_KEY = re.compile(r"[\s,][A-Za-z_][A-Za-z0-9_]*(:[A-Za-z_][A-Za-z0-9_]*)?=")


def _set_items(text: str) -> tuple[str, ...]:
    """TORCHBUILD_SET (or a config string): a JSON array of "KEY=VALUE" strings, or one
    KEY=VALUE per line. Values keep their commas and spaces (CFLAGS="-O2 -g"): neither a newline
    nor JSON's quoting can be confused with a value's own characters."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except ValueError as exc:
            msg = f"not a JSON array of strings ({exc})"
            raise ValueError(msg) from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            msg = 'a JSON array must hold "KEY=VALUE" strings'
            raise ValueError(msg)
        return tuple(items)
    lines = tuple(line.strip() for line in stripped.splitlines() if line.strip())
    if len(lines) == 1 and _ANOTHER_KEY.search(lines[0]):
        msg = ("several KEY=VALUE on one line are ambiguous (a value may hold spaces and commas); "
               "put one per line, or a JSON array: '[\"A=1\", \"CFLAGS=-O2 -g\"]'")
        raise ValueError(msg)
    return lines


_META = "torchbuild.option"
T = TypeVar("T")
# --stop-after: the stages a run can stop after (#12), in pipeline order.
STOP_AFTER = ("sources", "env", "configure")
Kind = Literal["str", "bool", "int", "path", "list", "choice"]
# How the container path treats an option: forward it as a flag, leave it to the host side (the
# container path chooses its own), or refuse it (it names something on the host the image lacks).
InContainer = Literal["pass", "host", "refuse"]
# The sections of --help, in order: what a person decides first comes first.
GROUPS = ("what to build", "environment", "sources", "output", "behaviour")


@dataclass(frozen=True)
class OptionDef:
    """One option, declared once (as an ``Options`` field, below); everything else derives.

    ``session``: how this one invocation runs, not what it builds; a replay does not repeat it.
    ``retarget``: a replay may point it elsewhere (another machine, another output dir).
    ``env_default``: a default that depends on the environment mapping (HOME, XDG_*).
    """

    name: str                     # attribute name; CLI flag is --name-with-dashes
    kind: Kind
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    container: InContainer = "pass"
    session: bool = False
    retarget: bool = False
    env_default: Callable[[Mapping[str, str]], Any] | None = None
    group: str = "behaviour"      # the --help section (GROUPS)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env_var(self) -> str:
        return "TORCHBUILD_" + self.name.upper()

    @property
    def config_key(self) -> str:
        return self.name.replace("_", "-")

    def to_argv(self, value: Any) -> list[str]:
        """The command-line words that give this option ``value`` (parsed back, the same value)."""
        if self.kind == "bool":
            return [self.flag if value else "--no-" + self.flag[2:]]
        if self.name == "set":
            return [a for k, v in value for a in (self.flag, f"{k}={v}")]
        if self.kind == "list":
            return [a for v in value for a in (self.flag, str(v))]
        return [self.flag, str(value)]


def option(kind: Kind, default: T, help: str, *, choices: tuple[str, ...] = (),
           metavar: str | None = None, container: InContainer = "pass", session: bool = False,
           retarget: bool = False,
           env_default: Callable[[Mapping[str, str]], Any] | None = None,
           group: str = "behaviour") -> T:
    """Declare an option as an ``Options`` field: its default, plus what the parser, the
    TORCHBUILD_* variable, the config key, ``to_argv`` and docker/replay need to know."""
    spec = {"kind": kind, "default": default, "help": help, "choices": choices,
            "metavar": metavar, "container": container, "session": session,
            "retarget": retarget, "env_default": env_default, "group": group}
    return field(default=default, metadata={_META: spec})


def _default_cache_dir(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME", "~")) / ".cache")
    return Path(base).expanduser() / "torchbuild"


@dataclass(frozen=True)
class Options:
    """Every build option. To add one: add one field here with ``option(...)``; the parser,
    ``TORCHBUILD_<NAME>``, the config key, ``to_argv``, docker and replay follow from it (and
    ``tests/unit/test_options.py`` tells you to paste the new README table row)."""

    cc: str | None = option("str", None, 'GPU compute capabilities: "8.6", "7.5 8.6", '
                            '"8.6+PTX", "9.0a", or "auto" (read from nvidia-smi)', metavar="CC",
                            group="what to build")
    archs: tuple[Arch, ...] = ()          # derived from cc
    cc_auto: bool = False                 # derived from cc
    cpu: bool = option("bool", False, "build without CUDA", group="what to build")
    torch: str | None = option("str", None, "torch release to build (default: the newest "
                               "that can build --cc)", metavar="X.Y.Z", group="what to build")
    vision: str | None = option("str", None, "torchvision version, or 'none' to skip (default: "
                                "the release's match)", metavar="VERSION|none",
                                group="what to build")
    audio: str | None = option("str", None, "torchaudio version, or 'none' to skip",
                               metavar="VERSION|none", group="what to build")
    text: str | None = option("str", None, "torchtext version (old releases only), or 'none'",
                              metavar="VERSION|none", group="what to build")
    cuda: str | None = option("str", None, "CUDA version (default: the release's official "
                              "CUDA that can build --cc; venv/existing: the system "
                              "toolkit)", metavar="X.Y", group="what to build")
    python: str | None = option("str", None, "Python for a new env (default: this one if the "
                                "release supports it, else its newest), or an interpreter "
                                "path (--env existing/venv)",
                                metavar="VERSION|PATH", group="what to build")
    env: str = option("choice", "conda", "build environment: conda (py-rattler, default), "
                      "conda-exe (your conda/mamba/micromamba), venv, existing",
                      choices=ENV_BACKENDS, group="environment")
    conda_exe: str | None = option("str", None, "conda/mamba/micromamba binary for --env "
                                   "conda-exe", metavar="PATH", container="refuse",
                                   group="environment")
    lock: Path | None = option("path", None, "rebuild the conda env from this conda-lock.yml "
                               "(no solve)", metavar="FILE", container="refuse",
                               group="environment")
    channel: tuple[str, ...] = option("list", (), "extra conda channel (repeatable)",
                                      metavar="URL", group="environment")
    dist: Path = option("path", Path("dist"), "where wheels, manifest and lock go",
                        metavar="DIR", container="host", retarget=True, group="output")
    work_dir: Path | None = option("path", None, "sources, build trees, logs (default: "
                                   "CACHE_DIR/work/torch-X.Y.Z-cuXYZ)", metavar="DIR",
                                   container="host", retarget=True, group="output")
    cache_dir: Path = option("path", Path("~/.cache/torchbuild"), "git mirrors, envs, compiler "
                             "cache (default: $XDG_CACHE_HOME/torchbuild)", metavar="DIR",
                             container="host", retarget=True, env_default=_default_cache_dir,
                             group="output")
    recipe_dir: Path | None = option("path", None, "use recipes from this directory instead of "
                                     "the built-in ones", metavar="DIR", container="refuse",
                                     group="sources")
    jobs: int | None = option("int", None, "parallel compile jobs (default: what RAM and cores "
                              "allow)", metavar="N", retarget=True, group="environment")
    git_mirror: str | None = option("str", None, "fetch every repo and submodule from this URL "
                                    "prefix (an internal git server, or file:///path)",
                                    metavar="URL_PREFIX", retarget=True, group="sources")
    offline: bool = option("bool", False, "never touch the network; use only the caches",
                           retarget=True, group="sources")
    dry_run: bool = option("bool", False, "print the plan and stop", container="host",
                           session=True, group="behaviour")
    json: bool = option("bool", False, "with --dry-run: print the plan as JSON",
                        container="host", session=True, group="behaviour")
    set: tuple[tuple[str, str], ...] = option("list", (), "extra build variable KEY=VALUE for "
                                              "every step, or COMPONENT:KEY=VALUE for one "
                                              "component's or one --extra's (repeatable; an "
                                              "extra's CMAKE_ARGS add to its recipe's)",
                                              metavar="[COMPONENT:]KEY=VALUE",
                                              group="what to build")
    torch_from_env: bool = option("bool", False, "skip building torch; build the companions "
                                  "against the torch installed in the build env (its version "
                                  "picks them, unless --torch is given)",
                                  container="refuse", group="what to build")
    install_into: str | None = option("str", None, "install the finished wheels (--no-deps) "
                                      "into this python, or conda env name/prefix",
                                      metavar="TARGET", container="refuse", session=True,
                                      group="output")
    force: bool = option("bool", False, "downgrade non-fatal refusals to warnings",
                         session=True, retarget=True, group="behaviour")
    clean: bool = option("bool", False, "discard previous build state and start over",
                         session=True, group="behaviour")
    compiler_cache: str = option("choice", "auto", "compiler cache launcher",
                                 choices=COMPILER_CACHES, group="environment")
    allow_missing: tuple[str, ...] = option("list", (), "accept a feature CMake turned off "
                                            "(cudnn, magma, mkl, nccl, cudss, ...) or build "
                                            "torchvision without a codec (jpeg, png, webp, "
                                            "nvjpeg) (repeatable)", metavar="FEATURE",
                                            group="what to build")
    stop_after: str | None = option("choice", None, "stop with exit 0 after this stage (configure: "
                                    "after the CMake audit); a later run without it continues",
                                    choices=STOP_AFTER, session=True, group="behaviour")
    extra: tuple[str, ...] = option("list", (), "CUDA extension to build against this torch: a "
                                    "PyPI requirement, git+URL@TAG or a local directory "
                                    "(repeatable; in TORCHBUILD_EXTRA separated by spaces or "
                                    "commas)", metavar="SPEC",
                                    group="what to build")
    verify: bool = option("bool", True, "verify the wheels in a throwaway env after building",
                          group="output")
    verbose: bool = option("bool", False, "stream every build line to the terminal",
                           session=True, group="behaviour")
    quiet: bool = option("bool", False, "print only step starts and ends", session=True,
                         group="behaviour")
    debug: bool = option("bool", False, "show tracebacks", session=True, group="behaviour")
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    origin: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def verbosity(self) -> int:
        return 0 if self.quiet else 2 if self.verbose else 1

    def given(self, name: str) -> bool:
        """Whether the user set ``name`` (command line, TORCHBUILD_*, config), not a default."""
        return self.origin.get(name, "default") != "default"

    def summary_rows(self) -> list[list[str]]:
        """(option, value, origin) for every option not left at its default."""
        rows = []
        for d in OPTION_DEFS:
            where = self.origin.get(d.name, "default")
            value = getattr(self, d.name)
            if where != "default" or d.name in {"env", "dist", "work_dir", "cache_dir"}:
                rows.append([d.flag, _show(value), where])
        return rows


OPTION_DEFS: tuple[OptionDef, ...] = tuple(
    OptionDef(name=f.name, **f.metadata[_META]) for f in fields(Options) if _META in f.metadata)
_BY_NAME = {d.name: d for d in OPTION_DEFS}
CONFIG_FLAG = "config"   # not an option: names the file the other options may come from


def to_argv(options: Options, names: Iterable[str] | None = None) -> list[str]:
    """The options the user set (restricted to ``names``), as command-line words in declaration
    order: ``resolve(parse(to_argv(o)))`` gives ``o`` back, whoever set the values and how."""
    wanted = set(_BY_NAME if names is None else names)
    return [word for d in OPTION_DEFS if d.name in wanted and options.given(d.name)
            for word in d.to_argv(getattr(options, d.name))]


def cli_values(namespace: argparse.Namespace) -> dict[str, Any]:
    """The option values a parser with ``add_build_arguments`` collected (only those given)."""
    known = set(_BY_NAME) | {CONFIG_FLAG}
    return {k: v for k, v in vars(namespace).items() if k in known}


def markdown_table() -> str:
    """The README's option table, from the declarations."""
    rows = ["| option | env variable | default | what it does |", "|---|---|---|---|"]
    for d in OPTION_DEFS:
        shown = f"{d.flag} / --no-{d.flag[2:]}" if d.kind == "bool" else (
            f"{d.flag} {{{','.join(d.choices)}}}" if d.kind == "choice" else
            f"{d.flag} {d.metavar}")
        default = "" if d.env_default or d.default in (None, ()) else str(d.default)
        rows.append(f"| `{shown}` | `{d.env_var}` | {default} | {d.help} |")
    return "\n".join(rows)


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return " ".join("=".join(v) if isinstance(v, tuple) else str(v) for v in value)
    return "" if value is None else str(value)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Option and help on one line where they fit, wrapped to the terminal (at most 100)."""

    def __init__(self, prog: str) -> None:
        width = min(100, shutil.get_terminal_size((100, 24)).columns)
        super().__init__(prog, max_help_position=32, width=width)


def help_text(d: OptionDef) -> str:
    """The option's help with its default and its TORCHBUILD_* variable, for --help."""
    if d.kind == "bool":
        default = "on" if d.default else "off"
    elif d.env_default is not None or d.default in (None, ()):
        default = ""
    else:
        default = str(d.default)
    shown = f"default {default}; " if default else ""
    return f"{d.help} [{shown}${d.env_var}]".replace("%", "%%")


def add_build_arguments(parser: argparse.ArgumentParser,
                        names: Iterable[str] | None = None) -> None:
    """Every option (or those in ``names``) as a CLI flag, in the --help sections of ``GROUPS``;
    defaults are SUPPRESSed so we can tell 'given' from 'default'. ``--config`` comes only with
    the full set."""
    wanted = set(_BY_NAME if names is None else names)
    used = {d.group for d in OPTION_DEFS if d.name in wanted} | ({"behaviour"} if names is None
                                                                  else set())
    sections = {g: parser.add_argument_group(g) for g in GROUPS if g in used}
    for d in OPTION_DEFS:
        if d.name not in wanted:
            continue
        section, text = sections[d.group], help_text(d)
        if d.kind == "bool":
            section.add_argument(d.flag, dest=d.name, action=argparse.BooleanOptionalAction,
                                 default=argparse.SUPPRESS, help=text)
        elif d.kind == "list":
            section.add_argument(d.flag, dest=d.name, action="append", default=argparse.SUPPRESS,
                                 metavar=d.metavar, help=text)
        elif d.kind == "choice":
            section.add_argument(d.flag, dest=d.name, choices=d.choices,
                                 default=argparse.SUPPRESS, help=text)
        else:
            section.add_argument(d.flag, dest=d.name, default=argparse.SUPPRESS,
                                 metavar=d.metavar, help=text)
    if names is not None:
        return
    sections["behaviour"].add_argument(
        "--config", default=argparse.SUPPRESS, metavar="FILE",
        help="TOML file with option values (keys as the long options) [$TORCHBUILD_CONFIG]")


def _convert(d: OptionDef, raw: Any, where: str) -> Any:
    """Turn a CLI string / env string / TOML value into the option's type, or a UsageError."""
    try:
        if d.kind == "bool":
            return raw if isinstance(raw, bool) else _bool(str(raw))
        if d.kind == "int":
            return raw if isinstance(raw, int) and not isinstance(raw, bool) else _jobs(str(raw))
        if d.kind == "path":
            return Path(str(raw)).expanduser()
        if d.kind == "list" and d.name == "set" and not isinstance(raw, (list, tuple)):
            return _set_items(str(raw))
        if d.kind == "list" and d.name == "extra" and not isinstance(raw, (list, tuple)):
            return _extra_items(str(raw))
        if d.kind == "list":
            items: Sequence[Any] = raw if isinstance(raw, (list, tuple)) else _words(str(raw))
            return tuple(str(x) for x in items)
        if d.kind == "choice":
            if str(raw) not in d.choices:
                msg = f"must be one of {', '.join(d.choices)}"
                raise ValueError(msg)
            return str(raw)
        return str(raw)
    except ValueError as exc:
        msg = f"{where}: {raw!r} is not a valid value for {d.flag} ({exc})"
        raise UsageError(msg, fix=f"see `python -m torchbuild --help` for {d.flag}") from None


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f"config file {path} does not exist"
        raise UsageError(msg, fix="check --config / TORCHBUILD_CONFIG") from None
    except tomllib.TOMLDecodeError as exc:
        msg = f"config file {path} is not valid TOML: {exc}"
        raise UsageError(msg, fix="fix the syntax error") from None
    table = data.get("torchbuild", data)
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")   # the config key is the long option; underscores work too
        if name not in _BY_NAME:
            close = difflib.get_close_matches(name, list(_BY_NAME), n=1)
            hint = f" (did you mean {close[0].replace('_', '-')!r}?)" if close else ""
            msg = f"config file {path}: unknown option {key!r}{hint}"
            raise UsageError(msg, fix="use the long option names, e.g. torch = \"2.9.1\"")
        out[name] = value
    return out


# `--set COMPONENT:KEY=VALUE` names one of these (recipe.COMPONENTS; not imported: options.py
# stays below the knowledge wing).
SET_COMPONENTS = ("torch", "vision", "audio", "text")
# ... or an --extra's project name (PEP 508); the plan checks it names one of this build's extras.
_PACKAGE_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")


def _parse_set(items: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``KEY=VALUE`` for every build step, ``COMPONENT:KEY=VALUE`` for one component's steps
    (kept as the pair ``("COMPONENT:KEY", VALUE)``)."""
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        comp, colon, name = key.rpartition(":")
        target_ok = comp in SET_COMPONENTS or bool(_PACKAGE_NAME.match(comp))
        if not sep or not _ENV_NAME.match(name) or (colon and not target_ok):
            msg = (f"--set {item!r}: expected KEY=VALUE or COMPONENT:KEY=VALUE, with KEY a valid "
                   f"environment name and COMPONENT one of {', '.join(SET_COMPONENTS)} or the "
                   "name of an --extra")
            raise UsageError(msg, fix="e.g. --set USE_FLASH_ATTENTION=0, or --set "
                             "audio:CUDA_HOME=/usr/local/cuda-12.4 for torchaudio only")
        pairs.append((key, value))
    return tuple(pairs)


def set_for(pairs: Sequence[tuple[str, str]], component: str | None) -> dict[str, str]:
    """The ``--set`` variables of one component's steps: the global ones, then that component's
    (which win). ``component=None``: the global ones only."""
    out = {k: v for k, v in pairs if ":" not in k}
    if component is not None:
        prefix = f"{component}:"
        out.update({k[len(prefix):]: v for k, v in pairs if k.startswith(prefix)})
    return out


def resolve(cli: Mapping[str, Any], environ: Mapping[str, str]) -> Options:
    """Merge CLI values (only those given), TORCHBUILD_* variables, config file and defaults."""
    config_path = cli.get("config") or environ.get("TORCHBUILD_CONFIG")
    config = _read_config(Path(config_path).expanduser()) if config_path else {}
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for d in OPTION_DEFS:
        if d.name in cli:
            raw = cli[d.name]
            values[d.name] = _convert(d, raw, "command line") if d.kind != "list" else tuple(raw)
            origin[d.name] = "command line"
        elif d.env_var in environ:
            values[d.name] = _convert(d, environ[d.env_var], d.env_var)
            origin[d.name] = f"env {d.env_var}"
        elif d.name in config:
            values[d.name] = _convert(d, config[d.name], f"config {config_path}")
            origin[d.name] = f"config {config_path}"
        else:
            values[d.name] = d.env_default(environ) if d.env_default else d.default
            origin[d.name] = "default"
    return _finish(values, origin, environ)


def _finish(values: dict[str, Any], origin: dict[str, str],
            environ: Mapping[str, str]) -> Options:
    values["set"] = _parse_set(values["set"])
    values["allow_missing"] = tuple(a.lower() for a in values["allow_missing"])
    cc = values["cc"]
    if values["cpu"] and cc:
        msg = "--cpu and --cc contradict each other"
        raise UsageError(msg, fix="drop one of them")
    archs: tuple[Arch, ...] = ()
    cc_auto = False
    if cc is not None and cc.strip().lower() in {"auto", "native"}:
        cc_auto = True
    elif cc is not None:
        archs = parse_cc(cc)
    if values["quiet"] and values["verbose"]:
        msg = "--quiet and --verbose contradict each other"
        raise UsageError(msg, fix="drop one of them")
    if values["json"] and not values["dry_run"]:
        msg = "--json prints the plan and needs --dry-run"
        raise UsageError(msg, fix="add --dry-run")
    for comp in ("vision", "audio", "text"):
        if values[comp] is not None and values[comp].lower() == "none":
            values[comp] = "none"
    return Options(**values, archs=archs, cc_auto=cc_auto, environ=dict(environ), origin=origin)


def require_target(options: Options) -> None:
    """A build needs to know its GPUs (or that there are none)."""
    if not options.archs and not options.cc_auto and not options.cpu:
        msg = "no GPU architecture given"
        raise UsageError(msg, fix="pass --cc 8.6 (your GPU's compute capability), --cc auto to "
                         "read it from nvidia-smi, or --cpu for a CPU-only build")

