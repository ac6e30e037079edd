"""Give an extension's wheel the build's local label and pin it to the torch it was built against.

Most extensions have no variable for a local version (flash-attn, causal-conv1d and mamba-ssm do;
torch-scatter, xformers from an sdist do not), and all of them declare a bare ``torch``
requirement. Both matter (pain.md FM-18): an unlabelled ``torch_scatter-2.1.2`` is
indistinguishable from PyPI's and a later ``pip install`` may swap it, and a bare ``torch`` lets pip
replace the custom torch underneath it. So after the build the wheel is rewritten the way
``wheel tags`` rewrites one: the ``.dist-info`` directory renamed, ``Version:`` and the torch
``Requires-Dist`` changed in METADATA, RECORD recomputed, the file renamed.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from torchbuild.errors import BuildStepError


def labelled(version: str, local: str) -> str:
    """``2.1.2`` + ``cu128.sm86`` -> ``2.1.2+cu128.sm86``; any local part already there is replaced
    (the label must describe this build)."""
    public = Version(version).public
    return str(Version(f"{public}+{local}")) if local else public


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()}"


def _pin_line(line: str, torch_pin: str) -> str:
    """``Requires-Dist: torch>=2.10`` -> ``Requires-Dist: torch==<pin>`` (markers are kept)."""
    text = line[len("Requires-Dist:"):].strip()
    try:
        req = Requirement(text)
    except InvalidRequirement:
        return line
    if canonicalize_name(req.name) != "torch" or req.url:
        return line
    marker = f"; {req.marker}" if req.marker else ""
    return f"Requires-Dist: torch=={torch_pin}{marker}"


def rewrite_metadata(text: str, version: str, torch_pin: str) -> str:
    """New ``Version:``; every torch requirement pinned, and one added where there was none
    (torch-scatter declares no torch at all, yet its .so files need exactly this one)."""
    headers, sep, body = text.partition("\n\n")
    out = []
    for line in headers.split("\n"):
        if line.startswith("Version:"):
            line = f"Version: {version}"
        elif line.startswith("Requires-Dist:") and torch_pin:
            line = _pin_line(line, torch_pin)
        out.append(line)
    if torch_pin and not any(ln.startswith(f"Requires-Dist: torch=={torch_pin}") for ln in out):
        out.append(f"Requires-Dist: torch=={torch_pin}")
    return "\n".join(out) + sep + body


def relabel_wheel(wheel: Path, local: str, torch_pin: str) -> Path:
    """Rewrite ``wheel`` in place (new name beside it, old one removed); return the new path."""
    name, old_version, build, _ = parse_wheel_filename(wheel.name)
    version = labelled(str(old_version), local)
    prefix = re.sub(r"[-_.]+", "_", str(name))
    old_info = f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"
    new_info = f"{prefix}-{version}.dist-info"
    build_part = f"-{build[0]}{build[1]}" if build else ""
    tag = wheel.name[: -len(".whl")].rsplit("-", 3)[-3:]
    target = wheel.with_name(f"{prefix}-{version}{build_part}-{'-'.join(tag)}.whl")
    tmp = target.with_name(target.name + ".part")
    records: list[str] = []
    with zipfile.ZipFile(wheel) as src:
        if f"{old_info}/METADATA" not in src.namelist():
            msg = f"{wheel.name} has no {old_info}/METADATA: not a wheel torchbuild can label"
            raise BuildStepError(msg, fix="build it with a standard backend (setuptools)")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
            for item in src.infolist():
                if item.filename == f"{old_info}/RECORD":
                    continue
                data = src.read(item.filename)
                path = item.filename
                if path.startswith(old_info + "/"):
                    path = new_info + path[len(old_info):]
                if path == f"{new_info}/METADATA":
                    data = rewrite_metadata(data.decode("utf-8"), version, torch_pin).encode()
                info = zipfile.ZipInfo(path, date_time=item.date_time)
                info.external_attr, info.compress_type = item.external_attr, zipfile.ZIP_DEFLATED
                dst.writestr(info, data)
                records.append(f"{path},{_record_hash(data)},{len(data)}")
            records.append(f"{new_info}/RECORD,,")
            dst.writestr(f"{new_info}/RECORD", "\n".join(records) + "\n")
    tmp.replace(target)
    if target != wheel:
        wheel.unlink()
    return target
