"""Build requirements of the tag (the ``deps`` steps): recorded, hash-pinned, available offline.

* Every deps step runs ``pip install ... --report <work>/deps/<component>.json``; pip's
  installation report (pip >= 22.2) names each distribution it installed with its version, the
  file it came from and that file's sha256. The manifest carries that list (``deps``).
* ``replay`` reinstalls exactly those files: a requirements file of ``name==version
  --hash=sha256:...`` lines installed with ``--require-hashes --no-deps``.
* ``fetch`` runs ``pip download`` for the same requirements (read from the mirrored tag, no
  checkout) into ``<cache>/wheelhouse/<component>-<tag>/`` and writes the hashes of what it got
  next to it; ``--offline`` installs from there with ``--no-index --require-hashes``, so a file
  changed after ``fetch`` is refused by pip.

The user's own ``PIP_INDEX_URL`` / ``PIP_FIND_LINKS`` / ``PIP_EXTRA_INDEX_URL`` pass through the
step's environment untouched; only ``--offline`` overrides them with ``--no-index``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from torchbuild.digest import sha256_file
from torchbuild.errors import EnvironmentSetupError
from torchbuild.knowledge.wheelhouse import replay_file, report_file, wheelhouse, wheelhouse_lock
from torchbuild.plan import Plan, Step

__all__ = ["Installed", "hashed_requirements", "lock_file", "read_report", "report_file",
           "wheelhouse", "wheelhouse_lock"]

@dataclass(frozen=True)
class Installed:
    """One distribution a deps step installed, and the exact file it came from."""

    name: str
    version: str
    file: str
    sha256: str
    url: str = ""

    def to_json(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Installed:
        return cls(str(data["name"]), str(data["version"]), str(data["file"]),
                   str(data["sha256"]), str(data.get("url", "")))


def _filename(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1].split("#", 1)[0]


def read_report(path: Path) -> list[Installed]:
    """The ``install`` items of a pip installation report (``pip install --report``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        msg = f"cannot read pip's installation report {path}: {exc}"
        raise EnvironmentSetupError(msg, fix="re-run the same command (the deps step writes "
                                    "it); pip >= 22.2 is needed for --report") from None
    out = []
    for item in data.get("install", ()):
        meta, info = item.get("metadata", {}), item.get("download_info", {})
        url = str(info.get("url", ""))
        hashes = info.get("archive_info", {}).get("hashes", {})
        sha = hashes.get("sha256") or str(info.get("archive_info", {}).get("hash", "")) \
            .removeprefix("sha256=")
        out.append(Installed(str(meta.get("name", "")), str(meta.get("version", "")),
                             _filename(url), sha, url))
    return sorted(out, key=lambda i: canonicalize_name(i.name))


def hashed_requirements(items: Iterable[Installed]) -> str:
    """``name==version --hash=sha256:...`` lines, one per distribution (pip's hash mode)."""
    by_name: dict[str, list[Installed]] = {}
    for item in items:
        by_name.setdefault(canonicalize_name(item.name), []).append(item)
    lines = []
    for name in sorted(by_name):
        group = by_name[name]
        hashes = " ".join(f"--hash=sha256:{i.sha256}" for i in group if i.sha256)
        lines.append(f"{group[0].name}=={group[0].version} {hashes}".rstrip())
    return "\n".join(lines) + "\n"




def _name_version(filename: str) -> tuple[str, str] | None:
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
        else:
            name, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return str(name), str(version)


def scan_wheelhouse(directory: Path) -> list[Installed]:
    """Every distribution file ``pip download`` left in ``directory``, hashed."""
    out = []
    for path in sorted(directory.iterdir()) if directory.is_dir() else ():
        parsed = _name_version(path.name)
        if parsed is not None:
            out.append(Installed(parsed[0], parsed[1], path.name, sha256_file(path),
                                 path.as_uri()))
    return out


def lock_file(directory: Path, lock: Path) -> int:
    """Write the hashed requirements of ``directory``'s files to ``lock``; the file count."""
    items = scan_wheelhouse(directory)
    lock.write_text(hashed_requirements(items), encoding="utf-8")
    return len(items)


def is_requirements_step(step: Step) -> bool:
    """The tag's own build requirements (``deps-<component>``), not a build backend's install."""
    return step.kind == "deps" and step.id == f"deps-{step.component}"


def offline_argv(step: Step, plan: Plan) -> tuple[tuple[str, ...], str | None]:
    """--offline: the deps step installs what ``fetch`` put in the wheelhouse, hash-checked and
    with ``--no-index``. Without a wheelhouse it still runs with ``--no-index`` (requirements the
    env already satisfies pass; anything else fails naming it), and the warning says why."""
    comp = next(c for c in plan.components if c.name == step.component)
    house = wheelhouse(plan.cache_dir, comp.name, comp.tag)
    lock = wheelhouse_lock(plan.cache_dir, comp.name, comp.tag)
    report = ("--report", str(report_file(plan.work_dir, comp.name)))
    if lock.is_file():
        return (step.argv[0], "-m", "pip", "install", "--no-index", "--find-links", str(house),
                "--require-hashes", "-r", str(lock), *report), None
    warning = (f"--offline: no wheelhouse for {comp.name} {comp.tag}'s build requirements "
               f"({lock}); installing with --no-index from what the env has. Run `python -m "
               "torchbuild fetch` with the same options on a connected machine to cache them")
    if "--no-index" in step.argv:
        return step.argv, warning
    at = step.argv.index("install") + 1 if "install" in step.argv else len(step.argv)
    return (*step.argv[:at], "--no-index", *step.argv[at:]), warning


def for_offline(plan: Plan) -> tuple[Plan, list[str]]:
    """The plan with every deps step made offline (see offline_argv), and the warnings."""
    steps, warnings = [], []
    for st in plan.steps:
        if is_requirements_step(st) and "--require-hashes" not in st.argv:
            argv, warning = offline_argv(st, plan)
            st = replace(st, argv=argv)
            warnings += [warning] if warning else []
        steps.append(st)
    return replace(plan, steps=tuple(steps)), warnings


# --------------------------------------------------------------------------------------------
# What fetch downloads: the deps step's own arguments, with the tag's files read from the mirror

_FILE_OPTS = {"-r", "--requirement", "-c", "--constraint"}
_DROP_WITH_VALUE = {"--report"}


def download_args(install_args: Sequence[str], read: Any, scratch: Path) -> list[str]:
    """``pip install`` arguments -> ``pip download`` arguments. ``read(path)`` returns the text of
    a file of the tag (requirements files, pyproject.toml for ``--group``), written to
    ``scratch`` so pip reads the tag's version, not a checkout's."""
    out: list[str] = []
    args = list(install_args)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _DROP_WITH_VALUE:
            i += 2
            continue
        if arg in _FILE_OPTS and i + 1 < len(args):
            out += [arg, str(_materialise(args[i + 1], read, scratch))]
            i += 2
            continue
        if arg == "--group" and i + 1 < len(args):
            path, _, group = args[i + 1].rpartition(":")
            pyproject = _materialise(path or "pyproject.toml", read, scratch)
            out += ["--group", f"{pyproject}:{group}"]
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def _materialise(rel: str, read: Any, scratch: Path) -> Path:
    dest = scratch / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    text = read(rel)
    dest.write_text(text, encoding="utf-8")
    # A requirements file may include others (-r base.txt): bring those along too.
    for line in text.splitlines():
        m = re.match(r"^\s*(-r|--requirement|-c|--constraint)\s+(\S+)", line)
        if m:
            _materialise(str(Path(rel).parent / m.group(2)), read, scratch)
    return dest


def write_replay(work_dir: Path, recorded: Mapping[str, Sequence[Installed]]) -> list[Path]:
    """The hash-pinned requirements files of a replay's deps steps (see plan.pin_deps)."""
    written = []
    for component, items in recorded.items():
        path = replay_file(work_dir, component)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(hashed_requirements(items), encoding="utf-8")
        written.append(path)
    return written


def recorded_from_manifest(manifest: Mapping[str, Any]) -> dict[str, list[Installed]]:
    """The manifest's ``deps`` section back as records: {component: [Installed]}."""
    out: dict[str, list[Installed]] = {}
    for component, entry in (manifest.get("deps") or {}).items():
        items = entry.get("installed", []) if isinstance(entry, Mapping) else []
        out[str(component)] = [Installed.from_json(i) for i in items]
    return {k: v for k, v in out.items() if v}


def manifest_section(work_dir: Path, components: Sequence[str]) -> dict[str, Any]:
    """``deps`` of the manifest: per component with a deps step, what pip installed."""
    section: dict[str, Any] = {}
    for component in components:
        report = report_file(work_dir, component)
        if report.is_file():
            section[component] = {"report": str(report),
                                  "installed": [i.to_json() for i in read_report(report)]}
    return section
