"""Local version labels that say what a wheel is: ``2.9.1+cu128.sm86``.

A source build that keeps upstream's version string cannot be told apart from the PyPI wheel, and
pip happily "upgrades" it away (pain.md FM-18). The label carries the CUDA version and the archs the
kernels were compiled for; the companions pin exactly the same string, so a torchvision built here
refuses a torch built elsewhere.

PEP 440 local segments are ``[a-z0-9]+`` joined by dots, so ``8.6+PTX`` is spelt ``sm86ptx``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from packaging.version import InvalidVersion, Version

from torchbuild.cc import Arch
from torchbuild.errors import UsageError

_SEGMENT = re.compile(r"^(?:sm(\d{2,3})([af]?)(ptx)?)$")
_CUDA_SEGMENT = re.compile(r"^cu(\d+)$")


@dataclass(frozen=True)
class Label:
    """What a parsed local label says."""

    public: str  # "2.9.1"
    cuda: str | None  # "12.8"; None for a CPU build or an unlabelled version
    archs: tuple[str, ...]  # ("sm86", "sm90ptx") as written in the label
    cpu: bool


def _public(version: str) -> Version:
    try:
        return Version(version)
    except InvalidVersion:
        msg = f"{version!r} is not a PEP 440 version"
        raise UsageError(msg, fix="give a version like 2.9.1") from None


def cuda_tag(cuda: str) -> str:
    """``12.8`` -> ``cu128``, ``13.0`` -> ``cu130`` (the spelling PyTorch's own wheels use)."""
    m = re.fullmatch(r"(\d+)\.(\d+)(?:\.\d+)?", cuda.strip())
    if m is None:
        msg = f"CUDA version {cuda!r} is not MAJOR.MINOR"
        raise UsageError(msg, fix="give the CUDA version as e.g. 12.8")
    return f"cu{m.group(1)}{m.group(2)}"


def arch_segment(arch: Arch) -> str:
    """``8.6`` -> ``sm86``, ``9.0a`` -> ``sm90a``, ``9.0+PTX`` -> ``sm90ptx``."""
    return f"{arch.tag}{'ptx' if arch.ptx else ''}"


def version_label(torch_version: str, cuda: str | None, archs: Sequence[Arch], cpu: bool) -> str:
    """The full version for a wheel built here: the public version plus our local label.

    Any local part already on ``torch_version`` (``2.9.1+git1234``) is replaced, because the label
    must describe this build and nothing else.
    """
    public = _public(torch_version).public
    if cpu:
        return f"{public}+cpu"
    if cuda is None or not archs:
        msg = "a CUDA build label needs the CUDA version and at least one arch"
        raise UsageError(msg, fix="pass --cuda and --cc, or --cpu for a CPU-only build")
    segments = [cuda_tag(cuda), *sorted({arch_segment(a) for a in archs}, key=_segment_key)]
    label = f"{public}+{'.'.join(segments)}"
    # Version() normalises (lower-case, separators); keep what pip will print.
    return str(Version(label))


def _segment_key(segment: str) -> tuple[int, str]:
    m = _SEGMENT.match(segment)
    return (int(m.group(1)), segment) if m else (0, segment)


def companion_version(companion_version: str, torch_label: str) -> str:
    """The companion's version carries the same local label as the torch it was built against."""
    public = _public(companion_version).public
    local = Version(torch_label).local
    return f"{public}+{local}" if local else public


def torch_requirement(torch_label: str) -> str:
    """The pin a companion wheel must carry: ``torch==2.9.1+cu128.sm86``."""
    return f"torch=={Version(torch_label)}"


def parse_label(version: str) -> Label:
    """Read a version string back; labels we did not write come back with empty fields."""
    v = _public(version)
    parts = tuple((v.local or "").split(".")) if v.local else ()
    cpu = parts == ("cpu",)
    cuda = None
    archs: list[str] = []
    for part in parts:
        m = _CUDA_SEGMENT.match(part)
        if m is not None and len(m.group(1)) >= 2:
            digits = m.group(1)
            cuda = f"{digits[:-1]}.{digits[-1]}"
        elif _SEGMENT.match(part):
            archs.append(part)
    return Label(public=v.public, cuda=cuda, archs=tuple(archs), cpu=cpu)
