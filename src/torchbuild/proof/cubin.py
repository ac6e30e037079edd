"""Which GPU code a binary really carries: SASS per ``sm_XY`` and PTX per ``compute_XY``.

``torch.cuda.get_arch_list()`` only repeats the list torch was configured with. A library can still
lack kernels for an arch (a companion built with another list, a sub-build with its own flags), and
the user learns it at runtime as "no kernel image is available for execution on the device"
(pain.md FM-12). ``cuobjdump --list-elf/--list-ptx`` reads the embedded fat binaries themselves.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

from torchbuild.cc import Arch
from torchbuild.command import probe, resolve_program
from torchbuild.errors import MissingToolError, VerificationError

_SASS = re.compile(r"\.(sm_\d+[af]?)\.cubin\s*$")
_PTX = re.compile(r"\.sm_(\d+[af]?)\.ptx\s*$")
_NO_DEVICE_CODE = "does not contain device code"
_FATBIN_SECTIONS = {b".nv_fatbin", b"__nv_relfatbin"}
# cuobjdump ships in different wheels and layouts per CUDA major.
_DEFAULT_CUDA = Path("/usr/local/cuda/bin/cuobjdump")
_PACKAGES = ("nvidia-cuda-cuobjdump", "nvidia-cuda-cuobjdump-cu12", "nvidia-cuda-cuobjdump-cu11")


def _from_package() -> Path | None:
    for name in _PACKAGES:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for rel in dist.files or ():
            if rel.name == "cuobjdump":
                path = Path(str(dist.locate_file(rel)))
                if path.is_file():
                    return path
    return None


def find_cuobjdump(environ: Mapping[str, str]) -> Path:
    """``CUOBJDUMP``, PATH, ``$CUDA_HOME/bin``, the nvidia-cuda-cuobjdump wheel, /usr/local/cuda."""
    if environ.get("CUOBJDUMP"):
        return Path(resolve_program(environ["CUOBJDUMP"], environ))
    try:
        return Path(resolve_program("cuobjdump", environ))
    except MissingToolError:
        pass
    for var in ("CUDA_HOME", "CUDA_PATH"):
        candidate = Path(environ.get(var, "")) / "bin" / "cuobjdump"
        if environ.get(var) and candidate.is_file():
            return candidate
    found = _from_package()
    if found is None and _DEFAULT_CUDA.is_file():
        found = _DEFAULT_CUDA  # torch's own default CUDA_HOME
    if found is None:
        msg = "cuobjdump was not found (CUOBJDUMP, PATH, $CUDA_HOME/bin, nvidia-cuda-cuobjdump)"
        raise MissingToolError(msg, fix="pip install nvidia-cuda-cuobjdump, or set CUOBJDUMP")
    return found


def _section_names(f: BinaryIO) -> set[bytes] | None:
    """Section names of an ELF file; None when the headers cannot be read (then ask cuobjdump).

    Seeks to the section table instead of reading the file: libtorch_cuda.so is over a gigabyte.
    """
    head = f.read(64)
    if len(head) < 64 or head[:4] != b"\x7fELF" or head[5] != 1:  # little-endian only
        return None
    is64 = head[4] == 2
    if is64:
        shoff, = struct.unpack_from("<Q", head, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", head, 0x3A)
    else:
        shoff, = struct.unpack_from("<I", head, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", head, 0x2E)
    if shnum == 0 or shstrndx >= shnum:
        return None
    f.seek(shoff)
    table = f.read(shnum * shentsize)
    if len(table) < shnum * shentsize:
        return None

    def header(i: int) -> tuple[int, int, int]:
        base = i * shentsize
        name, = struct.unpack_from("<I", table, base)
        if is64:
            off, size = struct.unpack_from("<QQ", table, base + 0x18)
        else:
            off, size = struct.unpack_from("<II", table, base + 0x10)
        return name, off, size

    _, str_off, str_size = header(shstrndx)
    f.seek(str_off)
    strtab = f.read(str_size)
    names = set()
    for i in range(shnum):
        name, _, _ = header(i)
        names.add(strtab[name:strtab.find(b"\0", name)])
    return names


def may_have_device_code(path: Path) -> bool:
    """Cheap pre-filter: an ELF file with a fat-binary section (or unreadable section headers)."""
    try:
        with path.open("rb") as f:
            if f.read(4) != b"\x7fELF":
                return False
            f.seek(0)
            names = _section_names(f)
    except (OSError, struct.error):
        return False
    return names is None or bool(names & _FATBIN_SECTIONS)


@dataclass(frozen=True)
class DeviceCode:
    """The GPU code embedded in one file."""

    path: Path
    sass: frozenset[str]  # {"sm_86", "sm_90a"}
    ptx: frozenset[str]  # {"compute_90"}

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "sass": sorted(self.sass), "ptx": sorted(self.ptx)}


def list_device_code(path: Path, cuobjdump: Path) -> DeviceCode:
    """Run ``cuobjdump --list-elf`` and ``--list-ptx`` on one file."""
    sass = _listing(cuobjdump, "--list-elf", path, _SASS, "")
    ptx = _listing(cuobjdump, "--list-ptx", path, _PTX, "compute_")
    return DeviceCode(path, frozenset(sass), frozenset(ptx))


def _listing(cuobjdump: Path, flag: str, path: Path, pattern: re.Pattern[str],
             prefix: str) -> set[str]:
    # A large libtorch_cuda.so takes a while; a host library is answered at once.
    result = probe([str(cuobjdump), flag, str(path)], timeout=900)
    if result is None:
        msg = f"`{cuobjdump} {flag} {path}` did not finish"
        raise VerificationError(msg, fix="run it by hand to see why; set CUOBJDUMP to another one")
    rc, out, err = result
    if rc != 0 and _NO_DEVICE_CODE not in err + out:
        msg = f"`cuobjdump {flag} {path}` exited with {rc}: {(err or out).strip()[:300]}"
        raise VerificationError(msg, fix="check the file is a complete ELF library")
    found = set()
    for line in out.splitlines():
        m = pattern.search(line)
        if m is not None:
            found.add(prefix + m.group(1))
    return found


def scan(files: Iterable[Path], cuobjdump: Path) -> list[DeviceCode]:
    """Device code of every file that has any (host-only libraries are left out)."""
    codes = []
    for path in sorted(set(files)):
        if not may_have_device_code(path):
            continue
        code = list_device_code(path, cuobjdump)
        if code.sass or code.ptx:
            codes.append(code)
    return codes


@dataclass(frozen=True)
class ArchCoverage:
    """One requested arch against every file that carries GPU code."""

    arch: str  # "9.0+PTX"
    sass: bool  # every file has SASS for it
    ptx: bool | None  # every file has its PTX; None when PTX was not requested
    lacking: tuple[str, ...]  # "libfoo.so: sm_90" per missing piece

    @property
    def ok(self) -> bool:
        return self.sass and self.ptx is not False

    def to_json(self) -> dict[str, Any]:
        return {"arch": self.arch, "sass": self.sass, "ptx": self.ptx, "ok": self.ok,
                "lacking": list(self.lacking)}


def coverage(codes: Sequence[DeviceCode], archs: Sequence[Arch]) -> list[ArchCoverage]:
    """Per requested arch: is its SASS (and PTX for ``+PTX``) in every file with device code?"""
    out = []
    for arch in archs:
        no_sass = [f"{c.path.name}: {arch.sm}" for c in codes if arch.sm not in c.sass]
        no_ptx = [f"{c.path.name}: {arch.compute}" for c in codes
                  if arch.ptx and arch.compute not in c.ptx]
        ptx = (bool(codes) and not no_ptx) if arch.ptx else None
        out.append(ArchCoverage(str(arch), bool(codes) and not no_sass, ptx,
                                tuple(no_sass + no_ptx)))
    return out
