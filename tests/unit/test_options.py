from __future__ import annotations

from pathlib import Path

import pytest

from torchbuild.__main__ import build_parser
from torchbuild.errors import UsageError
from torchbuild.options import resolve


def _cli(*argv: str) -> dict:
    return vars(build_parser().parse_args(list(argv)))


def test_defaults_and_origins(tmp_path):
    opts = resolve(_cli("--cc", "8.6"), {"HOME": str(tmp_path)})
    assert opts.env == "conda" and opts.origin["env"] == "default"
    assert opts.origin["cc"] == "command line"
    assert opts.cache_dir == tmp_path / ".cache" / "torchbuild"
    assert opts.dist == Path("dist")
    assert [str(a) for a in opts.archs] == ["8.6"]


def test_precedence_cli_env_config_default(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[torchbuild]\ntorch = "2.9.1"\njobs = 3\npython = "3.12"\nenv = "venv"\n')
    environ = {"TORCHBUILD_JOBS": "5", "TORCHBUILD_PYTHON": "3.11", "HOME": str(tmp_path)}
    opts = resolve(_cli("--config", str(cfg), "--python", "3.10", "--cc", "8.6"), environ)
    assert (opts.torch, opts.origin["torch"]) == ("2.9.1", f"config {cfg}")
    assert (opts.jobs, opts.origin["jobs"]) == (5, "env TORCHBUILD_JOBS")
    assert (opts.python, opts.origin["python"]) == ("3.10", "command line")
    assert opts.env == "venv"
    assert opts.origin["offline"] == "default"


def test_config_from_env_var_and_bools(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("offline = true\nset = [\"A=1\", \"B=x y\"]\n")
    opts = resolve(_cli("--cpu"), {"TORCHBUILD_CONFIG": str(cfg), "TORCHBUILD_CLEAN": "yes"})
    assert opts.offline is True and opts.clean is True
    assert opts.set == (("A", "1"), ("B", "x y"))
    assert resolve(_cli("--cpu", "--no-offline"), {"TORCHBUILD_CONFIG": str(cfg)}).offline is False


def test_unknown_config_key_suggests(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('torhc = "2.9.1"\n')
    with pytest.raises(UsageError, match="did you mean 'torch'"):
        resolve(_cli("--cpu"), {"TORCHBUILD_CONFIG": str(cfg)})


@pytest.mark.parametrize(
    ("argv", "environ", "match"),
    [
        (("--cc", "8.6"), {"TORCHBUILD_JOBS": "zero"}, "TORCHBUILD_JOBS"),
        (("--cc", "8.6", "--jobs", "0"), {}, "--jobs"),
        (("--cc", "8.6", "--set", "NOEQUALS"), {}, "KEY=VALUE"),
        (("--cc", "8.6", "--json"), {}, "--dry-run"),
        (("--cc", "8.6", "--quiet", "--verbose"), {}, "contradict"),
        (("--cpu",), {"TORCHBUILD_ENV": "docker"}, "must be one of"),
    ],
)
def test_bad_values(argv, environ, match):
    with pytest.raises(UsageError, match=match):
        resolve(_cli(*argv), environ)


def test_cc_auto_and_none_companion():
    opts = resolve(_cli("--cc", "auto", "--vision", "NONE"), {})
    assert opts.cc_auto and opts.archs == ()
    assert opts.vision == "none"
