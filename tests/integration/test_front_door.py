"""The front door, as a new user meets it: --help, the verbs, the dry-run's shape, the last line."""

from __future__ import annotations

import re

import pytest

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
