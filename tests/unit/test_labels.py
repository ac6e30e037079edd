from __future__ import annotations

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from torchbuild.cc import parse_cc
from torchbuild.errors import UsageError
from torchbuild.knowledge.labels import (
    companion_version,
    cuda_tag,
    parse_label,
    torch_requirement,
    version_label,
)


def test_single_arch_label_matches_the_issue_example() -> None:
    assert version_label("2.9.1", "12.8", parse_cc("8.6"), cpu=False) == "2.9.1+cu128.sm86"


def test_label_is_a_valid_pep440_version_with_ordered_archs() -> None:
    label = version_label("2.9.1", "13.0", parse_cc("9.0+PTX 7.5 10.0 9.0a"), cpu=False)
    assert Version(label).local == "cu130.sm75.sm90a.sm90ptx.sm100"
    assert Version(label).public == "2.9.1"


def test_existing_local_part_is_replaced() -> None:
    assert version_label("2.9.1+git1234", "12.8", parse_cc("8.6"), cpu=False) == "2.9.1+cu128.sm86"


def test_cpu_build_is_labelled_cpu_whatever_archs_are_given() -> None:
    assert version_label("2.13.0", None, (), cpu=True) == "2.13.0+cpu"


def test_cuda_build_without_archs_is_refused() -> None:
    with pytest.raises(UsageError, match="at least one arch"):
        version_label("2.9.1", "12.8", (), cpu=False)


@pytest.mark.parametrize(("cuda", "tag"),
                         [("12.8", "cu128"), ("13.0", "cu130"), ("11.8.0", "cu118")])
def test_cuda_tag(cuda: str, tag: str) -> None:
    assert cuda_tag(cuda) == tag


def test_bad_cuda_version_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="MAJOR.MINOR"):
        cuda_tag("twelve")


def test_companion_pins_exactly_the_torch_label() -> None:
    torch_label = version_label("2.9.1", "12.8", parse_cc("8.6 9.0"), cpu=False)
    vision = companion_version("0.24.1", torch_label)
    assert Version(vision).local == Version(torch_label).local
    req = Requirement(torch_requirement(torch_label))
    assert req.specifier.contains(torch_label)
    # A PyPI torch of the same public version does not satisfy the pin.
    assert not req.specifier.contains("2.9.1")
    assert not req.specifier.contains("2.9.1+cu128.sm80")


def test_parse_label_round_trips() -> None:
    label = version_label("2.9.1", "12.8", parse_cc("8.6+PTX 7.5"), cpu=False)
    parsed = parse_label(label)
    assert (parsed.public, parsed.cuda, parsed.archs, parsed.cpu) == (
        "2.9.1", "12.8", ("sm75", "sm86ptx"), False)
    assert parse_label("2.13.0+cpu").cpu
    assert parse_label("2.13.0").cuda is None
