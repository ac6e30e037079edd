"""Real venvs for tests and benchmarks, without pytest (benchmarks run from a plain install).

The real torch the compile tests build against must be a CPU wheel: a plain ``torch`` from PyPI
is the multi-GB CUDA build with its nvidia-* wheels. Before installing, pip's own dry-run report
says what it would install and from where; that is printed, and a CUDA build is refused with the
two ways to give pip a CPU wheel.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

CPU_WHEEL_FIX = ("give pip a CPU wheel: PIP_FIND_LINKS=DIR holding torch-X.Y.Z+cpu-*.whl, or "
                 "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu")


class CudaTorchRefused(RuntimeError):
    pass


def torch_source(python: Path, packages: tuple[str, ...]) -> str | None:
    """Where pip would take torch from (URL), or None when torch is not among ``packages``;
    raises CudaTorchRefused when it would be the CUDA build (nvidia-* wheels come with it)."""
    if not any(p.split("=")[0].split("<")[0].split(">")[0] == "torch" for p in packages):
        return None
    proc = subprocess.run([str(python), "-m", "pip", "install", "--dry-run", "--quiet",
                           "--disable-pip-version-check", "--report", "-", *packages],
                          capture_output=True, text=True, check=True)
    report = json.loads(proc.stdout)
    names = {i["metadata"]["name"].lower(): i.get("download_info", {}).get("url", "")
             for i in report.get("install", [])}
    cuda = sorted(n for n in names if n.startswith("nvidia-"))
    url = names.get("torch", "(already installed)")
    if cuda:
        msg = (f"pip would install the CUDA build of torch from {url} with {len(cuda)} nvidia "
               f"wheels ({', '.join(cuda[:3])}, ...: several GB); {CPU_WHEEL_FIX}")
        raise CudaTorchRefused(msg)
    return url


def make_venv(path: Path, *packages: str, system_site: bool = False) -> Path:
    """A real venv with ``packages`` pip-installed; returns its python."""
    args = [sys.executable, "-m", "venv", str(path)]
    if system_site:
        args.append("--system-site-packages")
    subprocess.run(args, check=True)
    python = path / "bin" / "python"
    if packages:
        source = torch_source(python, packages)
        if source is not None:
            print(f"torch for the compile tests comes from {source}", file=sys.stderr)
        subprocess.run([str(python), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", *packages], check=True)
    return python


def pure_wheel(tmp: Path, name: str, requires: list[str]) -> Path:
    """A minimal pure wheel written by hand (the format is just a zip with metadata)."""
    path = tmp / f"{name}-1.0-py3-none-any.whl"
    info = f"{name}-1.0.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}/__init__.py", "")
        zf.writestr(f"{info}/METADATA", meta)
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: "
                    "true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return path
