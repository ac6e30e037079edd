"""``python -m torchbuild replay MANIFEST``: rebuild what a ``torchbuild-manifest.json`` describes.

The same options (recorded values, not today's defaults or TORCHBUILD_* variables), the same tags
pinned to the recorded commits, the same env lock. Before anything starts, every recorded input is
set beside what this machine and this torchbuild would use now, and each difference is listed: a
replay that quietly builds something else is worse than none. Afterwards the new wheels are compared
member by member with the recorded ones (``compare_wheel_dirs``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from torchbuild import __version__
from torchbuild.build.deps import recorded_from_manifest
from torchbuild.digest import sha256_file
from torchbuild.env.buildenv import base_environment, tool_versions
from torchbuild.errors import IntegrityError, TorchbuildError, UsageError
from torchbuild.logger import log
from torchbuild.options import (
    OPTION_DEFS,
    HelpFormatter,
    Options,
    add_build_arguments,
    resolve,
    to_argv,
)
from torchbuild.pipeline import prepare, run_build
from torchbuild.plan import Plan, pin_commits
from torchbuild.proof.artifacts import options_json

SUPPORTED_SCHEMAS = (1,)
MANIFEST_NAME = "torchbuild-manifest.json"
# Declared with each option (options.py): ``session`` ones say how to run, not what to build, so
# they are never replayed; ``retarget`` ones a replay may point elsewhere (another machine, dir).
_SESSION_OPTIONS = frozenset(d.name for d in OPTION_DEFS if d.session)
OVERRIDABLE = tuple(d.name for d in OPTION_DEFS if d.retarget)
# Inputs that decide what code runs and where it comes from. A manifest is a file anyone may
# have edited: these are shown, and one that differs from the user's own setting is refused
# unless given on the replay command line or confirmed with --trust-manifest.
TRUST_INPUTS: dict[str, str] = {
    "git_mirror": "--git-mirror (where every repository and submodule is fetched from)",
    "channel": "--channel (conda channels the env comes from)",
    "recipe_dir": "--recipe-dir (recipes: repos, tags, build commands)",
    "set": "--set (variables every build step sees)",
    "python": "--python (the interpreter or Python version builds run with)",
    "conda_exe": "--conda-exe (the conda binary that creates the env)",
}
# Toolchain entries known before the build env exists (python/cmake/ninja come from the env).
HOST_TOOLS = ("gcc", "nvcc", "git")


@dataclass(frozen=True)
class Difference:
    key: str  # "sources.torch.commit"
    recorded: str
    current: str

    def row(self) -> list[str]:
        return [self.key, self.recorded, self.current]


def load_manifest(path: Path) -> dict[str, Any]:
    """Read and check a manifest; a directory means its torchbuild-manifest.json."""
    path = path / MANIFEST_NAME if path.is_dir() else path
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f"{path} does not exist"
        fix = "pass the torchbuild-manifest.json from a build's --dist"
        raise UsageError(msg, fix=fix) from None
    except json.JSONDecodeError as exc:
        msg = f"{path} is not JSON ({exc})"
        raise UsageError(msg, fix="pass an unmodified torchbuild-manifest.json") from None
    schema = data.get("schema_version") if isinstance(data, dict) else None
    if schema not in SUPPORTED_SCHEMAS:
        msg = f"{path}: manifest schema {schema!r} is not one of {SUPPORTED_SCHEMAS}"
        raise UsageError(msg, fix="replay it with the torchbuild version named in its 'tool' entry")
    return dict(data)


# ----------------------------------------------------------------------------- input snapshots


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(_text(v) for v in value)
    return "" if value is None else str(value)


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        for key in sorted(value):
            _flatten(f"{prefix}.{key}", value[key], out)
    else:
        out[prefix] = _text(value)


def snapshot(doc: Mapping[str, Any]) -> dict[str, str]:
    """The inputs of a manifest (or of a manifest-shaped description of a plan), flattened.

    Outputs (wheels, durations, logs, the verify report) and creation times are left out: they
    are what a replay produces, not what it consumes.
    """
    out: dict[str, str] = {"tool.version": _text(doc.get("tool", {}).get("version"))}
    recipe = doc.get("recipe", {})
    _flatten("recipe.release", recipe.get("release", {}), out)
    for comp in recipe.get("components", []):
        _flatten(f"recipe.components.{comp.get('name')}", comp, out)
    for name, src in doc.get("sources", {}).items():
        for key in ("url", "tag", "commit"):
            out[f"sources.{name}.{key}"] = _text(src.get(key))
        _flatten(f"sources.{name}.submodules", src.get("submodules") or {}, out)
    env = doc.get("environment", {})
    for key in ("backend", "python_version", "lock_sha256", "pip_requirements", "conda_specs"):
        out[f"environment.{key}"] = _text(env.get(key))
    _flatten("toolchain", doc.get("toolchain", {}), out)
    for step in doc.get("plan", {}).get("steps", []):
        sid = step.get("id")
        out[f"steps.{sid}.argv"] = _text(step.get("argv"))
        out[f"steps.{sid}.cwd"] = _text(step.get("cwd"))
        _flatten(f"steps.{sid}.env", step.get("env") or {}, out)
    plan = doc.get("plan", {})
    for key in ("torch_label", "cuda", "arch_list", "python_version"):
        out[f"plan.{key}"] = _text(plan.get(key))
    return out


def diff_inputs(recorded: Mapping[str, str], current: Mapping[str, str], *,
                unknown_ok: Iterable[str] = ()) -> list[Difference]:
    """Every key whose value differs, or that only one side has.

    Keys under an ``unknown_ok`` prefix that ``current`` lacks are not differences: they are
    things not known yet (submodule commits before the checkout, env tools before the env).
    """
    prefixes = tuple(unknown_ok)
    diffs = []
    for key in sorted(set(recorded) | set(current)):
        if key not in current and key.startswith(prefixes):
            continue
        was, now = recorded.get(key, "<absent>"), current.get(key, "<absent>")
        if was != now:
            diffs.append(Difference(key, was, now))
    return diffs


# ----------------------------------------------------------------------------- options


def replay_cli_values(manifest: Mapping[str, Any], lock: Path | None,
                      overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The recorded options as command-line values, so they outrank TORCHBUILD_* and configs."""
    cli: dict[str, Any] = {}
    for name, entry in manifest.get("options", {}).items():
        value = entry.get("value") if isinstance(entry, Mapping) else entry
        if name in _SESSION_OPTIONS or value is None:
            continue
        if name == "set":
            value = [f"{k}={v}" for k, v in value]
        if name == "extra":
            value = pinned_extras(manifest, value)
        cli[name] = value
    archs = manifest.get("plan", {}).get("archs")
    if cli.get("cc") == "auto" and archs:
        cli["cc"] = " ".join(archs)  # the recorded GPUs, not this machine's
    if lock is not None:
        cli["lock"] = str(lock)
    cli.update({k: v for k, v in overrides.items() if v is not None})
    return cli


