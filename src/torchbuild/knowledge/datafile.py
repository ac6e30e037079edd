"""The one loader for torchbuild's data files (recipes/*.toml): read, check ``schema_version``,
validate tables against a schema, and name the closest known key for an unknown one.

Every reader of a data file in ``knowledge/`` goes through here, so a typo in any of them gets the
same one-paragraph error ("did you mean ...") and the same exit code (RecipeError, 3).
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from torchbuild.errors import RecipeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib

SCHEMA_VERSION = 1


def did_you_mean(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_keys(table: Mapping[str, Any], schema: Mapping[str, type | tuple[type, ...]],
               where: str, *, required: Iterable[str] = ()) -> None:
    """Unknown keys, wrong types and missing required keys are errors naming ``where``."""
    for key, value in table.items():
        if key not in schema:
            msg = f"{where}: unknown key {key!r}{did_you_mean(key, schema)}"
            raise RecipeError(msg, fix=f"known keys: {', '.join(sorted(schema))}")
        want = schema[key]
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            names = "/".join(t.__name__ for t in (want if isinstance(want, tuple) else (want,)))
            msg = f"{where}: {key!r} must be a {names}, not {type(value).__name__}"
            raise RecipeError(msg, fix="correct the recipe file")
    for key in required:
        if key not in table:
            msg = f"{where}: required key {key!r} is missing"
            raise RecipeError(msg, fix="add it to the recipe file")


def load_toml(path: Path, *, missing_fix: str = "check --recipe-dir") -> dict[str, Any]:
    """The file's tables; a missing file, bad TOML or another schema_version is a RecipeError."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f"recipe file {path} does not exist"
        raise RecipeError(msg, fix=missing_fix) from None
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror or exc}"
        raise RecipeError(msg, fix=missing_fix) from None
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path} is not valid TOML: {exc}"
        raise RecipeError(msg, fix="fix the syntax error") from None
    if data.get("schema_version") != SCHEMA_VERSION:
        msg = (f"{path}: schema_version {data.get('schema_version')!r} is not supported "
               f"(this torchbuild reads {SCHEMA_VERSION})")
        raise RecipeError(msg, fix="use recipes written for this torchbuild version")
    return data
