"""The output directory: wheels + ``torchbuild-manifest.json`` (+ the env lock), written atomically.

Everything is first written into a hidden staging directory inside ``--dist`` (same filesystem),
then renamed into place file by file; an interrupted or failed run leaves no partial wheel or
manifest behind.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torchbuild import __version__
from torchbuild.build.sources import Checkout
from torchbuild.build.steps import BuildResult
from torchbuild.env.buildenv import BuildEnv
from torchbuild.errors import ArtifactError
from torchbuild.logger import log
from torchbuild.options import Options
from torchbuild.plan import Plan

MANIFEST_NAME = "torchbuild-manifest.json"
MANIFEST_SCHEMA = 1
_STAGING = ".torchbuild-staging-"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_dist_writable(dist: Path) -> None:
    """Fail in seconds, before any build, if ``--dist`` cannot receive the wheels."""
    try:
        dist.mkdir(parents=True, exist_ok=True)
        probe = dist / f"{_STAGING}probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        msg = f"--dist {dist} is not writable ({exc.strerror or exc})"
        raise ArtifactError(msg, fix="choose another --dist directory, or fix its "
                            "permissions") from None
    for stale in dist.glob(f"{_STAGING}*"):
        shutil.rmtree(stale, ignore_errors=True)   # left by a run that was killed mid-publish


def options_json(options: Options) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, origin in options.origin.items():
        value = getattr(options, name)
        out[name] = {"value": value if not isinstance(value, Path) else str(value),
                     "origin": origin}
    result: dict[str, Any] = json.loads(json.dumps(out, default=str))
    return result


def build_manifest(plan: Plan, options: Options, result: BuildResult, checkouts: Mapping[str,
                   Checkout], build_env: BuildEnv, wheels: Sequence[Path],
                   verify_report: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {
        "schema_version": MANIFEST_SCHEMA,
        "tool": {"name": "torchbuild", "version": __version__},
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "options": options_json(options),
        "recipe": {"release": asdict(plan.release), "components": [asdict(c) for c in
                                                                    plan.components]},
        "sources": {name: {"url": c.url, "tag": c.tag, "commit": c.commit,
                           "submodules": dict(c.submodules)} for name, c in checkouts.items()},
        "environment": {"backend": build_env.backend, "prefix": str(build_env.prefix),
                        "python": str(build_env.python),
                        "python_version": plan.environment.python_version,
                        "lock": build_env.lock_path.name if build_env.lock_path else None,
                        "lock_sha256": build_env.lock_sha256,
                        "pip_requirements": list(plan.environment.pip_requirements),
                        "conda_specs": list(plan.environment.conda_specs)},
        "toolchain": dict(build_env.tools),
        "steps": [asdict(r) for r in result.records],
        "wheels": [{"file": w.name, "sha256": sha256_file(w), "size": w.stat().st_size}
                   for w in wheels],
        "verify": dict(verify_report) if verify_report else None,
        "plan": plan.to_json(),
    }


def publish(dist: Path, wheels: Sequence[Path], manifest: Mapping[str, Any],
            extra_files: Sequence[Path] = ()) -> list[Path]:
    """Copy wheels (+extra files) and write the manifest into ``dist`` atomically."""
    check_dist_writable(dist)
    staging = dist / f"{_STAGING}{os.getpid()}"
    staging.mkdir()
    try:
        for path in [*wheels, *extra_files]:
            shutil.copy2(path, staging / path.name)
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        placed = []
        # Wheels first, manifest last: a manifest on disk always describes wheels on disk.
        names = [p.name for p in [*wheels, *extra_files]] + [MANIFEST_NAME]
        for name in names:
            os.replace(staging / name, dist / name)
            placed.append(dist / name)
        return placed
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def print_summary(result: BuildResult, manifest: Mapping[str, Any], dist: Path) -> None:
    rows = [[r.id, r.status, f"{r.duration_s:.1f}s",
             f"{100 * r.cache_hit_rate:.0f}%" if r.cache_hit_rate is not None else "-"]
            for r in result.records]
    if rows:
        log.table(rows, ["step", "status", "time", "cache hits"])
    wheel_rows = [[w["file"], f"{w['size'] / 1e6:.1f} MB", w["sha256"]]
                  for w in manifest["wheels"]]
    if wheel_rows:
        log.table(wheel_rows, ["wheel", "size", "sha256"])
    log.info(f"wheels and {MANIFEST_NAME} are in {dist.resolve()}")
