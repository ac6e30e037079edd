"""``--cc`` parsing: compute capabilities -> ``Arch`` values -> ``TORCH_CUDA_ARCH_LIST``.

Accepted spellings (any mix, separated by spaces, ``;`` or ``,``)::

    8.6   8.6+PTX   9.0a   10.0f   86   sm_86   compute_90   Ampere   Hopper+PTX

Named architectures are expanded *here*, into explicit numbers, because the two parsers that
read TORCH_CUDA_ARCH_LIST disagree about names (CMake's ``Blackwell`` is ``10.0;12.0``,
cpp_extension's is ``10.0;10.3;12.0;12.1+PTX`` -- reference/pytorch-build.md section 3). An
explicit list gives torch and its companions the same kernels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torchbuild.errors import UsageError

# CMake's names (select_compute_arch.cmake, the main torch build): SASS targets, PTX when '+PTX'.
_NAMED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "kepler+tesla": (("3.7",), ()),
    "kepler": (("3.5",), ("3.5",)),
    "maxwell+tegra": (("5.3",), ()),
    "maxwell": (("5.0", "5.2"), ("5.2",)),
    "pascal": (("6.0", "6.1"), ("6.1",)),
    "volta+tegra": (("7.2",), ()),
    "volta": (("7.0",), ("7.0",)),
    "turing": (("7.5",), ("7.5",)),
    "ampere+tegra": (("8.7",), ()),
    "ampere": (("8.0", "8.6"), ("8.6",)),
    "ada": (("8.9",), ("8.9",)),
    "hopper": (("9.0",), ("9.0",)),
    "blackwell": (("10.0", "12.0"), ("12.0",)),
    "rubin": (("10.7",), ("10.7",)),
}

_NUMERIC = re.compile(r"^(\d{1,2})\.(\d)([af]?)$")
_COMPACT = re.compile(r"^(?:sm_|compute_|sm)?(\d{1,2})(\d)([af]?)$")


@dataclass(frozen=True, order=True)
class Arch:
    """One compute capability target; ``ptx`` also embeds PTX for forward compatibility."""

    major: int
    minor: int
    suffix: str = ""  # "" | "a" (arch-specific) | "f" (family)
    ptx: bool = False

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}{self.suffix}{'+PTX' if self.ptx else ''}"

    @property
    def number(self) -> str:
        """``8.6`` / ``9.0a`` without +PTX."""
        return f"{self.major}.{self.minor}{self.suffix}"

    @property
    def base(self) -> str:
        """``8.6`` / ``9.0``: the plain capability, no suffix."""
        return f"{self.major}.{self.minor}"

    @property
    def sm(self) -> str:
        return f"sm_{self.major}{self.minor}{self.suffix}"

    @property
    def compute(self) -> str:
        return f"compute_{self.major}{self.minor}{self.suffix}"

    @property
    def tag(self) -> str:
        """Short label for version strings: ``sm86``, ``sm90a``."""
        return f"sm{self.major}{self.minor}{self.suffix}"


def _bad(token: str, text: str) -> UsageError:
    msg = (f"--cc {text!r}: {token!r} is not a compute capability "
           "(expected forms: 8.6, 8.6+PTX, 9.0a, 10.0f, sm_86, Ampere)")
    return UsageError(msg, fix="look your GPU up at https://developer.nvidia.com/cuda-gpus, "
                      "or use --cc auto on the machine with the GPU")


def _parse_token(token: str, text: str) -> list[Arch]:
    ptx = False
    core = token
    if core.lower().endswith("+ptx"):
        ptx, core = True, core[:-4]
    named = _NAMED.get(core.lower())
    if named is not None:
        sass, ptx_archs = named
        out = [Arch(*_split(a), ptx=False) for a in sass]
        if ptx:
            out += [Arch(*_split(a), ptx=True) for a in ptx_archs]
        return out
    m = _NUMERIC.match(core) or _COMPACT.match(core.lower())
    if m is None:
        raise _bad(token, text)
    major, minor, suffix = int(m.group(1)), int(m.group(2)), m.group(3)
    if major < 1:
        raise _bad(token, text)
    return [Arch(major, minor, suffix, ptx)]


def _split(number: str) -> tuple[int, int, str]:
    m = _NUMERIC.match(number)
    assert m is not None, number
    return int(m.group(1)), int(m.group(2)), m.group(3)


def parse_cc(text: str) -> tuple[Arch, ...]:
    """Parse a ``--cc`` value into sorted, de-duplicated ``Arch`` values.

    >>> [str(a) for a in parse_cc("8.6 7.5;8.6+PTX")]
    ['7.5', '8.6+PTX']
    """
    tokens = [t for t in re.split(r"[\s;,]+", text.strip()) if t]
    if not tokens:
        msg = "--cc is empty"
        raise UsageError(msg, fix='give at least one compute capability, e.g. --cc 8.6')
    merged: dict[tuple[int, int, str], bool] = {}
    for token in tokens:
        if token.lower() in {"auto", "native", "all", "common"}:
            msg = f"--cc {text!r}: {token!r} cannot be mixed with explicit capabilities"
            raise UsageError(msg, fix="use --cc auto alone, or list the capabilities")
        for arch in _parse_token(token, text):
            key = (arch.major, arch.minor, arch.suffix)
            merged[key] = merged.get(key, False) or arch.ptx
    return tuple(sorted(Arch(ma, mi, sf, ptx) for (ma, mi, sf), ptx in merged.items()))


def arch_list_env(archs: tuple[Arch, ...]) -> str:
    """The TORCH_CUDA_ARCH_LIST value: ``"7.5;8.6+PTX"``."""
    return ";".join(str(a) for a in archs)


def arch_tag(archs: tuple[Arch, ...]) -> str:
    """A compact label for version strings and paths: ``sm75.sm86``."""
    return ".".join(a.tag for a in archs)
