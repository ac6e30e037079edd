"""The resolver and the fix hints, against the real recipes and the real planner.

The property test (#14 "hints that lead somewhere"): for every refused combination of arch, CUDA,
torch and Python over the knowledge tables, apply the refusal's suggested fix and assert that the
new request passes the same checks: ``pipeline.plan_for`` (resolver + planner, what every run and
dry-run calls) and preflight's request stage (``request_problems``). A fix that says no
combination exists is checked by trying every release x official CUDA x backend.
"""

from __future__ import annotations

from itertools import islice

import pytest

from fixhints import (
    CCS,
    apply_fix,
    arch_classes,
    book,
    check_fixes,
    nothing_builds,
    requests,
    run,
)

# ---------------------------------------------------------------------------- the headline


def test_cc_61_alone_resolves_to_a_buildable_plan() -> None:
    plan, fix = run({"cc": "6.1"})
    assert plan is not None, fix
    assert (plan.torch_version, plan.cuda) == ("2.14.1", "12.6")
    assert plan.choice == ("sm_61 needs CUDA ≤ 12.9: building torch 2.14.1 with CUDA 12.6, "
                           "Python 3.11 (2.15.0 ships only CUDA 13.2)")


def test_pinned_torch_takes_its_cuda_that_works() -> None:
    plan, fix = run({"cc": "6.1", "torch": "2.14.1"})
    assert plan is not None, fix
    assert plan.cuda == "12.6" and plan.torch_version == "2.14.1"


def test_pinned_cuda_is_kept_and_picks_a_release_built_for_it() -> None:
    plan, fix = run({"cc": "6.1", "cuda": "12.9"})
    assert plan is not None, fix
    assert plan.cuda == "12.9"
    assert "12.9" in plan.release.cuda


def test_newest_release_when_it_can_build_the_arch() -> None:
    plan, _ = run({"cc": "8.6"})
    assert plan is not None
    assert plan.torch_version == book().newest
    assert plan.cuda == book().release(None).default_cuda


def test_default_python_is_one_the_chosen_release_supports() -> None:
    plan, fix = run({"cc": "6.1", "torch": "2.5.1"})
    assert plan is not None, fix
    assert plan.python_version == "3.11"      # the host's, in 2.5's range
    plan, fix = run({"cpu": True, "torch": "1.12.1"})   # type: ignore[dict-item]
    assert plan is not None, fix
    assert plan.python_version == "3.10"      # 1.12 stops at 3.10; the host has 3.11


def test_pinned_python_picks_the_newest_release_for_it() -> None:
    plan, _ = run({"cc": "8.6", "python": "3.9"})
    assert plan is not None
    assert plan.python_version == "3.9" and plan.torch_version == "2.8.0"


def test_contradicting_pins_are_refused_with_a_working_combination() -> None:
    plan, fix = run({"cc": "6.1", "torch": "2.15.0", "cuda": "13.2"})
    assert plan is None and fix == "use --cuda 12.6 --torch 2.14.1"


@pytest.mark.parametrize("cli", [
    {"cc": "12.0", "torch": "2.5.1"},    # used to suggest --cuda 13.5 (no conda, no torch 2.5)
    {"cc": "3.5", "cuda": "13.0"},       # used to suggest --cuda 11.8 (no conda-forge 11.8)
])
def test_issue_14_hints_now_lead_somewhere(cli: dict[str, str]) -> None:
    plan, fix = run(cli)
    assert plan is None and fix
    fixed, again = run(apply_fix(cli, fix))
    assert fixed is not None, (fix, again)


def test_arch_classes_cover_the_tables() -> None:
    classes = arch_classes()
    assert {"6.1", "8.6", "12.0", "3.5"} & set(classes) and len(classes) >= 10



def test_every_refusal_names_a_request_the_tool_accepts_sampled() -> None:
    """Every 41st request of the whole space (all archs, releases, CUDAs, Pythons interleave);
    the full sweep is tests/integration/test_fix_hints.py (4 min on 2 cores)."""
    every = (r for cc in CCS for r in requests(cc))
    refused, failures, none_exists = check_fixes(islice(every, 0, None, 41))
    assert not failures, f"{len(failures)} fixes refused again, e.g. {failures[:3]}"
    assert refused > 500           # the property ran over the refused space, not around it
    for cc in none_exists:
        assert nothing_builds(cc), f"the fix for --cc {cc} says none exists, but one does"
