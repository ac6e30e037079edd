from __future__ import annotations

import pytest

from torchbuild.cc import Arch, arch_list_env, arch_tag, parse_cc
from torchbuild.errors import UsageError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8.6", "8.6"),
        ("7.5 8.6", "7.5;8.6"),
        ("7.5;8.6", "7.5;8.6"),
        ("8.6, 7.5", "7.5;8.6"),
        ("8.6+PTX", "8.6+PTX"),
        ("8.6+ptx 8.6", "8.6+PTX"),
        ("9.0a", "9.0a"),
        ("10.0f 12.0", "10.0f;12.0"),
        ("sm_86 compute_90", "8.6;9.0"),
        ("86", "8.6"),
        ("120", "12.0"),
        ("Ampere", "8.0;8.6"),
        ("Hopper+PTX", "9.0+PTX"),
        ("Blackwell", "10.0;12.0"),
    ],
)
def test_good_forms(text, expected):
    assert arch_list_env(parse_cc(text)) == expected


@pytest.mark.parametrize("text", ["8", "8.x", "sm86x", "8.6+PTXX", "8.6a+", "", "  ", "auto 8.6",
                                  "Amperes", "0.5"])
def test_bad_forms(text):
    with pytest.raises(UsageError) as err:
        parse_cc(text)
    assert err.value.exit_code == 2
    assert err.value.fix


def test_arch_properties():
    a = Arch(9, 0, "a", True)
    assert (str(a), a.sm, a.compute, a.tag, a.base) == ("9.0a+PTX", "sm_90a", "compute_90a",
                                                        "sm90a", "9.0")
    assert arch_tag(parse_cc("7.5 8.6")) == "sm75.sm86"
