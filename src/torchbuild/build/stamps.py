"""Resume stamps: a step is skipped when its inputs are exactly those of its last finished run.

A step's inputs are its argv, the environment variables that can change its outputs, the commits of
the sources it builds and the hash of the environment lock. They are hashed as canonical JSON
together with a scheme version, so changing how inputs are hashed invalidates old stamps instead of
silently matching them.

Per step, two files in the stamp directory:
* ``<id>.started.json`` is written before the command runs: if it is still there on the next run,
  that run was interrupted (Ctrl-C, OOM, a dead WSL VM) and the build tree holds partial work.
* ``<id>.json`` replaces it when the step finished.
Both carry the full inputs, so a mismatch can say *what* changed, not just that something did.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

# Bump when the digest's content or encoding changes; old stamps then read as stale, with a reason.
SCHEME_VERSION = 1

# Variables that never change what a step produces: parallelism, caches, terminal. Leaving them out
# means `--jobs 4` after an OOM resumes the compile instead of starting it over.
_IGNORED_ENV = re.compile(
    r"^(MAX_JOBS|CMAKE_BUILD_PARALLEL_LEVEL|CMAKE_(C|CXX|CUDA)_COMPILER_LAUNCHER|CCACHE_.*"
    r"|SCCACHE_.*|TORCH_NO_COMPILER_WRAPPER|TERM|COLUMNS|LINES|NO_COLOR|FORCE_COLOR|CLICOLOR.*)$"
)
# Inherited variables (from the user's shell or the env activation) that compilers, CMake or
# torch's setup.py read. Everything else the shell carries (PATH edits, SSH agents, session ids)
# must not make a two-hour step start over; the tool versions cover what PATH resolves to.
_INHERITED_ENV = re.compile(
    r"^(CC|CXX|CUDAHOSTCXX|CUDACXX|CUDA_HOME|CUDA_PATH|CUDA_TOOLKIT_ROOT_DIR|CUDNN_.*|NCCL_.*"
    r"|MAGMA_.*|MKL.*|BLAS|WITH_BLAS|CFLAGS|CXXFLAGS|CPPFLAGS|LDFLAGS|NVCC_.*|LIBRARY_PATH"
    r"|LD_LIBRARY_PATH|CPATH|C_INCLUDE_PATH|CPLUS_INCLUDE_PATH|PKG_CONFIG_PATH|CMAKE_.*|USE_.*"
    r"|BUILD_.*|TORCH_.*|PYTORCH_.*|TORCHVISION_.*|TORCHAUDIO_.*|FORCE_CUDA|DEBUG"
    r"|REL_WITH_DEB_INFO|CONDA_PREFIX|VIRTUAL_ENV|PYTHONPATH|_GLIBCXX_USE_CXX11_ABI)$"
)

State = Literal["new", "done", "interrupted", "stale"]


@dataclass(frozen=True)
class StepInputs:
    argv: tuple[str, ...]
    env: Mapping[str, str]
    sources: Mapping[str, str] = field(default_factory=dict)  # name -> commit
    lock_sha256: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)  # anything else, e.g. nvcc version

    def to_json(self) -> dict[str, Any]:
        return {
            "scheme": SCHEME_VERSION,
            "argv": list(self.argv),
            "env": dict(sorted(self.env.items())),
            "sources": dict(sorted(self.sources.items())),
            "lock_sha256": self.lock_sha256,
            "extra": dict(sorted(self.extra.items())),
        }

    def digest(self) -> str:
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def relevant_env(env: Mapping[str, str],
                 step_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The part of a step's child environment that can change its outputs.

    ``step_env`` (what the plan sets for this step) always counts; of the rest of ``env`` only
    the variables build tools are known to read.
    """
    own = step_env or {}
    return {k: v for k, v in env.items()
            if not _IGNORED_ENV.match(k) and (k in own or _INHERITED_ENV.match(k))}


def step_inputs(argv: Sequence[str], env: Mapping[str, str], step_env: Mapping[str, str], *,
                sources: Mapping[str, str], lock_sha256: str | None,
                tools: Mapping[str, str], previous: str = "") -> StepInputs:
    """A step's inputs as the build loop sees them. ``previous`` is the digest of the step it
    follows (its own component's, or torch's last for a companion's first): a step re-runs when a
    step it depends on re-ran with other inputs (torchvision must be rebuilt against a torch
    built with other flags; not because torchaudio changed)."""
    extra = {f"tool {name}": version for name, version in tools.items()}
    if previous:
        extra["after"] = previous
    return StepInputs(tuple(argv), relevant_env(env, step_env), dict(sources), lock_sha256 or "",
                      extra)


