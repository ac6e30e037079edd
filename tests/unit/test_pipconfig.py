"""The index torchbuild downloads ``--extra`` sdists from is the one pip would use."""

from __future__ import annotations

import os
from pathlib import Path

from torchbuild.build.pipconfig import PYPI, config_files, index_url


def _conf(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _env(tmp: Path, **over: str) -> dict[str, str]:
    # No host file counts: the global dirs point into tmp.
    return {"HOME": str(tmp / "home"), "XDG_CONFIG_DIRS": str(tmp / "xdg"), **over}


def test_pypi_without_any_setting(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert all(not p.exists() or p == Path("/etc/pip.conf") for p in config_files(env))
    if not Path("/etc/pip.conf").exists():
        assert index_url(env) == PYPI


def test_user_file_over_global_and_install_over_global_section(tmp_path: Path) -> None:
    _conf(tmp_path / "xdg" / "pip" / "pip.conf", "[global]\nindex-url = https://global/simple\n")
    env = _env(tmp_path)
    assert index_url(env) == "https://global/simple"
    _conf(tmp_path / "home" / ".config" / "pip" / "pip.conf",
          "[global]\nindex-url = https://user/simple/\n[install]\nindex-url = https://inst/simple\n")
    assert index_url(env) == "https://inst/simple"


def test_pip_config_file_and_the_variable(tmp_path: Path) -> None:
    _conf(tmp_path / "home" / ".pip" / "pip.conf", "[global]\nindex-url = https://user/simple\n")
    named = _conf(tmp_path / "mine.conf", "[global]\nindex-url = https://named/simple\n")
    assert index_url(_env(tmp_path, PIP_CONFIG_FILE=str(named))) == "https://named/simple"
    assert index_url(_env(tmp_path, PIP_CONFIG_FILE=str(named),
                          PIP_INDEX_URL="https://var/simple/")) == "https://var/simple"
    # pip's own switch for "no configuration files": the user's file no longer counts.
    assert index_url(_env(tmp_path, PIP_CONFIG_FILE=os.devnull)) == PYPI


def test_a_file_without_index_url_or_unreadable_leaves_the_choice(tmp_path: Path) -> None:
    _conf(tmp_path / "xdg" / "pip" / "pip.conf", "[global]\nindex-url = https://global/simple\n")
    _conf(tmp_path / "home" / ".config" / "pip" / "pip.conf",
          "[global]\nextra-index-url = https://extra/simple\n")
    _conf(tmp_path / "home" / ".pip" / "pip.conf", "not an ini file [\n")
    assert index_url(_env(tmp_path)) == "https://global/simple"
