"""A verb given an option it does not take says so with its own name and its own help."""

from __future__ import annotations

import pytest

from torchbuild.__main__ import _dispatch
from torchbuild.errors import UsageError


@pytest.mark.parametrize("verb", ["docker", "fetch", "doctor", "bench", "verify", "replay"])
def test_an_unknown_option_points_at_the_verbs_help(verb: str) -> None:
    argv = [verb, *(["env"] if verb == "docker" else []), "--frobnicate", "x"]
    with pytest.raises(UsageError) as caught:
        _dispatch(argv, {})
    err = caught.value
    assert err.exit_code == 2
    assert str(err).startswith(f"{verb}: unrecognized arguments: --frobnicate")
    assert err.fix == f"see `torchbuild {verb} --help` for the options {verb} takes"


def test_a_near_miss_is_named() -> None:
    with pytest.raises(UsageError) as caught:
        _dispatch(["fetch", "--cc", "8.6", "--dryrun"], {})
    assert str(caught.value) == "fetch: unrecognized arguments: --dryrun (did you mean --dry-run?)"


def test_a_build_option_that_fetch_does_not_take_is_refused_as_fetchs() -> None:
    with pytest.raises(UsageError, match=r"^fetch: unrecognized arguments: --jobs 4"):
        _dispatch(["fetch", "--cc", "8.6", "--jobs", "4"], {})


def test_a_misspelt_verb_gets_the_verb_it_resembles() -> None:
    with pytest.raises(UsageError) as caught:
        _dispatch(["doctr"], {})
    assert str(caught.value).startswith("unknown command 'doctr' (commands: build, doctor")
    assert caught.value.fix.startswith("did you mean `torchbuild doctor`? see `torchbuild --help`")
    with pytest.raises(UsageError) as unlike:
        _dispatch(["frobnicate"], {})
    assert unlike.value.fix.startswith("see `torchbuild --help`")
