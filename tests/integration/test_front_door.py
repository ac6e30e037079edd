"""The front door, as a new user meets it: --help, the verbs, the dry-run's shape, the last line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import base_env

pytestmark = pytest.mark.integration

GROUPS = ("what to build:", "environment:", "sources:", "output:", "behaviour:")


def test_help_is_grouped_with_defaults_env_vars_and_examples(cli):
    proc = cli("--help")
    assert proc.returncode == 0
    text = proc.stdout
    assert [text.index(g) for g in GROUPS] == sorted(text.index(g) for g in GROUPS)
    flat = " ".join(text.split())
    assert "--dist DIR" in text and "[default dist; $TORCHBUILD_DIST]" in flat
    assert "$TORCHBUILD_CC]" in flat
    examples = text[text.index("examples:"):].splitlines()[1:]
    assert len([e for e in examples if e.strip().startswith("torchbuild ")]) == 3
    assert max(len(line) for line in text.splitlines()) <= 100


def test_build_is_an_explicit_verb_and_the_bare_form_stays(cli):
    explicit = cli("build", "--cc", "8.6", "--dry-run")
    bare = cli("--cc", "8.6", "--dry-run")
    assert explicit.returncode == bare.returncode == 0, explicit.stderr
    same = [line for line in explicit.stdout.splitlines() if "available" not in line]
    assert same[:3] == [line for line in bare.stdout.splitlines() if "available" not in line][:3]
    assert len(explicit.stdout.splitlines()) == len(bare.stdout.splitlines())


def test_unknown_verb_is_named_once(cli):
    proc = cli("frobnicate")
    assert proc.returncode == 2
    first = proc.stderr.splitlines()[0]
    assert first.count("torchbuild:") == 1 and "unknown command 'frobnicate'" in first


def test_verify_on_a_missing_path_is_a_bad_argument(cli, tmp_path):
    proc = cli("verify", str(tmp_path / "nope"))
    assert proc.returncode == 2, proc.stderr
    assert "does not exist" in proc.stderr


def test_fetch_dry_run_clones_nothing_and_lists_only_fetch_options(cli, tmp_path):
    cache = tmp_path / "cache"
    proc = cli("fetch", "--cc", "8.6", "--dry-run", "--cache-dir", str(cache))
    assert proc.returncode == 0, proc.stderr
    assert "would mirror torch" in proc.stdout
    assert not cache.exists()
    helptext = cli("fetch", "--help").stdout
    for meaningless in ("--jobs", "--dist", "--verify", "--install-into", "--force"):
        assert meaningless not in helptext


def test_dry_run_opens_with_a_summary_and_fits_the_terminal(cli):
    proc = cli("--cc", "6.1", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    head = proc.stdout.splitlines()[:16]
    for key in ("build ", "archs ", "why ", "env ", "jobs ", "disk ", "time "):
        assert any(line.startswith(key) for line in head), key
    # Wrapped at spaces to the terminal (100 columns without one); only a single path longer
    # than that (the test's deep tmp dirs) may stick out, alone on its line.
    long = [line for line in proc.stdout.splitlines() if len(line) > 100]
    assert all(len(line.split()) <= 2 for line in long), long


def test_every_run_ends_with_its_elapsed_time(cli):
    for args in (("--cc", "8.6", "--dry-run"), ("--cc", "8.x", "--dry-run")):
        proc = cli(*args)
        assert re.search(r"torchbuild: (done|exit \d+) after \d", proc.stderr.splitlines()[-1])


def _into_closed_pipe(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run with stdout a pipe whose reader has already gone (`torchbuild ... | head`, once head
    has its lines): every write gets EPIPE, deterministically."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "torchbuild", *args], stdout=write_end,
                              stderr=subprocess.PIPE, env=base_env(tmp_path), cwd=tmp_path,
                              timeout=120, check=False)
    finally:
        os.close(write_end)


def test_a_reader_that_goes_away_ends_the_run_quietly(tmp_path):
    proc = _into_closed_pipe(tmp_path, "--cc", "6.1", "--dry-run")
    assert proc.returncode == 141, proc.stderr     # 128 + SIGPIPE, as a shell reports it
    assert proc.stderr == b""                       # no disk error, no traceback, no timing line
    helped = _into_closed_pipe(tmp_path, "--help")
    assert helped.returncode in (0, 141) and helped.stderr == b"", helped.stderr


def test_docker_dry_run_writes_no_env_file(cli, tmp_path):
    proc = cli("docker", "export", "--cc", "8.6", "--torch", "2.9.1", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "would write .env" in proc.stdout and "--target export" in proc.stdout
    assert not (tmp_path / ".env").exists()
    written = cli("docker", "env", "--cc", "8.6", "--torch", "2.9.1")
    assert written.returncode == 0, written.stderr
    assert "TB_TORCH=2.9.1" in (tmp_path / ".env").read_text()