def _pypi_name(spec: str) -> str | None:
    """The project of a PyPI-requirement ``--extra`` (None for git+URL@TAG and directories)."""
    text = spec.strip()
    if text.startswith(("git+", ".", "/", "~")) or "/" in text or "://" in text:
        return None
    try:
        return canonicalize_name(Requirement(text).name)
    except InvalidRequirement:
        return None


def pinned_extras(manifest: Mapping[str, Any], specs: Sequence[str]) -> list[str]:
    """The recorded ``--extra`` values, each PyPI requirement pinned to the version that was built.

    ``--extra causal-conv1d`` means "the newest sdist" and would pick today's release; the
    manifest records the version (and the sdist's sha256 as the source pin, which the download
    is checked against), so the replay asks for exactly that one. git extras are pinned by their
    commit and directories by their content, like any source.
    """
    built = {str(c.get("name")): str(c.get("version") or "")
             for c in manifest.get("recipe", {}).get("components", [])
             if isinstance(c, Mapping) and c.get("kind") == "extra"}
    out = []
    for spec in specs:
        name = _pypi_name(str(spec))
        version = built.get(name or "")
        out.append(f"{name}=={version}" if name and version else str(spec))
    return out


def recorded_lock(manifest: Mapping[str, Any], manifest_path: Path) -> Path | None:
    name = manifest.get("environment", {}).get("lock")
    if not name:
        return None
    path = manifest_path.parent / str(name)
    if not path.is_file():
        msg = f"the manifest names the env lock {name}, but {path} is missing"
        raise UsageError(msg, fix="copy the lock file from the original --dist next to the "
                         "manifest")
    return path


def current_doc(plan: Plan, options: Options, lock: Path | None,
                toolchain: Mapping[str, str]) -> dict[str, Any]:
    """What this torchbuild would build now, in the manifest's shape (inputs only)."""
    return {
        "tool": {"version": __version__},
        "options": options_json(options),
        "recipe": {"release": asdict(plan.release),
                   "components": [asdict(c) for c in plan.components]},
        "sources": {s.name: {"url": s.url, "tag": s.tag, "commit": s.commit}
                    for s in plan.sources},
        "environment": {"backend": plan.environment.backend,
                        "python_version": plan.environment.python_version,
                        "lock_sha256": sha256_file(lock) if lock else None,
                        "pip_requirements": list(plan.environment.pip_requirements),
                        "conda_specs": list(plan.environment.conda_specs)},
        "toolchain": dict(toolchain),
        "plan": plan.to_json(),
    }


