from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from torchbuild.__main__ import build_parser
from torchbuild.commands import docker, replay
from torchbuild.errors import UsageError
from torchbuild.options import OPTION_DEFS, Options, markdown_table, resolve, set_for, to_argv


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


# ----------------------------------------------------------------------------- one declaration


def test_each_option_is_declared_once_and_everything_derives_from_it(tmp_path):
    """Parser flag, TORCHBUILD_* name, config key and the Options default are one declaration."""
    parser_dests = {a.dest for a in build_parser()._actions} - {"help", "version", "config"}
    assert parser_dests == {d.name for d in OPTION_DEFS}
    by_field = {f.name: f for f in dataclasses.fields(Options)}
    for d in OPTION_DEFS:
        assert by_field[d.name].default == d.default, d.name
        assert d.env_var == "TORCHBUILD_" + d.name.upper()
        assert d.config_key == d.flag[2:]
    # The only fields that are not options are the ones resolve() derives.
    assert set(by_field) - {d.name for d in OPTION_DEFS} == {"archs", "cc_auto", "environ",
                                                             "origin"}


def test_config_keys_env_names_and_flags_agree(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('compiler-cache = "ccache"\nwork_dir = "/w"\n')
    opts = resolve(_cli("--cpu", "--config", str(cfg)), {"TORCHBUILD_GIT_MIRROR": "file:///m"})
    assert (opts.compiler_cache, opts.work_dir, opts.git_mirror) == ("ccache", Path("/w"),
                                                                      "file:///m")


def test_to_argv_round_trips_through_the_parser(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('torch = "2.6.0"\nallow-missing = ["MAGMA"]\n')
    environ = {"TORCHBUILD_CONFIG": str(cfg), "TORCHBUILD_VERIFY": "0", "HOME": str(tmp_path)}
    opts = resolve(_cli("--cc", "8.6 7.5", "--set", "A=1", "--set", "B=x=y", "--jobs", "3",
                        "--channel", "file:///c", "--vision", "none"), environ)
    argv = to_argv(opts)
    assert argv[:2] == ["--cc", "8.6 7.5"] and "--no-verify" in argv
    again = resolve(_cli(*argv), {"HOME": str(tmp_path)})
    assert again == opts
    assert to_argv(opts, ["jobs", "offline"]) == ["--jobs", "3"]


def test_the_readme_option_table_is_the_declarations():
    """Adding an option is one entry in options.py; this test hands you its README row."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert markdown_table() in readme, "paste options.markdown_table() into README's Options"


def test_docker_and_replay_use_the_declared_classification():
    refused = {d.name for d in OPTION_DEFS if d.container == "refuse"}
    assert {"lock", "recipe_dir", "install_into", "torch_from_env", "conda_exe"} == refused
    assert "clean" in replay._SESSION_OPTIONS and "torch" not in replay._SESSION_OPTIONS
    assert set(replay.OVERRIDABLE) == {"dist", "work_dir", "cache_dir", "git_mirror",
                                       "offline", "jobs", "force"}
    with pytest.raises(UsageError, match="--recipe-dir"):
        docker.build_args(resolve({"cc": "8.6", "recipe_dir": "/r"}, {}))
    host = docker.build_args(resolve({"cc": "8.6", "dist": "/d", "dry_run": True,
                                      "verbose": True}, {}))
    assert host["TB_EXTRA_ARGS"] == "--verbose"


def test_set_for_one_component_only():
    opts = resolve(vars(build_parser().parse_args(
        ["--cpu", "--set", "DEBUG=1", "--set", "audio:CUDA_HOME=/opt/cuda-12.4",
         "--set", "audio:DEBUG=0"])), {"HOME": "/h"})
    assert set_for(opts.set, None) == {"DEBUG": "1"}
    assert set_for(opts.set, "vision") == {"DEBUG": "1"}
    assert set_for(opts.set, "audio") == {"DEBUG": "0", "CUDA_HOME": "/opt/cuda-12.4"}
    assert to_argv(opts, ["set"]) == ["--set", "DEBUG=1", "--set", "audio:CUDA_HOME=/opt/cuda-12.4",
                                      "--set", "audio:DEBUG=0"]


@pytest.mark.parametrize("item", ["torch audio:X=1", "audio:1X=2", ":X=1", "audio:=1"])
def test_set_names_a_known_component(item):
    with pytest.raises(UsageError, match="COMPONENT:KEY=VALUE"):
        resolve(vars(build_parser().parse_args(["--cpu", "--set", item])), {"HOME": "/h"})


def test_torchbuild_set_keeps_spaces_and_commas_in_values() -> None:
    """Issue #14: TORCHBUILD_SET split on commas and spaces, so CFLAGS="-O2 -g" could not be set."""
    as_json = resolve({}, {"TORCHBUILD_SET": '["CFLAGS=-O2 -g", "audio:LIST=a,b"]'})
    assert as_json.set == (("CFLAGS", "-O2 -g"), ("audio:LIST", "a,b"))
    by_line = resolve({}, {"TORCHBUILD_SET": "CFLAGS=-O2 -g\nLIST=a,b\n"})
    assert by_line.set == (("CFLAGS", "-O2 -g"), ("LIST", "a,b"))
    assert resolve({}, {"TORCHBUILD_SET": "CFLAGS=-O2 -g"}).set == (("CFLAGS", "-O2 -g"),)
    with pytest.raises(UsageError) as err:
        resolve({}, {"TORCHBUILD_SET": "A=1,B=2"})
    assert "one per line" in err.value.message and "JSON" in err.value.message
