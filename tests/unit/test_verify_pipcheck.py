"""``pip check`` output read back into requirements (verify installs what the wheels lack, #17)."""

from __future__ import annotations

from torchbuild.proof.verify import parse_pip_check


def test_parse_pip_check_keeps_the_full_requirement() -> None:
    text = ("torchvision 0.21.0+cpu requires numpy, which is not installed.\n"
            "torchvision 0.21.0+cpu has requirement pillow!=8.3.*,>=5.3.0, but you have pillow "
            "4.0.0.\n"
            "torch 2.13.0+cpu has requirement setuptools>=77.0.3, but you have setuptools 65.7.0.")
    found = parse_pip_check(text, {"torchvision": {"numpy": "numpy>=1.21"}})
    assert [(b.project, b.requirement, b.name) for b in found] == [
        ("torchvision", "numpy>=1.21", "numpy"),
        ("torchvision", "pillow!=8.3.*,>=5.3.0", "pillow"),
        ("torch", "setuptools>=77.0.3", "setuptools")]
