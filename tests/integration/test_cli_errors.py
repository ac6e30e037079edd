"""Bad input: each a one-paragraph message, its own exit code, within seconds."""

from __future__ import annotations

import json
import time

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["--cc", "8.x", "--dry-run"], 2, "'8.x' is not a compute capability"),
        (["--cc", "8.6", "--torch", "2.99.9", "--dry-run"], 3,
         "torch 2.99.9 is not in the recipes"),
        (["--dry-run"], 2, "no GPU architecture given"),
        (["--cc", "8.6", "--cpu", "--dry-run"], 2, "contradict"),
        (["--cc", "8.6", "--torch", "2.15.0", "--vision", "0.28.0", "--dry-run"], 4,
         "is not built for torch 2.15.0"),
        (["--cc", "8.6", "--torch", "2.9.1", "--text", "0.18.0", "--dry-run"], 4,
         "torchtext has no release for torch 2.9.1"),
        (["--cc", "8.6", "--set", "1BAD=x", "--dry-run"], 2, "valid environment name"),
        (["--cc", "8.6", "--env", "nope"], 2, "invalid choice"),
    ],
)
def test_bad_input(cli, args, code, text):
    started = time.monotonic()
    proc = cli(*args)
    assert proc.returncode == code, proc.stderr
    assert text in proc.stderr
    assert "fix:" in proc.stderr
    assert time.monotonic() - started < 20


def test_dry_run_newest_plan(cli):
    proc = cli("--cc", "8.6", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "torch 2.15.0+cu132.sm86" in proc.stdout
    assert "TORCH_CUDA_ARCH_LIST=8.6" in proc.stdout


def test_dry_run_json(cli):
    proc = cli("--cc", "7.5 8.6", "--torch", "2.9.1", "--python", "3.12", "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["torch_version"] == "2.9.1"
    assert plan["archs"] == ["7.5", "8.6"]
    assert [c["name"] for c in plan["components"]] == ["torch", "vision", "audio"]
    build = next(s for s in plan["steps"] if s["id"] == "build-torch")
    assert build["env"]["TORCH_CUDA_ARCH_LIST"] == "7.5;8.6"


def test_env_and_config_precedence(cli, tmp_path):
    from conftest import base_env

    cfg = tmp_path / "tb.toml"
    cfg.write_text('torch = "2.9.1"\njobs = 3\ncc = "7.5"\n')
    env = base_env(tmp_path)
    env["TORCHBUILD_JOBS"] = "5"
    proc = cli("--config", str(cfg), "--cc", "8.6", "--dry-run", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["torch_version"] == "2.9.1"      # config
    assert plan["jobs"] == 5                     # env beats config
    assert plan["archs"] == ["8.6"]              # CLI beats config


@pytest.mark.parametrize("verb", ["doctor", "verify", "replay", "fetch", "bench", "docker"])
def test_every_subcommand_has_help(cli, verb):
    proc = cli(verb, "--help")
    assert proc.returncode == 0, proc.stderr
    assert f"torchbuild {verb}" in proc.stdout


def test_top_level_help_lists_subcommands(cli):
    proc = cli("--help")
    assert proc.returncode == 0
    for verb in ("doctor", "verify", "replay", "fetch", "bench", "docker"):
        assert f"  {verb} " in proc.stdout


def test_dry_run_of_an_old_gpu_resolves_a_release_that_builds_it(cli):
    # The README's first reason to build from source: Pascal, dropped by CUDA 13.
    proc = cli("--cc", "6.1", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "torch 2.14.1+cu126.sm61" in proc.stdout
    assert "sm_61 needs CUDA ≤ 12.9: building torch 2.14.1 with CUDA 12.6" in proc.stdout
    assert "warning" not in proc.stderr


def test_dry_run_refuses_contradicting_pins_with_a_working_combination(cli):
    proc = cli("--cc", "6.1", "--torch", "2.15.0", "--dry-run")
    assert proc.returncode == 4
    assert "fix: use --torch 2.14.1" in proc.stderr
    again = cli("--cc", "6.1", "--torch", "2.14.1", "--dry-run")
    assert again.returncode == 0, again.stderr
