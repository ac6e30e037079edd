"""The package index pip itself would use, for the sdists torchbuild downloads (``--extra``).

pip takes ``PIP_INDEX_URL`` first, then ``index-url`` from its configuration files, the later
file winning: global (``/etc/xdg/pip/pip.conf``, ``/etc/pip.conf``), then the user's
(``~/.pip/pip.conf``, ``~/.config/pip/pip.conf``), then ``PIP_CONFIG_FILE``; in each file the
``[install]`` section over ``[global]``; ``PIP_CONFIG_FILE=/dev/null`` loads no file at all
(https://pip.pypa.io/en/stable/topics/configuration/). pip has no public API for this, so these
few rules are read here; a user behind a mirror in pip.conf then downloads through it too.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from pathlib import Path

PYPI = "https://pypi.org/simple"


def config_files(environ: Mapping[str, str]) -> list[Path]:
    """pip's configuration files in the order it loads them (later ones win)."""
    named = environ.get("PIP_CONFIG_FILE")
    if named == os.devnull:
        return []
    xdg_dirs = environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    files = [Path(d) / "pip" / "pip.conf" for d in xdg_dirs.split(os.pathsep) if d]
    files.append(Path("/etc/pip.conf"))
    home = environ.get("HOME")
    if home:
        config_home = environ.get("XDG_CONFIG_HOME") or str(Path(home) / ".config")
        files += [Path(home) / ".pip" / "pip.conf", Path(config_home) / "pip" / "pip.conf"]
    if named:
        files.append(Path(named))
    return files


def _index_in(path: Path) -> str | None:
    parser = configparser.RawConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError, OSError):
        return None   # pip itself stops on a broken file; the install step will say so
    for section in ("install", "global"):
        value = parser.get(section, "index-url", fallback=None)
        if value and value.strip():
            return value.strip()
    return None


def index_url(environ: Mapping[str, str]) -> str:
    """``PIP_INDEX_URL``, else the last config file's ``index-url``, else PyPI; no trailing /."""
    chosen = environ.get("PIP_INDEX_URL") or None
    if chosen is None:
        for path in config_files(environ):
            chosen = _index_in(path) or chosen
    return (chosen or PYPI).rstrip("/")
