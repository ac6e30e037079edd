"""The full sweep of the fix-hint property (tests/unit/test_resolve.py samples it): for every
refused combination of arch class x release class x CUDA class x Python, the suggested fix is a
request the tool accepts, and "none exists" is true. Pure, but about 4 minutes on 2 cores."""

from __future__ import annotations

import pytest

from fixhints import CCS, check_fixes, nothing_builds, requests

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("cc", CCS)
def test_every_refusal_names_a_request_the_tool_accepts(cc: str) -> None:
    refused, failures, none_exists = check_fixes(requests(cc))
    assert not failures, f"{len(failures)} fixes refused again, e.g. {failures[:3]}"
    assert refused > 100
    for arch in none_exists:
        assert nothing_builds(arch), f"the fix for --cc {arch} says none exists, but one does"
