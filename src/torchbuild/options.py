"""Options: resolved once into a frozen object, remembering where each value came from.

Precedence, highest first: command line > ``TORCHBUILD_<NAME>`` environment variables > the config
file (``--config FILE`` or ``TORCHBUILD_CONFIG``) > built-in defaults. The process environment is
never read directly: ``__main__`` passes a mapping in, tests pass their own.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class OptionDef:
    name: str                     # attribute name; CLI flag is --name-with-dashes
    kind: str                     # "str" | "bool" | "int" | "path" | "list" | "choice"
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env_var(self) -> str:
        return "TORCHBUILD_" + self.name.upper()


OPTION_DEFS: tuple[OptionDef, ...] = (
    OptionDef("cc", "str", None, 'GPU compute capabilities: "8.6", "7.5 8.6", "8.6+PTX", '
              '"9.0a", or "auto" (read from nvidia-smi)', metavar="CC"),
    OptionDef("cpu", "bool", False, "build without CUDA"),
    OptionDef("torch", "str", None, "torch release to build (default: newest in the recipes)",
              metavar="X.Y.Z"),
    OptionDef("vision", "str", None, "torchvision version, or 'none' to skip (default: the "
              "release's match)", metavar="VERSION|none"),
    OptionDef("audio", "str", None, "torchaudio version, or 'none' to skip",
              metavar="VERSION|none"),
    OptionDef("text", "str", None, "torchtext version (old releases only), or 'none'",
              metavar="VERSION|none"),
    OptionDef("cuda", "str", None, "CUDA version (default: the release's default for conda "
              "envs, the system toolkit for venv/existing)", metavar="X.Y"),
    OptionDef("python", "str", None, "Python version for a new env (3.12), or an interpreter "
              "path (with --env existing or venv)", metavar="VERSION|PATH"),
    OptionDef("env", "choice", "conda", "build environment: conda (py-rattler, default), "
              "conda-exe (your conda/mamba/micromamba), venv, existing", choices=ENV_BACKENDS),
    OptionDef("conda_exe", "str", None, "conda/mamba/micromamba binary for --env conda-exe",
              metavar="PATH"),
    OptionDef("lock", "path", None, "rebuild the conda env from this conda-lock.yml (no solve)",
              metavar="FILE"),
    OptionDef("channel", "list", (), "extra conda channel (repeatable)", metavar="URL"),
    OptionDef("dist", "path", Path("dist"), "where wheels, manifest and lock go", metavar="DIR"),
    OptionDef("work_dir", "path", None, "sources, build trees, logs (default: "
              "CACHE_DIR/work/torch-X.Y.Z-cuXYZ)", metavar="DIR"),
    OptionDef("cache_dir", "path", None, "git mirrors, envs, compiler cache (default: "
              "$XDG_CACHE_HOME/torchbuild)", metavar="DIR"),
    OptionDef("recipe_dir", "path", None, "use recipes from this directory instead of the "
              "built-in ones", metavar="DIR"),
    OptionDef("jobs", "int", None, "parallel compile jobs (default: what RAM and cores allow)",
              metavar="N"),
    OptionDef("git_mirror", "str", None, "fetch every repo and submodule from this URL prefix "
              "(an internal git server, or file:///path)", metavar="URL_PREFIX"),
    OptionDef("offline", "bool", False, "never touch the network; use only the caches"),
    OptionDef("dry_run", "bool", False, "print the plan and stop"),
    OptionDef("json", "bool", False, "with --dry-run: print the plan as JSON"),
    OptionDef("set", "list", (), "extra build variable KEY=VALUE (repeatable)",
              metavar="KEY=VALUE"),
    OptionDef("torch_from_env", "bool", False, "skip building torch; build the companions "
              "against the torch installed in the build env"),
    OptionDef("install_into", "str", None, "install the finished wheels (--no-deps) into this "
              "python, or conda env name/prefix", metavar="TARGET"),
    OptionDef("force", "bool", False, "downgrade non-fatal refusals to warnings"),
    OptionDef("clean", "bool", False, "discard previous build state and start over"),
    OptionDef("compiler_cache", "choice", "auto", "compiler cache launcher",
              choices=COMPILER_CACHES),
    OptionDef("allow_missing", "list", (), "accept a feature CMake turned off (cudnn, magma, "
              "mkl, nccl, ...) (repeatable)", metavar="FEATURE"),
    OptionDef("verify", "bool", True, "verify the wheels in a throwaway env after building"),
    OptionDef("verbose", "bool", False, "stream every build line to the terminal"),
    OptionDef("quiet", "bool", False, "print only step starts and ends"),
    OptionDef("debug", "bool", False, "show tracebacks"),
)
_BY_NAME = {d.name: d for d in OPTION_DEFS}


@dataclass(frozen=True)
class Options:
    cc: str | None = None
    archs: tuple[Arch, ...] = ()
    cc_auto: bool = False
    cpu: bool = False
    torch: str | None = None
    vision: str | None = None
    audio: str | None = None
    text: str | None = None
    cuda: str | None = None
    python: str | None = None
    env: str = "conda"
    conda_exe: str | None = None
    lock: Path | None = None
    channel: tuple[str, ...] = ()
    dist: Path = Path("dist")
    work_dir: Path | None = None
    cache_dir: Path = Path("~/.cache/torchbuild")
    recipe_dir: Path | None = None
    jobs: int | None = None
    git_mirror: str | None = None
    offline: bool = False
    dry_run: bool = False
    json: bool = False
    set: tuple[tuple[str, str], ...] = ()
    torch_from_env: bool = False
    install_into: str | None = None
    force: bool = False
    clean: bool = False
    compiler_cache: str = "auto"
    allow_missing: tuple[str, ...] = ()
    verify: bool = True
    verbose: bool = False
    quiet: bool = False
    debug: bool = False
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    origin: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def verbosity(self) -> int:
        return 0 if self.quiet else 2 if self.verbose else 1

    def summary_rows(self) -> list[list[str]]:
        """(option, value, origin) for every option not left at its default."""
        rows = []
        for d in OPTION_DEFS:
            where = self.origin.get(d.name, "default")
            value = getattr(self, d.name)
            if where != "default" or d.name in {"env", "dist", "work_dir", "cache_dir"}:
                rows.append([d.flag, _show(value), where])
        return rows


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return " ".join("=".join(v) if isinstance(v, tuple) else str(v) for v in value)
    return "" if value is None else str(value)


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option as a CLI flag; defaults are SUPPRESSed so we can tell 'given' from 'default'."""
    for d in OPTION_DEFS:
        if d.kind == "bool":
            parser.add_argument(d.flag, dest=d.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=d.help)
        elif d.kind == "list":
            parser.add_argument(d.flag, dest=d.name, action="append", default=argparse.SUPPRESS,
                                metavar=d.metavar, help=d.help)
        elif d.kind == "choice":
            parser.add_argument(d.flag, dest=d.name, choices=d.choices,
                                default=argparse.SUPPRESS, help=d.help)
        else:
            parser.add_argument(d.flag, dest=d.name, default=argparse.SUPPRESS,
                                metavar=d.metavar, help=d.help)
    parser.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE",
                        help="TOML file with option values (keys as the long options)")