def _recorded_for_compare(manifest: Mapping[str, Any]) -> dict[str, str]:
    recorded = snapshot(manifest)
    # Only the host tools are known before the env exists; the rest is compared afterwards.
    return {k: v for k, v in recorded.items()
            if not k.startswith("toolchain.") or k.split(".", 1)[1] in HOST_TOOLS}


# ----------------------------------------------------------------------------- wheel comparison


def _members(wheel: Path) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as zf:
        return {i.filename: hashlib.sha256(zf.read(i)).hexdigest()
                for i in zf.infolist() if not i.is_dir()}


def compare_wheel_dirs(recorded: Sequence[Mapping[str, Any]], old_dir: Path | None,
                       new_dir: Path) -> list[str]:
    """Why the new wheels are not the recorded ones: [] when every wheel is byte-identical or,
    with the old wheels at hand, identical member by member (zip timestamps aside)."""
    reasons = []
    new = {p.name: p for p in new_dir.glob("*.whl")}
    for entry in recorded:
        name = entry["file"]
        if name not in new:
            reasons.append(f"{name}: not rebuilt (new: {', '.join(sorted(new)) or 'none'})")
            continue
        if sha256_file(new[name]) == entry["sha256"]:
            continue
        old = old_dir / name if old_dir else None
        if old is None or not old.is_file() or sha256_file(old) != entry["sha256"]:
            reasons.append(f"{name}: sha256 differs (the recorded wheel is not here to compare "
                           "member by member)")
            continue
        reasons += _member_differences(name, old, new[name])
    extra = sorted(set(new) - {e["file"] for e in recorded})
    reasons += [f"{name}: built now, not in the manifest" for name in extra]
    return reasons


def _member_differences(name: str, old: Path, new: Path) -> list[str]:
    a, b = _members(old), _members(new)
    out = [f"{name}: {m} only in the recorded wheel" for m in sorted(set(a) - set(b))]
    out += [f"{name}: {m} only in the new wheel" for m in sorted(set(b) - set(a))]
    out += [f"{name}: {m} content differs" for m in sorted(set(a) & set(b)) if a[m] != b[m]]
    return out


# ----------------------------------------------------------------------------- CLI