@dataclass(frozen=True)
class StampStatus:
    state: State
    reason: str  # human text: why skipped / why cleaned / why continued


def _short(value: str, width: int = 40) -> str:
    return value if len(value) <= width else value[: width - 3] + "..."


def _diff_maps(kind: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    changes = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if before is None:
            changes.append(f"{kind} {key} added ({_short(str(after))})")
        elif after is None:
            changes.append(f"{kind} {key} removed (was {_short(str(before))})")
        else:
            changes.append(f"{kind} {key}: {_short(str(before))} -> {_short(str(after))}")
    return changes


def explain_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """What differs between two ``StepInputs.to_json()`` values, most telling changes first."""
    if old.get("scheme") != new.get("scheme"):
        return f"stamp scheme changed (v{old.get('scheme')} -> v{new.get('scheme')})"
    changes = _diff_maps("source", old.get("sources", {}), new.get("sources", {}))
    if old.get("lock_sha256") != new.get("lock_sha256"):
        changes.append("build environment lock changed")
    changes += _diff_maps("env", old.get("env", {}), new.get("env", {}))
    old_extra, new_extra = dict(old.get("extra", {})), dict(new.get("extra", {}))
    if old_extra.pop("after", None) != new_extra.pop("after", None):
        changes.append("an earlier step was rebuilt with other inputs")
    changes += _diff_maps("", old_extra, new_extra)
    if old.get("argv") != new.get("argv"):
        changes.append("command line changed")
    if not changes:
        return "inputs changed"
    more = f" (+{len(changes) - 3} more)" if len(changes) > 3 else ""
    return "; ".join(c.strip() for c in changes[:3]) + more


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Atomic: a crash mid-write must never leave a half stamp that parses as 'done'."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    Path(tmp).replace(path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # missing or unreadable: treated as "no stamp", i.e. the step runs
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class Stamps:
    """The stamp directory of one work dir (``<work_dir>/stamps``)."""

    directory: Path

    def _done(self, step_id: str) -> Path:
        return self.directory / f"{step_id}.json"

    def _started(self, step_id: str) -> Path:
        return self.directory / f"{step_id}.started.json"

    def check(self, step_id: str, inputs: StepInputs) -> StampStatus:
        """Whether ``step_id`` can be skipped, continued in place, or must start over."""
        digest, current = inputs.digest(), inputs.to_json()
        started = _read_json(self._started(step_id))
        if started is not None:
            if started.get("digest") == digest:
                return StampStatus("interrupted", "the last run stopped during this step; "
                                   "continuing in its build tree")
            why = explain_change(started.get("inputs", {}), current)
            return StampStatus("stale", f"interrupted earlier with other inputs: {why}")
        done = _read_json(self._done(step_id))
        if done is None:
            return StampStatus("new", "not built yet")
        if done.get("digest") == digest:
            return StampStatus("done", f"unchanged since {done.get('finished', 'the last run')}")
        return StampStatus("stale", explain_change(done.get("inputs", {}), current))

    def mark_started(self, step_id: str, inputs: StepInputs) -> None:
        _write_json(self._started(step_id),
                    {"step": step_id, "digest": inputs.digest(), "inputs": inputs.to_json(),
                     "pid": os.getpid(), "started": _now()})

    def mark_done(self, step_id: str, inputs: StepInputs, *, duration_s: float,
                  outputs: Sequence[str] = ()) -> None:
        _write_json(self._done(step_id),
                    {"step": step_id, "digest": inputs.digest(), "inputs": inputs.to_json(),
                     "finished": _now(), "duration_s": round(duration_s, 3),
                     "outputs": list(outputs)})
        self._started(step_id).unlink(missing_ok=True)

    def forget(self, step_id: str) -> None:
        """Drop both stamps: used when a step's tree is cleaned, so it cannot read as done."""
        self._done(step_id).unlink(missing_ok=True)
        self._started(step_id).unlink(missing_ok=True)

    def recorded(self, step_id: str) -> dict[str, Any] | None:
        """The finished stamp's content (outputs, duration), if any."""
        return _read_json(self._done(step_id))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