def _convert(d: OptionDef, raw: Any, where: str) -> Any:
    """Turn a CLI string / env string / TOML value into the option's type, or a UsageError."""
    try:
        if d.kind == "bool":
            return raw if isinstance(raw, bool) else _bool(str(raw))
        if d.kind == "int":
            return raw if isinstance(raw, int) and not isinstance(raw, bool) else _jobs(str(raw))
        if d.kind == "path":
            return Path(str(raw)).expanduser()
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
        name = key.replace("-", "_")
        if name not in _BY_NAME:
            close = difflib.get_close_matches(name, list(_BY_NAME), n=1)
            hint = f" (did you mean {close[0].replace('_', '-')!r}?)" if close else ""
            msg = f"config file {path}: unknown option {key!r}{hint}"
            raise UsageError(msg, fix="use the long option names, e.g. torch = \"2.9.1\"")
        out[name] = value
    return out


def _parse_set(items: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not _ENV_NAME.match(key):
            msg = f"--set {item!r}: expected KEY=VALUE with KEY a valid environment name"
            raise UsageError(msg, fix="e.g. --set USE_FLASH_ATTENTION=0")
        pairs.append((key, value))
    return tuple(pairs)


def _default_cache_dir(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME", "~")) / ".cache")
    return Path(base).expanduser() / "torchbuild"


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
            values[d.name] = d.default
            origin[d.name] = "default"
    if values["cache_dir"] is None:
        values["cache_dir"] = _default_cache_dir(environ)
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