DESCRIPTION = """\
Rebuild what a torchbuild-manifest.json describes: the recorded options (not today's defaults or
TORCHBUILD_* variables), the same tags pinned to the recorded commits, the same env lock. Before
anything starts, every recorded input is set beside what this machine would use now and each
difference is listed. Afterwards the new wheels are compared member by member with the recorded
ones.

  torchbuild replay dist/torchbuild-manifest.json --dry-run"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("replay", help="rebuild from a torchbuild-manifest.json",
                              description=DESCRIPTION, formatter_class=HelpFormatter,
                              epilog="Unless given, --work-dir and --cache-dir are the recorded "
                              "ones (so embedded paths\nmatch) and --dist is replay/ beside the "
                              "manifest.")
    p.add_argument("manifest", help="torchbuild-manifest.json (or the --dist dir holding it)")
    add_build_arguments(p, OVERRIDABLE)   # same flags, types and help as for a build
    p.add_argument("--resume", action="store_true",
                   help="keep finished steps of the work dir instead of rebuilding everything")
    p.add_argument("--strict", action="store_true",
                   help="refuse to start when any input differs from the record")
    p.add_argument("--dry-run", action="store_true", help="only report the input differences")
    p.add_argument("--trust-manifest", action="store_true",
                   help="accept the manifest's git mirror, channels, recipe dir, --set, "
                   "--python and --conda-exe where they differ from your own settings")
    p.set_defaults(func=main)


def _overrides(args: argparse.Namespace, manifest_path: Path) -> dict[str, Any]:
    values = {k: getattr(args, k, None) for k in OVERRIDABLE}
    # A replay rebuilds: finished-step stamps in the recorded work dir would hand back the old
    # outputs and prove nothing.
    values["clean"] = not getattr(args, "resume", False)
    # Never overwrite the recorded wheels: they are what the replay is compared with.
    values["dist"] = values["dist"] or str(_recorded_dist(manifest_path) / "replay")
    return values


def prepare_replay(manifest_path: Path, args: argparse.Namespace, environ: Mapping[str, str]
                   ) -> tuple[dict[str, Any], Options, Plan, list[Difference]]:
    """Manifest -> options -> pinned plan, and the input differences. Touches nothing."""
    manifest = load_manifest(manifest_path)
    path = manifest_path / MANIFEST_NAME if manifest_path.is_dir() else manifest_path
    lock = recorded_lock(manifest, path)
    cli = replay_cli_values(manifest, lock, _overrides(args, manifest_path))
    env = {k: v for k, v in environ.items() if not k.startswith("TORCHBUILD_")}
    options = resolve(cli, env)
    plan, _machine = prepare(options)
    pins = {n: s["commit"] for n, s in manifest.get("sources", {}).items() if s.get("commit")}
    plan = pin_commits(plan, pins)
    tools = {k: v for k, v in tool_versions(base_environment(env)).items() if k in HOST_TOOLS}
    current = snapshot(current_doc(plan, options, lock, tools))
    diffs = diff_inputs(_recorded_for_compare(manifest), current,
                        unknown_ok=("sources.", "toolchain."))
    return manifest, options, plan, diffs


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        parts = ["=".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
                 for v in value]
        return " ".join(parts) or "(none)"
    return "(none)" if value in (None, "") else str(value)


def _recorded_option(manifest: Mapping[str, Any], name: str) -> Any:
    entry = manifest.get("options", {}).get(name)
    return entry.get("value") if isinstance(entry, Mapping) else entry


def trust_problems(manifest: Mapping[str, Any], args: argparse.Namespace,
                   environ: Mapping[str, str]) -> tuple[list[list[str]], list[str]]:
    """(table rows of every code-deciding input, the ones to refuse). "Yours" is what your own
    TORCHBUILD_* variables, config file and defaults give; a flag given to replay wins."""
    try:
        own = resolve({}, environ)
    except TorchbuildError:
        own = resolve({}, {})
    rows, refused = [], []
    for name, what in TRUST_INPUTS.items():
        recorded = _shown(_recorded_option(manifest, name))
        mine = _shown(getattr(own, name, None))
        given = getattr(args, name, None) is not None
        verdict = "given" if given else "same" if recorded == mine else (
            "trusted" if args.trust_manifest else "REFUSED")
        rows.append([what.split(" ", 1)[0], recorded, mine, verdict])
        if verdict == "REFUSED":
            refused.append(f"{what}: the manifest says {recorded}, yours is {mine}")
    return rows, refused


def _check_trust(manifest: Mapping[str, Any], args: argparse.Namespace,
                 environ: Mapping[str, str], manifest_path: Path) -> None:
    rows, refused = trust_problems(manifest, args, environ)
    log.info("inputs that decide what code runs and where it comes from:")
    log.table(rows, ["input", "manifest", "yours", ""])
    if refused:
        msg = (f"{manifest_path} would change what code runs: " + "; ".join(refused))
        raise IntegrityError(msg, fix="if you trust this manifest, re-run with "
                             "--trust-manifest; or pass the value you want explicitly (e.g. "
                             "--git-mirror URL)")


def main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    manifest_path = Path(args.manifest)
    manifest, options, plan, diffs = prepare_replay(manifest_path, args, environ)
    log.step(f"replay {manifest_path}")
    _check_trust(manifest, args, environ, manifest_path)
    log.info("as: python -m torchbuild " + shlex.join(to_argv(options)))
    if diffs:
        log.warn(f"{len(diffs)} input(s) differ from the record")
        log.table([d.row() for d in diffs], ["input", "recorded", "now"])
    else:
        log.info("every recorded input is the same here")
    if diffs and args.strict:
        msg = f"{len(diffs)} input(s) differ from {manifest_path}: " + ", ".join(
            d.key for d in diffs[:8])
        raise IntegrityError(msg, fix="drop --strict to replay anyway, or replay where the "
                             "inputs match")
    if args.dry_run:
        return 0
    rc = run_build(options, pins={s.name: s.commit for s in plan.sources if s.commit},
                   deps_pins=recorded_from_manifest(manifest))
    reasons = compare_wheel_dirs(manifest.get("wheels", []), _recorded_dist(manifest_path),
                                 plan.dist)
    _report_outcome(reasons)
    return rc


def _recorded_dist(manifest_path: Path) -> Path:
    return manifest_path if manifest_path.is_dir() else manifest_path.parent


def _report_outcome(reasons: Sequence[str]) -> None:
    if not reasons:
        log.info("the replayed wheels have the recorded contents")
        return
    log.warn(f"the replayed wheels differ from the record in {len(reasons)} way(s):")
    for reason in reasons:
        log.info(reason)
