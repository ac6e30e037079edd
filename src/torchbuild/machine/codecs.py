"""torchvision's image codecs on a venv/existing build host: found where torchvision looks, or the
exact system packages that bring them.

torchvision's setup.py (pytorch/vision, every release since ~0.8) only *warns* when a codec is
missing ("Building torchvision without JPEG support") and the wheel then fails at
``decode_jpeg``/``read_image`` time. It looks for ``jpeglib.h`` and ``webp/decode.h`` in
``TORCHVISION_INCLUDE``, ``$CONDA_PREFIX/include``, ``/usr/include`` and ``/usr/local/include``,
for PNG through ``libpng-config`` (>= 1.6.0), and for nvjpeg at ``$CUDA_HOME/include/nvjpeg.h``.
The checks here follow the same rules, so what passes here is what torchvision will find.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from torchbuild import command

__all__ = ["CODECS", "CodecStatus", "install_hint", "probe_codecs", "system_packages"]

CODECS = ("jpeg", "png", "webp", "nvjpeg")
HEADERS = {"jpeg": "jpeglib.h", "webp": "webp/decode.h", "png": "png.h"}
SYSTEM_INCLUDE = (Path("/usr/include"), Path("/usr/local/include"))
MIN_LIBPNG = Version("1.6.0")   # torchvision's find_libpng()
# Development packages per distribution family: Debian 12 / Ubuntu (`libjpeg-dev` is provided by
# libjpeg62-turbo-dev on Debian and libjpeg-turbo8-dev on Ubuntu), RHEL/Rocky/Alma/Fedora.
DEBIAN = {"jpeg": "libjpeg-dev", "png": "libpng-dev", "webp": "libwebp-dev"}
RHEL = {"jpeg": "libjpeg-turbo-devel", "png": "libpng-devel", "webp": "libwebp-devel"}


@dataclass(frozen=True)
class CodecStatus:
    name: str
    found: str | None   # where it was found, None = missing
    why: str = ""       # what was looked at, for the message


def system_packages(names: Sequence[str], cuda: str | None) -> tuple[list[str], list[str]]:
    """(Debian/Ubuntu packages, RHEL-family packages) for the missing codecs. nvjpeg comes from
    NVIDIA's CUDA repositories as libnvjpeg-dev-X-Y (deb) / libnvjpeg-devel-X-Y (rpm)."""
    tag = "-".join((cuda or "12.8").split(".")[:2])
    deb = [DEBIAN[n] if n != "nvjpeg" else f"libnvjpeg-dev-{tag}" for n in names]
    rpm = [RHEL[n] if n != "nvjpeg" else f"libnvjpeg-devel-{tag}" for n in names]
    return deb, rpm


def install_hint(names: Sequence[str], cuda: str | None) -> str:
    deb, rpm = system_packages(names, cuda)
    allow = " ".join(f"--allow-missing {n}" for n in names)
    return (f"install the development packages: Debian/Ubuntu `sudo apt-get install "
            f"{' '.join(deb)}`, RHEL/Rocky/Alma/Fedora `sudo dnf install {' '.join(rpm)}`; "
            f"or build torchvision without them, knowingly, with {allow}")


def include_dirs(environ: Mapping[str, str],
                 system: Sequence[Path] = SYSTEM_INCLUDE) -> list[Path]:
    """Where torchvision's find_library() looks, in its order."""
    dirs = [Path(p) for p in environ.get("TORCHVISION_INCLUDE", "").split(":") if p]
    dirs += [Path(environ[v]) / "include" for v in ("BUILD_PREFIX", "CONDA_PREFIX")
             if environ.get(v)]
    return [*dirs, *system]


def _header(name: str, dirs: Sequence[Path]) -> CodecStatus:
    header = HEADERS[name]
    for d in dirs:
        if (d / header).is_file():
            return CodecStatus(name, str(d / header))
    return CodecStatus(name, None, f"no {header} in {', '.join(str(d) for d in dirs)}")


def _libpng(environ: Mapping[str, str]) -> CodecStatus:
    res = command.probe(["libpng-config", "--version"], env=environ)
    if res is None:
        return CodecStatus("png", None, "libpng-config is not on PATH (or could not be run)")
    if res[0] != 0:
        said = (res[2] or res[1]).strip().splitlines()[-1:] or ["no output"]
        return CodecStatus("png", None, f"libpng-config --version failed (exit {res[0]}: "
                           f"{said[0][:120]})")
    try:
        version = Version(res[1].strip())
    except InvalidVersion:
        return CodecStatus("png", None, f"libpng-config --version said {res[1].strip()!r}")
    if version < MIN_LIBPNG:
        return CodecStatus("png", None, f"libpng {version} < {MIN_LIBPNG}")
    inc = command.probe(["libpng-config", "--I_opts"], env=environ)
    include = inc[1].strip().split("-I")[-1].strip() if inc and inc[0] == 0 else ""
    if include and not (Path(include) / "png.h").is_file():
        return CodecStatus("png", None, f"libpng-config points at {include}, which has no png.h")
    return CodecStatus("png", f"libpng {version} ({include or 'system include path'})")


def _nvjpeg(cuda_home: str | None) -> CodecStatus:
    if not cuda_home:
        return CodecStatus("nvjpeg", None, "no CUDA toolkit (CUDA_HOME)")
    header = Path(cuda_home) / "include" / "nvjpeg.h"
    return CodecStatus("nvjpeg", str(header) if header.is_file() else None, f"no {header}")


def probe_codecs(environ: Mapping[str, str], wanted: Sequence[str], *, cuda_home: str | None,
                 system: Sequence[Path] = SYSTEM_INCLUDE) -> list[CodecStatus]:
    """Look for each wanted codec where torchvision's setup.py will look."""
    dirs = include_dirs(environ, system)
    out = []
    for name in wanted:
        if name == "png":
            out.append(_libpng(environ))
        elif name == "nvjpeg":
            out.append(_nvjpeg(cuda_home))
        else:
            out.append(_header(name, dirs))
    return out
